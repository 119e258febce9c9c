"""Sign-off and the service's review events: `review.completed`, `review.due`, `review.overdue`.

They go through the approvals' recorder (approvals/events.py: a durable spool, the tenant's chain of this
emitter, a signed checkpoint after each event, written into this store through the ingest path), under the
service name ``auditrail-reviews`` with a spool of its own, so `verify` covers them like any other event.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..approvals.events import DecisionEvents, spool_dir_for
from ..db import Store, StoreError
from ..ingest import LogWriter
from .generate import report_paths, sha256_file
from .queries import Month

__all__ = ["ReviewEvents", "sign", "signoffs"]

SPOOL_ENV = "AUDITRAIL_REVIEWS_SPOOL"


def review_spool_dir(url: str) -> str:
    """$AUDITRAIL_REVIEWS_SPOOL, else beside an embedded store (`<store>.review-spool`), else ./.auditrail."""
    return spool_dir_for(url, SPOOL_ENV, "review-spool")


class ReviewEvents(DecisionEvents):
    """The recorder of the review events, writing into `store` (or through `write`, the service's writer)."""

    def __init__(self, store: Store, write: Any = None, forward: str | None = None) -> None:
        writer = None if write is not None else LogWriter(store.client, store.database)
        super().__init__(store.url, write or writer.write, service_name="auditrail-reviews",
                         spool_dir=review_spool_dir(store.url), forward=forward)


def signoffs(store: Store, tenant: str, month: str) -> list[tuple[Any, ...]]:
    """The month's review.completed events of `tenant` (queries.Month.signoffs)."""
    now = datetime.now(timezone.utc)
    return Month(store, tenant, now, now, now).signoffs(month)


class ReportMissing(StoreError):
    """No generated report to sign for that tenant and month (the API's 404)."""


def sign(store: Store, tenant: str, month: str, reviewer: str, notes: str, directory: Path,
         events: ReviewEvents | None = None) -> dict[str, Any]:
    """Record review.completed for the generated report of `tenant`/`month`; its payload."""
    reviewer, notes = reviewer.strip(), notes.strip()
    if not reviewer or not notes:
        raise StoreError("a sign-off needs the reviewer's name and notes")
    html, pdf, data = report_paths(directory, tenant, month)
    if not pdf.exists():
        raise ReportMissing(f"no report for tenant {tenant!r}, {month} in {directory}: run `auditrail review generate "
                         f"--month {month} --tenant {tenant}` first")
    payload = {"month": month, "report": pdf.name, "report_sha256": sha256_file(pdf),
               "report_html_sha256": sha256_file(html), "report_json_sha256": sha256_file(data),
               "reviewer": reviewer, "notes": notes}
    own = events is None
    events = events or ReviewEvents(store)
    try:
        events.record_event("review.completed", tenant, reviewer, payload, reason=notes)
    finally:
        if own:
            events.close()  # delivered into the store, and its checkpoint signed, before we return
    return payload
