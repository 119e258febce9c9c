"""Grafana on the embedded store: a read-only, ClickHouse-compatible HTTP interface inside ``auditrail serve``.

Entry point (``auditrail serve --grafana-port N`` starts it; tests and benchmarks may start it directly)::

    GrafanaInterface(path, database, tokens, host="127.0.0.1", port=0, limits=Limits())
        .start() -> GrafanaInterface   # serving on a thread; .url is http://host:port
        .close()

Point the grafana-clickhouse-datasource at it in HTTP mode (user: anything, password: a ``read`` token).
"""

from .interface import GrafanaInterface, Limits

__all__ = ["GrafanaInterface", "Limits"]
