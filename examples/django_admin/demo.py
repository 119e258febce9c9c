"""`make demo-django`: the Django admin example under auditrail-instrument, driven over HTTP; its audit events.

    .venv/bin/python examples/django_admin/demo.py

The project (adminsite, catalog) imports nothing of auditrail and its audit.yaml has no `events:`: the
built-in integrations record logins, the admin's changes and bulk actions, the Policy history, and a
django-hijack session. Django's own server (`manage.py runserver --noreload`) serves it on a free
loopback port; a real HTTP client (httpx) plays an admin, and bob in his own browser; the events land in
an OTLP JSON lines file, printed as `make demo` prints them.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DEMO_DIR = Path(os.environ.get("AUDITRAIL_DEMO_DIR") or REPO / ".auditrail" / "demo-django").resolve()

sys.path.insert(0, str(REPO / "examples" / "assistant"))
from demo import free_port, show_events, start_server, stop_server, wait_healthy  # noqa: E402


class Browser:
    """One person's browser: its own cookies (session, CSRF token), its own client address."""

    def __init__(self, base_url: str, address: str) -> None:
        # The dev server is the peer; X-Forwarded-For is what a proxy in front of it would add.
        self.http = httpx.Client(base_url=base_url, headers={"X-Forwarded-For": address}, timeout=30)

    def post(self, path: str, data: dict[str, object], expect: int = 302) -> httpx.Response:
        """POST a form the way the admin's pages do (with the CSRF token of this browser's cookie)."""
        if "csrftoken" not in self.http.cookies:
            self.http.get("/admin/login/")
        token = self.http.cookies["csrftoken"]
        response = self.http.post(path, data={**data, "csrfmiddlewaretoken": token},
                                  headers={"X-CSRFToken": token, "Referer": str(self.http.base_url)})
        if response.status_code != expect:
            raise SystemExit(f"POST {path}: {response.status_code}, expected {expect}:\n{response.text[:800]}")
        return response

    def policies(self) -> dict[str, str]:
        """The changelist's policies, name -> pk (read from the page, as a person would)."""
        import re

        page = self.http.get("/admin/catalog/policy/").text
        found = re.findall(r'href="/admin/catalog/policy/(\d+)/change/[^"]*">([^<]+)</a>', page)
        return {name: pk for pk, name in found}


def policy_form(name: str, limit: int, tenant: str = "acme") -> dict[str, object]:
    return {"tenant_id": tenant, "name": name, "monthly_limit": limit, "active": "on"}


def scenario(base_url: str, password: str, bob_pk: str) -> Iterator[str]:
    """Drive the admin over HTTP; yields one line per step."""
    ops, bob = Browser(base_url, "203.0.113.9"), Browser(base_url, "198.51.100.23")
    ops.post("/admin/login/?next=/admin/", {"username": "admin", "password": "not-the-password"}, expect=200)
    yield "a failed login as admin (wrong password)"
    ops.post("/admin/login/?next=/admin/", {"username": "admin", "password": password})
    bob.post("/admin/login/?next=/admin/", {"username": "bob", "password": password})
    yield "admin and bob log in, each from their own browser"
    for name, limit, tenant in (("chat", 100, "acme"), ("search", 50, "acme"), ("images", 10, "globex")):
        ops.post("/admin/catalog/policy/add/", policy_form(name, limit, tenant))
    yield "admin creates three policies"
    pks = ops.policies()
    ops.post(f"/admin/catalog/policy/{pks['chat']}/change/", policy_form("chat", 500))
    yield "admin raises chat's monthly limit from 100 to 500"
    ops.post("/admin/catalog/policy/", {"action": "deactivate", "index": 0,
                                        "_selected_action": [pks["search"], pks["images"]]})
    yield "admin deactivates search and images (a custom bulk action)"
    ops.post("/hijack/acquire/", {"user_pk": bob_pk, "next": "/admin/"})
    yield "admin hijacks bob (django-hijack)"
    ops.post(f"/admin/catalog/policy/{pks['chat']}/change/", policy_form("chat", 900))
    yield "admin, as bob, sets chat's limit to 900 (linked to the hijack)"
    bob.post(f"/admin/catalog/policy/{pks['search']}/change/", policy_form("search", 75))
    yield "bob himself, from his own browser, changes search (not linked)"
    ops.post("/hijack/release/", {"next": "/admin/"})
    yield "admin releases bob"
    ops.post("/admin/catalog/policy/", {"action": "delete_selected", "index": 0, "post": "yes",
                                        "_selected_action": [pks["images"]]})
    yield "admin deletes images (delete selected, confirmed)"
    ops.post("/admin/logout/", {}, expect=200)
    yield "admin logs out"


def manage(*args: str, env: dict[str, str]) -> None:
    """`manage.py ARGS` without auditing (the setup is not part of the story)."""
    subprocess.run([sys.executable, "manage.py", *args], cwd=HERE, env=env, check=True, stdout=subprocess.DEVNULL)


def main() -> int:
    """Set up the database, serve under auditrail-instrument, drive it, print the events."""
    import shutil

    shutil.rmtree(DEMO_DIR, ignore_errors=True)
    DEMO_DIR.mkdir(parents=True)
    events, log_path = DEMO_DIR / "events.jsonl", DEMO_DIR / "app.log"
    password = secrets.token_urlsafe(12)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUDITRAIL_", "OTEL_"))}
    env.update(DJANGO_SETTINGS_MODULE="adminsite.settings", DJANGO_ADMIN_DB=str(DEMO_DIR / "db.sqlite3"),
               PYTHONUNBUFFERED="1", PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]))
    manage("migrate", env=env)
    manage("seed", "--password", password, env=env)
    bob_pk = subprocess.run([sys.executable, "manage.py", "shell", "-c",
                             "from django.contrib.auth.models import User; print(User.objects.get(username='bob').pk)"],
                            cwd=HERE, env=env, check=True, capture_output=True, text=True).stdout.split()[-1]

    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    launcher = Path(sys.executable).parent / "auditrail-instrument"
    command = [str(launcher), "python", "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"]
    app_env = {**env, "AUDITRAIL_CONFIG": str(HERE / "audit.yaml"), "AUDITRAIL_EXPORTER": f"file:{events}"}
    print(f"starting: {' '.join(command[1:])}  under auditrail-instrument (in {HERE.relative_to(REPO)})")
    proc = start_server(command, app_env, log_path, cwd=HERE)
    try:
        wait_healthy(base_url, proc, log_path)
        print(f"the Django admin is up on {base_url}; over HTTP:")
        for number, step in enumerate(scenario(base_url, password, bob_pk), 1):
            print(f"  {number:2}. {step}")
    except BaseException:
        stop_server(proc)
        print(log_path.read_text(errors="replace"), file=sys.stderr)
        raise
    code = stop_server(proc)
    if code not in (0, -signal.SIGTERM, 128 + signal.SIGTERM):
        print(f"the app exited with code {code}:\n{log_path.read_text(errors='replace')}", file=sys.stderr)
        return 1
    print()
    show_events(events)
    return 0


if __name__ == "__main__":
    sys.exit(main())
