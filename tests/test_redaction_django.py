"""The Django admin's "add user" audited with `after: form.cleaned_data`: no password in any export format.

The real Django admin (a project written to a temp dir, SQLite, the admin's own views and forms) runs as
`auditrail-instrument python site.py` with the `file:` exporter; the events file is then ingested by a real
`auditrail serve` and exported as CSV and JSON. The new user's password must appear in none of them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from auditrail.exporters.otlp_json import read_records
from test_store_service import cli, start_service, stop, token_of

AUDITRAIL_INSTRUMENT = str(Path(sys.executable).parent / "auditrail-instrument")
PASSWORD = "Vq8!correct-horse-battery"

SITE = f'''
import django
from django.conf import settings

settings.configure(
    DEBUG=False, SECRET_KEY="test-only-key", ALLOWED_HOSTS=["*"], ROOT_URLCONF="siteurls", USE_TZ=True,
    INSTALLED_APPS=["django.contrib.admin", "django.contrib.auth", "django.contrib.contenttypes",
                    "django.contrib.sessions", "django.contrib.messages"],
    MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware",
                "django.middleware.csrf.CsrfViewMiddleware",
                "django.contrib.auth.middleware.AuthenticationMiddleware",
                "django.contrib.messages.middleware.MessageMiddleware"],
    TEMPLATES=[{{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True,
                "OPTIONS": {{"context_processors": ["django.template.context_processors.request",
                                                  "django.contrib.auth.context_processors.auth",
                                                  "django.contrib.messages.context_processors.messages"]}}}}],
    DATABASES={{"default": {{"ENGINE": "django.db.backends.sqlite3", "NAME": "db.sqlite3"}}}},
    PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
)
django.setup()

from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client

call_command("migrate", verbosity=0)
User.objects.create_superuser("admin", "admin@example.com", "admin-login-pw")
client = Client(enforce_csrf_checks=False)
assert client.login(username="admin", password="admin-login-pw")
response = client.post("/admin/auth/user/add/", {{
    "username": "carol", "usable_password": "true", "password1": {PASSWORD!r}, "password2": {PASSWORD!r},
    "_save": "Save"}})
assert response.status_code == 302, response.content[:2000]
assert User.objects.get(username="carol").check_password({PASSWORD!r})
'''

URLS = """
from django.contrib import admin
from django.urls import path

urlpatterns = [path("admin/", admin.site.urls)]
"""

AUDIT_YAML = """
service_name: admin-site
delivery: {mode: durable, spool_dir: spool}
redact: [password]
events:
  - target: django.contrib.admin.options:ModelAdmin.save_model
    event: admin.model.save
    tenant: '"acme"'
    actor: request.user.username
    after: form.cleaned_data
    payload: {object: str(obj), change: change, post: request.POST}
"""


@pytest.fixture(scope="module")
def admin_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The admin site run once, audited; returns its directory (events in out.jsonl)."""
    root = tmp_path_factory.mktemp("django_admin")
    (root / "site.py").write_text(textwrap.dedent(SITE))
    (root / "siteurls.py").write_text(URLS)
    (root / "audit.yaml").write_text(AUDIT_YAML)
    env = dict(os.environ, AUDITRAIL_CONFIG="audit.yaml", AUDITRAIL_EXPORTER="file:out.jsonl", PYTHONPATH=str(root))
    proc = subprocess.run([AUDITRAIL_INSTRUMENT, sys.executable, "site.py"], cwd=root, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root


def test_admin_add_user_event_has_no_password_in_the_file_export(admin_run: Path) -> None:
    text = (admin_run / "out.jsonl").read_text()
    assert PASSWORD not in text and "correct-horse" not in text
    (event,) = [r for r in read_records([admin_run / "out.jsonl"]) if r["event_name"] == "admin.model.save"]
    payload = json.loads(event["attributes"]["audit.payload"])
    after = payload["after"]
    assert after["username"] == "carol"  # the rest of the form is still there
    assert after["password1"] == after["password2"] == "[REDACTED]"
    assert payload["post"]["password1"] == payload["post"]["password2"] == "[REDACTED]"
    assert payload["post"]["username"] == "carol" and payload["object"] == "carol"
    assert event["attributes"]["enduser.id"] == "admin"


def test_admin_add_user_event_has_no_password_in_the_store_exports(admin_run: Path, tmp_path: Path) -> None:
    process, base, env = start_service(tmp_path)
    try:
        ingest = token_of(cli("tokens", "create", "--tenant", "*", "--scope", "ingest", env=env))
        read = token_of(cli("tokens", "create", "--tenant", "acme", "--scope", "read", env=env))
        with httpx.Client(base_url=base, timeout=60) as client:
            for line in (admin_run / "out.jsonl").read_bytes().splitlines():
                if line.strip():
                    response = client.post("/v1/logs", content=line, headers={"Content-Type": "application/json",
                                                                               "Authorization": f"Bearer {ingest}"})
                    assert response.status_code == 200, response.text
            exports = {fmt: client.get("/v1/tenants/acme/events", params={"format": fmt},
                                       headers={"Authorization": f"Bearer {read}"}) for fmt in ("csv", "json", "ndjson")}
    finally:
        stop(process)
    for fmt, response in exports.items():
        assert response.status_code == 200, (fmt, response.text)
        assert "admin.model.save" in response.text and "carol" in response.text, fmt
        assert PASSWORD not in response.text and "correct-horse" not in response.text, fmt
