"""Per-tenant retention contracts and legal hold, enforced by ClickHouse TTL (`auditrail retention ...`).

Why TTL rendered from a table: ClickHouse deletes expired rows itself, during merges, so our code has no
DELETE path at all. chDB 26.9 (like ClickHouse) refuses ``dictGet`` in a TTL expression ("TTL expression
cannot contain non-deterministic functions"), and a per-row "expires at" column would need an UPDATE to
follow a contract change. So the contracts live in ``retention_contracts`` (append-only, its history is
evidence) and every change re-renders one deterministic TTL on ``audit_events`` and on ``otel_logs``::

    TTL toDateTime(least(greatest(event time s, receipt s) + 86400 * transform(tenant_id, [tenants], [days], 365),
                         4294967295))
        DELETE WHERE <that expiry> < 4294967295 AND NOT has([held tenants], tenant_id)

The clock starts at the later of the event's time and its receipt (``inserted_at``; ``otel_logs``: the column
``__auditrail_received_at``, migration 0011), so an accepted event is kept at least its contract from when the
store received it whatever time it carries; the arithmetic is in Int64 seconds, and an expiry past 2106-02-07
(the last second a DateTime names) never fires.

``transform`` is a hash lookup, so thousands of tenants cost little per row. The arrays travel as bound
parameters ({name:Array(String)}); the engine stores them as literals in the table's metadata, which on a
cluster is replicated with the ALTER (ON CLUSTER). ``MODIFY TTL`` then re-evaluates existing parts
(materialize_ttl_after_modify, a background mutation; we wait for it), so a shortened contract or a lifted
hold takes effect on old data, and rows are removed by the next merge or ``OPTIMIZE TABLE ... FINAL``.
"""

from __future__ import annotations

import argparse
import getpass
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .db import Store, StoreError, check_tenant, quote_identifier
from .migrate import installed_cluster

DEFAULT_DAYS = 365
MAX_DAYS = 36500  # 100 years: a typo guard, not a policy

# (table, its event time, its receipt time, its tenant expression): the places audit rows live.
_TTL_TARGETS = (
    ("audit_events", "timestamp", "inserted_at", "tenant_id"),
    ("otel_logs", "Timestamp", "`__auditrail_received_at`", "LogAttributes['audit.tenant_id']"),
)
# The last second a TTL can name (DateTime is UInt32 seconds: 2106-02-07 06:28:15 UTC).
_TTL_END = 4294967295
# The default contract's clause as a migration writes it (0011, 0012, 0036): with_contracts renders the store's
# contracts in its place. Its tenant expression follows from its event time column (_TTL_TARGETS).
_DEFAULT_TTL = re.compile(
    r"toDateTime\(least\(greatest\(toUnixTimestamp64Second\((?P<time>[^()]+)\), toUnixTimestamp64Second\("
    r"(?P<received>[^()]+)\)\) \+ 86400 \* 365, 4294967295\)\)\s+DELETE WHERE greatest\(toUnixTimestamp64Second\("
    r"(?P=time)\), toUnixTimestamp64Second\((?P=received)\)\) \+ 86400 \* 365 < 4294967295")
_TENANT_OF = {time_expr: tenant_expr for _, time_expr, _, tenant_expr in _TTL_TARGETS}


@dataclass(frozen=True)
class Contract:
    """A tenant's current retention: its latest row in retention_contracts."""

    tenant_id: str
    days: int
    hold: bool
    forced: bool
    changed_at: datetime | None
    changed_by: str


def contracts(store: Store) -> list[Contract]:
    """Every tenant with a contract other than the untouched default, by tenant."""
    rows = store.query(
        "SELECT tenant_id, argMax(days, changed_at), argMax(hold, changed_at), argMax(forced, changed_at),"
        f" max(changed_at), argMax(changed_by, changed_at) FROM {store.table('retention_contracts')}"
        " GROUP BY tenant_id ORDER BY tenant_id").result_rows
    return [Contract(t, int(d), bool(h), bool(f), at, by) for t, d, h, f, at, by in rows]


def contract(store: Store, tenant: str) -> Contract:
    """`tenant`'s contract (the default when none was set)."""
    for c in contracts(store):
        if c.tenant_id == tenant:
            return c
    return Contract(tenant, DEFAULT_DAYS, False, False, None, "")


def set_days(store: Store, tenant: str, days: int, *, force: bool = False, changed_by: str | None = None) -> Contract:
    """Set `tenant`'s retention to `days` (under 365 only with `force`) and apply it."""
    check_tenant(tenant)
    if not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
        raise StoreError(f"--days must be a whole number of days from 1 to {MAX_DAYS}, not {days!r}")
    if days < DEFAULT_DAYS and not force:
        raise StoreError(f"refusing to keep tenant {tenant!r} for {days} days: that is under the {DEFAULT_DAYS}-day "
                         "default and deletes audit evidence early. If the tenant's contract says so, add --force.")
    current = contract(store, tenant)
    return _record(store, Contract(tenant, days, current.hold, days < DEFAULT_DAYS, None, _who(changed_by)))


def set_hold(store: Store, tenant: str, on: bool, *, changed_by: str | None = None) -> Contract:
    """Put `tenant` under legal hold (nothing of it expires) or lift the hold, and apply it."""
    check_tenant(tenant)
    current = contract(store, tenant)
    return _record(store, Contract(tenant, current.days, on, current.forced, None, _who(changed_by)))


def ttl_clause(time_expr: str, received_expr: str, tenant_expr: str,
               all_contracts: list[Contract]) -> tuple[str, dict[str, Any]]:
    """The TTL clause (with its bound parameters) that enforces `all_contracts` on one table.

    A row expires its contract's days after the later of its event time and its receipt, so no accepted row
    goes before its retention counted from when the store received it, whatever time it carries (0, years
    old, or after 2106). Computed in Int64 seconds: ``toDateTime`` of a later time would wrap (UInt32). A row
    whose expiry is past the last second a TTL can name is never deleted by TTL (DELETE WHERE)."""
    params = {
        "ttl_tenants": [c.tenant_id for c in all_contracts],
        "ttl_days": [c.days for c in all_contracts],
        "ttl_default": DEFAULT_DAYS,
        "ttl_held": [c.tenant_id for c in all_contracts if c.hold],
    }
    days = (f"toInt64(transform({tenant_expr}, {{ttl_tenants:Array(String)}}, {{ttl_days:Array(UInt32)}},"
            f" {{ttl_default:UInt32}}))")
    expiry = (f"(greatest(toUnixTimestamp64Second({time_expr}), toUnixTimestamp64Second({received_expr}))"
              f" + 86400 * {days})")
    sql = (f"toDateTime(least({expiry}, {_TTL_END})) DELETE WHERE {expiry} < {_TTL_END}"
           f" AND NOT has({{ttl_held:Array(String)}}, {tenant_expr})")
    return sql, params


def with_contracts(sql: str, all_contracts: list[Contract]) -> tuple[str, dict[str, Any]]:
    """A migration's statement with the default contract's TTL clause (_DEFAULT_TTL) replaced by the one
    enforcing `all_contracts`, and its parameters; `sql` as it is when there are none or no such clause.

    Why: the engine applies a TTL to the rows an INSERT writes at once (a TTL merge right after it) and to every
    part on MODIFY TTL, so a table a migration creates and copies rows into (0012, 0036), or a TTL a migration
    resets (0011), must carry the contracts from the start: under the default clause a tenant with a longer
    contract or under legal hold lost every row received more than 365 days before (restored by 0037)."""
    match = _DEFAULT_TTL.search(sql)
    if not all_contracts or match is None:
        return sql, {}
    tenant_expr = _TENANT_OF.get(match["time"], "tenant_id")
    clause, params = ttl_clause(match["time"], match["received"], tenant_expr, all_contracts)
    return sql[:match.start()] + clause + sql[match.end():], params


def alter_statements(store: Store, all_contracts: list[Contract], cluster: str | None) -> list[tuple[str, dict]]:
    """The ALTER ... MODIFY TTL statements (sql, parameters) that enforce `all_contracts`, per table."""
    suffix = "_local" if cluster else ""
    on_cluster = f" ON CLUSTER {quote_identifier(cluster, 'cluster name')}" if cluster else ""
    out = []
    for table, time_expr, received_expr, tenant_expr in _TTL_TARGETS:
        ttl, params = ttl_clause(time_expr, received_expr, tenant_expr, all_contracts)
        out.append((f"ALTER TABLE {store.table(table + suffix)}{on_cluster} MODIFY TTL {ttl}", params))
    return out


def apply(store: Store) -> None:
    """Render the current contracts into the TTL of audit_events and otel_logs, and wait for it to apply."""
    cluster = installed_cluster(store)
    for sql, params in alter_statements(store, contracts(store), cluster):
        # mutations_sync: return once existing parts are re-evaluated (2: on every replica of a cluster).
        store.command(sql, params, settings={"mutations_sync": 2 if cluster else 1})


def reapply(store: Store) -> None:
    """Render the contracts again if any was set (after migrations, whose TTLs carry the default contract)."""
    if contracts(store):
        apply(store)


def _record(store: Store, new: Contract) -> Contract:
    store.command(
        f"INSERT INTO {store.table('retention_contracts')} (tenant_id, days, hold, forced, changed_by)"
        " SETTINGS distributed_foreground_insert = 1"
        " VALUES ({tenant:String}, {days:UInt32}, {hold:Bool}, {forced:Bool}, {by:String})",
        {"tenant": new.tenant_id, "days": new.days, "hold": new.hold, "forced": new.forced, "by": new.changed_by},
    )
    apply(store)
    return contract(store, new.tenant_id)


def _who(changed_by: str | None) -> str:
    if changed_by:
        return changed_by
    try:
        return getpass.getuser()
    except Exception:  # no login name (containers): still record the change
        return ""


def main_retention(args: argparse.Namespace) -> int:
    """`auditrail retention set|list|hold`."""
    with Store.open(args.url) as store:
        if args.retention_command == "set":
            c = set_days(store, args.tenant, args.days, force=args.force)
            print(f"tenant {c.tenant_id}: {c.days} days{' (forced below the default)' if c.forced else ''}"
                  f"{', legal hold ON (nothing expires)' if c.hold else ''}")
        elif args.retention_command == "hold":
            c = set_hold(store, args.tenant, args.hold)
            print(f"tenant {c.tenant_id}: legal hold {'ON: nothing of it expires' if c.hold else 'OFF'}"
                  f" ({c.days}-day contract)")
        else:
            print(f"{'tenant':<24} {'days':>6}  {'hold':<4}  {'forced':<6}  {'changed_at (UTC)':<26}  changed_by")
            for c in contracts(store):
                print(f"{c.tenant_id:<24} {c.days:>6}  {'yes' if c.hold else 'no':<4}  {'yes' if c.forced else 'no':<6}"
                      f"  {c.changed_at!s:<26}  {c.changed_by}")
            print(f"every other tenant: {DEFAULT_DAYS} days, no hold")
    return 0
