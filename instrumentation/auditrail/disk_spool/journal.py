"""The link journals of hash chains: beside each segment, ``<segment>.links`` holds the chain fields the drain
gave its records (frames as the records', each the orjson [[record end offset, chain id, seq, prev hash, hash],
...] of one write), fdatasynced before the reader sees those records (see DiskSpool.set_linker)."""

from __future__ import annotations

import errno
import logging
import os
import threading
import zlib
from collections.abc import Callable
from typing import Any

import orjson

from .. import semconv
from ..events import AuditEvent
from ..native import native_function
from .counters import SpoolCounters
from .files import _close_quiet, _fsync_dir, _unlink_quiet
from .records import _CHAIN_KEYS, _END, _HEADER, _HEADER_SIZE, _LINK, _journal_entries, _scan
from .sources import _Source
from .space import SpaceAccount

_log = logging.getLogger("auditrail")

_native_journal = native_function("journal_payload")  # a journal frame's JSON; None: orjson writes it


class LinkJournal:
    """The link journals of a spool's directories: appended and synced, read back (cached), deleted with their
    segment. Its fds and cache are the read side's (the drain's); sizes and disk use change under `lock`."""

    def __init__(self, lock: threading.Lock, usage: SpaceAccount, counters: SpoolCounters,
                 fsync: Callable[[int], None]) -> None:
        self._lock = lock
        self._usage = usage
        self._counters = counters
        self._fsync = fsync
        self.fds: dict[str, int] = {}  # path -> fd open for appending
        # path -> (journal size, its links, frames written since that are not read into them yet)
        self._cache: dict[str, tuple[int, dict[int, list[Any]], list[bytes]]] = {}

    def append(self, src: _Source, seg: int, records: list[tuple[AuditEvent, int, int, bool]]) -> None:
        """Append link frames to a segment's journal and fdatasync it. A failure is logged and counted, and
        delivery goes on: the events then carry links that a crash before their export would not keep (the
        next start links them anew; the store keeps the copy it got first)."""
        # One frame per write: torn, it takes only its own records with it. The native core writes it (unless
        # a value is one only orjson writes).
        payload = _native_journal(records) if _native_journal is not None else None
        if payload is None:
            payload = orjson.dumps(_journal_entries(records))
        self.append_frame(src, seg, payload, len(records), max(end for _, _, end, _ in records))

    def append_frame(self, src: _Source, seg: int, payload: bytes, count: int, end: int) -> None:
        """Append one frame (the JSON links of `count` records of segment `seg`, the last of them ending at
        `end` or before) to the segment's journal and fdatasync it."""
        data = _HEADER.pack(len(payload), zlib.crc32(payload)) + payload
        error = None
        try:
            fd = self.fd(src, seg)
            try:
                if os.write(fd, data) != len(data):
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            except OSError:
                os.ftruncate(fd, src.link_sizes.get(seg, 0))  # no torn frame before the next ones
                raise
            self._fsync(fd)
        except OSError as exc:
            error = exc
        self.appended(src, seg, payload, count, end, error)

    def fd(self, src: _Source, seg: int) -> int:
        """A segment's journal, open for appending (created, and its directory synced, on first use)."""
        path = src.links_path(seg)
        fd = self.fds.get(path)
        if fd is None:
            fd = self.fds[path] = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            _fsync_dir(src.path)
        return fd

    def appended(self, src: _Source, seg: int, payload: bytes, count: int, end: int, error: OSError | None) -> None:
        """A journal frame (as append_frame says) was appended and synced: count it; or `error` kept it
        out: log that. A failure is logged and counted, and delivery goes on (see append): the links are
        kept in the journal's cache, so a batch read again (a failed export, a checkpoint's link_through
        before it) gets the same links, not new seqs after them."""
        path = src.links_path(seg)
        if error is not None:
            self._counters.link_errors += 1
            if self._counters.link_errors == 1 or self._counters.link_errors % 1000 == 0:
                _log.error("auditrail: cannot write the chain links of %d audit events to %s: %s (%d such "
                           "errors)", count, path, error.strerror or error, self._counters.link_errors)
            try:
                self.links(src, seg)  # the cache, current: the frame joins it unwritten, read when asked
            except OSError:  # (nor read: these links are lost to a re-read, which links those events anew)
                return
            self._cache[path][2].append(payload)
            with self._lock:
                src.linked_to = max(src.linked_to, (seg, end))
            return
        frame = _HEADER_SIZE + len(payload)
        with self._lock:
            size = src.link_sizes.get(seg, 0)
            src.link_sizes[seg] = size + frame
            self._usage.used += frame
            src.linked_to = max(src.linked_to, (seg, end))
        cached = self._cache.get(path)
        if cached is not None and cached[0] == size:  # keep the cache current: the frame is read when asked
            cached[2].append(payload)
            self._cache[path] = (size + frame, cached[1], cached[2])

    def links(self, src: _Source, seg: int) -> dict[int, list[Any]]:
        """A segment's journal: record end offset -> [chain id, seq, prev hash, hash] (cached by size)."""
        path = src.links_path(seg)
        size = src.link_sizes.get(seg, 0)
        cached = self._cache.get(path)
        if cached is not None and cached[0] == size:
            links, unread = cached[1], cached[2]
            for payload in unread:  # what the frames written since say, read back
                entries = orjson.loads(payload)
                links.update(zip(map(_END, entries), map(_LINK, entries), strict=True))
            unread.clear()
            return links
        links = {}
        try:
            with open(path, "rb") as f:
                data = f.read(size)
        except FileNotFoundError:
            data = b""
        frames, _, _ = _scan(memoryview(data), 0, len(data))
        for start, stop in frames:
            try:
                entries = orjson.loads(data[start:stop])
            except orjson.JSONDecodeError:
                continue
            for entry in entries if type(entries) is list else ():
                if type(entry) is list and len(entry) == 1 + len(_CHAIN_KEYS):
                    links[entry[0]] = entry[1:]
        self._cache[path] = (size, links, [])
        return links

    def apply(self, src: _Source, seg: int, records: list[tuple[AuditEvent, int]],
              linker: Callable[[list[AuditEvent]], None]) -> None:
        """Give records read back from a segment their journalled links; link (and journal) those without."""
        links = self.links(src, seg)
        need: list[tuple[AuditEvent, int]] = []
        for event, end in records:
            link = links.get(end)
            if link is not None:
                extra = event.extra
                if extra is None:
                    extra = event.extra = {}
                for key, value in zip(_CHAIN_KEYS, link, strict=True):
                    extra[key] = value
            elif not (event.extra and semconv.CHAIN_HASH in event.extra):
                need.append((event, end))
        if need:
            linker([event for event, _ in need])
            self.append(src, seg, [(event, seg, end, False) for event, end in need])

    def forget(self, src: _Source, seg: int) -> int:
        """Close and delete a segment's journal (the segment is acknowledged); returns its bytes."""
        path = src.links_path(seg)
        fd = self.fds.pop(path, None)
        if fd is not None:
            _close_quiet(fd)
        self._cache.pop(path, None)
        _unlink_quiet(path)
        return src.link_sizes.pop(seg, 0)

    def close(self) -> None:
        """Close every journal (they stay on disk)."""
        for fd in self.fds.values():
            _close_quiet(fd)
        self.fds.clear()
