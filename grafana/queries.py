"""Every Grafana panel's and variable's SQL, and the expansion the ClickHouse data source applies to it.

One home for the dashboards' SQL: generate.py builds the dashboards from it, tests/test_grafana_queries.py
runs each query on chDB, benchmarks/grafana.py times each dashboard's refresh. Queries read
``auditrail.audit_events_unique`` (typed columns, each event once) and ``auditrail.chain_state``; only the
"retried copies" panel reads ``otel_logs``, because counting them is its point.

:func:`expand` does what grafana-clickhouse-datasource (v4) does to a query before ClickHouse sees it:
the frontend replaces ``$__conditionalAll(cond, $var)`` by ``1=1`` when the variable is All or empty
(``applyConditionalAll``), then Grafana interpolates ``${var:singlequote}``; the backend expands the time
macros (``pkg/macros/macros.go``): ``$__timeFilter(c)`` -> ``c >= toDateTime(from) AND c <= toDateTime(to)``
(Unix seconds), ``$__fromTime``/``$__toTime`` -> ``toDateTime(s)``, ``$__interval_s`` -> the panel's
interval in whole seconds (at least 1).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

DATASOURCE = {"type": "grafana-clickhouse-datasource", "uid": "auditrail-clickhouse"}
EVENTS = "auditrail.audit_events_unique"
ALL = "$__all"  # Grafana's value of a variable set to All (no custom all value)

# --- the pieces every dashboard shares ----------------------------------------------------------------
TENANTS_ANY = "$__conditionalAll(tenant_id IN (${tenant:singlequote}), $tenant)"
BUCKET = "toStartOfInterval(timestamp, INTERVAL $__interval_s second) AS time"


@dataclass(frozen=True)
class Variable:
    """A query variable of a dashboard (its options come from `sql`)."""

    name: str
    label: str
    sql: str
    multi: bool = True  # multi-select with an All option


@dataclass(frozen=True)
class Panel:
    """One panel: its visualization, SQL, and the columns its result has (tests check them)."""

    title: str
    kind: str  # timeseries | table | stat | barchart
    sql: str
    columns: tuple[str, ...]
    description: str = ""
    width: int = 12
    height: int = 8
    # Grafana shows the rows of the panel of this title (its "-- Dashboard --" data source) through
    # `transformations` instead of sending a query: `sql` is then what they show as SQL (tests check that
    # both agree), and the engine runs the source panel's query once a refresh, not twice.
    reuses: str = ""
    transformations: tuple[dict, ...] = ()

    @property
    def timeseries(self) -> bool:
        """Time series panels ask the data source for the time series format (long rows are pivoted)."""
        return self.kind == "timeseries"


@dataclass(frozen=True)
class Dashboard:
    """A dashboard: uid, title, variables, panels in layout order."""

    uid: str
    title: str
    description: str
    variables: tuple[Variable, ...] = ()
    panels: tuple[Panel, ...] = field(default_factory=tuple)
    refresh: str = "1m"  # Grafana's auto-refresh


def _over_time(title: str, dimension: str, where: str = "", description: str = "") -> Panel:
    """Events per interval split by one dimension (long format: the data source pivots it to series)."""
    return Panel(title, "timeseries",
                 f"SELECT {BUCKET}, {dimension} AS series, count() AS events\nFROM {EVENTS}\n"
                 f"WHERE $__timeFilter(timestamp) AND {TENANTS_ANY}{where}\nGROUP BY time, series\nORDER BY time, series",
                 ("time", "series", "events"), description, width=8)


TENANT_VARIABLE = Variable("tenant", "Tenant",
                           f"SELECT DISTINCT tenant_id FROM {EVENTS} WHERE $__timeFilter(timestamp) ORDER BY tenant_id")

OVERVIEW = Dashboard(
    "auditrail-overview", "Audit overview",
    "Every tenant's audit events: volume by type, risk and tenant, the risky actions, failures, actors, new addresses.",
    (TENANT_VARIABLE,),
    (
        _over_time("Events by type", "event_type"),
        _over_time("Events by risk", "ifNull(risk, 'unset')"),
        # The 10 busiest tenants of the range as their own series, the rest as one (ranked on audit_events
        # without FINAL: a retried copy may nudge a rank, never a count).
        _over_time("Events by tenant",
                   "if(tenant_id IN (SELECT tenant_id FROM auditrail.audit_events WHERE $__timeFilter(timestamp)\n"
                   f"    AND {TENANTS_ANY} GROUP BY tenant_id ORDER BY count() DESC, tenant_id LIMIT 10), tenant_id, 'other')",
                   description="The 10 busiest tenants, the others summed as 'other'."),
        Panel("High and critical actions", "table",
              "SELECT timestamp AS time, tenant_id AS tenant, event_type, actor, impersonator_id AS impersonator,\n"
              "       risk, outcome, source_ip, reason, event_id\n"
              f"FROM {EVENTS}\nWHERE $__timeFilter(timestamp) AND {TENANTS_ANY} AND risk IN ('high', 'critical')\n"
              "ORDER BY timestamp DESC\nLIMIT 500",
              ("time", "tenant", "event_type", "actor", "impersonator", "risk", "outcome", "source_ip", "reason",
               "event_id"), "Newest first, at most 500.", width=24),
        Panel("Failures", "table",
              "SELECT timestamp AS time, tenant_id AS tenant, event_type, actor, risk, reason, event_id\n"
              f"FROM {EVENTS}\nWHERE $__timeFilter(timestamp) AND {TENANTS_ANY} AND outcome = 'failure'\n"
              "ORDER BY timestamp DESC\nLIMIT 500",
              ("time", "tenant", "event_type", "actor", "risk", "reason", "event_id"),
              "Actions whose audited call raised (outcome failure), newest first.", width=12),
        Panel("Top actors", "table",
              "SELECT actor, count() AS events, countIf(risk IN ('high', 'critical')) AS high_risk,\n"
              "       countIf(outcome = 'failure') AS failures, uniqExact(tenant_id) AS tenants, max(timestamp) AS last_seen\n"
              f"FROM {EVENTS}\nWHERE $__timeFilter(timestamp) AND {TENANTS_ANY} AND actor IS NOT NULL\n"
              "GROUP BY actor\nORDER BY events DESC, actor\nLIMIT 20",
              ("actor", "events", "high_risk", "failures", "tenants", "last_seen"), width=12),
        Panel("Source IPs new this period", "table",
              # source_ips (migration 0031) keeps each tenant's first and last sighting of an address.
              "SELECT source_ip, min(first_seen) AS first_seen, max(last_seen) AS last_seen,\n"
              "       arraySort(groupUniqArray(10)(tenant_id)) AS tenants\n"
              f"FROM auditrail.source_ips\nWHERE {TENANTS_ANY}\n"
              "GROUP BY source_ip\nHAVING first_seen >= $__fromTime AND first_seen <= $__toTime\n"
              "ORDER BY first_seen DESC, source_ip\nLIMIT 200",
              ("source_ip", "first_seen", "last_seen", "tenants"),
              "Client addresses first seen in the range (for the chosen tenants), newest first.", width=24),
    ),
)

_TENANT = "tenant_id = ${tenant:singlequote}"
_DRILL_FILTERS = (f"{_TENANT} AND $__timeFilter(timestamp)\n"
                  "  AND $__conditionalAll(event_type IN (${event_type:singlequote}), $event_type)\n"
                  "  AND $__conditionalAll(actor IN (${actor:singlequote}), $actor)")

DRILL_DOWN = Dashboard(
    "auditrail-tenant", "Tenant drill-down",
    "One tenant's timeline with before/after values, its prompt and policy changes, its kill switches.",
    (
        Variable("tenant", "Tenant", TENANT_VARIABLE.sql, multi=False),
        Variable("event_type", "Event type",
                 f"SELECT DISTINCT event_type FROM {EVENTS} WHERE {_TENANT} AND $__timeFilter(timestamp) "
                 "ORDER BY event_type"),
        Variable("actor", "Actor",
                 f"SELECT DISTINCT assumeNotNull(actor) FROM {EVENTS} WHERE {_TENANT} AND $__timeFilter(timestamp) "
                 "AND actor IS NOT NULL ORDER BY 1"),
    ),
    (
        Panel("Events by type", "timeseries",
              f"SELECT {BUCKET}, event_type AS series, count() AS events\nFROM {EVENTS}\nWHERE {_DRILL_FILTERS}\n"
              "GROUP BY time, series\nORDER BY time, series",
              ("time", "series", "events"), width=24, height=6),
        Panel("Timeline", "table",
              "SELECT timestamp AS time, event_type, actor, actor_type, impersonator_id AS impersonator, source_ip,\n"
              "       outcome, risk, reason, JSONExtractRaw(ifNull(payload, '{}'), 'before') AS before,\n"
              "       JSONExtractRaw(ifNull(payload, '{}'), 'after') AS after, payload, event_id\n"
              f"FROM {EVENTS}\nWHERE {_DRILL_FILTERS}\nORDER BY timestamp DESC\nLIMIT 1000",
              ("time", "event_type", "actor", "actor_type", "impersonator", "source_ip", "outcome", "risk", "reason",
               "before", "after", "payload", "event_id"),
              "Newest first, at most 1000; before/after are the payload's objects, as emitted.", width=24, height=12),
        Panel("Prompt and policy changes", "table",
              "SELECT timestamp AS time, event_type, actor, reason,\n"
              "       JSONExtractRaw(ifNull(payload, '{}'), 'before') AS before,\n"
              "       JSONExtractRaw(ifNull(payload, '{}'), 'after') AS after\n"
              f"FROM {EVENTS}\nWHERE {_TENANT} AND $__timeFilter(timestamp)\n"
              "  AND (startsWith(event_type, 'prompt.') OR startsWith(event_type, 'policy.'))\nORDER BY timestamp DESC",
              ("time", "event_type", "actor", "reason", "before", "after"), width=12),
        Panel("Kill switches", "table",
              # Each disable meets the first enable of the same feature and scope after it (ASOF): an open
              # one is still disabled, its duration counted to the range's end.
              "SELECT d.feature AS feature, d.timestamp AS disabled_at, d.actor AS disabled_by, d.reason AS reason,\n"
              "       if(e.timestamp = 0, NULL, e.timestamp) AS enabled_at, if(e.timestamp = 0, NULL, e.actor) AS enabled_by,\n"
              "       dateDiff('second', d.timestamp, if(e.timestamp = 0, least(now64(3), $__toTime), e.timestamp))\n"
              "           AS disabled_seconds\n"
              "FROM (SELECT timestamp, actor, reason, JSONExtractString(ifNull(payload, '{}'), 'feature') AS feature\n"
              f"      FROM {EVENTS} WHERE {_TENANT} AND $__timeFilter(timestamp)\n"
              "        AND event_type = 'killswitch.disable' AND outcome = 'success') AS d\n"
              "ASOF LEFT JOIN (SELECT timestamp, actor, JSONExtractString(ifNull(payload, '{}'), 'feature') AS feature\n"
              f"      FROM {EVENTS} WHERE {_TENANT} AND timestamp >= $__fromTime\n"
              "        AND event_type = 'killswitch.enable' AND outcome = 'success') AS e\n"
              "ON d.feature = e.feature AND e.timestamp >= d.timestamp\nORDER BY disabled_at DESC",
              ("feature", "disabled_at", "disabled_by", "reason", "enabled_at", "enabled_by", "disabled_seconds"),
              "Each disable with the enable that ended it; still disabled: no enable, counted to now.", width=12),
    ),
)

_SESSION = "coalesce(impersonation_id, nullIf(JSONExtractString(ifNull(payload, '{}'), 'session'), ''))"

APPROVALS = Dashboard(
    "auditrail-impersonation-approvals", "Impersonation and approvals",
    "Impersonation sessions with the actions inside them; dual approvals requested, granted, denied, expired, used.",
    (TENANT_VARIABLE,),
    (
        Panel("Impersonation sessions", "table",
              f"SELECT {_SESSION} AS session, any(tenant_id) AS tenant,\n"
              "       anyIf(actor, event_type = 'admin.impersonation.start') AS impersonator,\n"
              "       anyIf(JSONExtractString(ifNull(payload, '{}'), 'impersonated'),\n"
              "             event_type = 'admin.impersonation.start') AS impersonated,\n"
              "       minIf(timestamp, event_type = 'admin.impersonation.start') AS started,\n"
              "       maxIf(timestamp, event_type = 'admin.impersonation.end') AS ended,\n"
              "       countIf(NOT startsWith(event_type, 'admin.impersonation.')) AS actions,\n"
              "       arraySort(groupUniqArrayIf(event_type, NOT startsWith(event_type, 'admin.impersonation.')))\n"
              "           AS action_types\n"
              f"FROM {EVENTS}\nWHERE $__timeFilter(timestamp) AND {TENANTS_ANY}\n"
              # the cheap columns first: the payload is parsed only for the session's own events
              "  AND (impersonation_id IS NOT NULL OR startsWith(event_type, 'admin.impersonation.'))\n"
              f"  AND {_SESSION} IS NOT NULL\n"
              "GROUP BY session\nORDER BY started DESC",
              ("session", "tenant", "impersonator", "impersonated", "started", "ended", "actions", "action_types"),
              "One row per session (audit.impersonation.id); ended is empty while it runs.", width=24),
        Panel("Actions inside impersonation sessions", "table",
              "SELECT timestamp AS time, tenant_id AS tenant, impersonator_id AS impersonator, actor AS as_user,\n"
              "       event_type, risk, outcome, impersonation_id AS session\n"
              f"FROM {EVENTS}\nWHERE $__timeFilter(timestamp) AND {TENANTS_ANY} AND impersonator_id IS NOT NULL\n"
              "  AND NOT startsWith(event_type, 'admin.impersonation.')\nORDER BY timestamp DESC\nLIMIT 500",
              ("time", "tenant", "impersonator", "as_user", "event_type", "risk", "outcome", "session"), width=24),
        _over_time("Approval events", "event_type", " AND startsWith(event_type, 'approval.')"),
        Panel("Approvals", "table",
              # The state is the newest approval.* event of the request; pending = requested, nothing since.
              "SELECT approval_id, any(tenant_id) AS tenant,\n"
              "       anyIf(JSONExtractString(ifNull(payload, '{}'), 'action'), event_type = 'approval.requested') AS action,\n"
              "       anyIf(actor, event_type = 'approval.requested') AS requester,\n"
              "       minIf(timestamp, event_type = 'approval.requested') AS requested_at,\n"
              "       multiIf(argMax(event_type, timestamp) = 'approval.requested', 'pending',\n"
              "               replaceOne(argMax(event_type, timestamp), 'approval.', '')) AS state,\n"
              "       anyIf(actor, event_type IN ('approval.granted', 'approval.denied')) AS decided_by,\n"
              "       anyIf(reason, event_type IN ('approval.granted', 'approval.denied')) AS decision_reason\n"
              f"FROM {EVENTS}\nWHERE $__timeFilter(timestamp) AND {TENANTS_ANY}\n"
              "  AND startsWith(event_type, 'approval.') AND approval_id IS NOT NULL\n"
              "GROUP BY approval_id\nORDER BY requested_at DESC",
              ("approval_id", "tenant", "action", "requester", "requested_at", "state", "decided_by",
               "decision_reason"), width=16),
        Panel("Self-approvals recorded", "table",
              # The service refuses (403) an approval by the requester or their impersonator before any event:
              # a row here means an approval.granted slipped past that check.
              "SELECT timestamp AS time, tenant_id AS tenant, approval_id, actor AS approver,\n"
              "       JSONExtractString(ifNull(payload, '{}'), 'requester') AS requester\n"
              f"FROM {EVENTS}\nWHERE $__timeFilter(timestamp) AND {TENANTS_ANY} AND event_type = 'approval.granted'\n"
              "  AND lower(ifNull(actor, '')) = lower(JSONExtractString(ifNull(payload, '{}'), 'requester'))\n"
              "ORDER BY timestamp DESC",
              ("time", "tenant", "approval_id", "approver", "requester"),
              "Grants by the requester: always empty unless the self-approval check failed. Refused attempts "
              "are answered 403 and not recorded as events.", width=8),
    ),
)

INTEGRITY = Dashboard(
    "auditrail-integrity", "Integrity and pipeline health",
    "Hash chain state per tenant, unanchored tails, ingest lag, events per source service, retried copies.",
    (TENANT_VARIABLE,),
    (
        Panel("Chain state", "table",
              "SELECT tenant_id AS tenant, chain_id, state, events, first_seq, last_seq, missing_seqs, broken_links,\n"
              "       anchored_seq, unanchored_events, last_checkpoint_at, last_event_at\n"
              f"FROM auditrail.chain_state\nWHERE {TENANTS_ANY}\nORDER BY state = 'ok', tenant, chain_id",
              ("tenant", "chain_id", "state", "events", "first_seq", "last_seq", "missing_seqs", "broken_links",
               "anchored_seq", "unanchored_events", "last_checkpoint_at", "last_event_at"),
              "Whole chains (not only the range): seq gaps and prev_hash links (view chain_state); content "
              "hashes and signatures: `auditrail verify --tenant`.", width=24),
        Panel("Unanchored tails", "table",
              "SELECT tenant_id AS tenant, chain_id, unanchored_events, last_checkpoint_at, last_event_at\n"
              f"FROM auditrail.chain_state\nWHERE {TENANTS_ANY} AND unanchored_events > 0\n"
              "ORDER BY unanchored_events DESC",
              ("tenant", "chain_id", "unanchored_events", "last_checkpoint_at", "last_event_at"),
              "Events after a chain's last signed checkpoint.", width=12,
              # chain_state reads every chained event (~1 s at 10M): the chain state panel's rows, filtered.
              reuses="Chain state", transformations=(
                  {"id": "filterByValue", "options": {
                      "type": "include", "match": "all",
                      "filters": [{"fieldName": "unanchored_events",
                                   "config": {"id": "greater", "options": {"value": 0}}}]}},
                  {"id": "organize", "options": {
                      "excludeByName": dict.fromkeys(("state", "events", "first_seq", "last_seq", "missing_seqs",
                                                      "broken_links", "anchored_seq"), True),
                      "indexByName": {"tenant": 0, "chain_id": 1, "unanchored_events": 2, "last_checkpoint_at": 3,
                                      "last_event_at": 4}}},
                  {"id": "sortBy", "options": {"sort": [{"field": "unanchored_events", "desc": True}]}})),
        Panel("Ingest lag (s)", "timeseries",
              f"SELECT {BUCKET},\n"
              "       quantile(0.5)((toUnixTimestamp64Milli(inserted_at) - toUnixTimestamp64Milli(timestamp)) / 1000)"
              " AS p50,\n"
              "       quantile(0.99)((toUnixTimestamp64Milli(inserted_at) - toUnixTimestamp64Milli(timestamp)) / 1000)"
              " AS p99,\n"
              "       max((toUnixTimestamp64Milli(inserted_at) - toUnixTimestamp64Milli(timestamp)) / 1000) AS max\n"
              f"FROM {EVENTS}\nWHERE $__timeFilter(timestamp) AND {TENANTS_ANY}\nGROUP BY time\nORDER BY time",
              ("time", "p50", "p99", "max"), "inserted_at - timestamp: event time to stored.", width=12),
        _over_time("Events per source service", "service_name"),
        Panel("Retried copies in otel_logs", "stat",
              # otel_logs keeps every copy a retry delivered (the data source's OTel log views read it);
              # audit_events_unique holds each event once. Counted on plain columns: reading LogAttributes
              # for the event id took 11.7 s over 30 days of 10M rows (benchmarks/grafana.py), this 0.1 s.
              "SELECT (SELECT count() FROM auditrail.otel_logs\n"
              "        WHERE $__timeFilter(Timestamp) AND ScopeName = 'auditrail') AS otel_logs_rows,\n"
              f"       (SELECT count() FROM {EVENTS} WHERE $__timeFilter(timestamp)) AS events,\n"
              "       greatest(toInt64(otel_logs_rows) - toInt64(events), 0) AS retried_copies",
              ("otel_logs_rows", "events", "retried_copies"),
              "Every tenant: auditrail's records in otel_logs beside distinct events, the difference being "
              "the copies retries left there (events of other emitters count as events only).", width=8),
    ),
    # chain_state reads whole chains (seconds over 10M chained events): refreshed every 5 minutes.
    refresh="5m",
)


DASHBOARDS = (OVERVIEW, DRILL_DOWN, APPROVALS, INTEGRITY)


# --- expansion: what the data source sends ------------------------------------------------------------

def _macro_args(text: str, open_paren: int) -> tuple[list[str], int]:
    """The comma-separated arguments of a macro call starting at `open_paren`, and the index after `)`."""
    depth, args, start, quote = 0, [], open_paren + 1, ""
    for i in range(open_paren, len(text)):
        ch = text[i]
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                args.append(text[start:i].strip())
                return args, i + 1
        elif ch == "," and depth == 1:
            args.append(text[start:i].strip())
            start = i + 1
    raise ValueError(f"unbalanced macro call at {open_paren}: {text[open_paren:open_paren + 40]!r}")


def conditional_all(sql: str, values: dict[str, list[str] | str]) -> str:
    """The frontend's applyConditionalAll: `1=1` when the variable is All or empty, else the condition."""
    macro = "$__conditionalAll("
    while (at := sql.rfind(macro)) != -1:
        args, end = _macro_args(sql, at + len(macro) - 1)
        if len(args) != 2:
            raise ValueError(f"$__conditionalAll takes 2 arguments, got {args}")
        value = values.get(args[1].lstrip("$").strip("{}"), "")
        empty = value in ("", ALL, [ALL], [])
        sql = sql[:at] + ("1=1" if empty else args[0]) + sql[end:]
    return sql


def _single_quote(value: list[str] | str) -> str:
    """Grafana's `singlequote` format: each value quoted, quotes escaped, comma-joined."""
    items = value if isinstance(value, list) else [value]
    return ",".join("'" + item.replace("\\", "\\\\").replace("'", "\\'") + "'" for item in items)


def interpolate(sql: str, values: dict[str, list[str] | str]) -> str:
    """Grafana's template interpolation of `${name:singlequote}` and `$name` (the forms the dashboards use)."""
    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3)
        if name not in values:
            raise KeyError(f"variable {name!r} has no value")
        value = values[name]
        if match.group(2) == "singlequote" or isinstance(value, list):
            return _single_quote(value)
        return value
    return re.sub(r"\$\{(\w+)(?::(\w+))?\}|\$(?!__)(\w+)", replace, sql)


def _seconds(moment: datetime) -> int:
    return int(moment.timestamp())


def time_macros(sql: str, start: datetime, end: datetime, interval: timedelta) -> str:
    """The backend's macros (pkg/macros/macros.go) for the ones the dashboards use."""
    out, pos = [], 0
    for match in re.finditer(r"\$__timeFilter\(", sql):
        args, end_at = _macro_args(sql, match.end() - 1)
        if len(args) != 1:
            raise ValueError(f"$__timeFilter takes 1 argument, got {args}")
        out.append(sql[pos:match.start()])
        out.append(f"{args[0]} >= toDateTime({_seconds(start)}) AND {args[0]} <= toDateTime({_seconds(end)})")
        pos = end_at
    sql = "".join(out) + sql[pos:]
    sql = re.sub(r"\$__fromTime\b(?!_)", f"toDateTime({_seconds(start)})", sql)
    sql = re.sub(r"\$__toTime\b(?!_)", f"toDateTime({_seconds(end)})", sql)
    sql = re.sub(r"\$__interval_s\b", str(max(int(interval.total_seconds()), 1)), sql)
    if "$__" in sql:
        raise ValueError(f"a macro left unexpanded: {sql[sql.index('$__'):][:40]!r}")
    return sql


# Grafana's interval: the range over the panel's max data points, rounded to a familiar step.
_STEPS = (1, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 10800, 21600, 43200, 86400)


def interval_for(start: datetime, end: datetime, max_points: int = 1000) -> timedelta:
    """The panel interval Grafana would send: range / max data points, rounded up to a step in _STEPS."""
    raw = (end - start).total_seconds() / max_points
    return timedelta(seconds=next((s for s in _STEPS if s >= raw), _STEPS[-1]))


def expand(sql: str, start: datetime, end: datetime, values: dict[str, list[str] | str] | None = None,
           interval: timedelta | None = None) -> str:
    """`sql` as ClickHouse receives it from the data source for this range and these variable values."""
    values = values or {}
    sql = interpolate(conditional_all(sql, values), values)
    return time_macros(sql, start, end, interval or interval_for(start, end))


def dashboard_queries(dashboard: Dashboard, start: datetime, end: datetime,
                      values: dict[str, list[str] | str] | None = None) -> dict[str, str]:
    """Every expanded query one dashboard refresh sends, by panel title (benchmarks/grafana.py): a panel that
    reuses another's rows sends none."""
    return {panel.title: expand(panel.sql, start, end, values) for panel in dashboard.panels if not panel.reuses}
