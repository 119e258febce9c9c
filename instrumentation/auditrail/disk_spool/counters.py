"""What the spool counts, for metrics and tests: one object its parts share."""

from __future__ import annotations


class SpoolCounters:
    """The spool's counters: read freely, written under the spool's locks."""

    __slots__ = ("syncs", "write_errors", "sync_errors", "space_warnings", "full_refusals", "corrupt_regions",
                 "truncated_bytes", "adopted_records", "link_errors")

    def __init__(self) -> None:
        self.syncs = 0
        self.write_errors = 0
        self.sync_errors = 0
        self.space_warnings = 0
        self.full_refusals = 0
        self.corrupt_regions = 0
        self.truncated_bytes = 0
        self.adopted_records = 0
        self.link_errors = 0
