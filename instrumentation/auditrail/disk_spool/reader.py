"""Reading records back from the segments: a chunk at a time, decoded natively when the core is built (its
read_frames), else by records._read_frames; undecodable records are logged, counted and skipped."""

from __future__ import annotations

import logging
import os

from ..events import AuditEvent
from ..native import native_function
from .counters import SpoolCounters
from .files import _close_quiet
from .records import _HEADER, _HEADER_SIZE, _read_frames, decode_event

_log = logging.getLogger("auditrail")

_native_read = native_function("read_frames")  # _scan + decode_event over a chunk; None: they run
_READ_CHUNK = 1024 * 1024


class SegmentReader:
    """The segments open for reading (kept open until deleted or the spool closes); used by the drain only."""

    def __init__(self, counters: SpoolCounters) -> None:
        self._counters = counters
        self.fds: dict[str, int] = {}

    def fd(self, path: str) -> int:
        """A segment, open for reading (kept open until it is deleted or the spool closes)."""
        fd = self.fds.get(path)
        if fd is None:
            fd = self.fds[path] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        return fd

    def records(self, path: str, off: int, limit: int,
                want: int) -> tuple[list[tuple[AuditEvent, int]], int, int, bool]:
        """Decode up to `want` records of a segment from `off` up to `limit`.

        Returns ([(event, end offset)], next offset, undecodable records skipped, hit a bad frame)."""
        fd = self.fd(path)
        out: list[tuple[AuditEvent, int]] = []
        skipped = 0
        read = _native_read or _read_frames
        while len(out) + skipped < want and off < limit:
            data = os.pread(fd, min(_READ_CHUNK, limit - off), off)
            if len(data) >= _HEADER_SIZE:
                need = _HEADER_SIZE + _HEADER.unpack_from(data, 0)[0]
                if len(data) < need <= limit - off:
                    data = os.pread(fd, need, off)  # one record larger than a chunk
            records, errors, pos, bad = read(data, want - len(out) - skipped, off, AuditEvent, decode_event)
            if not records and not errors:
                return out, off, skipped, True  # bad, or a record running past what was written
            out.extend(records)
            for at, message in errors:
                skipped += 1
                self._counters.corrupt_regions += 1
                _log.error("auditrail: spool %s: undecodable record at offset %d skipped: %s", path, at, message)
            off += pos
            if bad:
                return out, off, skipped, True
        return out, off, skipped, False

    def close_fd(self, path: str) -> None:
        """Close a segment (it is deleted)."""
        fd = self.fds.pop(path, None)
        if fd is not None:
            _close_quiet(fd)

    def close(self) -> None:
        """Close every segment open for reading."""
        for fd in self.fds.values():
            _close_quiet(fd)
        self.fds.clear()
