"""The segment being written: created allocated and mapped (or pwritten where mapping is unsafe), rotated when
full; rotated segments wait for their last sync (see syncing.py).

    <spool_dir>/<pid>-<random>/0000000000000001.seg  records: [u32 length][u32 crc32(payload)][payload]
"""

from __future__ import annotations

import logging
import mmap
import os

from .counters import SpoolCounters
from .errors import SpoolWriteError
from .files import (
    _MAPPABLE_FS,
    _close_quiet,
    _finish_segment,
    _fsync_dir,
    _open_segment,
    _WrittenSegment,
    filesystem_type,
)
from .sources import _Source

_log = logging.getLogger("auditrail")


class SegmentWriter:
    """This process's segments, written under the spool's write lock (every field is read and changed there).

    The append itself (DiskSpool.append, the hot path) copies into `map` at `off` and moves `off` and
    `written` on; rotate() starts the next segment."""

    __slots__ = ("own", "segment_bytes", "counters", "fd", "mapped", "map", "cap", "seg", "off", "written",
                 "retired", "dir_dirty")

    def __init__(self, segment_bytes: int, counters: SpoolCounters) -> None:
        self.own: _Source | None = None
        self.segment_bytes = segment_bytes
        self.counters = counters
        self.fd = -1
        self.mapped = False  # whether segments are mapped (see _MAPPABLE_FS)
        self.map: mmap.mmap | _WrittenSegment | None = None  # the segment being written (None once closed)
        self.cap = 0  # its size
        self.seg = 0
        self.off = 0
        self.written = 0  # records written (monotonic): the group-commit ticket
        self.retired: list[int] = []  # fds of rotated segments, closed after their last sync
        self.dir_dirty = False

    def open(self, own: _Source, spool_dir: str) -> None:
        """Start writing `own`'s first segment (its directory and `spool_dir` synced). Raises OSError."""
        own.ack_seg = own.rseg = self.seg = 1
        own.segs.append(1)
        own.write_cursor()
        self.own = own
        self.mapped = filesystem_type(os.path.realpath(own.path)) in _MAPPABLE_FS
        self.fd, self.map = _open_segment(own.seg_path(1), self.segment_bytes, self.mapped)
        self.cap = self.segment_bytes
        _fsync_dir(own.path)
        _fsync_dir(spool_dir)

    def rotate(self, need: int) -> None:
        """Start a new segment with room for `need` bytes (under the write lock); the old one is unmapped and
        cut to its records here, synced and closed by the next sync pass."""
        own = self.own
        assert own is not None
        nxt = self.seg + 1
        size = max(self.segment_bytes, -(-need // mmap.PAGESIZE) * mmap.PAGESIZE)
        try:
            fd, segment = _open_segment(own.seg_path(nxt), size, self.mapped)
        except OSError as exc:
            self.counters.write_errors += 1
            _log.error("auditrail: cannot create spool segment %s: %s", own.seg_path(nxt), exc.strerror or exc)
            raise SpoolWriteError(exc.errno, f"auditrail: cannot create spool segment {own.seg_path(nxt)}: "
                                  f"{exc.strerror or exc}") from exc
        if self.map is not None:
            _finish_segment(self.fd, self.map, self.off)
        own.sizes[self.seg] = self.off
        own.segs.append(nxt)
        self.retired.append(self.fd)
        self.fd, self.map, self.cap = fd, segment, size
        self.seg = nxt
        self.off = 0
        self.dir_dirty = True

    def finish(self) -> None:
        """Stop writing: unmap the segment and cut it to its records (under the write lock)."""
        if self.map is not None:
            _finish_segment(self.fd, self.map, self.off)
            self.map = None

    def close(self) -> None:
        """Close the segments' files (after the last sync pass; under the write lock)."""
        for fd in self.retired:
            _close_quiet(fd)
        self.retired = []
        _close_quiet(self.fd)
        self.fd = -1

    def forget_inherited(self) -> None:
        """In a forked child: close our copies of the parent's segment files, unmap our view of its segment."""
        for fd in (self.fd, *self.retired):
            _close_quiet(fd)  # closing our copy never releases the parent's flock (it holds its own fd)
        if self.map is not None:
            self.map.close()  # unmaps our view only: the parent's segment and its size stay as they are
