"""Slow and vanishing clients of the store service: header and body read timeouts, disconnects in one line.

uvicorn bounds the idle time between two requests of a connection (``timeout_keep_alive``) and, with
``limit_concurrency``, the connections it serves at once (503 beyond), but nothing bounds how long a client
may take to send a request: a connection that sends half a header line, or a body one byte a minute, stays
open for as long as it likes (measured: 60 s and more). Two deadlines close that:

* headers (:class:`HeaderTimeout`, uvicorn's HTTP protocol with one timer more): the request line
  and headers must be complete within ``header_timeout`` seconds of the connection being ready for a request
  (opened, or its previous response sent); else the connection is closed.
* body (:class:`BodyDeadline`, ASGI middleware): the body must be complete within ``body_timeout`` seconds of
  the headers; else a 408 (``Connection: close``). The deadline applies only while the body is incomplete:
  an export that streams for minutes still listens for its client's disconnect without one.

A client that disconnects before its request was read (ClientDisconnect) is logged as one line by
:func:`client_disconnected`, not as an "Exception in ASGI application" traceback.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import HTTPException, Request, Response
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["DEFAULT_BODY_TIMEOUT", "DEFAULT_HEADER_TIMEOUT", "DEFAULT_MAX_CONNECTIONS", "BodyDeadline",
           "HeaderTimeout",
           "client_disconnected", "header_timeout_protocol"]

DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_BODY_TIMEOUT = 60.0
MAX_HEADER_BYTES = 64 << 10  # a request line and headers (h11's own bound is 16 KiB)
DEFAULT_MAX_CONNECTIONS = 128  # uvicorn's limit_concurrency: connections (and requests) served at once, 503 beyond

logger = logging.getLogger("auditrail.store")


class HeaderTimeout:
    """Mixin for uvicorn's HTTP protocols (h11, httptools): a connection whose request headers take longer than
    header_timeout is closed."""

    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    cycle: Any
    loop: Any
    transport: Any
    client: Any

    def connection_made(self, transport: Any) -> None:  # noqa: D102 - uvicorn's
        super().connection_made(transport)  # type: ignore[misc]
        self._header_timer: asyncio.TimerHandle | None = None
        self._arm()

    def data_received(self, data: bytes) -> None:  # noqa: D102 - uvicorn's
        between = self.cycle is None or self.cycle.response_complete
        if between:
            if self._header_timer is None:
                self._arm()  # the first bytes of a next request: keep-alive's timer stops here, this one starts
            self._header_bytes += len(data)
        super().data_received(data)  # type: ignore[misc]
        if self.cycle is not None and not self.cycle.response_complete:
            self._disarm()  # the headers are in: the request runs (its body is BodyDeadline's)
        elif self._header_timer is not None and self._header_bytes > MAX_HEADER_BYTES:
            # httptools keeps every header it is sent (h11 stops at 16 KiB): the headers' size is bounded here
            self._close(f"more than {MAX_HEADER_BYTES} bytes of request headers")

    def on_response_complete(self) -> None:  # noqa: D102 - uvicorn's
        super().on_response_complete()  # type: ignore[misc]
        self._disarm()  # keep-alive's timer bounds the idle time until the next request's first bytes

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: D102 - uvicorn's
        self._disarm()
        super().connection_lost(exc)  # type: ignore[misc]

    def _arm(self) -> None:
        self._disarm()
        self._header_bytes = 0
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_timed_out)

    def _disarm(self) -> None:
        if getattr(self, "_header_timer", None) is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_timed_out(self) -> None:
        self._header_timer = None
        self._close(f"no complete request headers within {self.header_timeout:g} s")

    def _close(self, why: str) -> None:
        self._disarm()
        if not self.transport.is_closing():
            client = "%s:%d" % self.client if self.client else "a client"
            logger.info("%s: %s, connection closed", client, why)
            self.transport.close()


def header_timeout_protocol(seconds: float) -> type:
    """The protocol class for uvicorn's ``http=`` with this header timeout: on httptools (C parser) when it is
    installed, as uvicorn's own "auto" picks, else on h11."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as base
    except ImportError:
        base = H11Protocol
    return type("HeaderTimeoutProtocol", (HeaderTimeout, base), {"header_timeout": seconds})


class BodyTimeout(HTTPException):
    """The request body did not arrive in time: 408, and the connection is closed."""

    def __init__(self, seconds: float) -> None:
        super().__init__(408, f"the request body did not arrive within {seconds:g} s", headers={"Connection": "close"})


class BodyDeadline:
    """ASGI middleware: an HTTP request's body must be complete within `seconds` of its headers.

    ``receive`` raises :class:`BodyTimeout` (an HTTPException: FastAPI answers 408, also from inside its own
    body parsing) once the deadline passed; after the body's last chunk it is uvicorn's, untouched."""

    def __init__(self, app: Any, seconds: float = DEFAULT_BODY_TIMEOUT) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # One timer a request, not asyncio.timeout around each receive: a 4 MB body is ~70 receives, and the
        # event loop is what every request shares. When it fires it cancels the receive that waits, if any; a
        # receive after it raises at once.
        loop = asyncio.get_running_loop()
        complete = expired = False
        waiting: asyncio.Task[Any] | None = None

        def expire() -> None:
            nonlocal expired
            expired = True
            if waiting is not None:
                waiting.cancel()

        timer = loop.call_later(self.seconds, expire)

        async def timed_receive() -> dict[str, Any]:
            nonlocal complete, waiting
            if complete:
                return await receive()
            if expired:
                raise BodyTimeout(self.seconds)
            waiting = asyncio.current_task()
            try:
                message = await receive()
            except asyncio.CancelledError:
                if expired and waiting is not None and waiting.uncancel() == 0:
                    raise BodyTimeout(self.seconds) from None
                raise
            finally:
                waiting = None
            complete = message["type"] != "http.request" or not message.get("more_body", False)
            if complete:
                timer.cancel()
            return message

        try:
            await self.app(scope, timed_receive, send)
        finally:
            timer.cancel()


async def client_disconnected(request: Request, error: Exception) -> Response:
    """The client went away before its request was read: one line in the log, nothing to answer."""
    client = f"{request.client.host}:{request.client.port}" if request.client else "a client"
    logger.info("%s disconnected during %s %s before the request was read", client, request.method,
                request.url.path)
    return Response(status_code=499)

