"""Every SQL of the monthly review, in one module: aggregates computed by the engine, bounded lists.

Each read of audit data carries db.tenant_scope (the one tenant predicate) and binds every value; only
table names (Store.table) are formatted in. Nothing here loads a month of rows into Python: the
volumes are GROUP BYs, and the lists (high-risk actions, impersonation actions, anomalies) have a LIMIT
with their full count beside them, so a report says when it shows only the first N.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from ..db import Store, tenant_scope, tenant_settings

__all__ = ["Month"]

ROW_COLUMNS = ("timestamp", "event_type", "actor", "risk", "outcome", "reason", "payload", "event_id",
               "impersonator_id", "impersonation_id", "approval_id", "source_ip")
_ROW = ", ".join(f"`{c}`" if c != "event_id" else "toString(event_id) AS event_id" for c in ROW_COLUMNS)
BASELINE_DAYS = 90
IMPERSONATION = ("admin.impersonation.start", "admin.impersonation.end")


class Month:
    """The queries of one tenant-month: [start, end) and the month before it."""

    def __init__(self, store: Store, tenant: str, start: datetime, end: datetime, previous: datetime,
                 limit: int = 1000) -> None:
        self.store, self.tenant, self.limit = store, tenant, limit
        self.params: dict[str, Any] = {"start": start, "end": end, "previous": previous,
                                       "baseline": start - timedelta(days=BASELINE_DAYS), "limit": limit}
        self.scope = tenant_scope(tenant, self.params)
        self.events = f"{store.table('audit_events')} FINAL"
        self.settings = tenant_settings(store, tenant)

    def _rows(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self.store.query(sql, {**self.params, **params}, self.settings).result_rows]

    def _in_month(self) -> str:
        return (f"{self.scope} AND timestamp >= {{start:DateTime64(9, 'UTC')}}"
                f" AND timestamp < {{end:DateTime64(9, 'UTC')}}")

    def per_day(self) -> list[tuple[Any, ...]]:
        """(day, events) over this month and the previous one."""
        return self._rows(f"SELECT toDate(timestamp) AS day, count() FROM {self.events} WHERE {self.scope}"
                          " AND timestamp >= {previous:DateTime64(9, 'UTC')} AND timestamp < {end:DateTime64(9, 'UTC')}"
                          " GROUP BY day ORDER BY day")

    def per_type(self) -> list[tuple[Any, ...]]:
        """(event type, this month, previous month, failures this month), busiest first."""
        return self._rows(
            "SELECT event_type, countIf(timestamp >= {start:DateTime64(9, 'UTC')}),"
            " countIf(timestamp < {start:DateTime64(9, 'UTC')}),"
            " countIf(timestamp >= {start:DateTime64(9, 'UTC')} AND outcome = 'failure')"
            f" FROM {self.events} WHERE {self.scope}"
            " AND timestamp >= {previous:DateTime64(9, 'UTC')} AND timestamp < {end:DateTime64(9, 'UTC')}"
            " GROUP BY event_type ORDER BY 2 DESC, 1")

    def listed(self, condition: str, **params: Any) -> tuple[int, list[tuple[Any, ...]]]:
        """(how many events of the month match `condition`, the first `limit` of them as ROW_COLUMNS)."""
        where = f"{self._in_month()} AND ({condition})"
        total = int(self._rows(f"SELECT count() FROM {self.events} WHERE {where}", **params)[0][0])
        rows = self._rows(f"SELECT {_ROW} FROM {self.events} WHERE {where} ORDER BY timestamp, event_id"
                          " LIMIT {limit:UInt64}", **params)
        return total, rows

    def high_risk(self) -> tuple[int, list[tuple[Any, ...]]]:
        """High and critical actions of the month."""
        return self.listed("risk IN ('high', 'critical')")

    def impersonation(self) -> tuple[int, list[tuple[Any, ...]]]:
        """Session starts and ends, and every action linked to a session, of the month."""
        return self.listed("event_type IN {kinds:Array(String)} OR impersonation_id IS NOT NULL",
                           kinds=list(IMPERSONATION))

    def hour_baseline(self) -> dict[int, int]:
        """hour of day (UTC) -> events in the BASELINE_DAYS before the month."""
        rows = self._rows(f"SELECT toHour(timestamp) AS h, count() FROM {self.events} WHERE {self.scope}"
                          " AND timestamp >= {baseline:DateTime64(9, 'UTC')} AND timestamp < {start:DateTime64(9, 'UTC')}"
                          " GROUP BY h")
        return {int(h): int(c) for h, c in rows}

    def outside_hours(self, usual: list[int]) -> tuple[int, list[tuple[Any, ...]]]:
        """People's actions of the month at an hour (UTC) outside `usual`."""
        return self.listed("actor_type = 'user' AND toHour(timestamp) NOT IN {usual:Array(UInt8)}", usual=usual)

    def new_actors(self) -> list[tuple[Any, ...]]:
        """(actor, first seen, events this month) for actors never seen before the month."""
        return self._rows(
            "SELECT actor, min(timestamp) AS first, countIf(timestamp >= {start:DateTime64(9, 'UTC')})"
            f" FROM {self.events} WHERE {self.scope} AND actor IS NOT NULL AND event_type != 'audit.checkpoint'"
            " AND timestamp < {end:DateTime64(9, 'UTC')} GROUP BY actor"
            " HAVING first >= {start:DateTime64(9, 'UTC')} ORDER BY first LIMIT {limit:UInt64}")

    def bursts(self, per_minute: int) -> list[tuple[Any, ...]]:
        """(actor, minute, events, types) where one actor did at least `per_minute` things in a minute.

        Minutes busy enough overall are found first (a GROUP BY of the month's minutes); only their events
        are then grouped by actor: grouping every actor-minute of a month would hold millions of groups.
        """
        return self._rows(
            "SELECT actor, toStartOfMinute(timestamp) AS minute, count() AS c,"
            " arrayStringConcat(arraySlice(arraySort(groupUniqArray(event_type)), 1, 5), ', ')"
            f" FROM {self.events} WHERE {self._in_month()} AND actor IS NOT NULL AND event_type != 'audit.checkpoint'"
            " AND toStartOfMinute(timestamp) IN (SELECT toStartOfMinute(timestamp) AS m"
            f" FROM {self.events} WHERE {self._in_month()} GROUP BY m HAVING count() >= {{burst:UInt32}})"
            " GROUP BY actor, minute HAVING c >= {burst:UInt32} ORDER BY c DESC, minute LIMIT {limit:UInt64}",
            burst=per_minute)

    def repeated_failures(self, at_least: int) -> list[tuple[Any, ...]]:
        """(actor, event type, hour, failures, first, last) with at least `at_least` failures in an hour."""
        return self._rows(
            "SELECT ifNull(actor, ''), event_type, toStartOfHour(timestamp) AS hour, count() AS c,"
            " min(timestamp), max(timestamp)"
            f" FROM {self.events} WHERE {self._in_month()} AND outcome = 'failure'"
            " GROUP BY actor, event_type, hour HAVING c >= {failures:UInt32} ORDER BY hour LIMIT {limit:UInt64}",
            failures=at_least)

    def config_events(self) -> tuple[int, list[tuple[Any, ...]]]:
        """Events that change auditing itself (audit.* other than checkpoints, retention.*)."""
        return self.listed("(startsWith(event_type, 'audit.') AND event_type != 'audit.checkpoint')"
                           " OR startsWith(event_type, 'retention.')")

    def retention_changes(self) -> list[tuple[Any, ...]]:
        """(changed at, days, hold, by) of the tenant's retention contract changed in the month."""
        return self._rows(
            f"SELECT changed_at, days, hold, changed_by FROM {self.store.table('retention_contracts')}"
            f" WHERE {self.scope} AND changed_at >= {{start:DateTime64(9, 'UTC')}}"
            " AND changed_at < {end:DateTime64(9, 'UTC')} ORDER BY changed_at")

    def token_changes(self) -> list[tuple[Any, ...]]:
        """(token id, scope, created at, by, revoked at, by) of the tenant's tokens created or revoked in the month."""
        return self._rows(
            "SELECT token_id, scope, created_at, created_by, revoked_at, revoked_by"
            f" FROM {self.store.table('api_tokens')} FINAL WHERE {self.scope} AND"
            " ((created_at >= {start:DateTime64(9, 'UTC')} AND created_at < {end:DateTime64(9, 'UTC')}) OR"
            " (revoked_at >= {start:DateTime64(9, 'UTC')} AND revoked_at < {end:DateTime64(9, 'UTC')}))"
            " ORDER BY created_at")

    def approvals(self) -> list[tuple[Any, ...]]:
        """(id, action, target, requester, state, approved by, decided by, reason, created, decided) of the month."""
        return self._rows(
            "SELECT approval_id, event_type, target, requester, state, approved_by, decided_by, decision_reason,"
            f" created_at, decided_at FROM {self.store.table('approvals')} FINAL WHERE {self.scope}"
            " AND created_at >= {start:DateTime64(9, 'UTC')} AND created_at < {end:DateTime64(9, 'UTC')}"
            " ORDER BY created_at LIMIT {limit:UInt64}")

    def without_approval(self, kinds: list[str]) -> tuple[int, list[tuple[Any, ...]]]:
        """Successful actions of `kinds` (types whose config requires an approval) that carry none."""
        return self.listed("event_type IN {kinds:Array(String)} AND approval_id IS NULL"
                           " AND ifNull(outcome, 'success') = 'success'", kinds=kinds)

    def signoffs(self, month: str) -> list[tuple[Any, ...]]:
        """The review.completed events of `month` for this tenant, newest last (at any time)."""
        return self._rows(
            f"SELECT {_ROW} FROM {self.events} WHERE {self.scope} AND event_type = 'review.completed'"
            " AND JSONExtractString(ifNull(payload, '{}'), 'month') = {month:String} ORDER BY timestamp",
            month=month)


def month_tenants(store: Store, start: datetime, end: datetime) -> list[str]:
    """Tenants with events in [start, end): an operator-wide listing (the scheduler's), no tenant's rows."""
    rows = store.query(f"SELECT DISTINCT tenant_id FROM {store.table('audit_events')}"
                       " WHERE timestamp >= {start:DateTime64(9, 'UTC')} AND timestamp < {end:DateTime64(9, 'UTC')}"
                       " ORDER BY tenant_id", {"start": start, "end": end}).result_rows
    return [r[0] for r in rows]


def first_event_time(store: Store) -> datetime | None:
    """The oldest event's time in the store (operator-wide), None when empty."""
    rows = store.query(f"SELECT min(timestamp), count() FROM {store.table('audit_events')}").result_rows
    return rows[0][0] if rows and rows[0][1] else None


def steps_done(store: Store, months: list[str]) -> set[tuple[str, str, str]]:
    """(month, tenant, step) of the close's steps already done for `months`."""
    rows = store.query(f"SELECT DISTINCT month, tenant_id, step FROM {store.table('review_steps')}"
                       " WHERE status = 'done' AND month IN {months:Array(String)}", {"months": months}).result_rows
    return {(m, t, s) for m, t, s in rows}


def record_step(store: Store, month: str, tenant: str, step: str, status: str, detail: str, at: datetime) -> None:
    """Append one step of the close to review_steps."""
    store.insert("review_steps", [[month, tenant, step, status, detail[:2000], at]],
                 ["month", "tenant_id", "step", "status", "detail", "at"])


def step_time(store: Store, month: str, tenant: str, step: str) -> datetime | None:
    """When a step of a tenant-month was done (its first time), None if never."""
    params: dict[str, Any] = {"month": month, "step": step}
    rows = store.query(f"SELECT min(at), count() FROM {store.table('review_steps')} WHERE {tenant_scope(tenant, params)}"
                       " AND month = {month:String} AND step = {step:String} AND status = 'done'", params).result_rows
    return rows[0][0].replace(tzinfo=timezone.utc) if rows and rows[0][1] else None


def step_log(store: Store, tenant: str | None, limit: int = 200) -> list[tuple[Any, ...]]:
    """The newest steps (at, month, tenant, step, status, detail): one tenant's (and none of another's), or all."""
    params: dict[str, Any] = {"limit": limit}
    where = tenant_scope(tenant, params) if tenant is not None else "1"
    return [tuple(r) for r in store.query(
        f"SELECT at, month, tenant_id, step, status, detail FROM {store.table('review_steps')} WHERE {where}"
        " ORDER BY at DESC LIMIT {limit:UInt64}", params).result_rows]


def chain_structure(month: Month) -> list[tuple[Any, ...]]:
    """(chain id, events, distinct seqs, first seq, last seq) of the month's chains, and (None, unchained, ...)."""
    return month._rows(
        "SELECT chain_id, count(), uniqExact(chain_seq), min(chain_seq), max(chain_seq)"
        f" FROM {month.events} WHERE {month._in_month()} GROUP BY chain_id ORDER BY min(timestamp)")


def checkpoint_cover(month: Month) -> dict[str, tuple[int, int, list[str]]]:
    """chain id -> (checkpoints, highest seq covered, key ids) of the tenant's checkpoints, at any time after the
    month began (a month's last events are anchored by a checkpoint written after it ends)."""
    rows = month._rows(
        "SELECT chain_id, count(), max(JSONExtractUInt(ifNull(payload, '{}'), 'seq')),"
        " arraySort(groupUniqArray(JSONExtractString(ifNull(payload, '{}'), 'key_id')))"
        f" FROM {month.events} WHERE {month.scope} AND event_type = 'audit.checkpoint'"
        " AND timestamp >= {start:DateTime64(9, 'UTC')} AND chain_id IS NOT NULL GROUP BY chain_id")
    return {c: (int(n), int(top), list(keys)) for c, n, top, keys in rows}
