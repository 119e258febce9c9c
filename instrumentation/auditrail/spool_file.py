"""The on-disk spool for `durable` and `fail_closed` delivery: append-only segment files with CRCs.

Layout (one directory per process, so processes never share a file):

    <spool_dir>/<pid>-<random>/lock                 exclusive fcntl.flock held for the life of the spool
    <spool_dir>/<pid>-<random>/cursor               "<segment> <offset>": the first unacknowledged record
    <spool_dir>/<pid>-<random>/0000000000000001.seg  records: [u32 length][u32 crc32(payload)][payload]
    <spool_dir>/<pid>-<random>/0000000000000001.links  hash chains: the links of the segment's records

The payload is orjson of `[1, <the AuditEvent's fields in order>]` (trace/span ids above 2**64 as hex).
With hash chains the drain links a record after it is stored (set_linker: the chain link is not the audited
call's work) and appends its chain fields to the segment's journal, framed the same way, fdatasynced before
the reader sees the record.

Writing: a segment is created at its full size with posix_fallocate (its blocks exist before anything is
written, so a full disk fails the rotation, never a page fault: no SIGBUS) and mapped MAP_SHARED; append()
copies the framed record into the mapping. Those are the file's page-cache pages, so the record survives a
process crash exactly as a write() would, and fdatasync on the file flushes them. Why: inside the audited
call an os.write per record measured ~9 us (~2 us alone: it also hands the GIL to any waiting thread), a
pwrite into the allocated segment 3-4 us more than the copy. On copy-on-write filesystems allocated blocks
do not make a page fault safe (see _MAPPABLE_FS): there the record is pwritten instead. A segment's
unwritten tail is zeros: a zero length ends the records (a record is never empty); a finished segment is
truncated to its records. The counted disk use (max_bytes) is the records' bytes: the segment being
written occupies its whole size on disk.

Modes
  durable      append() copies the framed record into the mapped segment: it is in the page cache before
               the audited call returns (a process crash loses nothing); a flusher thread fdatasyncs within
               50 ms.
  fail_closed  append() returns only once the record is fsynced; concurrent appenders share one fsync
               (group commit: the first waiter syncs for everyone written so far, the others wait on a
               condition). When the record cannot be written or synced, SpoolWriteError is raised.

A process that opens a spool adopts the directories of dead processes (their lock can be taken): their
unacknowledged records are verified (CRC), a torn tail is cut off, and they are delivered before the new
ones; the adopted directory is removed once everything in it is acknowledged. Acknowledged whole segments
are deleted; the cursor is rewritten in place on every ack (one pwrite of a fixed-width line, far inside
one disk sector: a crash leaves the old or the new line; a temp file + rename cost ~1-3 ms per ack here), so
a restart resends at most the records acknowledged after the last cursor write (downstream deduplicates by
event id).

DiskSpool composes its parts, one idea a module of auditrail/disk_spool/ (none imports this module):
records.py (the frame format), files.py (segment files), sources.py (our directory, adopting dead ones),
segments.py (writing and rotation), syncing.py (group commit, the flusher), space.py (the disk cap),
journal.py (hash chains' link journals), reader.py (reading records back), batches.py (batch mode's native
drain), counters.py. Here: the Spool protocol over them (append, link_pending, peek/ack, the acknowledged
position) and the locks: `_lock` (the write side) and `_rlock` (the read side, the drain's).
"""

from __future__ import annotations

import collections
import errno
import itertools
import logging
import operator
import os
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from typing import Any

from .disk_spool.batches import NATIVE_DRAIN, NativeDrain
from .disk_spool.counters import SpoolCounters
from .disk_spool.errors import SpoolFullError, SpoolWriteError
from .disk_spool.files import _close_quiet, _unlink_quiet, filesystem_type
from .disk_spool.journal import LinkJournal
from .disk_spool.reader import SegmentReader
from .disk_spool.records import _HEADER, decode_event, encode_event
from .disk_spool.segments import SegmentWriter
from .disk_spool.sources import _Source, adopt_dead, create_own
from .disk_spool.space import WARN_FRACTION, SpaceAccount
from .disk_spool.syncing import SYNC_INTERVAL, GroupCommit
from .events import AuditEvent

__all__ = ["DEFAULT_MAX_BYTES", "DEFAULT_SEGMENT_BYTES", "MODES", "SYNC_INTERVAL", "WARN_FRACTION", "DiskSpool",
           "SpoolFullError", "SpoolWriteError", "decode_event", "encode_event", "filesystem_type"]


_log = logging.getLogger("auditrail")

_LIVE_CAP = 8192  # events kept in memory beside the file for the drain (beyond: read back from disk)
_POLL_S = 50e-6  # an audited call finding the write lock busy polls it this often (_take_holding_gil)

DEFAULT_SEGMENT_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_BYTES = 1024 * 1024 * 1024
MODES = ("durable", "fail_closed")


def _take_holding_gil(lock: threading.Lock) -> None:
    """Acquire the spool's write lock for an audited call without ever waiting on it blocked.

    A blocking acquire waits with the GIL released and is granted the lock before it has the GIL back;
    every app thread that wants the lock meanwhile blocks behind it, and the lock then passes from thread to
    thread with two context switches each time (a lock convoy, which never dissolves while the threads keep
    calling: with 4 app threads, 60% of the audited calls/s lost). Here the lock is only taken by a thread
    that holds the GIL: a busy lock is polled, each poll a short sleep that hands the GIL to its holder."""
    while not lock.acquire(False):
        time.sleep(_POLL_S)


# --- the spool ------------------------------------------------------------------------------------


def _counter(name: str) -> property:
    """A counter of the spool's SpoolCounters, read as an attribute of the spool."""
    return property(operator.attrgetter(f"_counters.{name}"), doc=f"SpoolCounters.{name}")


class DiskSpool:
    """A durable, per-process, crash-safe spool with the Spool protocol (see spool.py). Thread-safe."""

    syncs = _counter("syncs")
    write_errors = _counter("write_errors")
    sync_errors = _counter("sync_errors")
    space_warnings = _counter("space_warnings")
    full_refusals = _counter("full_refusals")
    corrupt_regions = _counter("corrupt_regions")
    truncated_bytes = _counter("truncated_bytes")
    adopted_records = _counter("adopted_records")
    link_errors = _counter("link_errors")

    def __init__(self, spool_dir: str | os.PathLike[str], *, mode: str = "durable",
                 max_bytes: int = DEFAULT_MAX_BYTES, segment_bytes: int = DEFAULT_SEGMENT_BYTES,
                 adopt: bool = True) -> None:
        if mode not in MODES:
            raise ValueError(f"DiskSpool mode must be one of {', '.join(MODES)}, not {mode!r}")
        self.spool_dir = os.path.abspath(os.fspath(spool_dir))
        self.mode = mode
        self.max_bytes = max_bytes
        # Space comes back a segment at a time: keep several segments under the cap.
        self.segment_bytes = max(4096, min(segment_bytes, max_bytes // 4))
        self._adopt = adopt
        self._counters = SpoolCounters()  # (metrics) kept across a fork, as the spool's settings
        self._linker: Callable[[list[AuditEvent]], None] | None = None
        self._init_state()
        self._open_dirs()

    @classmethod
    def open(cls, spool_dir: str | os.PathLike[str], *, mode: str = "durable",
             max_bytes: int = DEFAULT_MAX_BYTES, segment_bytes: int = DEFAULT_SEGMENT_BYTES) -> DiskSpool:
        """Create this process's spool under `spool_dir` and adopt the spools of dead processes."""
        return cls(spool_dir, mode=mode, max_bytes=max_bytes, segment_bytes=segment_bytes)

    def _init_state(self) -> None:
        self._lock = threading.Lock()  # the write side: file, position, counters
        self._rlock = threading.Lock()  # the read side: peek/ack (the drain worker)
        # The parts (auditrail/disk_spool/), sharing the write lock and the counters.
        self._writer = SegmentWriter(self.segment_bytes, self._counters)
        self._sync = GroupCommit(self._writer, self._lock, self._counters, self._call_fsync, self.spool_dir)
        self._usage = SpaceAccount(self.spool_dir, self.max_bytes, self._lock, self._counters)
        self._journal = LinkJournal(self._lock, self._usage, self._counters, self._call_fsync)
        self._reader = SegmentReader(self._counters)
        self._drain = NativeDrain(self._lock, self._writer, self._journal, self._reader)
        self._count = 0  # unacknowledged records, all sources
        self._closed = False
        self._sources: list[_Source] = []  # adopted ones first, ours last
        self._own: _Source | None = None
        # Read side: _buf holds (event, source, seg, end) read but not acknowledged; _live holds events
        # appended while the reader was caught up (no need to read them back from the file); our source's
        # rseg/roff is the next record that is in neither.
        self._buf: collections.deque[tuple[AuditEvent, _Source, int, int]] = collections.deque()
        self._live: collections.deque[tuple[AuditEvent, int, int, bool]] = collections.deque()  # as _unlinked's
        self._live_on = True
        # With a linker (set_linker): appended records wait in _unlinked (event, segment, end, linked), in file
        # order, until link_pending links them and persists their links; _lpos is the end of the last one it
        # took. Past _LIVE_CAP waiting, records are no longer queued (_queue_on): the reader links those as it
        # reads them back, until it has caught up with the writer.
        self._unlinked: collections.deque[tuple[AuditEvent, int, int, bool]] = collections.deque()
        self._queue_on = True
        self._lpos = (0, 0)
        self._batch = False  # batch mode (batch_mode()): records stay on disk, the drain reads them natively

    # --- opening and adoption -------------------------------------------------------------------

    def _open_dirs(self) -> None:
        try:
            own = create_own(self.spool_dir)
            self._lpos = (1, 0)
            self._writer.open(own, self.spool_dir)
        except OSError as exc:
            raise SpoolWriteError(exc.errno, f"auditrail: cannot create a spool in {self.spool_dir}: "
                                  f"{exc.strerror or exc}") from exc
        self._own = own
        if self._adopt:
            for source in adopt_dead(self.spool_dir, own.path, self._counters):
                self._sources.append(source)
                self._count += source.pending
                self._counters.adopted_records += source.pending
                self._usage.used += sum(source.sizes.values()) + sum(source.link_sizes.values())
        self._sources.append(own)
        self._usage.check()
        if self.mode == "durable":
            self._sync.start_flusher()

    # --- the hot path ---------------------------------------------------------------------------

    def append(self, event: AuditEvent, linked: bool = False) -> int:
        """Record one event; returns the number waiting. Raises SpoolWriteError (SpoolFullError at the cap).

        With a linker (set_linker) the event waits for link_pending before the reader sees it; `linked`: it
        carries its chain fields already (a checkpoint, linked as it was made): nothing to link or journal."""
        try:
            payload = encode_event(event)
        except TypeError as exc:
            raise SpoolWriteError(errno.EINVAL, f"auditrail: cannot encode audit event {event.event_id} for "
                                  f"the spool in {self._own.path if self._own else self.spool_dir}: {exc}") from exc
        rec = _HEADER.pack(len(payload), zlib.crc32(payload)) + payload
        event.spooled = payload
        size = len(rec)
        lock = self._lock
        if not lock.acquire(False):
            if linked:  # a checkpoint, the drain's own: each poll would give the GIL up for a whole switch interval
                lock.acquire()
            else:
                _take_holding_gil(lock)
        try:
            if self._sync.broken is not None:
                raise self._sync.broken
            usage = self._usage
            if usage.used + size > usage.max_bytes:
                raise usage.full_error()
            writer = self._writer
            if writer.map is None:
                raise SpoolWriteError(errno.EBADF, f"auditrail: spool {self.spool_dir} is closed")
            woff = writer.off
            if woff + size > writer.cap:
                writer.rotate(size)
                woff = 0
            try:
                writer.map[woff:woff + size] = rec
            except OSError as exc:  # (pwrite only: the space of a mapped segment is allocated)
                self._counters.write_errors += 1
                _log.error("auditrail: cannot write an audit event to the spool %s: %s", self.spool_dir, exc)
                raise SpoolWriteError(exc.errno, f"auditrail: cannot write audit event to spool "
                                      f"{self.spool_dir}: {exc.strerror or exc}") from exc
            writer.off = end = woff + size
            usage.used += size
            writer.written += 1
            ticket = writer.written
            self._count += 1
            count = self._count
            if self._linker is not None:
                if self._queue_on:
                    if len(self._unlinked) < _LIVE_CAP:
                        self._unlinked.append((event, writer.seg, end, linked))
                    else:
                        self._queue_on = self._live_on = False  # the reader links the rest as it reads them
            elif self._live_on:
                if len(self._live) < _LIVE_CAP:
                    self._live.append((event, writer.seg, end, linked))
                    own = self._own
                    own.rseg = writer.seg  # type: ignore[union-attr]
                    own.roff = end  # type: ignore[union-attr]
                else:
                    self._live_on = False  # the reader reads the rest back from the file
            if not usage.over_warn and usage.used > usage.warn_at:
                usage.warn()
        finally:
            lock.release()
        if self.mode == "fail_closed":
            self._sync.wait_synced(ticket)
        return count

    # --- linking (hash chains) ---------------------------------------------------------------------

    def set_linker(self, linker: Callable[[list[AuditEvent]], None]) -> None:
        """Hash chains are linked by the drain, not inside the audited call: `linker(events)` gives each event
        its chain fields (in event.extra; an event that has them already is left as it is).

        Call before the first append. From then on an appended record waits until link_pending links it and
        writes its links to the segment's journal (``<segment>.links``: frames [u32 length][u32 crc][orjson
        [[record end offset, chain id, seq, prev hash, hash], ...]], one per write) and fdatasyncs that,
        before the reader sees it: an event is never exported before its chain fields are on disk, so a
        replay after a crash (or a power loss) resends it with the same ones. Records found without links when read back (a journal lost, the
        spool of a dead process) are linked then, into this process's chains."""
        self._linker = linker

    def link_pending(self) -> None:
        """Link the records appended since the last call, persist their links, hand them to the reader."""
        if self._linker is None:
            return
        with self._rlock:
            with self._lock:
                entries = list(self._unlinked)
            own = self._own
            if not entries or own is None:
                return
            events = [entry[0] for entry in entries if not entry[3]]
            self._linker(events)
            if len(events) == len(entries) and entries[0][1] == entries[-1][1]:  # the usual batch: one segment
                self._journal.append(own, entries[0][1], entries)
            else:
                by_seg: dict[int, list[tuple[AuditEvent, int, int, bool]]] = {}
                for entry in entries:
                    if not entry[3]:
                        by_seg.setdefault(entry[1], []).append(entry)
                for seg, records in by_seg.items():
                    self._journal.append(own, seg, records)
            with self._lock:
                unlinked, live = self._unlinked, self._live
                for _ in range(len(entries)):
                    unlinked.popleft()
                take = min(len(entries), _LIVE_CAP - len(live)) if self._live_on else 0
                if take > 0:
                    live.extend(entries[:take] if take < len(entries) else entries)
                    own.rseg, own.roff = entries[take - 1][1], entries[take - 1][2]
                if take < len(entries):
                    self._live_on = False  # the reader reads the rest back from the file
                self._lpos = (entries[-1][1], entries[-1][2])

    # --- batch mode: the drain reads its batches from the segments, natively ------------------------

    def batch_mode(self) -> bool:
        """Switch to batch mode when the native core can (True): appended records stay on disk only, and the
        drain takes them with take_encoded (linked, journalled and encoded from the segment's bytes, no
        AuditEvent per record); peek and ack remain for what it leaves (adopted spools, odd records)."""
        if not NATIVE_DRAIN or self._linker is None:
            return False
        with self._lock:
            self._batch = True
            self._queue_on = self._live_on = False
        return True

    def take_encoded(self, max_records: int, per_request: int, fields: tuple[bytes, bytes, bytes, bytes],
                     chain_for: Callable[[str | None], Any]) -> tuple[list[tuple[bytes, int, tuple[int, int]]], Any] | None:
        """Batch mode: up to `max_records` next records of this process's spool as OTLP requests of
        `per_request` records at most (`fields`: the encoder's resource and scope fields), their new links
        journalled first; ([(request, its records, position after them)], {tenant: records linked}). None when
        there is nothing to take this way now (adopted spools or a peek buffer go first, nothing written, a
        record the native core leaves to the Python path): peek then. The caller holds the chains' lock; it
        sends the requests in order, and calls ack_encoded(records, position) for each one accepted."""
        with self._rlock:
            own = self._own
            if own is None or self._buf or any(s.adopted for s in self._sources):
                return None
            return self._drain.take(own, max_records, per_request, fields, chain_for)

    def link_through(self, fields: tuple[bytes, bytes, bytes, bytes],
                     chain_for: Callable[[str | None], Any]) -> dict[str | None, int]:
        """Batch mode: link and journal every record written so far that has no links yet (a checkpoint must
        come after them in its chain); {tenant: records linked}. The caller holds the chains' lock."""
        with self._rlock:
            own = self._own
            if own is None or not self._batch:
                return {}
            return self._drain.link_through(own, fields, chain_for, self._apply_links)

    def ack_encoded(self, count: int, position: tuple[int, int]) -> None:
        """Batch mode: the records of a take_encoded request were accepted downstream: forget them."""
        with self._rlock:
            own = self._own
            assert own is not None
            seg, end = position
            with self._lock:
                own.rseg, own.roff = seg, end
            self._advance(own, seg, end)
            with self._lock:
                self._count -= count

    def _apply_links(self, src: _Source, seg: int, records: list[tuple[AuditEvent, int]]) -> None:
        """Give records read back from a segment their journalled links; link (and journal) those without."""
        if self._linker is None or not records:
            return
        self._journal.apply(src, seg, records, self._linker)

    # --- syncing ----------------------------------------------------------------------------------

    def _fsync(self, fd: int) -> None:
        """fdatasync one file (a hook: subclasses may count or fail it)."""
        os.fdatasync(fd)

    def _call_fsync(self, fd: int) -> None:
        """_fsync as it is when called (the parts get this: a test may replace _fsync on the instance)."""
        self._fsync(fd)

    def flush(self) -> None:
        """fsync now (durable mode syncs by itself within 50 ms)."""
        self._sync.flush_once()

    # --- disk cap ---------------------------------------------------------------------------------

    def refusal(self) -> str | None:
        """Why an append would be refused now: a damaged spool, or one at its disk cap."""
        broken = self._sync.broken
        if broken is not None:
            return str(broken)
        return self._usage.refusal()

    def full(self) -> bool:
        """At the cap, less room for a few records (a lock-free read: the hot path asks before each action)."""
        usage = self._usage
        return usage.used >= usage.full_at

    def wait_for_space(self, timeout: float | None = None) -> bool:
        """Block until the spool is under its cap (acks freed a segment); False on timeout."""
        return self._usage.wait(timeout)

    @property
    def disk_bytes(self) -> int:
        """Bytes of unacknowledged segments on disk (own and adopted)."""
        return self._usage.used

    @property
    def path(self) -> str:
        """This process's spool directory."""
        return self._own.path if self._own else self.spool_dir

    # --- the read side ----------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._count

    def peek(self, max_items: int) -> list[AuditEvent]:
        """Up to `max_items` of the oldest unacknowledged events (not removed)."""
        with self._rlock:
            self._fill(max_items)
            return [item[0] for item in itertools.islice(self._buf, max_items)]

    def ack(self, count: int) -> None:
        """Forget the `count` oldest events; persists the position and deletes finished segments."""
        with self._rlock:
            self._fill(count)
            buf = self._buf
            n = min(count, len(buf))
            if not n:
                return
            last: dict[int, tuple[_Source, int, int]] = {}
            for _ in range(n):
                _, src, seg, end = buf.popleft()
                last[id(src)] = (src, seg, end)
            for src, seg, end in last.values():
                self._advance(src, seg, end)
            with self._lock:  # last: whoever sees the spool empty (force_flush) also sees the space it freed
                self._count -= n

    def _advance(self, src: _Source, seg: int, end: int) -> None:
        """Persist `src`'s acknowledged position; delete the segments (or the directory) it finished."""
        buf = self._buf
        if src.adopted and src.read_done and (not buf or buf[0][1] is not src):
            self._drop_adopted(src)
            return
        with self._lock:
            last_seg = src.segs[-1] if src.adopted else self._writer.seg
            if seg < last_seg and end >= src.sizes.get(seg, end + 1):
                seg, end = next(n for n in src.segs if n > seg), 0  # that segment is finished
            src.ack_seg, src.ack_off = seg, end
            doomed = [n for n in src.segs if n < seg]
            src.segs = [n for n in src.segs if n >= seg]
            freed = sum(src.sizes.pop(n, 0) for n in doomed)
            freed += sum(src.link_sizes.get(n, 0) for n in doomed)
        try:
            src.write_cursor()
        except OSError as exc:
            _log.error("auditrail: cannot write the spool cursor in %s: %s (acknowledged events may be resent)",
                       src.path, exc)
        for n in doomed:  # after the cursor moved past them
            self._reader.close_fd(src.seg_path(n))
            _unlink_quiet(src.seg_path(n))
            self._journal.forget(src, n)
        if not src.adopted:
            freed += self._maybe_reset_own(src)
        if freed:
            self._usage.freed(freed)

    def _drop_adopted(self, src: _Source) -> None:
        """Everything of an adopted directory is acknowledged: remove it."""
        for n in src.segs:
            self._reader.close_fd(src.seg_path(n))
        with self._lock:
            freed = sum(src.sizes.values()) + sum(src.link_sizes.values())
        for n in list(src.link_sizes):
            self._journal.forget(src, n)
        with self._lock:
            self._sources = [s for s in self._sources if s is not src]
        src.remove()
        self._usage.freed(freed)

    def _maybe_reset_own(self, src: _Source) -> int:
        """All we wrote is acknowledged and the segment is big: start a new segment and delete this one."""
        writer = self._writer
        with self._lock:
            if (src.ack_seg != writer.seg or src.ack_off != writer.off or writer.off < self.segment_bytes // 4
                    or self._live or not self._live_on or self._buf or self._unlinked or writer.map is None):
                return 0
            old, size = writer.seg, writer.off
            try:
                writer.rotate(0)
            except SpoolWriteError:
                return 0
            src.ack_seg, src.ack_off = src.rseg, src.roff = writer.seg, 0
            self._lpos = (writer.seg, 0)
            src.segs.remove(old)
            src.sizes.pop(old, None)
            size += src.link_sizes.get(old, 0)
        try:
            src.write_cursor()
        except OSError:
            pass
        self._reader.close_fd(src.seg_path(old))
        _unlink_quiet(src.seg_path(old))
        self._journal.forget(src, old)
        return size

    def _fill(self, want: int) -> None:
        """Top the peek buffer up to `want` events: adopted spools first, then ours (memory, else disk)."""
        buf = self._buf
        own = self._own
        assert own is not None
        while len(buf) < want:
            src = next((s for s in self._sources if s.adopted and not s.read_done), None)
            if src is not None:
                self._read_adopted(src, want - len(buf))
                continue
            with self._lock:
                live = self._live
                take = min(len(live), want - len(buf))
                if take > 0:
                    popleft = live.popleft
                    buf.extend([(item[0], own, item[1], item[2]) for item in (popleft() for _ in range(take))])
                if len(buf) >= want or self._live_on:
                    return
                # The reader's limit: what the writer wrote; with hash chains, while records wait in the queue,
                # the last one link_pending took (those beyond it are linked by link_pending first).
                queued = self._linker is not None and (self._queue_on or self._unlinked)
                lseg, loff = self._lpos if queued else (self._writer.seg, self._writer.off)
                if (own.rseg, own.roff) == (lseg, loff):
                    if (self._queue_on or not queued) and not self._batch:
                        # Caught up: new events go to memory again. Resync the count (exact here).
                        self._live_on = self._queue_on = True
                        self._count = len(buf) + len(self._unlinked)
                    return
                rseg, roff = own.rseg, own.roff
            if rseg < lseg and roff >= own.sizes.get(rseg, 0):
                with self._lock:
                    own.rseg, own.roff = rseg + 1, 0
                continue
            limit = loff if rseg == lseg else own.sizes[rseg]
            records, end, skipped, bad = self._reader.records(own.seg_path(rseg), roff, limit, want - len(buf))
            if bad:
                self._counters.corrupt_regions += 1
                _log.error("auditrail: spool %s: corrupt record at offset %d: %d bytes (at least one audit event) "
                           "skipped to the end of what was written", own.seg_path(rseg), end, limit - end)
                end = limit
            self._apply_links(own, rseg, records)
            for ev, rec_end in records:
                buf.append((ev, own, rseg, rec_end))
            with self._lock:
                own.rseg, own.roff = rseg, end
                self._count -= skipped

    def _read_adopted(self, src: _Source, want: int) -> None:
        """Read up to `want` records of an adopted directory, or mark it read to the end."""
        seg, off = src.rseg, src.roff
        later = [n for n in src.segs if n >= seg]
        if later and later[0] != seg:
            seg, off = later[0], 0
        while later:
            limit = src.sizes.get(seg, 0)
            if off < limit:
                records, end, skipped, bad = self._reader.records(src.seg_path(seg), off, limit, want)
                if bad:  # verified at adoption: changed since
                    self._counters.corrupt_regions += 1
                    _log.error("auditrail: spool %s: corrupt record at offset %d (changed after adoption?)",
                               src.seg_path(seg), end)
                    end = limit
                self._apply_links(src, seg, records)
                for ev, rec_end in records:
                    self._buf.append((ev, src, seg, rec_end))
                src.pending -= len(records) + skipped
                src.rseg, src.roff = seg, end
                if skipped:
                    with self._lock:
                        self._count -= skipped
                if records:
                    return
                off = end
                continue
            nxt = [n for n in src.segs if n > seg]
            if not nxt:
                break
            seg, off = nxt[0], 0
        src.read_done = True
        if src.pending:  # records counted at adoption that could not be read after all
            with self._lock:
                self._count -= src.pending
            src.pending = 0
        if not any(entry[1] is src for entry in self._buf):
            self._drop_adopted(src)

    # --- lifecycle --------------------------------------------------------------------------------

    def close(self) -> None:
        """Sync, release the files and locks; unacknowledged events stay on disk for the next start."""
        if self._closed:
            return
        self._closed = self._usage.closed = True
        self._sync.stop_flusher()
        with self._lock:  # appends from now on are refused
            self._writer.finish()
        try:
            self._sync.sync_pass()
        except OSError as exc:
            _log.error("auditrail: final fsync of the spool %s failed: %s", self.spool_dir, exc)
        with self._lock:
            self._writer.close()
        self._reader.close()
        self._journal.close()
        for src in self._sources:
            if src.adopted:
                src.release()  # the next start adopts what is left
        own = self._own
        if own is not None:
            if self._count == 0 and not any(s.adopted for s in self._sources):
                own.remove()
            else:
                own.release()
        self._usage.wake()

    def after_fork_in_child(self) -> None:
        """In a forked child: a spool of its own (the parent keeps its files, locks and queued events)."""
        inherited = [*self._reader.fds.values(), *self._journal.fds.values(),
                     *(fd for s in self._sources for fd in (s.cursor_fd, s.lock_fd))]
        self._writer.forget_inherited()
        for fd in inherited:
            _close_quiet(fd)  # closing our copy never releases the parent's flock (it holds its own fd)
        self._counters.syncs = 0
        batch = self._batch
        self._init_state()
        self._open_dirs()
        if batch:  # the child's drain reads its batches from the child's spool too
            self._batch = True
            self._queue_on = self._live_on = False

    def __enter__(self) -> DiskSpool:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __iter__(self) -> Iterator[AuditEvent]:  # pragma: no cover - debugging aid
        return iter(self.peek(self._count))
