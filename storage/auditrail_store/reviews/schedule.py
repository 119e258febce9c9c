"""The monthly close, run by `auditrail serve`: on day N of a month (default the 1st, UTC), for the month
before, and for any earlier month a stopped service missed: generate every tenant's review (and `*`'s),
archive the month (when a target is configured), raise `review.due`; later, `review.overdue` for a review
not signed within M days (default 10) of its close.

Each step of each tenant is logged in review_steps when it runs (done, failed, skipped) and a done step is
never run again, so the close is idempotent and a restart resumes it; /reviews shows the log.
Configuration (environment of `auditrail serve`):

* ``AUDITRAIL_REVIEW_SCHEDULE`` ``on`` (default) or ``off``;
* ``AUDITRAIL_REVIEW_DAY`` the day of the month the close runs (1-28, default 1);
* ``AUDITRAIL_REVIEW_OVERDUE_DAYS`` days after the close before ``review.overdue`` (default 10);
* ``AUDITRAIL_ARCHIVE_TO`` ``s3://bucket/prefix`` to archive each tenant-month (else the step is skipped);
  endpoint and keys as for ``auditrail archive``;
* ``AUDITRAIL_REVIEW_CATCHUP_MONTHS`` how far back a first start closes months (default 12).
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from ..db import Store
from .generate import generate, report_paths, tenants_of
from .queries import first_event_time, record_step, step_time, steps_done
from .signoff import ReviewEvents, signoffs

__all__ = ["CloseConfig", "MonthlyClose"]

logger = logging.getLogger("auditrail.store")


def _month_of(moment: datetime) -> str:
    return moment.strftime("%Y-%m")


def _month_start(month: str) -> datetime:
    return datetime.strptime(month + "-01", "%Y-%m-%d").replace(tzinfo=timezone.utc)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _next_month(month: str) -> str:
    return _month_of(_month_start(month) + timedelta(days=32))


@dataclass(frozen=True)
class CloseConfig:
    """When and how the close runs."""

    enabled: bool = True
    day: int = 1
    overdue_days: int = 10
    archive_to: str | None = None
    catchup_months: int = 12

    @classmethod
    def from_env(cls) -> CloseConfig:
        """From the AUDITRAIL_REVIEW_* variables (module docstring)."""
        day = int(os.environ.get("AUDITRAIL_REVIEW_DAY", "1"))
        if not 1 <= day <= 28:
            raise ValueError(f"AUDITRAIL_REVIEW_DAY={day}: use 1-28 (every month has it)")
        return cls(os.environ.get("AUDITRAIL_REVIEW_SCHEDULE", "on").lower() not in ("off", "0", "false", "no"),
                   day, int(os.environ.get("AUDITRAIL_REVIEW_OVERDUE_DAYS", "10")),
                   os.environ.get("AUDITRAIL_ARCHIVE_TO") or None,
                   int(os.environ.get("AUDITRAIL_REVIEW_CATCHUP_MONTHS", "12")))

    def close_time(self, month: str) -> datetime:
        """When `month` is closed: day `day` of the month after it, 00:00 UTC."""
        return _month_start(_next_month(month)).replace(day=self.day)


class MonthlyClose:
    """The close over one store handle; `run(now)` does whatever is due and not done."""

    def __init__(self, store: Store, directory: Path, events: ReviewEvents, config: CloseConfig) -> None:
        self.store, self.directory, self.events, self.config = store, directory, events, config
        self.lock = threading.Lock()  # the page's sign-off and the loop share the handle

    def due_months(self, now: datetime) -> list[str]:
        """Months whose close time has passed, from the oldest event (at most catchup_months back)."""
        first = first_event_time(self.store)
        oldest = _month_of(now - timedelta(days=31 * self.config.catchup_months))
        month = max(_month_of(first), oldest) if first else _month_of(now)
        months = []
        while self.config.close_time(month) <= now:
            months.append(month)
            month = _next_month(month)
        return months

    def run(self, now: datetime | None = None) -> list[tuple[str, str, str, str]]:
        """Run every due step not done yet; the steps run as (month, tenant, step, status)."""
        now = now or datetime.now(timezone.utc)
        with self.lock:
            months = self.due_months(now)
            if not months:
                return []
            done = steps_done(self.store, months)
            ran = []
            for month in months:
                for tenant in tenants_of(self.store, month):
                    for step in ("report", "archive", "due", "overdue"):
                        if (month, tenant, step) in done:
                            continue
                        status = self._step(month, tenant, step, now)
                        if status is not None:
                            ran.append((month, tenant, step, status))
            return ran

    def _step(self, month: str, tenant: str, step: str, now: datetime) -> str | None:
        try:
            if step == "report":
                detail, status = str(generate(self.store, tenant, month, self.directory).pdf), "done"
            elif step == "archive":
                detail, status = self._archive(month, tenant)
            elif step == "due":
                self.events.record_event("review.due", tenant, None, {
                    "month": month, "report": report_paths(self.directory, tenant, month)[1].name,
                    "overdue_after": _iso(self._deadline(month, now))})
                detail, status = "review.due recorded", "done"
            else:
                due = step_time(self.store, month, tenant, "due")
                deadline = None if due is None else self._deadline(month, due)
                if deadline is None or now < deadline:
                    return None  # not yet: checked again at the next run
                if signoffs(self.store, tenant, month):
                    detail, status = "signed in time: no review.overdue", "done"
                else:
                    # days_overdue: more than 0 when the service was down past the deadline (a catch-up)
                    self.events.record_event("review.overdue", tenant, None, {
                        "month": month, "report": report_paths(self.directory, tenant, month)[1].name,
                        "overdue_after": _iso(deadline), "days_overdue": (now - deadline).days,
                        "signoff_days": self.config.overdue_days})
                    detail, status = f"not signed within {self.config.overdue_days} days: review.overdue recorded", "done"
        except Exception as error:  # noqa: BLE001 - logged and shown at /reviews; the next run retries it
            detail, status = f"{type(error).__name__}: {error}", "failed"
            logger.error("monthly close %s %s of tenant %r failed: %s", month, step, tenant, detail)
        else:
            logger.info("monthly close %s %s of tenant %r: %s", month, step, tenant, detail)
        record_step(self.store, month, tenant, step, status, detail, now)
        return status

    def _deadline(self, month: str, due: datetime) -> datetime:
        """When a review becomes overdue: N days after its close, or after it was raised when a catch-up
        raised it late (a reviewer always gets the N days)."""
        return max(self.config.close_time(month), due) + timedelta(days=self.config.overdue_days)

    def _archive(self, month: str, tenant: str) -> tuple[str, str]:
        if not self.config.archive_to:
            return "no archive target (AUDITRAIL_ARCHIVE_TO)", "done"
        from ..archive import archive_month

        # s3:// endpoint and keys from the environment (S3Options.from_env), gs:// with Application Default Credentials
        url, rows = archive_month(self.store, tenant, month, self.config.archive_to)
        return f"{rows} events to {url}", "done"


class CloseLoop:
    """The close in a daemon thread of the service: once at start (the catch-up), then every `interval` s."""

    def __init__(self, close: MonthlyClose, interval: float = 3600.0) -> None:
        self.close, self.interval = close, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="auditrail-monthly-close", daemon=True)

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.close.run()
            except Exception:  # noqa: BLE001 - the service keeps serving; the next pass retries
                logger.exception("monthly close pass failed")
            self._stop.wait(self.interval)

    def stop(self) -> None:
        """Stop and wait for a pass in progress."""
        self._stop.set()
        self._thread.join(timeout=60)
