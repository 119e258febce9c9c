"""Security review of the store (issue 4): each test pins one defect found, against the real parts.

Real `auditrail serve` over HTTP (or FastAPI's TestClient where the peer address must be chosen), real
chDB, the real CLI in subprocesses. What was checked and found sound is listed in the review note.
"""

from __future__ import annotations

import http.server
import json
import os
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from auditrail_store import admin
from auditrail_store.db import Store
from auditrail_store.verify_store import verify_document
from test_store_service import Service, cli, seeded_service, token_of


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    yield from seeded_service(tmp_path_factory.mktemp("secstore"))


# --- time filters outside DateTime64(9): never a 200 whose stream is cut, nor a 500 ---------------------------
# (Issue 15: a valid ISO date outside the years the store holds is a bound like any other, as the OpenAPI
# document's date-time format promises: it selects what the nearest bound the store holds does.)

@pytest.mark.parametrize("value", ["0001-01-01", "1677-09-21", "2262-04-12", "9999-12-31T00:00:00Z",
                                   "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_out_of_range_time_filters_select_what_the_nearest_bound_does(service: Service, value: str) -> None:
    early = value < "2000"
    with service.client(service.read_acme) as client:
        every = len(client.get("/v1/tenants/acme/events", params={"format": "csv"}).text.split("\n"))
        for route, name in [("events", "since"), ("events", "until"), ("verify", "since")]:
            try:
                response = client.get(f"/v1/tenants/acme/{route}", params={name: value, "format": "csv"})
            except httpx.RemoteProtocolError as error:  # the engine refused it after the 200 went out
                pytest.fail(f"{route}?{name}={value}: 200 sent, then the stream was cut ({error})")
            assert response.status_code == 200, (route, name, value, response.status_code, response.text[:200])
            if route == "events":  # since the beginning / until the end: every event; else none
                expected = every if (name == "since") == early else 2  # (the header and the final newline)
                assert len(response.text.split("\n")) == expected, (name, value)
        assert client.get("/v1/tenants/acme/events", params={"since": "", "format": "csv"}).status_code == 400
    log = (service.tmp / "serve.log").read_text()
    assert "DB::Exception" not in log, log[-2000:]


# --- the local admin door answers this host only --------------------------------------------------------

def test_local_admin_header_is_refused_from_another_host(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from auditrail_store.service import create_app

    url = f"chdb://{tmp_path}/store"
    app = create_app(url, port=4999)  # a port: the app writes its control file as `serve` does
    with TestClient(app, client=("203.0.113.9", 40000)) as remote:
        secret = json.loads(admin.control_path(url).read_text())["secret"]
        response = remote.get("/v1/admin/tokens", headers={admin.LOCAL_ADMIN_HEADER: secret})
        assert response.status_code == 401, response.text
        response = remote.post("/v1/admin/tokens", headers={admin.LOCAL_ADMIN_HEADER: secret},
                               json={"tenant": "*", "scope": "admin"})
        assert response.status_code == 401 and "token" not in response.json(), response.text
    # the door itself still works for this machine (loopback), the way the CLI uses it
    app = create_app(url, port=4999)
    with TestClient(app, client=("127.0.0.1", 40001)) as local:
        secret = json.loads(admin.control_path(url).read_text())["secret"]
        assert local.get("/v1/admin/tokens", headers={admin.LOCAL_ADMIN_HEADER: secret}).status_code == 200


# --- the CLI trusts only a control file that the service could have written --------------------------------

class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: list[str] = []

    def _answer(self) -> None:
        _Recorder.seen.append(f"{self.command} {self.path} {self.headers.get(admin.LOCAL_ADMIN_HEADER)}")
        body = b"[]"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_DELETE = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def impostor() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Recorder.seen = []
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("how", ["world-writable file", "symlink"])
def test_cli_ignores_a_planted_control_file(tmp_path: Path, impostor: str, how: str) -> None:
    url = f"chdb://{tmp_path}/store"
    path = admin.control_path(url)
    content = json.dumps({"pid": os.getpid(), "url": impostor, "secret": "planted"})  # a live pid: this test's
    if how == "symlink":
        elsewhere = tmp_path / "elsewhere.json"
        elsewhere.write_text(content)
        os.chmod(elsewhere, 0o600)
        path.symlink_to(elsewhere)
    else:
        path.write_text(content)
        os.chmod(path, 0o666)
    env = dict(os.environ, AUDITRAIL_CLICKHOUSE_URL=url)
    result = cli("tokens", "list", env=env, check=False)
    assert _Recorder.seen == [], (_Recorder.seen, result.stdout, result.stderr)  # the impostor got nothing
    assert admin.find_service(url) is None


def test_the_services_own_control_file_is_trusted(tmp_path: Path) -> None:
    url = f"chdb://{tmp_path}/store"
    secret = admin.write_control(url, "127.0.0.1", 4999)
    try:
        assert stat.S_IMODE(admin.control_path(url).stat().st_mode) == 0o600
        found = admin.find_service(url)
        assert found is not None and found.secret == secret and found.pid == os.getpid()
    finally:
        admin.remove_control(url, secret)
    assert not admin.control_path(url).exists()


# --- what the running service answers the CLI's streamed export: an error or a cut stream is one clear line -----

class _Failing(http.server.BaseHTTPRequestHandler):
    """A service that refuses tenant `refused`'s export and cuts every other one midway (an engine error)."""

    def do_GET(self) -> None:
        _Recorder.seen.append(f"{self.command} {self.path} {self.headers.get(admin.LOCAL_ADMIN_HEADER)}")
        body = b'{"detail": "not this tenant"}' if "/refused/" in self.path else b"event_id\n1\n"
        self.send_response(403 if "/refused/" in self.path else 200)
        self.send_header("Content-Length", str(len(body) if "/refused/" in self.path else 1000))
        self.end_headers()
        self.wfile.write(body)  # then the connection closes: the rest of the promised 1000 bytes never come

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize(("tenant", "message"), [("refused", "the service answered 403: not this tenant"),
                                                  ("cut", "the export was cut (")])
def test_an_export_the_service_refuses_or_cuts_is_one_clear_line_and_no_file(tmp_path: Path, tenant: str,
                                                                             message: str) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Recorder.seen = []
    url = f"chdb://{tmp_path}/store"
    secret = admin.write_control(url, "127.0.0.1", server.server_address[1])
    out = tmp_path / "out.csv"
    try:
        result = cli("export", "--tenant", tenant, "--out", str(out), "--no-progress",
                     env=dict(os.environ, AUDITRAIL_CLICKHOUSE_URL=url), check=False)
    finally:
        admin.remove_control(url, secret)
        server.shutdown()
        server.server_close()
    assert _Recorder.seen == [f"GET /v1/tenants/{tenant}/events?format=csv {secret}"]
    assert result.returncode != 0 and message in result.stderr, result.stderr
    assert tenant == "refused" or f"{out} not written" in result.stderr, result.stderr
    assert not out.exists() and list(tmp_path.glob(".export.*")) == []


# --- the embedded store's data is private to its owner ----------------------------------------------------

def test_a_new_embedded_store_directory_is_private(tmp_path: Path) -> None:
    with Store.open(f"chdb://{tmp_path}/store") as store:
        store.query("SELECT 1")
    mode = stat.S_IMODE((tmp_path / "store").stat().st_mode)
    assert mode & 0o077 == 0, oct(mode)  # every tenant's events and the token hashes live in there


# --- append-only: a re-sent event must not replace the stored one ----------------------------------------

def _record(event_id: str, tenant: str, payload: str, ns: int) -> bytes:
    attributes = [{"key": "audit.event_id", "value": {"stringValue": event_id}},
                  {"key": "audit.tenant_id", "value": {"stringValue": tenant}},
                  {"key": "audit.payload", "value": {"stringValue": payload}}]
    return json.dumps({"resourceLogs": [{"resource": {}, "scopeLogs": [{"scope": {"name": "auditrail"}, "logRecords": [
        {"timeUnixNano": str(ns), "eventName": "policy.update", "attributes": attributes}]}]}]}).encode()


def test_a_replayed_event_id_cannot_rewrite_the_stored_event(service: Service) -> None:
    event_id, ns = "01900000-0000-7000-8000-00000000beef", time.time_ns()
    headers = {"Content-Type": "application/json"}
    with service.client(service.ingest_acme) as client:
        for payload in ('{"after":{"limit":10}}', '{"after":{"limit":999999}}'):
            assert client.post("/v1/logs", content=_record(event_id, "acme", payload, ns), headers=headers
                               ).status_code == 200
    with service.client(service.read_acme) as client:
        rows = _ndjson(client.get("/v1/tenants/acme/events", params={"format": "ndjson"}))
    stored = [row["payload"] for row in rows if row["event_id"] == event_id]
    assert stored == [{"after": {"limit": 10}}], stored


# --- one tenant's ingest token must not be able to break another tenant's verification ---------------------

def _ndjson(response: httpx.Response) -> list[dict]:
    return [json.loads(line) for line in response.text.split("\n") if line]  # not splitlines(): U+2028


def test_a_tenant_cannot_forge_link_stubs_into_another_tenants_export(service: Service) -> None:
    with service.client(service.admin) as client:
        globex = _ndjson(client.get("/v1/tenants/globex/events", params={"format": "ndjson"}))
    policy = [e["chain_seq"] for e in globex if e["event_type"] == "policy.update"]
    victim = next(e for e in globex if e["event_type"] == "prompt.update" and min(policy) < e["chain_seq"] < max(policy))
    attributes = [{"key": k, "value": {"stringValue": str(v)}} for k, v in [
        ("audit.event_id", "01900000-0000-7000-8000-0000000000aa"), ("audit.tenant_id", "acme"),
        ("audit.chain.id", victim["chain_id"]), ("audit.chain.seq", victim["chain_seq"]),
        ("audit.chain.prev_hash", "0" * 64), ("audit.chain.hash", "f" * 64)]]
    forged = {"resourceLogs": [{"resource": {}, "scopeLogs": [{"scope": {"name": "auditrail"}, "logRecords": [
        {"timeUnixNano": str(time.time_ns()), "eventName": "custom.x", "attributes": attributes}]}]}]}
    with service.client(service.ingest_acme) as client:  # acme's own token, acme's own tenant: accepted
        assert client.post("/v1/logs", json=forged).status_code == 200
    with service.client(service.read_globex) as client:  # globex's auditor exports one event type
        document = client.get("/v1/tenants/globex/events", params={"format": "json", "type": "policy.update"}).json()
    conflicts = [p for chain in verify_document(document).to_dict()["chains"] for p in chain["problems"]
                 if p["kind"] == "conflict"]
    assert conflicts == [], conflicts


# --- guard: no secret reaches the service's log, whatever the request ------------------------------------

def test_no_token_or_local_secret_reaches_the_service_log(service: Service) -> None:
    created = cli("tokens", "create", "--tenant", "initech", "--scope", "read", env=service.env)
    revoked = token_of(created)
    cli("tokens", "revoke", revoked.split("_")[1], env=service.env)
    wrong = service.read_acme[:-4] + "AAAA"
    with httpx.Client(base_url=service.base, timeout=60) as client:
        for token in (service.read_acme, revoked, wrong, "art_" + "x" * 70):
            for headers in ({"Authorization": f"Bearer {token}"}, {admin.LOCAL_ADMIN_HEADER: token}):
                client.get("/v1/tenants/globex/events", headers=headers)
                client.post("/v1/logs", content=b"{", headers={**headers, "Content-Type": "application/json"})
    secrets = [t.split("_", 2)[2] for t in (service.read_acme, service.admin, service.ingest, revoked, wrong)]
    control = admin.find_service(service.env["AUDITRAIL_CLICKHOUSE_URL"])
    assert control is not None
    log = (service.tmp / "serve.log").read_text()
    assert "GET /v1/tenants/globex/events" in log  # the log is the one the service wrote
    for secret in [*secrets, control.secret]:
        assert secret not in log
