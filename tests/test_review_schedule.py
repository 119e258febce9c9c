"""The monthly close (issue 18): catch-up after missed months, idempotent across restarts, review.due and
review.overdue in the tenants' chains, each step logged."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

import review_month
from auditrail_store.db import Store
from auditrail_store.migrate import migrate
from auditrail_store.reviews.queries import step_log
from auditrail_store.reviews.schedule import CloseConfig, MonthlyClose
from auditrail_store.reviews.signoff import ReviewEvents, sign


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(f"chdb://{tmp_path}/store")
    migrate(s)
    review_month.fill(s)  # August to October 2026
    yield s
    s.close()


def _events(store: Store, kind: str) -> list[tuple[str, str]]:
    rows = store.query("SELECT tenant_id, JSONExtractString(payload, 'month') FROM auditrail.audit_events FINAL"
                       " WHERE event_type = {kind:String} ORDER BY tenant_id, 2", {"kind": kind}).result_rows
    return [tuple(r) for r in rows]


def test_a_service_down_for_months_catches_up_once_and_then_raises_overdue(store: Store, tmp_path: Path) -> None:
    config = CloseConfig(catchup_months=12, overdue_days=10)
    reports = tmp_path / "reports"

    def close_at(now: datetime) -> list[tuple[str, str, str, str]]:
        events = ReviewEvents(store)  # a fresh service each time: a restart
        try:
            return MonthlyClose(store, reports, events, config).run(now)
        finally:
            events.close()

    # Started on 2 November for the first time since August: August, September and October are closed.
    ran = close_at(datetime(2026, 11, 2, tzinfo=timezone.utc))
    closed = sorted({(m, t) for m, t, step, status in ran if step == "report" and status == "done"})
    assert ("2026-10", "acme") in closed and ("2026-08", "acme") in closed and ("2026-10", "globex") in closed
    assert ("2026-10", "*") in closed and not any(m == "2026-11" for m, _ in closed)
    assert (reports / "2026-10" / "review-acme-2026-10.pdf").exists()
    assert ("acme", "2026-10") in _events(store, "review.due")
    assert all(status == "done" for *_, status in ran)
    # Raised on 2 November: nothing is overdue before the 12th (a catch-up gives the reviewer the 10 days too).
    assert not _events(store, "review.overdue")

    # A restart the same day runs nothing again (idempotent).
    assert close_at(datetime(2026, 11, 2, 1, tzinfo=timezone.utc)) == []
    assert _events(store, "review.due").count(("acme", "2026-10")) == 1

    # acme signs October; on the 12th (raised the 2nd + 10 days) globex's and '*''s October reviews are overdue, acme's not.
    sign(store, "acme", "2026-10", "rita@acme.io", "reviewed", reports)
    ran = close_at(datetime(2026, 11, 12, tzinfo=timezone.utc))
    overdue = _events(store, "review.overdue")
    assert ("globex", "2026-10") in overdue and ("*", "2026-10") in overdue
    assert ("acme", "2026-10") not in overdue
    assert close_at(datetime(2026, 11, 13, tzinfo=timezone.utc)) == []  # raised once
    log = step_log(store, "acme")
    assert {(m, step) for _, m, tenant, step, status, _ in log if m == "2026-10"} == {
        ("2026-10", "report"), ("2026-10", "archive"), ("2026-10", "due"), ("2026-10", "overdue")}
    assert all(tenant == "acme" for _, _, tenant, *_ in log)
    due = store.query("SELECT payload FROM auditrail.audit_events FINAL WHERE event_type = 'review.due'"
                      " AND tenant_id = 'acme' LIMIT 1").result_rows[0][0]
    assert json.loads(due)["overdue_after"] == "2026-11-12T00:00:00Z"


def test_overdue_says_the_deadline_and_how_many_days_late_a_catch_up_raised_it(store: Store, tmp_path: Path) -> None:
    config, reports = CloseConfig(overdue_days=10), tmp_path / "reports"
    for now in (datetime(2026, 11, 2, tzinfo=timezone.utc), datetime(2026, 11, 30, 6, tzinfo=timezone.utc)):
        events = ReviewEvents(store)  # the service ran on the 2nd, then was down until the 30th
        try:
            MonthlyClose(store, reports, events, config).run(now)
        finally:
            events.close()
    payload = store.query("SELECT payload FROM auditrail.audit_events FINAL WHERE event_type = 'review.overdue'"
                          " AND tenant_id = 'globex' AND JSONExtractString(payload, 'month') = '2026-10'"
                          ).result_rows[0][0]
    assert json.loads(payload) == {"month": "2026-10", "report": "review-globex-2026-10.pdf",
                                   "overdue_after": "2026-11-12T00:00:00Z", "days_overdue": 18, "signoff_days": 10}
