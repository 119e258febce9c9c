"""Batch mode: the drain takes its batches from this process's segments natively (the core's drain_segment:
linked, journalled and encoded as OTLP requests from the segment's bytes, no AuditEvent per record)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from ..events import AuditEvent
from ..native import native_function
from .journal import LinkJournal
from .reader import SegmentReader
from .segments import SegmentWriter
from .sources import _Source

_native_drain = native_function("drain_segment")  # a batch from a segment's bytes (batch mode); None: no batch mode
NATIVE_DRAIN = _native_drain is not None  # whether batch mode is possible
_BATCH_CHUNK = 8 * 1024 * 1024  # bytes read for one batch-mode take at most
_NO_LINKS: dict[int, list[Any]] = {}  # the journal of records past a source's linked_to (read only)


class NativeDrain:
    """Takes and links records of this process's segments natively; the caller holds the spool's read lock
    (and the chains' lock), `lock` is its write lock."""

    def __init__(self, lock: threading.Lock, writer: SegmentWriter, journal: LinkJournal,
                 reader: SegmentReader) -> None:
        self._lock = lock
        self._writer = writer
        self._journal = journal
        self._reader = reader

    def take(self, own: _Source, max_records: int, per_request: int, fields: tuple[bytes, bytes, bytes, bytes],
             chain_for: Callable[[str | None], Any]) -> tuple[list[tuple[bytes, int, tuple[int, int]]], Any] | None:
        """DiskSpool.take_encoded once nothing else goes first: the next records of `own` from its read position."""
        while True:
            with self._lock:
                lseg, loff = self._writer.seg, self._writer.off
                rseg, roff = own.rseg, own.roff
            if (rseg, roff) == (lseg, loff):
                return None
            if rseg < lseg and roff >= own.sizes.get(rseg, 0):
                with self._lock:
                    own.rseg, own.roff = rseg + 1, 0
                continue
            break
        limit = loff if rseg == lseg else own.sizes[rseg]
        got = self._chunk(own, rseg, roff, limit, max_records, per_request, fields, chain_for)
        if got is None:
            return None
        return [(request, count, (rseg, end)) for request, count, end in got[0]], got[5]

    def link_through(self, own: _Source, fields: tuple[bytes, bytes, bytes, bytes],
                     chain_for: Callable[[str | None], Any],
                     apply_links: Callable[[_Source, int, list[tuple[AuditEvent, int]]], None],
                     ) -> dict[str | None, int]:
        """DiskSpool.link_through: link and journal `own`'s records written so far from its read position;
        those the native core leaves go through `apply_links` (the Python path)."""
        counts: dict[str | None, int] = {}
        with self._lock:
            lseg, loff = self._writer.seg, self._writer.off
            seg, off = own.rseg, own.roff
        while (seg, off) != (lseg, loff):
            if seg < lseg and off >= own.sizes.get(seg, 0):
                seg, off = seg + 1, 0
                continue
            limit = loff if seg == lseg else own.sizes[seg]
            got = self._chunk(own, seg, off, limit, 1 << 30, 1 << 30, fields, chain_for)
            if got is not None:
                _, _, _, pos, bad, linked, _ = got
                for tenant, n in linked.items():
                    counts[tenant] = counts.get(tenant, 0) + n
                off += pos
            else:  # a record the native core leaves: the Python path links this stretch (and journals it)
                records, end, _, bad = self._reader.records(own.seg_path(seg), off, limit, 1 << 30)
                apply_links(own, seg, records)
                off = end
            if bad:
                break
        return counts

    def _chunk(self, own: _Source, seg: int, off: int, limit: int, max_records: int, per_request: int,
               fields: tuple[bytes, bytes, bytes, bytes], chain_for: Callable[[str | None], Any]) -> Any:
        """drain_segment over the records of segment `seg` from `off` (up to `limit`), the new links'
        journal frame written and synced; None when it took no record (the Python path takes them)."""
        fd = self._reader.fd(own.seg_path(seg))
        links = self._journal.links(own, seg) if (seg, off) < own.linked_to else _NO_LINKS
        try:
            journal_fd, unopened = self._journal.fd(own, seg), None
        except OSError as exc:  # the payload comes back unwritten: reported below
            journal_fd, unopened = -1, exc
        got = _native_drain(fd, off, min(_BATCH_CHUNK, limit - off), max_records, per_request, links, chain_for,
                            *fields, journal_fd, own.link_sizes.get(seg, 0))
        if got is None or not got[2]:
            return None
        if got[1] is not None:
            self._journal.appended(own, seg, got[1], sum(got[5].values()), off + got[3], got[6] or unopened)
        return got
