"""The programmatic API, for code that wants to audit explicitly (the zero-code path needs none of it)."""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

import wrapt

from . import runtime, semconv
from .config import AuditConfig, ConfigError, compile_event, config_path, load_config
from .context import Impersonation, audit_context, impersonations
from .events import EVENT_NAME_RE, IMPERSONATION_END, IMPERSONATION_START, new_event_id
from .recorder import Recorder
from .setup import configure as _configure
from .wrapping import AuditWrapper

_log = logging.getLogger("auditrail")
F = TypeVar("F", bound=Callable[..., Any])


def configure(config: AuditConfig | str | os.PathLike[str] | None = None, *, exporter: Any = None) -> Recorder:
    """Start auditing: `config` is an AuditConfig, a path to audit.yaml, or None for the environment's."""
    if config is None:
        path = config_path()
        config = load_config(path) if path is not None else AuditConfig()
    elif not isinstance(config, AuditConfig):
        config = load_config(config)
    return _configure(config, exporter=exporter)


def _recorder() -> Recorder:
    recorder = runtime.recorder
    if recorder is None:
        try:
            recorder = configure()
        except ConfigError as exc:
            _log.error("auditrail: %s; using defaults", exc)
            recorder = _configure(AuditConfig())
    return recorder


def emit(
    event_type: str,
    *,
    tenant: str | None = None,
    actor: str | None = None,
    payload: Mapping[str, Any] | None = None,
    before: Any = None,
    after: Any = None,
    reason: str | None = None,
    outcome: str = "success",
    risk: str | None = None,
    source_ip: str | None = None,
    actor_type: str | None = None,
    approval_id: str | None = None,
) -> str | None:
    """Record one audit event now; returns its event id (None if it could not be recorded, which is logged)."""
    try:
        if not EVENT_NAME_RE.match(event_type or ""):
            _log.error("auditrail: event type %r should be dotted lower-case words, e.g. prompt.update", event_type)
        if risk is not None and risk not in semconv.RISKS:
            _log.error("auditrail: risk %r is not one of %s; using the default", risk, semconv.RISKS)
            risk = None
        if outcome not in semconv.OUTCOMES:
            _log.error("auditrail: outcome %r is not success/failure; recorded as failure", outcome)
            outcome = "failure"
        body = dict(payload or {})
        if before is not None:
            body["before"] = before
        if after is not None:
            body["after"] = after
        event = _recorder().record(
            event_type, tenant=tenant, actor=actor, actor_type=actor_type, payload=body, source_ip=source_ip,
            reason=reason, outcome=outcome, risk=risk, approval_id=approval_id,
        )
        return event.event_id
    except Exception:  # noqa: BLE001 - auditing never raises into the app
        _log.exception("auditrail: could not record %s", event_type)
        return None


def audited(event: str, **spec: Any) -> Callable[[F], F]:
    """Decorator: audit every call of the function, with audit.yaml's per-event keys as keyword arguments.

        @audited("policy.update", tenant="tenant_id", before={"value": "self.get(tenant_id, key)"},
                 after={"value": "value"}, reason="justification")
        def set(self, tenant_id, key, value, justification): ...
    """

    def decorate(fn: F) -> F:
        where = f"@audited at {inspect.getsourcefile(fn) or '?'}:{fn.__code__.co_firstlineno}"
        target = f"{fn.__module__}:{fn.__qualname__}".replace("<locals>", "locals")
        compiled = compile_event({"target": target, "event": event, **spec}, where=where)
        try:
            first = next(iter(inspect.signature(fn).parameters), None)
        except (TypeError, ValueError):
            first = None
        kind = {"self": "method", "cls": "classmethod"}.get(first or "", "function")
        # Decorated code asked to be audited: configure from the environment on first call if needed.
        wrapper = AuditWrapper(compiled, fn, kind, get_recorder=_recorder)
        return wrapt.FunctionWrapper(fn, wrapper)  # type: ignore[return-value]

    return decorate


@contextmanager
def impersonation(
    impersonator: str,
    user: str,
    *,
    tenant: str | None = None,
    reason: str | None = None,
    session_id: str | None = None,
) -> Iterator[str]:
    """Emit impersonation start/end around the block; every event inside is linked to the session.

    Inside the block the actor is `user` (the impersonated one); yields the session id.
    """
    session_id = session_id or new_event_id()
    emit(IMPERSONATION_START, tenant=tenant, actor=impersonator, reason=reason,
         payload={"impersonated": user, "session": session_id})
    session = impersonations.lookup(session_id) or Impersonation(session_id, impersonator, user, tenant)
    try:
        with impersonations.scoped(session), audit_context(actor=user, tenant=tenant):
            yield session_id
    finally:
        emit(IMPERSONATION_END, tenant=tenant, actor=impersonator, reason=reason,
             payload={"impersonated": user, "session": session_id})


def flush(timeout_seconds: float = 30.0) -> bool:
    """Wait until every recorded event was exported; False on timeout."""
    recorder = runtime.recorder
    return True if recorder is None else recorder.provider.force_flush(int(timeout_seconds * 1000))


__all__ = ["audit_context", "audited", "configure", "emit", "flush", "impersonation"]
