"""The Django, django-hijack and django-impersonate integrations on the real libraries (issue 16).

examples/django_admin (the admin, a catalog.Policy model, hijack and django-impersonate; no auditrail
import, an audit.yaml without `events:`) driven by Django's test client in a script run as
`auditrail-instrument python drive.py`: zero code, the integrations alone record.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from auditrail import semconv

from test_launcher import AUDITRAIL_INSTRUMENT, events, run

pytest.importorskip("hijack", reason="django-hijack is in the dev extras: pip install -e '.[dev]'")
pytest.importorskip("impersonate", reason="django-impersonate is in the dev extras: pip install -e '.[dev]'")

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "django_admin"
PASSWORD = "s3cret-Pw-42"
WRONG = "hunter2-wrong"

DRIVE = '''
import json
import os

import django

django.setup()

from django.contrib.auth.models import Group, Permission, User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test import Client  # noqa: E402

from catalog.models import Policy  # noqa: E402

PASSWORD, WRONG = os.environ["PASSWORD"], os.environ["WRONG"]
call_command("migrate", verbosity=0)
call_command("seed", password=PASSWORD)
ops, bob = User.objects.get(username="admin"), User.objects.get(username="bob")
support = Group.objects.get(name="support")
out = {"bob": bob.pk}

# ops's browser behind our proxy (127.0.0.1 is trusted): the client is the right-most untrusted hop.
as_ops = Client(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.7, 203.0.113.9")
# bob's own browser, straight from the internet: his X-Forwarded-For is his own claim, not believed.
as_bob = Client(REMOTE_ADDR="192.0.2.50", HTTP_X_FORWARDED_FOR="6.6.6.6")


def ok(response, code=302):
    assert response.status_code == code, (response.status_code, response.content[:500])
    return response


ok(as_ops.post("/admin/login/?next=/admin/", {"username": "admin", "password": WRONG}), 200)
ok(as_ops.post("/admin/login/?next=/admin/", {"username": "admin", "password": PASSWORD}))
ok(as_bob.post("/admin/login/?next=/admin/", {"username": "bob", "password": PASSWORD}))


def form(policy, **changes):
    data = {"tenant_id": policy.tenant_id, "name": policy.name, "monthly_limit": policy.monthly_limit}
    if policy.active:
        data["active"] = "on"
    data.update(changes)
    return data


def change(client, policy, **changes):
    ok(client.post(f"/admin/catalog/policy/{policy.pk}/change/", form(policy, **changes)))
    policy.refresh_from_db()


ok(as_ops.post("/admin/catalog/policy/add/", {"tenant_id": "acme", "name": "chat", "monthly_limit": 100,
                                              "active": "on"}))
chat = Policy.objects.get(name="chat")
out["chat"] = chat.pk
change(as_ops, chat, monthly_limit=500)
change(as_ops, chat, monthly_limit=500)  # saved unchanged: an admin event, no history event

# A custom bulk action over 5 rows, with bulk_max_rows 3: the objects listed up to 3, one summary update.
many = [Policy.objects.create(tenant_id="globex", name=f"p{i}") for i in range(5)]
ok(as_ops.post("/admin/catalog/policy/", {"action": "deactivate", "index": 0,
                                          "_selected_action": [str(p.pk) for p in many]}))
# A transaction rolled back: its changes never happened, so nothing of them is recorded.
from django.db import transaction  # noqa: E402

try:
    with transaction.atomic():
        Policy.objects.filter(pk=many[0].pk).update(monthly_limit=123)
        rolled = Policy.objects.get(pk=many[1].pk)
        rolled.name = "rolled-back"
        rolled.save()
        raise RuntimeError("roll back")
except RuntimeError:
    pass
# Instances with deferred fields: only what was loaded is compared and shown, and no query is made for more.
partial = Policy.objects.only("name").get(pk=many[0].pk)
partial.name = "p0-renamed"
partial.save()
gone = Policy.objects.create(tenant_id="acme", name="deferred-gone").pk
Policy.objects.only("name").get(pk=gone).delete()
out["deferred_gone"] = gone
# QuerySet.update and delete from code: no request, each row recorded.
Policy.objects.filter(pk__in=[many[0].pk, many[1].pk]).update(monthly_limit=7)
Policy.objects.filter(pk=many[2].pk).delete()
out["queryset_deleted"] = many[2].pk
# "Delete selected": the confirmation page first (nothing deleted), then the confirmed POST.
doomed = [str(many[3].pk), str(many[4].pk)]
ok(as_ops.post("/admin/catalog/policy/", {"action": "delete_selected", "index": 0, "_selected_action": doomed}), 200)
ok(as_ops.post("/admin/catalog/policy/", {"action": "delete_selected", "index": 0, "_selected_action": doomed,
                                          "post": "yes"}))
out["doomed"] = doomed
lone = Policy.objects.create(tenant_id="initech", name="lone")
ok(as_ops.post(f"/admin/catalog/policy/{lone.pk}/delete/", {"post": "yes"}))
out["lone"] = lone.pk

# django-hijack: ops acts as bob; bob acts from his own browser meanwhile; ops is ops again after release.
ok(as_ops.post("/hijack/acquire/", {"user_pk": bob.pk, "next": "/admin/"}))
change(as_ops, chat, name="hijack-ops-as-bob")
change(as_bob, chat, name="hijack-bob-himself")
ok(as_ops.post("/hijack/release/", {"next": "/admin/"}))
change(as_ops, chat, name="hijack-ops-after")

# django-impersonate: the same story through its session state.
ok(as_ops.get(f"/impersonate/{bob.pk}/"))
change(as_ops, chat, name="impersonate-ops-as-bob")
change(as_bob, chat, name="impersonate-bob-himself")
ok(as_ops.get("/impersonate/stop/"))
change(as_ops, chat, name="impersonate-ops-after")

# Grants and revocations: forward, reverse, clear.
bob.groups.add(support)
support.user_set.remove(bob)
support.permissions.add(Permission.objects.get(codename="view_policy"))
bob.user_permissions.clear()

ok(as_ops.post("/admin/logout/"), 200)
print(json.dumps(out))
'''

AUDIT_YAML = '''
service_name: django-admin-test
delivery: {mode: best_effort}
integrations:
  django:
    models: {catalog.Policy: policy}
    tenant: obj.tenant_id
    trusted_proxies: [127.0.0.1]
    bulk_max_rows: 3
events:
  - target: catalog.admin:deactivate_policies
    event: catalog.deactivate
    payload: {count: queryset.count()}
'''


def drive(root: Path, audit_yaml: str, script: str = DRIVE) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]], str]:
    """Run `script` against the example project under auditrail-instrument; (its output, events, stderr)."""
    (root / "drive.py").write_text(textwrap.dedent(script))
    (root / "audit.yaml").write_text(audit_yaml)
    out = root / "events.jsonl"
    proc = run([AUDITRAIL_INSTRUMENT, "python", "drive.py"], root, AUDITRAIL_EXPORTER=f"file:{out}",
               PYTHONPATH=str(EXAMPLE), DJANGO_SETTINGS_MODULE="adminsite.settings",
               DJANGO_ADMIN_DB=str(root / "db.sqlite3"), PASSWORD=PASSWORD, WRONG=WRONG)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), events(out) if out.exists() else {}, proc.stderr


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """The example driven once with the renamed Policy history; (its ids, its events by name)."""
    out, found, stderr = drive(tmp_path_factory.mktemp("django"), AUDIT_YAML)
    assert "could not capture" not in stderr, stderr
    return out, found


def attrs(event: dict[str, Any]) -> dict[str, Any]:
    return event["attributes"]


def by_name(found: dict[str, list[dict[str, Any]]], event: str, name: str) -> list[dict[str, Any]]:
    """The `event` events whose object (after the change) is the policy called `name`."""
    return [e for e in found.get(event, []) if (e["payload"].get("after") or {}).get("name") == name]


# --- logins ---------------------------------------------------------------------------------------


def test_login_logout_and_failed_login_with_user_and_client_address(site) -> None:
    _, found = site
    (failed,) = found["auth.login.failed"]
    assert failed["payload"] == {"username": "admin"}
    assert attrs(failed)[semconv.OUTCOME] == "failure"
    assert attrs(failed)[semconv.SOURCE_IP] == "203.0.113.9"  # behind the trusted proxy; the spoofed hop ignored
    logins = {attrs(e)[semconv.ACTOR]: attrs(e) for e in found["auth.login"]}
    assert set(logins) == {"admin", "bob"}  # hijack's switches are impersonation events, not logins
    assert logins["bob"][semconv.SOURCE_IP] == "192.0.2.50"  # an untrusted peer's X-Forwarded-For is not believed
    (logout,) = found["auth.logout"]
    assert attrs(logout)[semconv.ACTOR] == "admin"


def test_no_password_in_any_event(site) -> None:
    _, found = site
    text = json.dumps(found)
    assert PASSWORD not in text and WRONG not in text
    assert "md5$" not in text  # nor the hash


# --- the admin ------------------------------------------------------------------------------------


def test_admin_create_and_change_carry_before_after_and_the_changed_fields(site) -> None:
    out, found = site
    (create,) = [e for e in found["admin.object.create"] if e["payload"]["model"] == "catalog.policy"]
    assert create["payload"]["after"]["monthly_limit"] == 100 and create["payload"]["pk"] == str(out["chat"])
    assert attrs(create)[semconv.ACTOR] == "admin" and attrs(create)[semconv.TENANT] == "acme"
    first, unchanged = [e for e in found["admin.object.update"] if e["payload"]["after"]["name"] == "chat"]
    assert first["payload"]["changed"] == ["monthly_limit"]
    assert (first["payload"]["before"]["monthly_limit"], first["payload"]["after"]["monthly_limit"]) == (100, 500)
    assert unchanged["payload"]["changed"] == []


def test_model_history_is_renamed_and_skips_unchanged_saves(site) -> None:
    _, found = site
    assert "catalog.policy.update" not in found  # renamed to policy.*
    updates = [e for e in found["policy.update"] if e["payload"].get("after", {}).get("monthly_limit") == 500]
    assert len(updates) == 1 and updates[0]["payload"]["before"] == {"monthly_limit": 100}


def test_bulk_action_lists_the_objects_and_queryset_update_is_summarised_above_bulk_max_rows(site) -> None:
    _, found = site
    (action,) = [e for e in found["admin.action"] if e["payload"]["action"] == "deactivate"]
    assert action["payload"]["count"] == 5 and action["payload"]["truncated"] is True
    assert len(action["payload"]["objects"]) == 3
    (summary,) = [e for e in found["policy.update"] if e["payload"].get("rows") == 5]
    assert summary["payload"]["changed"] == ["active"] and summary["payload"]["bulk"] is True
    assert attrs(summary)[semconv.ACTOR] == "admin"


def test_queryset_update_and_delete_from_code_are_recorded_row_by_row(site) -> None:
    out, found = site
    sevens = [e for e in found["policy.update"] if e["payload"].get("after") == {"monthly_limit": 7}]
    assert len(sevens) == 2 and all(e["payload"]["before"] == {"monthly_limit": 1000} for e in sevens)
    assert all(semconv.ACTOR not in attrs(e) for e in sevens)  # no request, no user
    deleted = [e for e in found["policy.delete"] if e["payload"]["pk"] == str(out["queryset_deleted"])]
    assert len(deleted) == 1 and deleted[0]["payload"]["before"]["name"] == "p2"


def test_delete_selected_records_once_confirmed_with_the_objects_as_they_were(site) -> None:
    out, found = site
    (action,) = [e for e in found["admin.action"] if e["payload"]["action"] == "delete_selected"]
    assert sorted(o["pk"] for o in action["payload"]["objects"]) == sorted(out["doomed"])
    assert attrs(action)[semconv.RISK] == "high"
    gone = {e["payload"]["pk"] for e in found["policy.delete"]}
    assert set(out["doomed"]) <= gone


def test_admin_delete_keeps_the_pk_from_before_the_deletion(site) -> None:
    out, found = site
    (delete,) = found["admin.object.delete"]
    assert delete["payload"]["pk"] == str(out["lone"]) and delete["payload"]["before"]["id"] == out["lone"]
    assert attrs(delete)[semconv.TENANT] == "initech"


# --- grants ---------------------------------------------------------------------------------------


def test_group_and_permission_grants_and_revocations(site) -> None:
    _, found = site
    grants = [e["payload"] for e in found["access.grant"]]
    revokes = [e["payload"] for e in found["access.revoke"]]
    assert {"relation": "user.groups", "users": ["bob"], "groups": ["support"]} in grants
    assert {"relation": "user.groups", "users": ["bob"], "groups": ["support"]} in revokes  # reverse side
    assert {"relation": "group.permissions", "groups": ["support"], "permissions": ["catalog.view_policy"]} in grants
    cleared = [r for r in revokes if r["relation"] == "user.user_permissions"]
    assert cleared and cleared[0]["users"] == ["bob"] and "catalog.change_policy" in cleared[0]["permissions"]
    assert all(attrs(e)[semconv.RISK] == "high" for e in found["access.grant"])


# --- impersonation --------------------------------------------------------------------------------


def session_of(found: dict[str, list[dict[str, Any]]], library: str) -> dict[str, Any]:
    (start,) = [e for e in found["admin.impersonation.start"] if e["payload"]["library"] == library]
    return start


@pytest.mark.parametrize("library", ["hijack", "impersonate"])
def test_impersonation_start_end_and_linking_by_the_librarys_session_state(site, library: str) -> None:
    _, found = site
    start = session_of(found, library)
    session = attrs(start)[semconv.IMPERSONATION]
    assert (attrs(start)[semconv.ACTOR], start["payload"]["impersonated"]) == ("admin", "bob")
    assert attrs(start)[semconv.RISK] == "critical"
    (end,) = [e for e in found["admin.impersonation.end"] if e["payload"]["library"] == library]
    assert end["payload"]["session"] == session and attrs(end)[semconv.ACTOR] == "admin"

    (as_bob,) = by_name(found, "admin.object.update", f"{library}-ops-as-bob")
    assert attrs(as_bob)[semconv.ACTOR] == "bob"
    assert (attrs(as_bob)[semconv.IMPERSONATOR], attrs(as_bob)[semconv.IMPERSONATION]) == ("admin", session)
    (history,) = by_name(found, "policy.update", f"{library}-ops-as-bob")
    assert attrs(history)[semconv.IMPERSONATION] == session  # the model history is linked too


@pytest.mark.parametrize("library", ["hijack", "impersonate"])
def test_impersonated_users_own_session_is_not_linked(site, library: str) -> None:
    _, found = site
    for event in ("admin.object.update", "policy.update"):
        (own,) = by_name(found, event, f"{library}-bob-himself")
        assert attrs(own)[semconv.ACTOR] == "bob" and attrs(own)[semconv.SOURCE_IP] == "192.0.2.50"
        assert semconv.IMPERSONATOR not in attrs(own) and semconv.IMPERSONATION not in attrs(own)
        (after,) = by_name(found, event, f"{library}-ops-after")
        assert attrs(after)[semconv.ACTOR] == "admin" and semconv.IMPERSONATOR not in attrs(after)


# --- options --------------------------------------------------------------------------------------

ALL_MODELS = '''
import django

django.setup()

from django.contrib.auth.models import User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test import Client  # noqa: E402

call_command("migrate", verbosity=0)
admin = User.objects.create_superuser("admin", "a@example.com", "s3cret-Pw-42")
bob = User.objects.create_user("bob", "b@example.com", "old-Pw-0001")
client = Client()
client.force_login(admin)
response = client.post(f"/admin/auth/user/{bob.pk}/password/",
                       {"password1": "n3w-Pw-9999x", "password2": "n3w-Pw-9999x", "usable_password": "true"})
assert response.status_code == 302, response.content[:500]
response = client.post("/admin/auth/user/add/", {"username": "carol", "password1": "c4rol-Pw-7777x",
                                                 "password2": "c4rol-Pw-7777x", "usable_password": "true"})
assert response.status_code == 302, response.content[:500]
# Nonsense through a real signal: the integration fails inside its guard, and the sender never sees it.
from django.contrib.auth.models import Group  # noqa: E402
from django.db.models.signals import m2m_changed  # noqa: E402

m2m_changed.send(sender=User.groups.through, instance=None, action="pre_clear", reverse=False, model=Group,
                 pk_set=None)
print("{}")
'''


def test_models_all_names_events_by_app_label_and_model_and_never_records_a_password(tmp_path: Path) -> None:
    yaml = "delivery: {mode: best_effort}\nintegrations:\n  django: {models: all, tenant: obj.no_such_field}\n"
    _, found, stderr = drive(tmp_path, yaml, ALL_MODELS)
    (change,) = [e for e in found["auth.user.update"] if "password" in e["payload"]["changed"]]
    assert "password" not in change["payload"]["before"] and "password" not in change["payload"]["after"]
    assert attrs(change)[semconv.ACTOR] == "admin"
    text = json.dumps(found)
    assert "n3w-Pw-9999x" not in text and "old-Pw-0001" not in text and "md5$" not in text
    assert "c4rol-Pw-7777x" not in text
    (created,) = [e for e in found["admin.object.create"] if e["payload"]["object"] == "carol"]
    assert "password" not in created["payload"]["after"] and "password" in created["payload"]["changed"]
    assert not [name for name in found if name.startswith(("sessions.", "admin.logentry", "contenttypes."))]
    # A tenant expression that raises leaves the tenant empty, says so once, and the app runs on.
    assert semconv.TENANT not in attrs(change)
    assert "obj.no_such_field" in stderr
    assert "could not capture integration django access; the call itself was not affected" in stderr


def test_an_integration_turned_off_records_nothing(tmp_path: Path) -> None:
    yaml = ("delivery: {mode: best_effort}\nintegrations:\n  django: false\n  django_hijack: false\n"
            "  django_impersonate: false\n")
    _, found, _ = drive(tmp_path, yaml, ALL_MODELS)
    assert found == {}


def test_events_entries_get_the_same_identity_as_their_last_fallback(site) -> None:
    _, found = site
    (entry,) = found["catalog.deactivate"]  # an events: entry naming no actor, in ops's request
    assert attrs(entry)[semconv.ACTOR] == "admin" and attrs(entry)[semconv.SOURCE_IP] == "203.0.113.9"


RECONFIGURED = '''
import os

import django

django.setup()

import auditrail  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test import Client  # noqa: E402

from catalog.models import Policy  # noqa: E402

call_command("migrate", verbosity=0)
call_command("seed", password=os.environ["PASSWORD"])
auditrail.configure()  # the app configures auditing itself, after auditrail-instrument did: a new recorder
ops = Client(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.9")
ops.force_login(User.objects.get(username="admin"))
policy = Policy.objects.create(tenant_id="acme", name="chat")
response = ops.post("/admin/catalog/policy/", {"action": "deactivate", "index": 0, "_selected_action": [policy.pk]})
assert response.status_code == 302, response.content[:300]
auditrail.shutdown()
print("{}")
'''


def test_a_new_configure_keeps_the_integrations_fallbacks(tmp_path: Path) -> None:
    """The request's user and address are the integration's fallbacks while it is set up, whichever recorder
    the app configured since (they were the first recorder's only)."""
    _, found, stderr = drive(tmp_path, AUDIT_YAML, RECONFIGURED)
    (entry,) = found["catalog.deactivate"]
    assert attrs(entry)[semconv.ACTOR] == "admin" and attrs(entry)[semconv.SOURCE_IP] == "203.0.113.9", stderr


# --- several worker processes ---------------------------------------------------------------------

START_IN_ONE_WORKER = '''
import json
import os

import django

django.setup()

from django.contrib.auth.models import User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test import Client  # noqa: E402

from catalog.models import Policy  # noqa: E402

call_command("migrate", verbosity=0)
call_command("seed", password=os.environ["PASSWORD"])
chat = Policy.objects.create(tenant_id="acme", name="chat")
ops = Client()
ops.force_login(User.objects.get(username="admin"))
assert ops.post("/hijack/acquire/", {"user_pk": User.objects.get(username="bob").pk}).status_code == 302
print(json.dumps({"cookie": ops.cookies["sessionid"].value, "chat": chat.pk}))
'''

CONTINUE_IN_ANOTHER = '''
import json
import os

import django

django.setup()

from django.test import Client  # noqa: E402

state = json.loads(os.environ["STATE"])
ops = Client()
ops.cookies["sessionid"] = state["cookie"]  # the same browser, now served by another worker
response = ops.post(f"/admin/catalog/policy/{state['chat']}/change/",
                    {"tenant_id": "acme", "name": "chat-in-worker-2", "monthly_limit": 5})
assert response.status_code == 302, response.content[:300]
assert ops.post("/hijack/release/").status_code == 302
print("{}")
'''


def test_a_session_started_in_one_worker_links_the_actions_another_worker_serves(tmp_path: Path) -> None:
    first, second = tmp_path / "w1", tmp_path / "w2"
    first.mkdir()
    second.mkdir()
    db = tmp_path / "db.sqlite3"
    yaml = "delivery: {mode: best_effort}\nintegrations:\n  django: {models: {catalog.Policy: policy}}\n"
    common = {"PYTHONPATH": str(EXAMPLE), "DJANGO_SETTINGS_MODULE": "adminsite.settings", "DJANGO_ADMIN_DB": str(db),
              "PASSWORD": PASSWORD}
    for root, script in ((first, START_IN_ONE_WORKER), (second, CONTINUE_IN_ANOTHER)):
        (root / "drive.py").write_text(textwrap.dedent(script))
        (root / "audit.yaml").write_text(yaml)
    one = run([AUDITRAIL_INSTRUMENT, "python", "drive.py"], first, AUDITRAIL_EXPORTER=f"file:{first / 'e.jsonl'}",
              **common)
    assert one.returncode == 0, one.stderr
    two = run([AUDITRAIL_INSTRUMENT, "python", "drive.py"], second, AUDITRAIL_EXPORTER=f"file:{second / 'e.jsonl'}",
              STATE=one.stdout.strip().splitlines()[-1], **common)
    assert two.returncode == 0, two.stderr
    assert "could not capture" not in one.stderr + two.stderr, one.stderr + two.stderr
    (start,) = events(first / "e.jsonl")["admin.impersonation.start"]
    session = attrs(start)[semconv.IMPERSONATION]
    later = events(second / "e.jsonl")
    (change,) = later["admin.object.update"]
    assert attrs(change)[semconv.ACTOR] == "bob"
    assert (attrs(change)[semconv.IMPERSONATOR], attrs(change)[semconv.IMPERSONATION]) == ("admin", session)
    (end,) = later["admin.impersonation.end"]
    assert end["payload"]["session"] == session


def test_changes_of_a_rolled_back_transaction_are_not_recorded(site) -> None:
    _, found = site
    text = json.dumps(found)
    assert "rolled-back" not in text and '"monthly_limit":123' not in text.replace(" ", "")


def test_deferred_fields_are_left_out_not_read(site) -> None:
    _, found = site
    (renamed,) = [e for e in found["policy.update"] if e["payload"].get("after") == {"name": "p0-renamed"}]
    assert renamed["payload"]["before"] == {"name": "p0"} and renamed["payload"]["changed"] == ["name"]
    out, _ = site
    (gone,) = [e for e in found["policy.delete"] if e["payload"]["pk"] == str(out["deferred_gone"])]
    assert gone["payload"]["before"] == {"id": out["deferred_gone"], "name": "deferred-gone"}
    assert gone["payload"]["object"] is None  # its __str__ needs tenant_id, deferred, from a row now gone


FAIL_CLOSED = '''
import json

import django

django.setup()

from django.contrib.auth.models import Group, User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test import Client  # noqa: E402

from auditrail.pipeline import AuditUnavailable  # noqa: E402
from catalog.models import Policy  # noqa: E402

call_command("migrate", verbosity=0)
admin = User.objects.create_superuser("admin", "a@example.com", "pw-0000-x")
bob = User.objects.create_user("bob")
support = Group.objects.create(name="support")
refused = []
try:
    Policy.objects.create(tenant_id="acme", name="from-code")
except AuditUnavailable:
    refused.append("create")
try:
    bob.groups.add(support)
except AuditUnavailable:
    refused.append("grant")
client = Client(raise_request_exception=False)
client.force_login(admin)
response = client.post("/admin/catalog/policy/add/", {"tenant_id": "acme", "name": "from-admin", "monthly_limit": 1})
print(json.dumps({"refused": refused, "admin_status": response.status_code, "policies": Policy.objects.count(),
                  "groups": bob.groups.count()}))
'''


def test_fail_closed_refuses_the_changes_whose_events_cannot_be_recorded(tmp_path: Path) -> None:
    (tmp_path / "not-a-dir").write_text("the spool cannot live here")
    yaml = ("delivery: {mode: fail_closed, spool_dir: not-a-dir/spool}\n"
            "integrations:\n  django: {models: [catalog.Policy]}\n")
    out, _, _ = drive(tmp_path, yaml, FAIL_CLOSED)
    assert out == {"refused": ["create", "grant"], "admin_status": 500, "policies": 0, "groups": 0}
