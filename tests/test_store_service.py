"""The store service over real HTTP: a real `auditrail serve` (uvicorn) on embedded chDB, real httpx.

Events come from the real instrumentation (a subprocess emitting hash-chained, signed events through the
`file:` exporter), are posted as OTLP/HTTP, then exported, verified and tampered with.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from otlp_requests import logs_request, uuid7ish

PYTHON = sys.executable
TENANTS = ("acme", "globex", "initech")

_GENERATOR = """
import sys, auditrail
for i in range(int(sys.argv[1])):
    tenant = {tenants!r}[i % 3]
    auditrail.emit("prompt.update" if i % 2 else "policy.update", tenant=tenant, actor=f"user{{i % 4}}@{{tenant}}.io",
                   payload={{"i": i, "before": {{"v": i}}, "after": {{"v": i + 1}}, "note": "<&> \\u2028 é"}},
                   reason="ticket 7", source_ip="203.0.113.9")
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cli(*args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `auditrail ARGS` the way an operator would."""
    result = subprocess.run([PYTHON, "-m", "auditrail.cli", *args], env=env, capture_output=True, text=True,
                            timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"auditrail {' '.join(args)} -> {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def generate_events(directory: Path, count: int) -> list[bytes]:
    """OTLP JSON lines of `count` chained events over three tenants, checkpointed every 5 events."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "genmod.py").write_text("def noop():\n    pass\n")
    (directory / "gen.py").write_text(_GENERATOR.format(tenants=TENANTS))
    (directory / "audit.yaml").write_text(
        "service_name: gen-app\n"
        "delivery: {mode: durable, spool_dir: spool}\n"
        "integrity: {checkpoint_every: 5, checkpoint_seconds: 3600}\n"
        "events:\n  - target: genmod:noop\n    event: custom.noop\n")
    env = dict(os.environ, AUDITRAIL_CONFIG="audit.yaml", AUDITRAIL_EXPORTER="file:out.jsonl", PYTHONPATH=".")
    subprocess.run([PYTHON, "gen.py", str(count)], cwd=directory, env=env, check=True, capture_output=True,
                   timeout=120)
    return [line for line in (directory / "out.jsonl").read_bytes().splitlines() if line.strip()]


@dataclass
class Service:
    base: str
    env: dict[str, str]
    ingest: str
    admin: str
    read_acme: str
    read_globex: str
    ingest_acme: str
    process: subprocess.Popen[bytes]
    tmp: Path

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.base, headers=headers, timeout=60)


def start_service(tmp: Path, *options: str, **extra_env: str) -> tuple[subprocess.Popen[bytes], str, dict[str, str]]:
    """`auditrail serve [options]` on a free loopback port over a fresh embedded store; waits for /healthz."""
    env = dict(os.environ, AUDITRAIL_CLICKHOUSE_URL=f"chdb://{tmp}/store", **extra_env)
    port = free_port()
    log = open(tmp / "serve.log", "ab")
    process = subprocess.Popen([PYTHON, "-m", "auditrail.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
                                *options], env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                return process, base, env
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            break
        time.sleep(0.2)
    process.kill()
    raise AssertionError("the service did not start:\n" + (tmp / "serve.log").read_text())


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def token_of(result: subprocess.CompletedProcess[str]) -> str:
    """The token: alone on the last line of stdout."""
    return result.stdout.rstrip("\n").splitlines()[-1]


def seeded_service(tmp: Path, *extra: str) -> Iterator[Service]:
    """A running service (`serve EXTRA`) with one token per role and hash-chained, signed events of acme,
    globex and initech."""
    process, base, env = start_service(tmp, *extra)
    try:
        # The service owns the chDB directory: these go through its local admin door.
        tokens = {name: token_of(cli("tokens", "create", "--tenant", tenant, "--scope", scope, env=env))
                  for name, tenant, scope in [("ingest", "*", "ingest"), ("admin", "*", "admin"),
                                              ("read_acme", "acme", "read"), ("read_globex", "globex", "read"),
                                              ("ingest_acme", "acme", "ingest")]}
        svc = Service(base, env, process=process, tmp=tmp, **tokens)
        lines = generate_events(tmp / "gen", 30)
        with svc.client(svc.ingest) as client:
            for line in lines:
                response = client.post("/v1/logs", content=line, headers={"Content-Type": "application/json"})
                assert response.status_code == 200, response.text
        yield svc
    finally:
        stop(process)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    yield from seeded_service(tmp_path_factory.mktemp("store"))


def events(svc: Service, tenant: str, token: str, **params: str) -> list[dict]:
    with svc.client(token) as client:
        response = client.get(f"/v1/tenants/{tenant}/events", params=dict(params, format="ndjson"))
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.text.split("\n") if line]  # NDJSON lines end at \n only


def otlp_request(tenant: str, event_ids: list[str]) -> ExportLogsServiceRequest:
    """A plain (unchained) audit request built with the OTLP protobuf classes."""
    now = time.time_ns()  # recent: older rows would meet the 365-day retention TTL
    return logs_request(({"time_unix_nano": now + i, "severity_number": 9, "severity_text": "INFO",
                          "event_name": "billing.plan.change", "body": "billing.plan.change",
                          "attributes": {"audit.event_id": event_id, "audit.tenant_id": tenant, "enduser.id": "ops@x.io",
                                         "audit.payload": '{"before":{"plan":"free"},"after":{"plan":"pro"}}'}}
                         for i, event_id in enumerate(event_ids)), service="proto-app")


def test_ingested_events_are_exported_per_tenant_with_seed_columns_first(service: Service) -> None:
    acme = events(service, "acme", service.read_acme)
    assert {e["tenant_id"] for e in acme} == {"acme"}
    # the tenant's own chain is anchored by checkpoints of its own (emitters keep one chain per tenant)
    checkpoints = [e for e in acme if e["event_type"] == "audit.checkpoint"]
    assert len(acme) - len(checkpoints) == 10 and checkpoints
    assert list(acme[0])[:7] == ["event_id", "event_type", "timestamp", "tenant_id", "actor", "source_ip", "payload"]
    assert acme[0]["timestamp"].endswith("Z") and len(acme[0]["timestamp"].split(".")[1]) == 10  # 9 digits + Z
    assert acme[0]["payload"]["note"] == "<&> \u2028 é"  # payload as JSON, not as a string
    with service.client(service.read_acme) as client:
        csv = client.get("/v1/tenants/acme/events", params={"format": "csv"}).text.split("\n")[:-1]
    assert csv[0].startswith("event_id,event_type,timestamp,tenant_id,actor,source_ip,payload,actor_type")
    assert len(csv) == 1 + len(acme)


def test_protobuf_json_and_gzip_ingest_and_replays_are_seen_once(service: Service) -> None:
    request = otlp_request("protocols", [uuid7ish(i) for i in range(1, 4)])
    body = request.SerializeToString()
    with service.client(service.ingest) as client:
        for content, headers in [
            (body, {"Content-Type": "application/x-protobuf"}),
            (gzip.compress(body), {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"}),
            (json.dumps({"resourceLogs": [{"resource": {}, "scopeLogs": [{"scope": {"name": "auditrail"},
             "logRecords": [{"timeUnixNano": str(time.time_ns()), "eventName": "billing.plan.change",
                             "attributes": [{"key": "audit.event_id", "value": {"stringValue": uuid7ish(9)}},
                                            {"key": "audit.tenant_id", "value": {"stringValue": "protocols"}}]}]}]}]}
                        ).encode(), {"Content-Type": "application/json"}),
        ]:
            response = client.post("/v1/logs", content=content, headers=headers)
            assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/json")
    seen = events(service, "protocols", service.admin)
    assert sorted(e["event_id"] for e in seen) == [uuid7ish(1), uuid7ish(2), uuid7ish(3), uuid7ish(9)]
    assert seen[0]["payload"] == {"before": {"plan": "free"}, "after": {"plan": "pro"}}


def test_malformed_requests_get_400_and_nothing_is_written(service: Service) -> None:
    good = otlp_request("malformed", [uuid7ish(100)]).SerializeToString()
    with service.client(service.ingest) as client:
        for content, headers in [
            (good[:-3], {"Content-Type": "application/x-protobuf"}),  # truncated
            (b'{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"attributes": [{"key": "audit.tenant_id", '
             b'"value": {"stringValue": "malformed"}}]}, {"traceId": "zz"}]}]}]}', {"Content-Type": "application/json"}),
            (b"garbage", {"Content-Type": "application/json", "Content-Encoding": "gzip"}),
            (good, {"Content-Type": "text/plain"}),
        ]:
            response = client.post("/v1/logs", content=content, headers=headers)
            assert response.status_code == 400, (response.status_code, response.text)
    assert events(service, "malformed", service.admin) == []


def test_ingest_needs_an_ingest_token_of_the_events_tenant(service: Service) -> None:
    body = otlp_request("acme", [uuid7ish(200)]).SerializeToString()
    headers = {"Content-Type": "application/x-protobuf"}
    assert httpx.post(service.base + "/v1/logs", content=body, headers=headers).status_code == 401
    for token in (service.read_acme, "art_0123456789abcdef_" + "A" * 43, "Bearer nonsense"):
        with service.client(token) as client:
            assert client.post("/v1/logs", content=body, headers=headers).status_code in (401, 403)
    with service.client(service.ingest_acme) as client:
        assert client.post("/v1/logs", content=body, headers=headers).status_code == 200
        mixed = otlp_request("globex", [uuid7ish(201)])
        mixed.MergeFrom(otlp_request("acme", [uuid7ish(202)]))
        assert client.post("/v1/logs", content=mixed.SerializeToString(), headers=headers).status_code == 403
    assert uuid7ish(202) not in {e["event_id"] for e in events(service, "acme", service.read_acme)}


INJECTIONS = ["acme' OR '1'='1", "acme' OR 1=1 --", "*", "acme%", "' UNION SELECT * FROM auditrail.api_tokens --",
              "acme\\' OR tenant_id != \\'", "acme}) OR (1=1", "{tenant:String}"]


def test_a_read_token_never_sees_another_tenant(service: Service) -> None:
    with service.client(service.read_acme) as client:
        for tenant in ["globex", "*", "ACME", "acme ", *INJECTIONS]:
            response = client.get(f"/v1/tenants/{httpx.URL(path=tenant).raw_path.decode()}/events",
                                  params={"format": "ndjson"})
            assert response.status_code in (403, 404, 422), (tenant, response.status_code)  # 422: not a tenant id
        for name in ("type", "actor", "since", "until"):
            for value in INJECTIONS:
                response = client.get("/v1/tenants/acme/events", params={name: value, "format": "ndjson"})
                assert response.status_code in (200, 400, 422), (name, value, response.status_code)
                tenants = {json.loads(line)["tenant_id"] for line in response.text.split("\n")
                           if response.status_code == 200 and line}
                assert tenants <= {"acme"}, (name, value)
        assert client.get("/v1/tenants/globex/verify").status_code == 403
    # The injection strings as tenants of an admin read: outside the tenant id syntax, refused before any SQL.
    with service.client(service.admin) as client:
        for value in INJECTIONS:
            if value != "*":  # '*' is the real global tenant
                path = f"/v1/tenants/{httpx.URL(path=value).raw_path.decode()}/events"
                assert client.get(path).status_code in (404, 422), value


def test_filters_select_by_type_actor_and_time(service: Service) -> None:
    acme = events(service, "acme", service.read_acme)
    policy = events(service, "acme", service.read_acme, type="policy.update")
    assert policy and all(e["event_type"] == "policy.update" for e in policy)
    assert len(events(service, "acme", service.read_acme, type="policy.")) == len(policy)
    actor = acme[0]["actor"]
    assert {e["actor"] for e in events(service, "acme", service.read_acme, actor=actor)} == {actor}
    middle = acme[len(acme) // 2]["timestamp"]
    assert len(events(service, "acme", service.read_acme, since=middle)) + len(
        events(service, "acme", service.read_acme, until=middle)) == len(acme)


def test_stored_chains_verify_through_the_api(service: Service) -> None:
    with service.client(service.read_globex) as client:  # acme also holds an unchained event (ingest test)
        report = client.get("/v1/tenants/globex/verify").json()
    assert report["ok"], json.dumps(report)[-1500:]
    assert report["chains"][0]["checkpoints"] >= 1


def test_streamed_verification_reports_what_the_offline_verification_of_the_export_does(service: Service) -> None:
    from auditrail_store.verify_store import event_record, verify_document

    globex = events(service, "globex", service.admin)
    # Stored tampering, in a tenant of its own (the other tests keep theirs clean): an event moved to another
    # tenant (its content no longer hashes), a forged one claiming a seq of the same chain, an unchained one.
    moved = event_record(dict(globex[3], tenant_id="forged", event_id=uuid7ish(901)))
    claim = event_record(dict(globex[5], tenant_id="forged", event_id=uuid7ish(902), payload_json='{"x":1}'))
    unchained = event_record({"event_id": uuid7ish(903), "event_type": "x.y", "tenant_id": "forged",
                              "timestamp": globex[0]["timestamp"]})
    body = {"resourceLogs": [{"resource": {}, "scopeLogs": [{"scope": {"name": "auditrail"}, "logRecords": [
        {"timeUnixNano": str(r["time_unix_nano"]), "eventName": r["event_name"],
         "attributes": [{"key": k, "value": {"intValue": str(v)} if isinstance(v, int) else {"stringValue": v}}
                        for k, v in r["attributes"].items()]} for r in (moved, claim, unchained)]}]}]}
    with service.client(service.admin) as client:
        assert client.post("/v1/logs", json=body).status_code == 200
        middle = globex[len(globex) // 2]["timestamp"]
        for tenant, params in [("globex", {}), ("globex", {"since": middle}), ("globex", {"until": middle}),
                               ("acme", {}), ("forged", {})]:
            streamed = client.get(f"/v1/tenants/{tenant}/verify", params=params).json()
            document = client.get(f"/v1/tenants/{tenant}/events", params=dict(params, format="json")).json()
            assert streamed == verify_document(document).to_dict(), (tenant, params)
    assert not streamed["ok"] and {p["kind"] for c in streamed["chains"] for p in c["problems"]} >= {"edited"}
    assert [p["kind"] for p in streamed["problems"]] == ["unchained"]


def test_offline_verification_of_an_export_and_of_tampered_ones(service: Service) -> None:
    out = service.tmp / "initech.json"
    cli("export", "--tenant", "initech", "--format", "json", "--out", str(out), "--no-progress", env=service.env)
    ok = cli("verify", str(out), env={k: v for k, v in service.env.items() if k != "AUDITRAIL_CLICKHOUSE_URL"})
    assert "verify: OK" in ok.stdout

    document = json.loads(out.read_text())
    assert document["public_keys"] and document["chains"][0]["checkpoints"]
    victim = document["events"][3]
    victim["payload"]["after"]["v"] = 999
    victim["payload_json"] = json.dumps(victim["payload"], separators=(",", ":"))
    edited = service.tmp / "edited.json"
    edited.write_text(json.dumps(document))
    result = cli("verify", str(edited), env=service.env, check=False)
    assert result.returncode == 1 and f"edited at seq {victim['chain_seq']}" in result.stdout, result.stdout

    document = json.loads(out.read_text())
    # (exports run in event id order: by millisecond for UUIDv7 ids, so pick a chained event inside the chain)
    middle = next(i for i, e in enumerate(document["events"]) if e["chain_seq"] == 5)
    removed = document["events"].pop(middle)
    deleted = service.tmp / "deleted.json"
    deleted.write_text(json.dumps(document))
    result = cli("verify", str(deleted), env=service.env, check=False)
    assert result.returncode == 1 and f"missing at seq {removed['chain_seq']}" in result.stdout, result.stdout


def test_cli_verify_and_export_csv_while_the_service_owns_the_store(service: Service) -> None:
    assert "verify: OK" in cli("verify", "--tenant", "globex", env=service.env).stdout
    out = service.tmp / "globex.csv"
    cli("export", "--tenant", "globex", "--out", str(out), env=service.env)
    rows = out.read_text().split("\n")[1:-1]  # (not splitlines: a payload holds U+2028)
    assert len([r for r in rows if ",\"audit.checkpoint\"," not in r]) == 10  # besides the tenant's checkpoints


def test_tokens_are_listed_without_secrets_and_revocation_takes_effect(service: Service) -> None:
    created = cli("tokens", "create", "--tenant", "initech", "--scope", "read", env=service.env)
    token = token_of(created)
    assert token.startswith("art_") and len(created.stdout.splitlines()) >= 2
    listing = cli("tokens", "list", "--json", env=service.env).stdout
    token_id = token.split("_")[1]
    assert token_id in listing and token.split("_", 2)[2] not in listing
    with service.client(token) as client:
        assert client.get("/v1/tenants/initech/events").status_code == 200
        cli("tokens", "revoke", token_id, env=service.env)
        assert client.get("/v1/tenants/initech/events").status_code == 401


def test_openapi_document_describes_the_routes(service: Service) -> None:
    document = httpx.get(service.base + "/openapi.json").json()
    assert {"/v1/logs", "/v1/tenants/{tenant}/events", "/v1/tenants/{tenant}/verify", "/healthz"} <= set(
        document["paths"])
    assert set(document["paths"]["/v1/tenants/{tenant}/events"]["get"]["parameters"][3:][0]) >= {"name", "in"}


def test_tokens_are_stored_as_sha256_hashes(tmp_path: Path) -> None:
    env = dict(os.environ, AUDITRAIL_CLICKHOUSE_URL=f"chdb://{tmp_path}/store")
    token = token_of(cli("tokens", "create", "--tenant", "*", "--scope", "admin", env=env))
    dump = subprocess.run([PYTHON, "-c", (
        "import json; from auditrail_store.db import Store\n"
        "with Store.open() as s:\n"
        "    r = s.query('SELECT * FROM auditrail.api_tokens')\n"
        "    print(json.dumps([[str(v) for v in row] for row in r.result_rows]))")],
        env=env, capture_output=True, text=True, check=True).stdout
    secret = token.split("_", 2)[2]
    assert secret not in dump and token not in dump
    assert hashlib.sha256(secret.encode()).hexdigest() in dump


# Awkward values in every column, read back through the engine-written JSON (export._json_query) and through
# the reference: the engine's JSONEachRow of the same read, each event re-serialised by orjson (how the JSON
# exports were made before the engine wrote them). The two must agree byte for byte.
_AWKWARD = r'''
import itertools, uuid
from datetime import datetime, timedelta, timezone
import orjson
from auditrail_store import export
from auditrail_store.db import EVENT_COLUMNS, Store
from auditrail_store.migrate import migrate

texts = ["plain", "", 'q"uote \\ back/slash <&> \x7f é 😀 \t\n\r\b\f', "".join(map(chr, range(32))),
         "\u2028 \u2029", "\\u2028 \\u001F as text", None]
payloads = ['{"a": 1, "n": [2.50, 1e3, true, null]}', '{"raw": "\u2028 \\u2028 é"}', "[1,2]", '"s"', "not json",
            '{"cut":', "", None]
maps = [{}, {"k": "v", "k/\u2028\"": "\x01"}, {"k": "v"}]
optional = {"actor", "source_ip", "payload", "actor_type", "reason", "outcome", "risk", "impersonator_id",
            "impersonation_id", "approval_id", "chain_id", "chain_seq", "chain_prev_hash", "chain_hash"}
start = datetime.now(timezone.utc) - timedelta(hours=1)
rows = []
for i, (text, payload, attributes) in enumerate(itertools.product(texts, payloads, maps)):
    row = {"event_id": uuid.uuid4(), "event_type": text or "t", "timestamp": start + timedelta(microseconds=i),
           "tenant_id": "acme", "payload": payload, "chain_seq": [None, 1, 2**64 - 1][i % 3], "severity_number": 9,
           "attributes": attributes, "inserted_at": start, "trace_id": "ab" * 16}
    rows.append([row.get(c, text if c in optional else (text or "")) for c in EVENT_COLUMNS])
with Store.open() as store:
    migrate(store)
    store.insert("audit_events", rows, EVENT_COLUMNS)
    store.command("INSERT INTO auditrail.audit_events (event_id, event_type, timestamp, tenant_id, attributes) "
                  "SELECT generateUUIDv4(), 'dup', now64(9), 'acme', CAST([('k', '1'), ('k', '2')], 'Map(LowCardinality(String), String)')")
    filters = export.ExportFilters()
    sql, params = export.export_query(store, "acme", filters)
    sql = sql.replace(" FROM (", ", isValidJSON(ifNull(payload, '')) AS _payload_valid FROM (", 1)
    reference = store.client.raw_query(sql, parameters=params, fmt="JSONEachRow").splitlines()
    for keep_text, fmt in [(False, "ndjson"), (True, "json")]:
        expected = [orjson.dumps(export._reshape(line, keep_text)) for line in reference]
        got = b"".join(export.stream_export(store, "acme", filters, fmt))
        if fmt == "ndjson":
            assert got == b"".join(line + b"\n" for line in expected), fmt
        else:
            assert b'"events":[' + b",".join(expected) + b"]" in got, fmt
    sql, params = export._json_query(store, "acme", filters, False)
    respelled = store.query(f"SELECT countIf(respell), count() FROM ({sql})", params).result_rows[0]
    print(len(reference), *respelled)
'''


def test_engine_written_json_exports_equal_orjson_byte_for_byte(tmp_path: Path) -> None:
    env = dict(os.environ, AUDITRAIL_CLICKHOUSE_URL=f"chdb://{tmp_path}/store")
    result = subprocess.run([PYTHON, "-c", _AWKWARD], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    events, respelled, total = map(int, result.stdout.split())
    assert events == total == 7 * 8 * 3 + 1
    assert 0 < respelled < total  # both ways were taken: written by the engine, and finished by orjson


def test_an_event_id_resent_with_other_times_is_exported_once_and_verify_reports_the_conflict(service: Service) -> None:
    """Issue 15: one id sent three times with three timestamps showed three rows in an export. Now every
    format shows the first stored version alone, and verify (streamed, and offline on the JSON export) reports
    the id as a conflict: 3 versions, 4 copies (the first also replayed as is)."""
    now = time.time_ns()
    first = otlp_request("resent", [uuid7ish(700)])
    with service.client(service.ingest) as client:
        for request in (first, *[otlp_request("resent", [uuid7ish(700)]) for _ in range(2)], first):
            assert client.post("/v1/logs", content=request.SerializeToString(),
                               headers={"Content-Type": "application/x-protobuf"}).status_code == 200
        assert client.post("/v1/logs", content=otlp_request("resent", [uuid7ish(701)]).SerializeToString(),
                           headers={"Content-Type": "application/x-protobuf"}).status_code == 200
    stamp = first.resource_logs[0].scope_logs[0].log_records[0].time_unix_nano
    assert now <= stamp
    seen = events(service, "resent", service.admin)
    assert sorted(e["event_id"] for e in seen) == [uuid7ish(700), uuid7ish(701)]
    from auditrail_store.verify_store import time_unix_nano, verify_document

    assert time_unix_nano(next(e for e in seen if e["event_id"] == uuid7ish(700))["timestamp"]) == stamp  # the first
    with service.client(service.admin) as client:
        csv = client.get("/v1/tenants/resent/events", params={"format": "csv"}).text.split("\n")[1:-1]
        document = client.get("/v1/tenants/resent/events", params={"format": "json"}).json()
        streamed = client.get("/v1/tenants/resent/verify").json()
    assert len(csv) == 2 and len(document["events"]) == 2
    assert document["conflicts"] == [{"event_id": uuid7ish(700), "versions": 3, "copies": 4}]
    assert streamed == verify_document(document).to_dict()
    conflicts = [p for p in streamed["problems"] if p["kind"] == "conflict"]
    assert [(p["event_id"], p["message"].split(":")[0]) for p in conflicts] == [
        (uuid7ish(700), "the store received this event id in 3 different versions (4 copies)")]
    assert not streamed["ok"]


def test_csv_escapes_cells_a_spreadsheet_would_run_as_formulas_json_keeps_exact_values(service: Service) -> None:
    """Issue 15 (OWASP CSV injection): a text cell starting with = + - @, tab or CR gets a leading ' in CSV
    (the engine quotes every text cell already); csv_escape=false (CLI --no-csv-escape) writes it as stored;
    JSON and NDJSON always carry the exact values."""
    import csv
    import io

    values = {"enduser.id": "=HYPERLINK(\"http://x\",\"y\")", "audit.reason": "+1+cmd|' /C calc'!A0",
              "client.address": "-2+3", "audit.approval.id": "@SUM(1)", "audit.impersonator.id": "\tx",
              "audit.impersonation.id": "\rx", "audit.payload": "=1", "audit.outcome": "success"}
    request = logs_request([{"time_unix_nano": time.time_ns(), "event_name": "=evil()",
                             "attributes": {"audit.event_id": uuid7ish(800), "audit.tenant_id": "sheets", **values}}])
    with service.client(service.ingest) as client:
        assert client.post("/v1/logs", content=request.SerializeToString(),
                           headers={"Content-Type": "application/x-protobuf"}).status_code == 200
    columns = {"enduser.id": "actor", "audit.reason": "reason", "client.address": "source_ip",
               "audit.approval.id": "approval_id", "audit.impersonator.id": "impersonator_id",
               "audit.impersonation.id": "impersonation_id", "audit.payload": "payload", "audit.outcome": "outcome"}
    with service.client(service.admin) as client:
        escaped = list(csv.DictReader(io.StringIO(client.get("/v1/tenants/sheets/events",
                                                             params={"format": "csv"}).text, newline="")))
        kept = list(csv.DictReader(io.StringIO(client.get("/v1/tenants/sheets/events",
                                                          params={"format": "csv", "csv_escape": "false"}).text,
                                               newline="")))
    assert len(escaped) == len(kept) == 1
    for key, column in columns.items():
        expected = values[key] if key == "audit.outcome" else "'" + values[key]
        assert escaped[0][column] == expected, column
        assert kept[0][column] == values[key], column
    assert escaped[0]["event_type"] == "'=evil()" and kept[0]["event_type"] == "=evil()"
    assert escaped[0]["event_id"] == uuid7ish(800) and escaped[0]["timestamp"].endswith("Z")
    (exact,) = events(service, "sheets", service.admin)
    assert {column: exact[column] for column in columns.values() if column != "payload"} == {
        column: values[key] for key, column in columns.items() if column != "payload"}
    assert exact["payload"] == "=1" and exact["event_type"] == "=evil()"  # (not JSON: kept as the string sent)
    out = service.tmp / "sheets.csv"
    cli("export", "--tenant", "sheets", "--out", str(out), "--no-csv-escape", env=service.env)
    assert list(csv.DictReader(io.StringIO(out.read_bytes().decode(), newline=""))) == kept
    cli("export", "--tenant", "sheets", "--out", str(out), env=service.env)
    assert list(csv.DictReader(io.StringIO(out.read_bytes().decode(), newline=""))) == escaped
