"""The spool: where an event waits between the audited call and the exporter's confirmation.

This is the seam the delivery layer builds on. A spool takes events on the hot path (`append`), hands
the drain worker batches (`peek`), and forgets a batch only once the exporter confirmed it (`ack`).
`MemorySpool` is the `best_effort` store; a durable on-disk spool implements the same protocol.
"""

from __future__ import annotations

import collections
import logging
import threading
from typing import Protocol

from .events import AuditEvent

_log = logging.getLogger("auditrail")


class Spool(Protocol):
    """Storage between emit and export; implementations must be thread-safe."""

    def append(self, event: AuditEvent, linked: bool = False) -> int:
        """Store one event; returns (once it is as safe as the spool's mode promises) how many wait.
        `linked`: the event carries its chain fields already (a checkpoint)."""

    def peek(self, max_items: int) -> list[AuditEvent]:
        """Up to `max_items` of the oldest events not yet acknowledged (does not remove them)."""

    def ack(self, count: int) -> None:
        """Forget the `count` oldest events: the exporter confirmed them."""

    def __len__(self) -> int:
        """Events waiting."""

    def close(self) -> None:
        """Release resources; pending events stay where the spool keeps them."""

    def after_fork_in_child(self) -> None:
        """In a forked child: give up what the parent had queued (the parent delivers it)."""

    def refusal(self) -> str | None:
        """Why an append would fail right now (fail_closed asks before the audited action runs), or None."""

    def full(self) -> bool:
        """At its cap now (a cheap read for the hot path: durable asks before the audited action runs)."""

    def wait_for_space(self, timeout: float | None = None) -> bool:
        """Block until under the cap (False on timeout); at once for spools that never fill."""


class RefusingSpool:
    """The spool of a fail_closed process whose spool could not be opened: every action is refused."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def append(self, event: AuditEvent, linked: bool = False) -> int:
        """Refuse."""
        raise OSError(self.reason)

    def peek(self, max_items: int) -> list[AuditEvent]:
        """Nothing stored."""
        return []

    def ack(self, count: int) -> None:
        """Nothing stored."""

    def __len__(self) -> int:
        return 0

    def close(self) -> None:
        """Nothing to release."""

    def after_fork_in_child(self) -> None:
        """Still refusing."""

    def refusal(self) -> str | None:
        """Always the reason it could not be opened."""
        return self.reason

    def full(self) -> bool:
        """Refusal, not fullness, is what this spool reports."""
        return False

    def wait_for_space(self, timeout: float | None = None) -> bool:
        """There is always room."""
        return True


class MemorySpool:
    """In-memory spool for `best_effort` mode: bounded, and loud when it has to drop."""

    def __init__(self, max_events: int = 100_000) -> None:
        self._events: collections.deque[AuditEvent] = collections.deque()
        self._lock = threading.Lock()
        self.max_events = max_events
        self.dropped = 0
        self._dropped_at_peek = 0

    def append(self, event: AuditEvent, linked: bool = False) -> int:
        """Queue an event; over the cap the oldest is dropped and counted. Returns the queue length."""
        events = self._events
        events.append(event)  # deque.append is atomic: no lock on the hot path
        size = len(events)
        if size > self.max_events:
            self._drop_oldest()
        return size

    def _drop_oldest(self) -> None:
        with self._lock:
            while len(self._events) > self.max_events:
                self._events.popleft()
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 1000 == 0:
                    _log.error(
                        "auditrail: in-memory spool full (%d events); %d audit events dropped. "
                        "Use delivery.mode durable to never drop.",
                        self.max_events,
                        self.dropped,
                    )

    def peek(self, max_items: int) -> list[AuditEvent]:
        """The oldest events, without removing them."""
        with self._lock:
            self._dropped_at_peek = self.dropped
            n = min(max_items, len(self._events))
            return [self._events[i] for i in range(n)]

    def ack(self, count: int) -> None:
        """Remove the `count` oldest events."""
        with self._lock:
            count -= self.dropped - self._dropped_at_peek  # peeked events already dropped for space
            for _ in range(max(0, min(count, len(self._events)))):
                self._events.popleft()

    def __len__(self) -> int:
        return len(self._events)

    def close(self) -> None:
        """Nothing to release."""

    def refusal(self) -> str | None:
        """Memory never refuses (over its cap it drops the oldest, loudly)."""
        return None

    def full(self) -> bool:
        """Never: over its cap it drops the oldest, loudly (best_effort)."""
        return False

    def wait_for_space(self, timeout: float | None = None) -> bool:
        """There is always room."""
        return True

    def after_fork_in_child(self) -> None:
        """Drop the copy of the parent's queue, and take a fresh lock (the parent's may have been held)."""
        self._lock = threading.Lock()
        self._events = collections.deque()
        self._dropped_at_peek = self.dropped
