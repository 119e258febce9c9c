"""Builds the provisioned dashboards (grafana/dashboards/*.json) from grafana/queries.py with Grafana's
foundation SDK (grafana-foundation-sdk, the `grafana` extra).

    .venv/bin/python grafana/generate.py [--out grafana/dashboards]

Deterministic: the same queries give byte-identical files (tests/test_grafana_queries.py reruns it).
The SDK ships no ClickHouse query type, so :class:`ClickHouseQuery` is one, with the fields the
grafana-clickhouse-datasource (v4) stores for a raw SQL query, registered as that plugin's dataquery variant
so the SDK's own ``Dashboard.from_json`` reads the files back.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Self

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import stat, table, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models.dashboard import Dashboard as DashboardModel
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync, DataSourceRef, DataTransformerConfig, GridPos, VariableRefresh, VariableSort,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from grafana.queries import DASHBOARDS, DATASOURCE, Dashboard, Panel, Variable  # noqa: E402

OUT = Path(__file__).resolve().parent / "dashboards"
# The data source's query formats (src/types/queryBuilder.ts Format): time series rows are pivoted by it.
FORMAT_TIMESERIES, FORMAT_TABLE = 0, 1


class ClickHouseQuery(cogvariants.Dataquery):
    """A grafana-clickhouse-datasource raw SQL query, as the plugin stores it in a panel's targets."""

    def __init__(self, ref_id: str = "A", raw_sql: str = "", fmt: int = FORMAT_TABLE, query_type: str = "table",
                 datasource: DataSourceRef | None = None) -> None:
        self.ref_id, self.raw_sql, self.format, self.query_type = ref_id, raw_sql, fmt, query_type
        self.datasource = datasource

    def to_json(self) -> dict[str, object]:
        """The target's JSON."""
        out: dict[str, object] = {"refId": self.ref_id, "editorType": "sql", "format": self.format,
                                  "queryType": self.query_type, "rawSql": self.raw_sql}
        if self.datasource is not None:
            out["datasource"] = self.datasource
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        """Back from a target's JSON (the SDK's Dashboard.from_json calls it for this plugin's targets)."""
        source = data.get("datasource")
        return cls(data.get("refId", "A"), data.get("rawSql", ""), data.get("format", FORMAT_TABLE),
                   data.get("queryType", "table"), DataSourceRef.from_json(source) if source else None)


class PanelRowsQuery(cogvariants.Dataquery):
    """A target of Grafana's "-- Dashboard --" data source: another panel's rows, no query of its own."""

    def __init__(self, panel_id: int = 0, ref_id: str = "A") -> None:
        self.panel_id, self.ref_id = panel_id, ref_id

    def to_json(self) -> dict[str, object]:
        """The target's JSON."""
        return {"refId": self.ref_id, "datasource": _reused_rows(), "panelId": self.panel_id}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        """Back from a target's JSON."""
        return cls(data.get("panelId", 0), data.get("refId", "A"))


class QueryBuilder(cogbuilder.Builder[cogvariants.Dataquery]):
    """Builds one target (what panel builders' with_target takes)."""

    def __init__(self, query: cogvariants.Dataquery) -> None:
        self._internal = query

    def build(self) -> cogvariants.Dataquery:
        """The query."""
        return self._internal


def register_clickhouse() -> None:
    """The SDK's panel and query types, and this plugin's targets as ClickHouseQuery (not an unknown-query bag)."""
    register_default_plugins()
    cogruntime.register_dataquery_variant(cogruntime.DataqueryConfig(
        identifier=DATASOURCE["type"], from_json_hook=ClickHouseQuery.from_json))
    cogruntime.register_dataquery_variant(cogruntime.DataqueryConfig(
        identifier=REUSED_ROWS["type"], from_json_hook=PanelRowsQuery.from_json))


def _datasource() -> DataSourceRef:
    return DataSourceRef(type_val=DATASOURCE["type"], uid=DATASOURCE["uid"])


def _reused_rows() -> DataSourceRef:
    return DataSourceRef(type_val=REUSED_ROWS["type"], uid=REUSED_ROWS["uid"])


_PANELS = {"timeseries": timeseries.Panel, "table": table.Panel, "stat": stat.Panel}
# Grafana's built-in data source of another panel's rows.
REUSED_ROWS = {"type": "datasource", "uid": "-- Dashboard --"}


def _panel(panel: Panel, panel_id: int, grid: GridPos, ids: dict[str, int]) -> Any:
    built = _PANELS[panel.kind]().id(panel_id).title(panel.title).grid_pos(grid)
    if panel.reuses:
        built = built.datasource(_reused_rows()).with_target(QueryBuilder(PanelRowsQuery(ids[panel.reuses])))
        for transformation in panel.transformations:
            built = built.with_transformation(DataTransformerConfig(id_val=transformation["id"],
                                                                    options=transformation["options"]))
    else:
        fmt, query_type = (FORMAT_TIMESERIES, "timeseries") if panel.timeseries else (FORMAT_TABLE, "table")
        built = built.datasource(_datasource()).with_target(
            QueryBuilder(ClickHouseQuery("A", panel.sql, fmt, query_type, _datasource())))
    if panel.description:
        built = built.description(panel.description)
    if panel.title.startswith("Ingest lag"):
        built = built.unit("s")
    return built


def _variable(variable: Variable) -> dash.QueryVariable:
    built = (dash.QueryVariable(variable.name).label(variable.label).datasource(_datasource())
             .query(variable.sql).refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
             .sort(VariableSort.ALPHABETICAL_ASC).multi(variable.multi).include_all(variable.multi))
    return built


def build(spec: Dashboard) -> dict[str, object]:
    """One dashboard's JSON model, panels laid out left to right in a 24-column grid."""
    board = (dash.Dashboard(spec.title).uid(spec.uid).description(spec.description).tags(["auditrail"])
             .editable().tooltip(DashboardCursorSync.CROSSHAIR).time("now-24h", "now").refresh(spec.refresh)
             .timezone("utc"))
    for variable in spec.variables:
        board = board.with_variable(_variable(variable))
    x = y = row_height = 0
    ids = {panel.title: panel_id for panel_id, panel in enumerate(spec.panels, 1)}
    for panel_id, panel in enumerate(spec.panels, 1):
        if x + panel.width > 24:
            x, y, row_height = 0, y + row_height, 0
        board = board.with_panel(_panel(panel, panel_id, GridPos(h=panel.height, w=panel.width, x=x, y=y), ids))
        x, row_height = x + panel.width, max(row_height, panel.height)
    # Through the SDK's model once more: the file is its canonical form (what from_json/to_json keep).
    register_clickhouse()
    built = json.loads(json.dumps(board.build(), cls=JSONEncoder))
    return json.loads(json.dumps(DashboardModel.from_json(built), cls=JSONEncoder))


def write(out: Path) -> list[Path]:
    """Every dashboard's file in `out`, sorted keys, two-space indent, one trailing newline."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for spec in DASHBOARDS:
        path = out / f"{spec.uid}.json"
        path.write_text(json.dumps(build(spec), indent=2, sort_keys=True, ensure_ascii=False) + "\n",
                        encoding="utf-8")
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT)
    for path in write(parser.parse_args().out):
        print(path)


if __name__ == "__main__":
    main()
