"""The spool's disk use against its cap (max_bytes): a warning at WARN_FRACTION, refusal at the cap, waiting
for the room acks free."""

from __future__ import annotations

import errno
import logging
import threading
import time

from .counters import SpoolCounters
from .errors import SpoolFullError

_log = logging.getLogger("auditrail")

WARN_FRACTION = 0.8


class SpaceAccount:
    """Bytes of unacknowledged records and link journals on disk (own and adopted), and the waits for room.

    `used` is written under the spool's write lock (`lock`) and read freely (the hot path asks full())."""

    def __init__(self, spool_dir: str, max_bytes: int, lock: threading.Lock, counters: SpoolCounters) -> None:
        self.spool_dir = spool_dir
        self.max_bytes = max_bytes
        self.warn_at = max_bytes * WARN_FRACTION
        self.full_at = max_bytes - min(64 * 1024, max_bytes // 16)  # room for a few records, not just one
        self.used = 0
        self.over_warn = False
        self.closed = False  # the spool is closed: nobody waits for room any more
        self._lock = lock
        self._counters = counters
        self._room = threading.Condition(threading.Lock())  # wait_for_space

    def full_error(self) -> SpoolFullError:
        """The refusal of an append that would pass the cap (counted; under the write lock)."""
        self._counters.full_refusals += 1
        return SpoolFullError(errno.ENOSPC, f"auditrail: spool {self.spool_dir} is full "
                              f"({self.used} of max_bytes {self.max_bytes} bytes unacknowledged)")

    def warn(self) -> None:
        """Log (once until use drops under it again) that the spool passed WARN_FRACTION of its cap."""
        self.over_warn = True
        self._counters.space_warnings += 1
        _log.warning("auditrail: spool %s is %d%% full (%d of max_bytes %d bytes): audit events are not being "
                     "delivered fast enough", self.spool_dir, 100 * self.used // self.max_bytes,
                     self.used, self.max_bytes)

    def check(self) -> None:
        """Warn when over WARN_FRACTION of the cap, or re-arm the warning when under it (under the write lock)."""
        if self.used > self.warn_at:
            if not self.over_warn:
                self.warn()
        else:
            self.over_warn = False

    def freed(self, nbytes: int) -> None:
        """Acks deleted `nbytes` from disk: count them and wake whoever waits for room."""
        with self._lock:
            self.used -= nbytes
            self.check()
        self.wake()

    def wake(self) -> None:
        """Wake the waiters of wait() (room was freed, or the spool closed)."""
        with self._room:
            self._room.notify_all()

    def refusal(self) -> str | None:
        """Why an append would be refused now for want of room."""
        if self.used >= self.max_bytes:
            return f"spool {self.spool_dir} is full ({self.used} of max_bytes {self.max_bytes} bytes)"
        return None

    def full(self) -> bool:
        """At the cap, less room for a few records (a lock-free read)."""
        return self.used >= self.full_at

    def wait(self, timeout: float | None) -> bool:
        """Block until under the cap less room for a few records, or the spool closed; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._room:
            # Room for a few records, not just one (space comes back a segment at a time anyway).
            while self.full() and not self.closed:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._room.wait(remaining if remaining is not None else 1.0)
        return True
