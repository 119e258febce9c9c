"""The spool's files: segment names, segments created allocated and mapped (or pwritten), quiet cleanup."""

from __future__ import annotations

import errno
import logging
import mmap
import os

_log = logging.getLogger("auditrail")

_SEG_SUFFIX = ".seg"
_LINKS_SUFFIX = ".links"


def _seg_name(n: int) -> str:
    return f"{n:016d}{_SEG_SUFFIX}"


def _list_segments(path: str) -> list[int]:
    out = []
    for name in os.listdir(path):
        if name.endswith(_SEG_SUFFIX) and name[: -len(_SEG_SUFFIX)].isdigit():
            out.append(int(name[: -len(_SEG_SUFFIX)]))
    return sorted(out)


def _unlink_quiet(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _close_quiet(fd: int) -> None:
    if fd >= 0:
        try:
            os.close(fd)
        except OSError:
            pass


# Filesystems on which a page of blocks allocated by posix_fallocate takes writes without allocating more:
# there a mapped segment never faults for space (SIGBUS). Copy-on-write ones (btrfs, ZFS, ...) allocate anew
# on every overwrite, so elsewhere segments are written with pwrite, whose ENOSPC is an error, not a signal.
_MAPPABLE_FS = frozenset({"ext2", "ext3", "ext4", "xfs", "tmpfs"})


def filesystem_type(path: str) -> str:
    """The type of the filesystem holding the absolute `path` ("ext4", "btrfs", ...; "" when unknown)."""
    best, fstype = "", ""
    try:
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                mount = parts[1] if len(parts) > 2 else ""
                if (path == mount or path.startswith(mount.rstrip("/") + "/")) and len(mount) >= len(best):
                    best, fstype = mount, parts[2]
    except OSError:
        pass
    return fstype


class _WrittenSegment:
    """A segment being written where mapping it is not safe (see _MAPPABLE_FS): the mmap's slice assignment,
    done by pwrite."""

    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __setitem__(self, where: slice, data: bytes) -> None:
        if os.pwrite(self.fd, data, where.start) != len(data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def close(self) -> None:
        """Nothing is mapped."""


def _open_segment(path: str, size: int, mapped: bool) -> tuple[int, mmap.mmap | _WrittenSegment]:
    """Create a segment of `size` bytes, its blocks allocated (posix_fallocate), mapped for writing if `mapped`."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        os.posix_fallocate(fd, 0, size)
        if not mapped:
            return fd, _WrittenSegment(fd)
        return fd, mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    except BaseException:
        os.close(fd)
        _unlink_quiet(path)
        raise


def _finish_segment(fd: int, segment: mmap.mmap | _WrittenSegment, size: int) -> None:
    """Unmap a segment and cut its unwritten tail (a failed cut only leaves zeros that readers skip)."""
    segment.close()
    try:
        os.ftruncate(fd, size)
    except OSError as exc:
        _log.warning("auditrail: cannot trim a spool segment to its records: %s", exc)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
