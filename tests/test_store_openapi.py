"""Schemathesis fuzzes the live service from its own OpenAPI document: no input makes it fail (5xx).

Every operation is called with generated parameters and bodies, as a tenant-scoped read token and as an
admin token; the check is that the server never errors and that documented JSON responses match their
schema.
"""

from __future__ import annotations

from collections.abc import Iterator
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
        yield {"base": base,
               "read": token_of(cli("tokens", "create", "--tenant", "acme", "--scope", "read", env=env)),
               "admin": token_of(cli("tokens", "create", "--tenant", "*", "--scope", "admin", env=env))}
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
