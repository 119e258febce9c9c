"""Ambient audit context: who acts, for which tenant, from where; the current request; impersonations."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

_actor: contextvars.ContextVar[str | None] = contextvars.ContextVar("auditrail.actor", default=None)
_tenant: contextvars.ContextVar[str | None] = contextvars.ContextVar("auditrail.tenant", default=None)
_source_ip: contextvars.ContextVar[str | None] = contextvars.ContextVar("auditrail.source_ip", default=None)
_request: contextvars.ContextVar[Any] = contextvars.ContextVar("auditrail.request", default=None)


def current_actor() -> str | None:
    """The actor set by `audit_context` for this block, if any."""
    return _actor.get()


def current_tenant() -> str | None:
    """The tenant set by `audit_context` for this block, if any."""
    return _tenant.get()


def current_source_ip() -> str | None:
    """The source IP set by `audit_context` for this block, if any."""
    return _source_ip.get()


@contextmanager
def audit_context(
    *, actor: str | None = None, tenant: str | None = None, source_ip: str | None = None
) -> Iterator[None]:
    """Set actor / tenant / source IP for every event emitted inside the block (None leaves a value as is)."""
    tokens = [
        (var, var.set(value))
        for var, value in ((_actor, actor), (_tenant, tenant), (_source_ip, source_ip))
        if value is not None
    ]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


# --- the current HTTP request ---------------------------------------------------------------------


class _Client:
    __slots__ = ("host", "port")

    def __init__(self, host: str | None, port: int | None) -> None:
        self.host = host
        self.port = port


class Headers(Mapping[str, str]):
    """Case-insensitive request headers; repeated headers are joined with ', '."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        merged: dict[str, str] = {}
        for key, value in pairs:
            k = key.lower()
            merged[k] = f"{merged[k]}, {value}" if k in merged else value
        self._items = merged

    def __getitem__(self, key: str) -> str:
        return self._items[key.lower()]

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return self._items.get(key.lower(), default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


class RequestInfo:
    """The request an audited call runs in, one shape for ASGI and WSGI: client, headers, method, path."""

    __slots__ = ("client", "headers", "method", "path", "query_string", "scheme", "raw")

    def __init__(
        self,
        *,
        client: tuple[str | None, int | None],
        headers: list[tuple[str, str]],
        method: str,
        path: str,
        query_string: str,
        scheme: str,
        raw: Any,
    ) -> None:
        self.client = _Client(*client)
        self.headers = Headers(headers)
        self.method = method
        self.path = path
        self.query_string = query_string
        self.scheme = scheme
        self.raw = raw  # the ASGI scope or WSGI environ, for anything else

    @property
    def forwarded_for(self) -> str | None:
        """The first address of X-Forwarded-For (the original client behind trusted proxies)."""
        value = self.headers.get("x-forwarded-for")
        return value.split(",")[0].strip() if value else None

    @classmethod
    def from_asgi(cls, scope: Mapping[str, Any]) -> RequestInfo:
        """Build from an ASGI HTTP/WebSocket scope."""
        client = scope.get("client") or (None, None)
        return cls(
            client=(client[0], client[1]),
            headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope.get("headers", ())],
            method=scope.get("method", "WEBSOCKET" if scope.get("type") == "websocket" else ""),
            path=scope.get("path", ""),
            query_string=scope.get("query_string", b"").decode("latin-1"),
            scheme=scope.get("scheme", "http"),
            raw=scope,
        )

    @classmethod
    def from_wsgi(cls, environ: Mapping[str, Any]) -> RequestInfo:
        """Build from a WSGI environ."""
        headers = [(k[5:].replace("_", "-"), v) for k, v in environ.items() if k.startswith("HTTP_")]
        for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            if environ.get(key):
                headers.append((key.replace("_", "-"), environ[key]))
        port = environ.get("REMOTE_PORT")
        return cls(
            client=(environ.get("REMOTE_ADDR"), int(port) if port and str(port).isdigit() else None),
            headers=headers,
            method=environ.get("REQUEST_METHOD", ""),
            path=environ.get("PATH_INFO", ""),
            query_string=environ.get("QUERY_STRING", ""),
            scheme=environ.get("wsgi.url_scheme", "http"),
            raw=environ,
        )


class _LazyRequest:
    """Holds the raw scope/environ; the RequestInfo view is built only when an expression asks for it."""

    __slots__ = ("kind", "raw", "native", "_info")

    def __init__(self, kind: str, raw: Any, native: Any = None) -> None:
        self.kind = kind
        self.raw = raw
        self.native = native  # the framework's own request object (Django's HttpRequest), for integrations
        self._info: RequestInfo | None = None

    def info(self) -> RequestInfo:
        if self._info is None:
            build = RequestInfo.from_asgi if self.kind == "asgi" else RequestInfo.from_wsgi
            self._info = build(self.raw)
        return self._info


def enter_request(kind: str, raw: Any, native: Any = None) -> contextvars.Token[Any]:
    """Mark the start of an ASGI ('asgi') or WSGI ('wsgi') request; returns the token for `exit_request`.

    `native`: the framework's own request object, when there is one (integrations read identity from it).
    """
    return _request.set(_LazyRequest(kind, raw, native))


def exit_request(token: contextvars.Token[Any]) -> None:
    """Mark the end of the request begun by `enter_request`."""
    _request.reset(token)


def current_request() -> RequestInfo | None:
    """The request the current code runs in, when auditrail captured one."""
    lazy = _request.get()
    return lazy.info() if lazy is not None else None


def current_native_request() -> Any:
    """The framework's own request object the current code runs in (e.g. Django's HttpRequest), or None."""
    lazy = _request.get()
    return lazy.native if lazy is not None else None


# --- impersonation sessions -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Impersonation:
    """An open impersonation session: `impersonator` acts as `user` in `tenant` ('*' or None: any tenant).

    `marker` is the evidence a later action must carry to be linked (impersonation.marker in audit.yaml),
    in constant form (str); None: only the programmatic `scoped` block links to this session.
    """

    session_id: str
    impersonator: str | None
    user: str
    tenant: str | None
    marker: str | None = None


def _in_tenant(session: Impersonation, tenant: str | None) -> bool:
    """A session started in tenant '*' (or none) covers every tenant; an event without a tenant contradicts none."""
    return session.tenant is None or session.tenant == "*" or tenant is None or session.tenant == tenant


class ImpersonationRegistry:
    """Open sessions, and the evidence that links an action to one of them.

    An action is linked only with evidence that it belongs to the session: it runs inside the
    programmatic `scoped` block, or it carries the session's marker. The user name alone is never
    evidence: the impersonated user's own actions, from their own browser, are theirs (issue 14).
    Process-wide, because a session is started and ended by different requests. Lookups are lock-free
    reads of dicts that are replaced, never mutated, so the hot path pays a dict lookup at most.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[str, Impersonation] = {}  # by session id
        self._by_marker: dict[str, tuple[Impersonation, ...]] = {}  # newest last
        self._scoped: contextvars.ContextVar[Impersonation | None] = contextvars.ContextVar(
            "auditrail.impersonation", default=None
        )

    @property
    def has_markers(self) -> bool:
        """Whether any open session can be linked by marker (else an event's marker need not be read)."""
        return bool(self._by_marker)

    def open(self, session: Impersonation) -> None:
        """Record a started session (one started again under the same id replaces it)."""
        with self._lock:
            self._forget(self._open.get(session.session_id))
            self._open = {**self._open, session.session_id: session}
            if session.marker is not None:
                self._by_marker = {**self._by_marker,
                                   session.marker: (*self._by_marker.get(session.marker, ()), session)}

    def close(self, *, session_id: str | None, marker: str | None = None, user: str | None = None,
              tenant: str | None = None) -> Impersonation | None:
        """Forget a session, found by id or else by marker (in the tenant; the one of `user` first)."""
        with self._lock:
            session = self._open.get(session_id) if session_id else self._match(marker, tenant, user)
            self._forget(session)
        return session

    def _forget(self, session: Impersonation | None) -> None:
        """Drop `session` from both indexes (under the lock)."""
        if session is None:
            return
        self._open = {k: v for k, v in self._open.items() if v is not session}
        if session.marker is not None:
            rest = tuple(s for s in self._by_marker.get(session.marker, ()) if s is not session)
            by_marker = {k: v for k, v in self._by_marker.items() if k != session.marker}
            self._by_marker = {**by_marker, session.marker: rest} if rest else by_marker

    def _match(self, marker: str | None, tenant: str | None, actor: str | None) -> Impersonation | None:
        """The open session with this marker in `tenant`: the one impersonating `actor`, else the newest."""
        candidates = [s for s in self._by_marker.get(marker, ()) if _in_tenant(s, tenant)] if marker else []
        return next((s for s in reversed(candidates) if s.user == actor), candidates[-1] if candidates else None)

    def find(self, tenant: str | None, actor: str | None, marker: str | None = None) -> Impersonation | None:
        """The session an action belongs to: the scoped block's, or the open session carrying its marker."""
        scoped = self._scoped.get()
        if scoped is not None and (actor is None or actor == scoped.user):
            return scoped
        if marker is None or not self._by_marker:
            return None
        return self._match(marker, tenant, actor)

    def lookup(self, session_id: str) -> Impersonation | None:
        """The open session with this id."""
        return self._open.get(session_id)

    @contextmanager
    def scoped(self, session: Impersonation) -> Iterator[None]:
        """Within the block, every event is linked to `session` (the programmatic API's context manager)."""
        token = self._scoped.set(session)
        try:
            yield
        finally:
            self._scoped.reset(token)

    def clear(self) -> None:
        """Forget every open session (tests, uninstrument)."""
        with self._lock:
            self._open = {}
            self._by_marker = {}


impersonations = ImpersonationRegistry()
