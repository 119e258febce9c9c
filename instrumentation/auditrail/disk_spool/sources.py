"""The spool's directories: this process's own, and those of dead processes it adopts (verified, torn tails cut).

    <spool_dir>/<pid>-<random>/lock     exclusive fcntl.flock held for the life of the spool
    <spool_dir>/<pid>-<random>/cursor   "<segment> <offset>": the first unacknowledged record
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import sys

from .counters import SpoolCounters
from .files import _LINKS_SUFFIX, _close_quiet, _list_segments, _seg_name, _unlink_quiet
from .records import _scan

_log = logging.getLogger("auditrail")

_CURSOR_WIDTH = 40  # "<segment> <offset>" padded: every cursor write covers the one before


class _Source:
    """One spool directory: ours (written now) or adopted from a dead process (read only)."""

    __slots__ = ("path", "lock_fd", "cursor_fd", "adopted", "segs", "sizes", "ack_seg", "ack_off", "rseg", "roff",
                 "pending", "read_done", "link_sizes", "linked_to")

    def __init__(self, path: str, lock_fd: int, adopted: bool) -> None:
        self.path = path
        self.lock_fd = lock_fd
        self.cursor_fd = -1  # opened on the first write
        self.adopted = adopted
        self.segs: list[int] = []  # segment numbers on disk, oldest first
        self.sizes: dict[int, int] = {}  # final (valid) size of each segment no longer written
        self.ack_seg = 0
        self.ack_off = 0
        self.rseg = 0  # the next record not yet handed to the reader (for ours: nor kept in memory)
        self.roff = 0
        self.pending = 0  # adopted: records counted at adoption not yet read
        self.read_done = False
        self.link_sizes: dict[int, int] = {}  # bytes of each segment's link journal (see DiskSpool.set_linker)
        # (segment, offset) before which records may have journalled links (ours: after it none has; an
        # adopted directory's journals were written by another process: anywhere)
        self.linked_to = (sys.maxsize, 0) if adopted else (-1, 0)

    def seg_path(self, n: int) -> str:
        return os.path.join(self.path, _seg_name(n))

    def links_path(self, n: int) -> str:
        return os.path.join(self.path, f"{n:016d}{_LINKS_SUFFIX}")

    def write_cursor(self) -> None:
        if self.cursor_fd < 0:
            self.cursor_fd = os.open(os.path.join(self.path, "cursor"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        os.pwrite(self.cursor_fd, f"{self.ack_seg} {self.ack_off}".ljust(_CURSOR_WIDTH).encode() + b"\n", 0)

    def read_cursor(self) -> tuple[int, int]:
        try:
            with open(os.path.join(self.path, "cursor")) as f:
                seg, off = f.read().split()
            return int(seg), int(off)
        except (OSError, ValueError):
            return 0, 0

    def remove(self) -> None:
        """Delete the directory (everything in it was acknowledged) and release its lock."""
        for name in os.listdir(self.path):
            if name != "lock":
                _unlink_quiet(os.path.join(self.path, name))
        _unlink_quiet(os.path.join(self.path, "lock"))
        try:
            os.rmdir(self.path)
        except OSError:
            pass
        self.release()

    def release(self) -> None:
        """Close the directory's files, its lock last (the directory is then free for adoption)."""
        _close_quiet(self.cursor_fd)
        _close_quiet(self.lock_fd)
        self.lock_fd = self.cursor_fd = -1


def create_own(spool_dir: str) -> _Source:
    """A new, locked directory for this process under `spool_dir`. Raises OSError."""
    os.makedirs(spool_dir, exist_ok=True)
    name = f"{os.getpid()}-{secrets.token_hex(4)}"
    tmp = os.path.join(spool_dir, f".new-{name}")
    os.mkdir(tmp)
    lock_fd = os.open(os.path.join(tmp, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    # Renamed only once locked: a scanning process never sees an unlocked live directory.
    path = os.path.join(spool_dir, name)
    os.rename(tmp, path)
    return _Source(path, lock_fd, adopted=False)


def adopt_dead(spool_dir: str, own_path: str, counters: SpoolCounters) -> list[_Source]:
    """The directories under `spool_dir` of processes that are gone, locked and verified, oldest first: those
    holding unacknowledged records (the others are removed)."""
    adopted: list[_Source] = []
    try:
        names = os.listdir(spool_dir)
    except OSError:
        return adopted
    for _, name in sorted(_age(spool_dir, name) for name in names):  # oldest spool first
        path = os.path.join(spool_dir, name)
        if name.startswith(".") or path == own_path or not os.path.isdir(path):
            continue
        try:
            fd = os.open(os.path.join(path, "lock"), os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            continue  # being removed, or not a spool
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)  # alive (or adopted by another process)
            continue
        if not os.path.exists(path):  # removed between open and flock by whoever held it
            os.close(fd)
            continue
        source = _Source(path, fd, adopted=True)
        try:
            _recover(source, counters)
        except OSError as exc:
            _log.error("auditrail: cannot adopt spool %s: %s (left for a later start)", path, exc)
            os.close(fd)
            continue
        if source.pending == 0:
            source.remove()
            continue
        _log.warning("auditrail: adopted %d unsent audit events from the spool of a process that is gone (%s)",
                     source.pending, path)
        adopted.append(source)
    return adopted


def _recover_links(source: _Source, segs: set[int]) -> None:
    """An adopted directory's link journals: delete those of gone segments, cut a torn tail off the others
    (frames appended later must follow a whole one), count their bytes."""
    for name in os.listdir(source.path):
        stem = name[: -len(_LINKS_SUFFIX)]
        if not (name.endswith(_LINKS_SUFFIX) and stem.isdigit()):
            continue
        path = os.path.join(source.path, name)
        if int(stem) not in segs:
            _unlink_quiet(path)
            continue
        with open(path, "r+b") as f:
            data = f.read()
            _, end, _ = _scan(memoryview(data), 0, len(data))
            if end < len(data):
                f.truncate(end)
                os.fsync(f.fileno())
        source.link_sizes[int(stem)] = end


def _age(spool_dir: str, name: str) -> tuple[int, str]:
    """(creation time of the spool's lock file, name): adopted spools are delivered oldest first."""
    try:
        return os.stat(os.path.join(spool_dir, name, "lock")).st_mtime_ns, name
    except OSError:
        return 0, name


def _recover(source: _Source, counters: SpoolCounters) -> None:
    """Verify an adopted directory: count its unacknowledged records, cut a torn tail, skip corruption."""
    cseg, coff = source.read_cursor()
    segs = _list_segments(source.path)
    for n in [n for n in segs if n < cseg]:
        _unlink_quiet(source.seg_path(n))  # acknowledged, deletion did not happen before the crash
    segs = [n for n in segs if n >= cseg]
    _recover_links(source, set(segs))
    if segs and segs[0] != cseg:
        cseg, coff = segs[0], 0  # the cursor's segment is gone: it was fully acknowledged
    for i, n in enumerate(segs):
        last = i == len(segs) - 1
        path = source.seg_path(n)
        with open(path, "rb") as f:
            data = f.read()
        start = coff if n == cseg else 0
        start = min(start, len(data))
        frames, end, bad = _scan(data, start, len(data))
        written = len(data.rstrip(b"\0"))  # beyond: the zeros of a segment that was never finished
        if end < len(data) and written <= end:
            os.truncate(path, end)  # nothing was lost: give the unused space back
        elif end < len(data):
            cut = written - end
            if last:
                with open(path, "r+b") as f:
                    f.truncate(end)
                    os.fsync(f.fileno())
                counters.truncated_bytes += cut
                _log.warning("auditrail: spool %s: cut a torn record at the tail (%d bytes at offset %d): "
                             "a crash interrupted a write", path, cut, end)
            else:
                counters.corrupt_regions += 1
                _log.error("auditrail: spool %s: corrupt record at offset %d: %d bytes (at least one audit "
                           "event) skipped, continuing with the next segment; %d good records before it",
                           path, end, cut, len(frames))
        source.segs.append(n)
        source.sizes[n] = end
        source.pending += len(frames)
    source.ack_seg, source.ack_off = source.rseg, source.roff = (cseg, coff) if segs else (0, 0)
