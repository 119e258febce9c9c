"""Targets that return work still running: the event waits for it to complete.

A Twisted `Deferred`, a `concurrent.futures.Future`, an asyncio future or task, or a coroutine object
returned by a plain function is not the call's result: the work it stands for has not run yet (Scrapy's
`Crawler.crawl` returns a Deferred before the crawl starts). The wrappers hand such a value here; the
event is recorded when it completes, with its value or its failure, and the caller gets back the very
same object (a coroutine: one that awaits it). Nothing here may change what the app sees: a Deferred's
result or failure passes through our callback unchanged, an asyncio future's exception stays
"unretrieved" (asyncio still logs it when nobody else looks).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sys
import types
from collections.abc import Callable, Coroutine
from typing import Any

# Types known to be finished values (the hot path's check: one set lookup of type(result)). Grown with
# every type found not to be pending, up to a bound (dynamically made classes could grow it forever).
SETTLED: set[type] = {type(None), bool, int, float, str, bytes, dict, list, tuple, set, frozenset}
_SETTLED_MAX = 4096

_UNKNOWN = object()
Finish = Callable[[Any, BaseException | None], None]  # finish(result, error): evaluates and records


def pending(value: Any) -> bool:
    """True when `value` is work still running that the event must wait for (see module doc)."""
    kind = type(value)
    if _kind(kind) is None:
        if len(SETTLED) < _SETTLED_MAX:
            SETTLED.add(kind)
        return False
    return True


def _kind(kind: type) -> str | None:
    if issubclass(kind, asyncio.Future):  # tasks too
        return "asyncio"
    if issubclass(kind, concurrent.futures.Future):
        return "future"
    if issubclass(kind, types.CoroutineType):
        return "coroutine"
    # Never imported by us: a Deferred implies Twisted is loaded (and may still be loading: getattr).
    deferred = getattr(sys.modules.get("twisted.internet.defer"), "Deferred", None)
    if isinstance(deferred, type) and issubclass(kind, deferred):
        return "deferred"
    return None


def on_completion(value: Any, finish: Finish, finish_awaited: Finish) -> Any:
    """Arrange for `finish(result, error)` when `value` completes; returns what the caller gets back.

    `finish` runs in a callback and must not raise; `finish_awaited` runs inside the caller's own
    `await` of a returned coroutine (it may raise what an async target's wrapper would).
    """
    kind = _kind(type(value))
    if kind == "deferred":
        failure_type = sys.modules["twisted.python.failure"].Failure

        def deferred_done(outcome: Any) -> Any:
            if isinstance(outcome, failure_type):
                finish(None, outcome.value)
            else:
                finish(outcome, None)
            return outcome  # the chain goes on with the same result or the same failure

        value.addBoth(deferred_done)
        return value
    if kind == "asyncio":
        value.add_done_callback(lambda fut: _future_done(fut, finish, asyncio.CancelledError, True))
        return value
    if kind == "future":
        value.add_done_callback(lambda fut: _future_done(fut, finish, concurrent.futures.CancelledError, False))
        return value
    if kind == "coroutine":
        return _awaited(value, finish_awaited)
    return value


def _future_done(fut: Any, finish: Finish, cancelled: type[BaseException], unretrieved: bool) -> None:
    """A future completed: its value, its exception, or a cancellation (a failure)."""
    if fut.cancelled():
        finish(None, cancelled())
        return
    # asyncio: exception() would mark the exception retrieved and silence asyncio's "never retrieved" log.
    error = getattr(fut, "_exception", _UNKNOWN) if unretrieved else _UNKNOWN
    if error is _UNKNOWN:
        error = fut.exception()
    if error is not None:
        finish(None, error)
    else:
        finish(fut.result(), None)


async def _awaited(coro: Coroutine[Any, Any, Any], finish: Finish) -> Any:
    """The coroutine a plain function returned, awaited: its event follows, as for an async target."""
    try:
        value = await coro
    except Exception as error:
        finish(None, error)
        raise
    finish(value, None)
    return value
