"""The process's active auditrail state: the Recorder wrappers and the API emit through."""

from __future__ import annotations

import threading

from .recorder import Recorder

_lock = threading.Lock()
recorder: Recorder | None = None


def set_recorder(new: Recorder | None) -> Recorder | None:
    """Install `new` as the active recorder; returns the previous one."""
    global recorder
    with _lock:
        old, recorder = recorder, new
    return old
