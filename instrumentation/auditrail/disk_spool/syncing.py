"""fdatasync of the segments: group commit for fail_closed (appenders share one fsync), a flusher thread
syncing every SYNC_INTERVAL for durable."""

from __future__ import annotations

import errno
import os
import logging
import threading
from collections.abc import Callable

from .counters import SpoolCounters
from .errors import SpoolWriteError
from .files import _fsync_dir
from .segments import SegmentWriter

_log = logging.getLogger("auditrail")

SYNC_INTERVAL = 0.05


class GroupCommit:
    """Syncs what `writer` wrote: sync_pass() once, wait_synced() for a fail_closed append, a durable flusher."""

    def __init__(self, writer: SegmentWriter, lock: threading.Lock, counters: SpoolCounters,
                 fsync: Callable[[int], None], spool_dir: str) -> None:
        self._writer = writer
        self._lock = lock  # the spool's write lock: the writer's fields
        self._counters = counters
        self._fsync = fsync
        self._spool_dir = spool_dir
        self._cv = threading.Condition(threading.Lock())  # group commit
        self._syncing = False
        self._mutex = threading.Lock()  # one fsync pass at a time
        self.synced = 0  # records known synced
        self._failed_upto = 0  # records <= this whose sync failed
        self._error: OSError | None = None
        self.broken: SpoolWriteError | None = None  # fail_closed after a failed fsync: refuse everything
        self._flusher: threading.Thread | None = None
        self._stop = threading.Event()

    def _where(self) -> str:
        own = self._writer.own
        return own.path if own else self._spool_dir

    def sync_pass(self) -> int:
        """fsync everything written so far; returns the ticket it covers. Raises OSError."""
        writer = self._writer
        with self._mutex:
            with self._lock:
                target = writer.written
                fd = writer.fd
                retired, writer.retired = writer.retired, []
                dir_dirty, writer.dir_dirty = writer.dir_dirty, False
                own = writer.own
            try:
                for old in retired:
                    self._fsync(old)
                    os.close(old)
                    retired = retired[1:]
                if fd >= 0:
                    self._fsync(fd)
                if dir_dirty and own is not None:
                    _fsync_dir(own.path)
            except OSError:
                with self._lock:
                    writer.retired[:0] = retired
                    writer.dir_dirty = writer.dir_dirty or dir_dirty
                raise
            self._counters.syncs += 1
            return target

    def wait_synced(self, ticket: int) -> None:
        """Group commit: the first waiter syncs for all written so far; the others wait for it."""
        cv = self._cv
        with cv:
            while True:
                if self.synced >= ticket:
                    return
                if ticket <= self._failed_upto:
                    err = self._error
                    raise SpoolWriteError(err.errno if err else errno.EIO, f"auditrail: cannot sync audit event "
                                          f"to spool {self._where()}: "
                                          f"{err.strerror if err else 'fsync failed'}")
                if not self._syncing:
                    break
                cv.wait()
            self._syncing = True
        try:
            done = self.sync_pass()
            error = None
        except OSError as exc:
            done, error = 0, exc
        with cv:
            self._syncing = False
            if error is None:
                self.synced = max(self.synced, done)
            else:
                with self._lock:
                    self._failed_upto = self._writer.written
                self._counters.sync_errors += 1
                self._error = error
                # After a failed fsync the kernel may have dropped the data: refuse from now on.
                self.broken = SpoolWriteError(error.errno, f"auditrail: fsync of spool "
                                              f"{self._where()} failed "
                                              f"({error.strerror}); audit events are refused")
                _log.error("auditrail: fsync of the spool %s failed: %s", self._spool_dir, error)
            cv.notify_all()
        if error is not None:
            raise SpoolWriteError(error.errno, f"auditrail: cannot sync audit event to spool "
                                  f"{self._where()}: {error.strerror}") from error

    def start_flusher(self) -> None:
        """durable: sync every SYNC_INTERVAL on a thread of its own."""
        self._flusher = threading.Thread(target=self._flush_loop, name="auditrail-spool-sync", daemon=True)
        self._flusher.start()

    def stop_flusher(self) -> None:
        """Stop the flusher thread (and wait for it, unless it is the caller)."""
        self._stop.set()
        if self._flusher is not None and self._flusher is not threading.current_thread():
            self._flusher.join(timeout=5)

    def _flush_loop(self) -> None:
        stop = self._stop
        while not stop.wait(SYNC_INTERVAL):
            self.flush_once()

    def flush_once(self) -> None:
        """Sync what was written since the last pass, if anything; a failure is logged and counted."""
        if self.synced >= self._writer.written and not self._writer.retired:
            return
        try:
            done = self.sync_pass()
            self.synced = max(self.synced, done)
        except OSError as exc:
            self._counters.sync_errors += 1
            _log.error("auditrail: fsync of the spool %s failed: %s (audit events since the last sync may not "
                       "survive a power loss)", self._spool_dir, exc)
