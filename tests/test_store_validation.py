"""What the store refuses, through the real service (`auditrail serve` on embedded chDB, real httpx).

Tenant ids follow one syntax (db.TENANT_SYNTAX) at token creation, at ingest and in paths; a record whose time
the store cannot hold faithfully (2^63 ns and later) is refused. Refusals at ingest are a 400 naming the
record's index, on the Python path and on the engine's fast path (protobuf of an all-tenant token, 1,000
records and more), and nothing of the request is written.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from google.rpc.status_pb2 import Status

from otlp_requests import logs_request, uuid7ish
from test_store_service import cli, start_service, stop, token_of

PROTOBUF = {"Content-Type": "application/x-protobuf"}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    tmp: Path = tmp_path_factory.mktemp("validation")
    process, base, env = start_service(tmp)
    try:
        yield {"base": base, "env": env,  # type: ignore[dict-item]
               "admin": token_of(cli("tokens", "create", "--tenant", "*", "--scope", "admin", env=env)),
               "ingest": token_of(cli("tokens", "create", "--tenant", "*", "--scope", "ingest", env=env))}
    finally:
        stop(process)


def _client(live: dict[str, str], token: str) -> httpx.Client:
    return httpx.Client(base_url=live["base"], headers={"Authorization": f"Bearer {live[token]}"}, timeout=120)


def _request(count: int, tenant: str, *, bad_at: int | None = None, bad_tenant: str | None = None,
             bad_time: int | None = None, first_id: int = 0) -> bytes:
    """`count` audit records of `tenant`; the one at `bad_at` carries `bad_tenant` or `bad_time` instead."""
    now = time.time_ns()
    records = []
    for i in range(count):
        bad = i == bad_at
        records.append({"time_unix_nano": bad_time if bad and bad_time is not None else now + i,
                        "event_name": "crawl.run",
                        "attributes": {"audit.event_id": uuid7ish(first_id + i),
                                       "audit.tenant_id": bad_tenant if bad and bad_tenant is not None else tenant}})
    return logs_request(records, service="validation-app").SerializeToString()


def _exported(live: dict[str, str], tenant: str) -> int:
    with _client(live, "admin") as client:
        response = client.get(f"/v1/tenants/{tenant}/events", params={"format": "ndjson"})
    assert response.status_code == 200, response.text
    return len([line for line in response.text.split("\n") if line])


def _refused(response: httpx.Response) -> str:
    assert response.status_code == 400, (response.status_code, response.text[:300])
    return Status.FromString(response.content).message


# --- tenant ids: one syntax, checked everywhere --------------------------------------------------------------


@pytest.mark.parametrize("bad", [" ", "", "a b", "acme ", "-acme", "=cmd()", "a/b", "tën", "a" * 129, "x\n"])
def test_a_token_cannot_be_created_for_a_tenant_outside_the_syntax(live: dict[str, str], bad: str) -> None:
    with _client(live, "admin") as client:
        response = client.post("/v1/admin/tokens", json={"tenant": bad, "scope": "read"})
    assert response.status_code == 422, response.text
    result = cli("tokens", "create", f"--tenant={bad}", "--scope", "read", env=live["env"], check=False)
    assert result.returncode == 2 and "invalid tenant id" in result.stderr, result.stderr


def test_tenant_ids_of_the_syntax_are_accepted(live: dict[str, str]) -> None:
    with _client(live, "admin") as client:
        for good in ("acme", "Acme.Corp:eu-1", "user+x@example.com", "0", "*", "a" * 128):
            response = client.post("/v1/admin/tokens", json={"tenant": good, "scope": "read"})
            assert response.status_code == 201, (good, response.text)


@pytest.mark.parametrize("count", [3, 1500])  # the Python path; the engine's fast path (>= 1,000 records)
def test_ingest_refuses_a_record_of_a_tenant_outside_the_syntax_and_names_it(live: dict[str, str], count: int) -> None:
    tenant = f"names{count}"
    with _client(live, "ingest") as client:
        body = _request(count, tenant, bad_at=count - 1, bad_tenant=" ", first_id=count * 10)
        message = _refused(client.post("/v1/logs", content=body, headers=PROTOBUF))
        assert f"record {count - 1}: audit.tenant_id: invalid tenant id ' '" in message
        response = client.post("/v1/logs", json={"resourceLogs": [{"scopeLogs": [{"scope": {"name": "auditrail"},
            "logRecords": [{"eventName": "a.b", "attributes": [
                {"key": "audit.event_id", "value": {"stringValue": uuid7ish(count * 10 + i)}},
                {"key": "audit.tenant_id", "value": {"stringValue": t}}]} for i, t in enumerate([tenant, "a b"])]}]}]})
        assert response.status_code == 400 and "record 1: audit.tenant_id" in response.json()["message"]
        assert client.post("/v1/logs", content=_request(count, tenant, first_id=count * 10),
                           headers=PROTOBUF).status_code == 200
    assert _exported(live, tenant) == count  # the refused requests wrote nothing


def test_paths_take_tenant_ids_of_the_syntax_only(live: dict[str, str]) -> None:
    with _client(live, "admin") as client:
        for bad in ("%20", "a%20b", "acme%0A", "-x", "a" * 129):
            for route in ("events", "verify"):
                response = client.get(f"/v1/tenants/{bad}/{route}")
                assert response.status_code == 422, (bad, route, response.status_code)
        assert client.get("/v1/tenants/*/events").status_code == 200


# --- times the store cannot hold faithfully --------------------------------------------------------------------


@pytest.mark.parametrize("count", [3, 1200])
def test_a_time_from_2_pow_63_ns_on_is_refused_with_the_records_index(live: dict[str, str], count: int) -> None:
    tenant = f"times{count}"
    with _client(live, "ingest") as client:
        for bad_time in (2**64 - 1, 2**63):
            body = _request(count, tenant, bad_at=1, bad_time=bad_time, first_id=count * 100)
            message = _refused(client.post("/v1/logs", content=body, headers=PROTOBUF))
            assert message.startswith(f"record 1: time {bad_time} ns is after 2262-04-11"), message
        response = client.post("/v1/logs", content=json.dumps({"resourceLogs": [{"scopeLogs": [{"logRecords": [
            {"timeUnixNano": str(2**64 - 1), "eventName": "a.b", "attributes": [
                {"key": "audit.event_id", "value": {"stringValue": uuid7ish(count * 100)}},
                {"key": "audit.tenant_id", "value": {"stringValue": tenant}}]}]}]}]}),
            headers={"Content-Type": "application/json"})
        assert response.status_code == 400 and response.json()["message"].startswith("record 0: time"), response.text
        # The latest time the store holds is accepted, and comes back exactly.
        body = _request(count, tenant, bad_at=1, bad_time=2**63 - 1, first_id=count * 100)
        assert client.post("/v1/logs", content=body, headers=PROTOBUF).status_code == 200
    with _client(live, "admin") as client:
        lines = client.get(f"/v1/tenants/{tenant}/events", params={"format": "ndjson"}).text.split("\n")
    times = {json.loads(line)["event_id"]: json.loads(line)["timestamp"] for line in lines if line}
    assert len(times) == count and times[uuid7ish(count * 100 + 1)] == "2262-04-11T23:47:16.854775807Z"
