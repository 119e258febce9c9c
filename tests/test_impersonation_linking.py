"""Impersonation linking by evidence only (issue 14, point 3).

An action is linked to an impersonation session only when it carries that session's marker, or runs in
the programmatic `auditrail.impersonation()` block; the user name is never evidence. The real case:
django-hijack under the Django test client, run as `auditrail-instrument python site.py` (zero code);
Django cycles the session key when hijack logs the hijacker in as the user, so the marker is the
hijacker's pk at the start and `request.session["hijack_history"][-1]` in later requests.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from auditrail import semconv
from auditrail.config import ConfigWarning, parse_config

from test_launcher import AUDITRAIL_INSTRUMENT, events, run

pytest.importorskip("hijack", reason="django-hijack is in the dev extras: pip install -e '.[dev]'")

SITE = '''
import json
import sys

import django
from django.conf import settings

settings.configure(
    DEBUG=False, SECRET_KEY="not-a-secret", ALLOWED_HOSTS=["*"], ROOT_URLCONF="urls", USE_TZ=True,
    INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes", "django.contrib.sessions",
                    "django.contrib.messages", "django.contrib.admin", "hijack"],
    MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware",
                "django.middleware.common.CommonMiddleware",
                "django.middleware.csrf.CsrfViewMiddleware",
                "django.contrib.auth.middleware.AuthenticationMiddleware",
                "django.contrib.messages.middleware.MessageMiddleware",
                "hijack.middleware.HijackUserMiddleware"],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True,
                "OPTIONS": {"context_processors": ["django.template.context_processors.request",
                                                   "django.contrib.auth.context_processors.auth",
                                                   "django.contrib.messages.context_processors.messages"]}}],
    PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
)
django.setup()

from django.contrib.auth.models import Group, Permission, User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test import Client  # noqa: E402

import auditrail  # noqa: E402  (only for the programmatic scope at the end)

call_command("migrate", verbosity=0)
ops = User.objects.create_user("ops", is_staff=True, is_superuser=True)
bob = User.objects.create_user("bob", is_staff=True)
bob.user_permissions.add(*Permission.objects.filter(codename__in=["change_group", "view_group"]))
group = Group.objects.create(name="support")
change = f"/admin/auth/group/{group.pk}/change/"

as_ops, as_bob = Client(), Client()  # two browsers: ops's and bob's own
as_ops.force_login(ops)
as_bob.force_login(bob)
steps = {}


def rename(client, name):
    response = client.post(change, {"name": name})
    assert response.status_code == 302, (response.status_code, response.content[:300])


key_before = as_ops.session.session_key
assert as_ops.post("/hijack/acquire/", {"user_pk": bob.pk, "next": "/"}).status_code == 302
steps["session key cycled"] = as_ops.session.session_key != key_before
rename(as_ops, "support-by-ops-as-bob")        # ops acting as bob: linked
rename(as_bob, "support-by-bob-himself")       # bob's own change, during the hijack: not linked
assert as_ops.post("/hijack/release/", {"next": "/"}).status_code == 302
rename(as_ops, "support-by-ops")               # ops as himself again: not linked
with auditrail.impersonation("ops", "bob", reason="ticket 9") as scope:
    rename(as_bob, "support-in-scope")         # the programmatic scope links what runs inside it
steps["scope"] = scope
print(json.dumps(steps))
'''

URLS = '''
from django.contrib import admin
from django.urls import include, path

urlpatterns = [path("admin/", admin.site.urls), path("hijack/", include("hijack.urls"))]
'''

AUDIT_YAML = '''
service_name: hijack-site
delivery: {mode: best_effort}
events:
  - target: hijack.signals:hijack_started.send
    event: admin.impersonation.start
    actor: named["hijacker"].username
    payload:
      impersonated: named["hijacked"].username
    impersonation:
      marker: named["hijacker"].pk
  - target: hijack.signals:hijack_ended.send
    event: admin.impersonation.end
    actor: named["hijacker"].username
    payload:
      impersonated: named["hijacked"].username
    impersonation:
      marker: named["hijacker"].pk
  - target: django.contrib.admin.options:ModelAdmin.save_model
    event: admin.object.change
    actor: request.user.username
    payload:
      object: str(obj)
    impersonation:
      marker: (request.session.get("hijack_history") or [None])[-1]
'''


@pytest.fixture(scope="module")
def hijack_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """The Django site run once under auditrail-instrument; (its printed steps, its events by name)."""
    root = tmp_path_factory.mktemp("hijack")
    (root / "site.py").write_text(textwrap.dedent(SITE))
    (root / "urls.py").write_text(textwrap.dedent(URLS))
    (root / "audit.yaml").write_text(AUDIT_YAML)
    out = root / "events.jsonl"
    proc = run([AUDITRAIL_INSTRUMENT, "python", "site.py"], root, AUDITRAIL_EXPORTER=f"file:{out}")
    assert proc.returncode == 0, proc.stderr
    assert "warning" not in proc.stderr.lower(), proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), events(out)


def test_hijack_cycles_the_session_key_so_the_cookie_is_no_marker(hijack_run) -> None:
    steps, _ = hijack_run
    assert steps["session key cycled"] is True


def hijack_start(steps: dict[str, Any], found: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The start event of the hijack (not of the programmatic scope)."""
    (start,) = [e for e in found["admin.impersonation.start"] if e["payload"]["session"] != steps["scope"]]
    return start


def test_ops_acting_as_bob_is_linked_and_bobs_own_change_is_not(hijack_run) -> None:
    start = hijack_start(*hijack_run)
    _, found = hijack_run
    session = start["attributes"][semconv.IMPERSONATION]
    assert (start["attributes"][semconv.ACTOR], start["payload"]["impersonated"]) == ("ops", "bob")
    changes = {e["payload"]["object"]: e["attributes"] for e in found["admin.object.change"]}
    by_ops_as_bob = changes["support-by-ops-as-bob"]
    assert by_ops_as_bob[semconv.ACTOR] == "bob"
    assert (by_ops_as_bob[semconv.IMPERSONATOR], by_ops_as_bob[semconv.IMPERSONATION]) == ("ops", session)
    by_bob = changes["support-by-bob-himself"]  # same user name, same time, his own browser
    assert by_bob[semconv.ACTOR] == "bob"
    assert semconv.IMPERSONATOR not in by_bob and semconv.IMPERSONATION not in by_bob
    by_ops = changes["support-by-ops"]  # after the release
    assert by_ops[semconv.ACTOR] == "ops" and semconv.IMPERSONATOR not in by_ops


def test_release_ends_the_session_found_by_its_marker(hijack_run) -> None:
    steps, found = hijack_run
    session = hijack_start(steps, found)["attributes"][semconv.IMPERSONATION]
    sessions = [e["payload"]["session"] for e in found["admin.impersonation.end"]]
    assert sessions == [session, steps["scope"]]  # the release, then the scope's own end


def test_the_programmatic_scope_still_links(hijack_run) -> None:
    steps, found = hijack_run
    in_scope = next(e for e in found["admin.object.change"] if e["payload"]["object"] == "support-in-scope")
    assert in_scope["attributes"][semconv.IMPERSONATION] == steps["scope"]
    assert in_scope["attributes"][semconv.IMPERSONATOR] == "ops"


# --- the marker in-process: context default, tenant '*', the end by marker -------------------------

APP = '''
def start(admin, user, tenant, marker):
    return None

def end(admin, marker):
    return None

def edit(user, tenant):
    return "ok"

def refund(user, session):
    raise PermissionError("refunds are frozen")
'''

CONTEXT_YAML = '''
service_name: t
delivery: {mode: best_effort}
context:
  impersonation: {marker: baggage("support.session")}
events:
  - target: imp.app:start
    event: admin.impersonation.start
    tenant: tenant
    actor: admin
    payload: {impersonated: user}
    impersonation: {marker: marker}
  - target: imp.app:end
    event: admin.impersonation.end
    actor: admin
    impersonation: {marker: marker}
  - target: imp.app:edit
    event: custom.edit
    tenant: tenant
    actor: user
  - target: imp.app:refund
    event: billing.refund
    actor: user
    impersonation: {marker: session}
'''


def test_context_marker_links_in_any_tenant_for_a_star_start_and_ends_by_marker(audit) -> None:
    from opentelemetry import baggage, context

    audit.module("imp.app", APP)
    audit.instrument(CONTEXT_YAML)
    from imp import app

    app.start("ops", "bob", "*", "s-1")

    token = context.attach(baggage.set_baggage("support.session", "s-1"))
    try:
        app.edit("bob", "globex")  # marked, tenant globex: a '*' session covers it
        app.edit("bob", "acme")
    finally:
        context.detach(token)
    app.edit("bob", "globex")  # bob himself: no marker
    token = context.attach(baggage.set_baggage("support.session", "s-2"))
    try:
        app.edit("bob", "globex")  # another marker: not this session
    finally:
        context.detach(token)
    app.end("ops", "s-1")
    token = context.attach(baggage.set_baggage("support.session", "s-1"))
    try:
        app.edit("bob", "globex")  # after the end
    finally:
        context.detach(token)
    start = audit.one("admin.impersonation.start")
    session = start["attrs"][semconv.IMPERSONATION]
    linked = [e["attrs"].get(semconv.IMPERSONATION) for e in audit.events("custom.edit")]
    assert linked == [session, session, None, None, None]
    end = audit.one("admin.impersonation.end")
    assert end["payload"] == {"session": session, "impersonated": "bob"}


def test_a_failed_action_carries_the_marker_read_before_the_call(audit) -> None:
    audit.module("imp.app", APP)
    audit.instrument(CONTEXT_YAML)
    from imp import app

    app.start("ops", "bob", "*", "s-1")
    with pytest.raises(PermissionError):
        app.refund("bob", "s-1")
    with pytest.raises(PermissionError):
        app.refund("bob", None)
    session = audit.one("admin.impersonation.start")["attrs"][semconv.IMPERSONATION]
    marked, unmarked = audit.events("billing.refund")
    assert marked["attrs"][semconv.OUTCOME] == "failure" and marked["attrs"][semconv.IMPERSONATION] == session
    assert semconv.IMPERSONATION not in unmarked["attrs"]


def test_without_any_marker_nothing_is_linked_even_for_the_same_user(audit) -> None:
    audit.module("imp.app", APP)
    with pytest.warns(ConfigWarning, match="no impersonation.marker"):
        audit.instrument(CONTEXT_YAML.replace('  impersonation: {marker: baggage("support.session")}\n', "")
                         .replace("    impersonation: {marker: marker}\n", "")
                         .replace("context:\n", ""))
    from imp import app

    app.start("ops", "bob", "globex", "s-1")
    app.edit("bob", "globex")
    (edit,) = audit.events("custom.edit")
    assert semconv.IMPERSONATOR not in edit["attrs"]


def test_a_marker_may_not_be_unknown_or_misspelled() -> None:
    with pytest.raises(Exception, match="unknown key 'markr'"):
        parse_config(CONTEXT_YAML.replace("{marker: marker}", "{markr: marker}", 1))


def test_check_warns_for_impersonation_events_without_a_marker(tmp_path: Path) -> None:
    yaml = '''
    events:
      - target: imp.app:start
        event: admin.impersonation.start
        actor: admin
        payload: {impersonated: user}
    '''
    (tmp_path / "imp").mkdir()
    (tmp_path / "imp" / "__init__.py").write_text("")
    (tmp_path / "imp" / "app.py").write_text(APP)
    (tmp_path / "audit.yaml").write_text(textwrap.dedent(yaml))
    proc = run(["auditrail", "check"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "marker" in line]
    assert len(lines) == 1 and "no action is linked" in lines[0], proc.stderr
    assert "audit.yaml:3" in lines[0]
