"""What the store refuses in an ingest request, record by record, before anything is written.

Two rules, each answered HTTP 400 naming the record (its 0-based index in request order: resource_logs, then
scope_logs, then log_records) and nothing of the request is written:

* **A time the store cannot hold faithfully.** OTLP times are unsigned 64-bit nanoseconds; ``otel_logs``
  stores the exporter's Go ``int64`` cast of them (DateTime64(9): 1677-09-21 .. 2262-04-11 23:47:16 UTC).
  A time from 2^63 ns on (after 2262-04-11) would be stored as a negative number, a date before 1970 that the
  sender never sent: refused rather than kept altered, because the hash chain covers the time (such an event
  could never verify) and a wrong time in an audit log is worse than a clear error the sender can act on. Every
  other time (0 included: 1970-01-01, the OTLP "unknown") is stored exactly as sent, and retention counts from
  the later of that time and the time the store received it (migration 0006), so no accepted event expires
  early whatever its time says.
* **A tenant id outside the one syntax** (db.TENANT_SYNTAX) in ``audit.tenant_id``. A record without the
  attribute (an app log, an event of no tenant) is not concerned.

:func:`check_batch` is the Python path's check (ingest.decode_request calls it). :data:`REFUSED_ROW` is the
same rule in SQL over ``otel_logs`` columns, for the statements that decode a request inside the engine
(ingest_fast.py): a row it matches makes the statement throw before its one block is written, and the request
goes to the Python path, which answers the 400 with the record's index.
"""

from __future__ import annotations

from .db import TENANT_PATTERN, tenant_problem
from .ingest import IngestError, LogBatch, _map_get

__all__ = ["REFUSED_ROW", "check_batch"]

TENANT_ATTRIBUTE = "audit.tenant_id"

# True for an otel_logs row that check_batch refuses. `Timestamp` holds the int64 cast, so a refused time is
# a negative one; the tenant pattern is db.TENANT_PATTERN (re2 reads it as Python's re does: ASCII classes).
REFUSED_ROW = (f"(toUnixTimestamp64Nano(Timestamp) < 0 OR (mapContains(LogAttributes, '{TENANT_ATTRIBUTE}')"
               f" AND NOT match(LogAttributes['{TENANT_ATTRIBUTE}'], '{TENANT_PATTERN.replace(chr(92), chr(92) * 2)}')))")


def check_batch(batch: LogBatch, first: int = 0) -> None:
    """IngestError (HTTP 400) naming the first record of `batch` the store must refuse; None when all are fine.
    `first`: the request index of the batch's first record (a slice of a request)."""
    timestamps = batch.timestamps
    if timestamps and min(timestamps) < 0:
        index = next(i for i, ns in enumerate(timestamps) if ns < 0)
        sent = timestamps[index] + (1 << 64)
        raise IngestError(f"record {first + index}: time {sent} ns is after 2262-04-11T23:47:16.854775807Z, the latest time "
                          "the store holds (int64 nanoseconds); nothing of this request was written")
    bad = {t for t in batch.attribute_values(TENANT_ATTRIBUTE) if t is not None and tenant_problem(t)}
    if bad:
        index = next(i for i, attributes in enumerate(batch.log_attributes)
                     if _map_get(attributes, TENANT_ATTRIBUTE) in bad)
        problem = tenant_problem(_map_get(batch.log_attributes[index], TENANT_ATTRIBUTE))
        raise IngestError(f"record {first + index}: {TENANT_ATTRIBUTE}: {problem}; nothing of this request was written")
