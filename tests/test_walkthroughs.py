"""The README's two walk-throughs, run as a new user would: the example apps (examples/walkthrough_flask,
examples/walkthrough_django; neither imports auditrail) with the audit.yaml printed in the README, checked by
`auditrail check`, served under `auditrail-instrument` (flask run, manage.py runserver) and driven through their
real HTTP routes by two users in turn; the events come from `AUDITRAIL_EXPORTER=file:`."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from auditrail import semconv
from auditrail.exporters.otlp_json import read_records
from auditrail.verify import verify_records
from processes import free_port, terminate, wait_for_http

httpx = pytest.importorskip("httpx")

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
EXAMPLES = {"flask": ROOT / "examples" / "walkthrough_flask", "django": ROOT / "examples" / "walkthrough_django"}


# --- running an example as the README says ----------------------------------------------------------


def _env(**extra: str) -> dict[str, str]:
    """The user's shell: the venv's bin first on PATH, no auditrail or OTel settings of ours leaking in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUDITRAIL_", "OTEL_"))}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return {**env, "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}", **extra}


@contextmanager
def _serve(app_dir: Path, command: str, env: dict[str, str], probe: str) -> Iterator[str]:
    """Run `auditrail-instrument COMMAND` ({port} filled in) in app_dir until the block ends; yields the URL."""
    port = free_port()
    log = app_dir / "app.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(BIN / "auditrail-instrument"), *command.format(port=port).split()],
                                cwd=app_dir, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(base + probe, proc, command, details=lambda: log.read_text(errors="replace"))
        yield base
    finally:
        terminate(proc)  # SIGTERM, as a process manager would: what is queued must still reach the file
    assert proc.returncode is not None


def _events(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(the actions in time order, every record including checkpoints) of a file: exporter's output."""
    everything = [r for r in read_records([path]) if r["scope_name"] == "auditrail"]
    for record in everything:
        record["payload"] = json.loads(record["attributes"][semconv.PAYLOAD])
    actions = sorted((r for r in everything if r["event_name"] != "audit.checkpoint"), key=lambda r: r["time_unix_nano"])
    return actions, everything


def _summary(record: dict[str, Any]) -> tuple[Any, ...]:
    attrs = record["attributes"]
    return (record["event_name"], attrs.get(semconv.ACTOR), attrs.get(semconv.TENANT), attrs[semconv.OUTCOME],
            attrs.get("audit.impersonator.id"))


# --- the Flask walk-through ----------------------------------------------------------------------------


class FlaskUser:
    """One browser: its own cookie jar."""

    def __init__(self, base: str) -> None:
        self.http = httpx.Client(base_url=base, follow_redirects=False, timeout=30)

    def login(self, username: str, password: str) -> int:
        return self.http.post("/login", data={"username": username, "password": password}).status_code

    def post(self, path: str, **form: str) -> int:
        return self.http.post(path, data=form).status_code


FLASK_SECRETS = ("alice-pw-1", "bob-pw-2", "not-her-password", "whsec_9f8e7d6c5b4a", "sk-proj-Zq4xLw8mTn2vRb6yKc3pHs7d",
                 "scrypt:", "pbkdf2:")


@pytest.fixture(scope="module")
def flask_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    pytest.importorskip("flask_login")
    app_dir = tmp_path_factory.mktemp("walkthrough_flask") / "app"
    shutil.copytree(EXAMPLES["flask"], app_dir, ignore=shutil.ignore_patterns("__pycache__", ".auditrail", ".venv", "*.db", "audit.jsonl", "jar"))
    events = app_dir / "audit.jsonl"
    env = _env(AUDITRAIL_EXPORTER=f"file:{events}", PRICING_DB=str(app_dir / "pricing.db"))
    with _serve(app_dir, "flask --app pricing_admin run --port {port}", env, "/login") as base:
        alice, bob, stranger = FlaskUser(base), FlaskUser(base), FlaskUser(base)
        statuses = [
            alice.login("alice@acme.io", "not-her-password"),                   # 401: recorded, ok false
            alice.login("alice@acme.io", "alice-pw-1"),
            bob.login("bob@globex.com", "bob-pw-2"),
            alice.post("/plans/pro", price_cents="1900", reason="launch offer"),
            bob.post("/plans/pro", price_cents="3100", reason="annual review"),
            alice.post("/prompt", text="Answer in two sentences.", reason="shorter answers"),
            bob.post("/settings", webhook_url="https://hooks.globex.com/audit", webhook_secret="whsec_9f8e7d6c5b4a",
                     openai_api_key="sk-proj-Zq4xLw8mTn2vRb6yKc3pHs7d"),
            alice.post("/plans/team/delete"),
            bob.post("/plans/enterprise/delete"),                                # 404: when: result -> no event
            bob.post("/plans/pro", price_cents="-5", reason="typo"),             # 400: a failure event
            stranger.post("/plans/pro", price_cents="0", reason="anonymous"),    # redirected to /login: no call
        ]
    actions, everything = _events(events)
    return {"statuses": statuses, "actions": actions, "everything": everything, "raw": events.read_text()}


def test_flask_each_request_is_audited_with_its_own_user_and_tenant(flask_run: dict[str, Any]) -> None:
    assert flask_run["statuses"] == [401, 302, 302, 302, 302, 302, 302, 302, 404, 400, 302]
    assert [_summary(r)[:4] for r in flask_run["actions"]] == [
        ("auth.login", "alice@acme.io", None, "success"),
        ("auth.login", "alice@acme.io", "acme", "success"),
        ("auth.login", "bob@globex.com", "globex", "success"),
        ("billing.price.change", "alice@acme.io", "acme", "success"),
        ("billing.price.change", "bob@globex.com", "globex", "success"),
        ("prompt.update", "alice@acme.io", "acme", "success"),
        ("settings.update", "bob@globex.com", "globex", "success"),
        ("billing.plan.delete", "alice@acme.io", "acme", "success"),
        ("billing.price.change", "bob@globex.com", "globex", "failure"),
    ]
    assert {r["attributes"][semconv.SOURCE_IP] for r in flask_run["actions"]} == {"127.0.0.1"}
    assert {r["resource"]["service.name"] for r in flask_run["actions"]} == {"pricing-admin"}


def test_flask_events_carry_before_after_reason_and_the_failure(flask_run: dict[str, Any]) -> None:
    logins, prices, prompt, settings, delete = (
        [r for r in flask_run["actions"] if r["event_name"] == name]
        for name in ("auth.login", "billing.price.change", "prompt.update", "settings.update", "billing.plan.delete"))
    assert [r["payload"] for r in logins] == [{"ok": False}, {"ok": True}, {"ok": True}]
    assert [(r["payload"]["before"], r["payload"]["after"], r["attributes"][semconv.REASON]) for r in prices[:2]] == [
        ({"plan": "pro", "price_cents": 2900}, {"plan": "pro", "price_cents": 1900}, "launch offer"),
        ({"plan": "pro", "price_cents": 2900}, {"plan": "pro", "price_cents": 3100}, "annual review"),
    ]
    assert prices[2]["payload"] == {"before": {"plan": "pro", "price_cents": 3100},
                                    "after": {"plan": "pro", "price_cents": -5},
                                    "error": {"type": "ValueError", "message": "a price cannot be negative"}}
    [prompt] = prompt
    sha = hashlib.sha256
    assert prompt["payload"] == {
        "before": {"prompt_hash": sha("You are acme's helpful assistant.".encode()).hexdigest()},
        "after": {"prompt_hash": sha(b"Answer in two sentences.").hexdigest()}}
    assert prompt["attributes"][semconv.REASON] == "shorter answers"
    assert settings[0]["payload"] == {"before": {}, "after": {
        "webhook_url": "https://hooks.globex.com/audit", "webhook_secret": "[REDACTED]", "openai_api_key": "[REDACTED]"}}
    assert delete[0]["payload"] == {"before": {"plan": "team", "price_cents": 9900}}


def test_flask_no_password_or_secret_reaches_any_event_and_the_chains_verify(flask_run: dict[str, Any]) -> None:
    for secret in FLASK_SECRETS:
        assert secret not in flask_run["raw"], secret
    report = verify_records(flask_run["everything"])
    assert report.ok, report.render()
    assert {r["attributes"].get(semconv.TENANT) for r in flask_run["everything"]} >= {"acme", "globex"}


# --- the Django walk-through ---------------------------------------------------------------------------


class DjangoBrowser:
    """One browser on the Django admin: its own cookies, the CSRF token taken from each form it posts."""

    def __init__(self, base: str) -> None:
        self.http = httpx.Client(base_url=base, follow_redirects=False, timeout=30)

    def _token(self, path: str) -> str:
        page = self.http.get(path)
        assert page.status_code == 200, (path, page.status_code)
        return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)

    def submit(self, form_page: str, action: str | None = None, **data: str) -> int:
        token = self._token(form_page)
        return self.http.post(action or form_page, data={"csrfmiddlewaretoken": token, **data}).status_code

    def login(self, username: str, password: str) -> int:
        return self.submit("/admin/login/", username=username, password=password, next="/admin/")

    def edit_prompt(self, pk: int, tenant: str, name: str, text: str, max_tokens: int) -> int:
        return self.submit(f"/admin/prompts/prompt/{pk}/change/", tenant=tenant, name=name, text=text,
                           max_tokens=str(max_tokens), _save="Save")


DJANGO_SECRETS = ("ops-pw-0", "alice-pw-1", "bob-pw-2", "Carol-Pw-9-long!", "pbkdf2_sha256$")


@pytest.fixture(scope="module")
def django_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    pytest.importorskip("django")
    pytest.importorskip("hijack")
    app_dir = tmp_path_factory.mktemp("walkthrough_django") / "app"
    shutil.copytree(EXAMPLES["django"], app_dir, ignore=shutil.ignore_patterns("__pycache__", ".auditrail", ".venv", "*.sqlite3", "audit.jsonl"))
    events = app_dir / "audit.jsonl"
    env = _env(HELPDESK_DB=str(app_dir / "db.sqlite3"), HELPDESK_DEBUG="0")
    for setup in (["migrate", "-v", "0"], ["seed"]):
        subprocess.run([sys.executable, "manage.py", *setup], cwd=app_dir, env=env, check=True, capture_output=True,
                       timeout=120)
    env["AUDITRAIL_EXPORTER"] = f"file:{events}"
    with _serve(app_dir, "python manage.py runserver --noreload 127.0.0.1:{port}", env, "/admin/login/") as base:
        ops, alice, bob = DjangoBrowser(base), DjangoBrowser(base), DjangoBrowser(base)
        statuses = [
            alice.login("alice", "alice-pw-1"),
            alice.edit_prompt(1, "acme", "support", "Answer acme's questions briefly.", 400),
            ops.login("ops", "ops-pw-0"),
            ops.submit("/admin/", "/hijack/acquire/", user_pk="3", next="/admin/"),         # ops becomes bob
            ops.edit_prompt(3, "globex", "support", "Edited by ops, acting as bob.", 300),  # linked to the session
            bob.login("bob", "bob-pw-2"),                                                   # bob's own browser
            bob.edit_prompt(4, "globex", "sales", "Bob's own edit.", 256),                  # not linked
            ops.submit("/admin/", "/hijack/release/"),
            ops.submit("/admin/prompts/prompt/2/delete/", post="yes"),
            ops.submit("/admin/auth/user/add/", username="carol", password1="Carol-Pw-9-long!",
                       password2="Carol-Pw-9-long!", usable_password="true", _save="Save"),
            alice.edit_prompt(1, "acme", "support", "Answer acme's questions in full.", 800),
        ]
    actions, everything = _events(events)
    return {"statuses": statuses, "actions": actions, "everything": everything, "raw": events.read_text()}


def test_django_each_admin_action_has_its_users_name_and_the_rows_tenant(django_run: dict[str, Any]) -> None:
    assert django_run["statuses"] == [302] * 11
    assert [_summary(r) for r in django_run["actions"]] == [
        ("prompt.update", "alice", "acme", "success", None),
        ("admin.impersonation.start", "ops", None, "success", None),
        ("prompt.update", "bob", "globex", "success", "ops"),
        ("prompt.update", "bob", "globex", "success", None),
        ("admin.impersonation.end", "ops", None, "success", None),
        ("prompt.delete", "ops", "acme", "success", None),
        ("admin.user.change", "ops", "*", "success", None),
        ("prompt.update", "alice", "acme", "success", None),
    ]
    assert {r["attributes"][semconv.SOURCE_IP] for r in django_run["actions"]} == {"127.0.0.1"}


def test_django_the_impersonated_session_is_linked_and_bobs_own_session_is_not(django_run: dict[str, Any]) -> None:
    start, as_bob, bobs_own, end = django_run["actions"][1:5]
    session = start["payload"]["session"]
    assert start["payload"] == {"impersonated": "bob", "session": session}
    assert end["payload"] == {"impersonated": "bob", "session": session}
    assert as_bob["attributes"]["audit.impersonation.id"] == session
    assert as_bob["attributes"]["audit.impersonator.id"] == "ops"
    assert "audit.impersonation.id" not in bobs_own["attributes"]
    assert bobs_own["time_unix_nano"] < end["time_unix_nano"]  # bob edited while the session was open
    assert all("audit.impersonation.id" not in r["attributes"] for r in django_run["actions"][5:])


def test_django_before_after_values_and_the_deleted_rows_pk(django_run: dict[str, Any]) -> None:
    first, _, _, _, _, delete, user, last = django_run["actions"]
    assert first["payload"] == {
        "pk": 1, "created": False,
        "before": {"tenant": "acme", "name": "support", "text": "You answer acme's support questions.", "max_tokens": 512},
        "after": {"tenant": "acme", "name": "support", "text": "Answer acme's questions briefly.", "max_tokens": 400}}
    assert (last["payload"]["before"]["text"], last["payload"]["after"]["max_tokens"]) == (
        "Answer acme's questions briefly.", 800)
    assert delete["payload"] == {"before": {"pk": 2, "name": "sales", "text": "You describe acme's plans."}}
    assert user["payload"] == {"user": "carol", "after": {
        "username": "carol", "password1": "[REDACTED]", "password2": "[REDACTED]", "set_usable_password": True}}


def test_django_no_password_reaches_any_event_and_the_chains_verify(django_run: dict[str, Any]) -> None:
    for secret in DJANGO_SECRETS:
        assert secret not in django_run["raw"], secret
    report = verify_records(django_run["everything"])
    assert report.ok, report.render()


# --- the files the README shows -------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_the_examples_audit_yaml_passes_auditrail_check(name: str) -> None:
    for command in (["auditrail", "check"], ["auditrail-instrument", "--check"]):
        proc = subprocess.run([str(BIN / command[0]), *command[1:]], cwd=EXAMPLES[name], env=_env(),
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "OK, 5 audited target(s)" in proc.stdout + proc.stderr


def test_the_readme_shows_each_examples_audit_yaml_exactly() -> None:
    """The walk-throughs print the files the tests run: they cannot drift apart."""
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"`(examples/walkthrough_\w+/audit\.yaml)`:\n\n( *)```yaml\n(.*?)\n\2```\n", readme, re.S)
    assert sorted(path for path, _, _ in blocks) == sorted(f"examples/{p.name}/audit.yaml" for p in EXAMPLES.values())
    for path, indent, text in blocks:  # the block sits in a numbered step: indented as a whole
        assert all(not line or line.startswith(indent) for line in text.splitlines()), path
        shown = "".join(line[len(indent):] + "\n" for line in text.splitlines())
        assert shown == (ROOT / path).read_text(), path


def test_without_markers_check_warns_with_the_advice_the_django_walkthrough_follows(tmp_path: Path) -> None:
    """The warning once advised `context:` for hijack's session marker, where `request` has no session."""
    text = (EXAMPLES["django"] / "audit.yaml").read_text()
    stripped = re.sub(r"    impersonation:\n      marker: .*\n", "", text)
    assert "marker:" not in stripped
    (tmp_path / "audit.yaml").write_text(stripped)
    proc = subprocess.run([str(BIN / "auditrail"), "check", str(tmp_path / "audit.yaml")], cwd=EXAMPLES["django"],
                          env=_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    [warning] = [line for line in proc.stderr.splitlines() if "no action is linked" in line]
    for advice in ('named["hijacker"].pk', '(request.session.get("hijack_history") or [None])[-1]'):
        assert f"{advice} on" in warning and f"marker: {advice}" in text, advice
