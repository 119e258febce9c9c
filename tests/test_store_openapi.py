"""Schemathesis fuzzes the live service from its own OpenAPI document: no input makes it fail (5xx), and with
every check (``--checks all``) the document and the service agree.

Every operation is called with generated parameters and bodies, as a tenant-scoped read token and as an
admin token; the check is that the server never errors and that documented JSON responses match their
schema. Then the schemathesis CLI runs all its phases and all its checks (status codes, content types and
headers, schema conformance of responses, acceptance of valid and refusal of invalid input, undeclared
methods and Allow headers, auth) as an admin, a read and an ingest token, bounded in time and seeded.
"""

from __future__ import annotations

from collections.abc import Iterator
import subprocess
import sys
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import response_schema_conformance  # noqa: E402

from test_store_service import cli, start_service, stop, token_of  # noqa: E402


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    tmp: Path = tmp_path_factory.mktemp("openapi")
    process, base, env = start_service(tmp)
    try:
        yield {"base": base, "tmp": str(tmp), "env": env,  # type: ignore[dict-item]
               "read": token_of(cli("tokens", "create", "--tenant", "acme", "--scope", "read", env=env)),
               "admin": token_of(cli("tokens", "create", "--tenant", "*", "--scope", "admin", env=env)),
               "ingest": token_of(cli("tokens", "create", "--tenant", "*", "--scope", "ingest", env=env))}
    finally:
        stop(process)


def _fuzz(live: dict[str, str], who: str) -> int:
    """Run every operation of the live schema with generated inputs; the number of operations."""
    api = schemathesis.openapi.from_url(live["base"] + "/openapi.json")
    operations = [result.ok() for result in api.get_all_operations()]
    for operation in operations:

        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=operation.as_strategy())
        def run(case: object) -> None:
            case.call_and_validate(base_url=live["base"], headers={"Authorization": f"Bearer {live[who]}"},
                                   checks=[not_a_server_error, response_schema_conformance])

        run()
    return len(operations)


def test_no_input_makes_the_service_fail_for_a_tenant_reader(live: dict[str, str]) -> None:
    assert _fuzz(live, "read") >= 7


def test_no_input_makes_the_service_fail_for_an_admin(live: dict[str, str]) -> None:
    assert _fuzz(live, "admin") >= 7


# Bounded: a fixed seed (a failure reproduces) and a time budget per token; the coverage phase alone sends a
# few thousand requests.
SCHEMATHESIS_SECONDS = 45


def _fresh_token(live: dict[str, str], who: str) -> str:
    """A new token (an admin run's stateful phase revokes the tokens it lists, its own included)."""
    tenant, scope = {"admin": ("*", "admin"), "read": ("acme", "read"), "ingest": ("*", "ingest")}[who]
    return token_of(cli("tokens", "create", "--tenant", tenant, "--scope", scope, env=live["env"]))


@pytest.mark.parametrize("who", ["read", "ingest", "admin"])
def test_every_schemathesis_check_passes(live: dict[str, str], who: str) -> None:
    result = subprocess.run(
        [str(Path(sys.executable).with_name("schemathesis")), "run", live["base"] + "/openapi.json", "--checks", "all",
         "-H", f"Authorization: Bearer {_fresh_token(live, who)}", "--max-examples", "10", "--seed", "1", "--workers", "1",
         "--max-time", str(SCHEMATHESIS_SECONDS), "--generation-database", "none", "--request-timeout", "30",
         "--no-color"], capture_output=True, text=True, timeout=SCHEMATHESIS_SECONDS * 4,
        cwd=live["tmp"])  # (it writes a .schemathesis/ directory where it runs)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "Failures:" not in result.stdout and " passed" in result.stdout  # (restricted tokens: a 401/403 warning)


def test_the_document_lists_every_response_and_allow_names_every_method(live: dict[str, str]) -> None:
    import httpx

    document = httpx.get(live["base"] + "/openapi.json").json()
    codes = {(path, method): set(operation["responses"]) for path, item in document["paths"].items()
             for method, operation in item.items()}
    assert codes == {
        ("/v1/logs", "post"): {"200", "400", "401", "403", "408", "413"},
        ("/v1/tenants/{tenant}/events", "get"): {"200", "400", "401", "403", "422"},
        ("/v1/tenants/{tenant}/verify", "get"): {"200", "400", "401", "403", "422"},
        ("/v1/tenants/{tenant}/archive", "get"): {"200", "401", "403", "422"},
        ("/healthz", "get"): {"200"},
        ("/v1/admin/tokens", "post"): {"201", "400", "401", "403", "422"},
        ("/v1/admin/tokens", "get"): {"200", "401", "403", "422"},
        ("/v1/admin/tokens/{token_id}", "delete"): {"204", "401", "403", "404", "422"},
        ("/v1/approvals", "post"): {"200", "201", "202", "400", "401", "403", "422"},
        ("/v1/approvals", "get"): {"200", "401", "403", "422"},
        ("/v1/approvals/{approval_id}", "get"): {"200", "401", "403", "404", "422"},
        ("/v1/approvals/{approval_id}/approve", "post"): {"200", "400", "401", "403", "404", "409", "422"},
        ("/v1/approvals/{approval_id}/deny", "post"): {"200", "400", "401", "403", "404", "409", "422"},
        ("/v1/reviews/{tenant}/{month}/sign", "post"): {"201", "400", "401", "403", "404", "422"},
    }
    assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    headers = {"Authorization": f"Bearer {_fresh_token(live, 'admin')}"}
    options = httpx.options(live["base"] + "/v1/admin/tokens", headers=headers)
    assert options.status_code == 204 and options.headers["allow"] == "GET, HEAD, OPTIONS, POST"
    put = httpx.put(live["base"] + "/v1/admin/tokens", headers=headers)
    assert put.status_code == 405 and put.headers["allow"] == "GET, HEAD, OPTIONS, POST"
    forbidden = httpx.get(live["base"] + "/v1/tenants/globex/events",
                          headers={"Authorization": f"Bearer {_fresh_token(live, 'read')}"})
    assert forbidden.status_code == 403
    assert forbidden.json()["detail"].endswith("(read of tenant 'acme') may not read the events of tenant 'globex'")
