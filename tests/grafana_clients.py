"""Clients of the Grafana interface (`auditrail serve --grafana-port`) for tests: the entry point for any test
that runs SQL the way Grafana's ClickHouse data source does.

    for svc in seeded_service(tmp, "--grafana-port", str(port)):   # test_store_service: 3 tenants' events
        grafana = Grafana(svc, port)
        grafana.client(token).query(sql)                          # clickhouse-connect over HTTP
        go_results(grafana.url, token, [sql, ...], tmp)           # clickhouse-go, the data source's client

Tokens: ``grafana.read_all`` (every tenant), ``svc.read_acme`` / ``svc.read_globex`` (one tenant each).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import clickhouse_connect

from go_tool import go_binary
from test_store_service import Service, cli, token_of

GO_MODULE = Path(__file__).resolve().parent / "grafana_go"


class Grafana:
    """The seeded service and its Grafana interface."""

    def __init__(self, svc: Service, port: int) -> None:
        self.svc = svc
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.read_all = token_of(cli("tokens", "create", "--tenant", "*", "--scope", "read", env=svc.env))

    def client(self, token: str, **settings: object):
        """clickhouse-connect over HTTP, as a user would point it at the interface (user free, password token)."""
        return clickhouse_connect.get_client(host="127.0.0.1", port=self.port, username="grafana", password=token,
                                             database="auditrail", settings=settings or None)


def go_results(url: str, token: str, queries: list[str], tmp: Path) -> list[dict]:
    """Run `queries` through clickhouse-go in HTTP mode (the data source's client); their results, in order:
    {"sql", "columns", "rows" (values as Go prints them), "error"}."""
    cases, out = tmp / "cases.json", tmp / "results.json"
    cases.write_text(json.dumps(queries))
    env = dict(os.environ, AUDITRAIL_GRAFANA_ADDR=url.removeprefix("http://"), AUDITRAIL_GRAFANA_TOKEN=token,
               AUDITRAIL_GRAFANA_CASES=str(cases), AUDITRAIL_GRAFANA_OUT=str(out))
    done = subprocess.run([go_binary("the clickhouse-go (Grafana data source client) test"), "test", "-count=1", "./..."], cwd=GO_MODULE, env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return json.loads(out.read_text())
