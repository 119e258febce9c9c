"""The one place a captured action becomes an AuditEvent: defaults, context, impersonation, payload."""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from time import time_ns

from opentelemetry.trace import get_current_span

from .context import Impersonation, _actor, _source_ip, _tenant, current_request, impersonations
from .events import IMPERSONATION_END, IMPERSONATION_START, AuditEvent, default_risk, new_event_id
from .expressions import Expression
from .payload import _MAX_STR_SCAN, PayloadPolicy
from .redaction import Redactor
from .pipeline import AuditLoggerProvider

_log = logging.getLogger("auditrail")
_SESSION_EVENTS = (IMPERSONATION_START, IMPERSONATION_END)
_CONTEXT_VARS = {"tenant": _tenant, "actor": _actor, "source_ip": _source_ip}
_LOG_REDACTOR = Redactor()  # the built-in deny-list, for exception text in auditrail's own log lines


class Counters:
    """What went wrong while capturing, counted rather than raised (the app must never notice)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.extractor_errors = 0
        self.capture_errors = 0
        self._warned: set[str] = set()

    def extractor_failed(self, where: str, exc: BaseException) -> None:
        """Count a raising expression; log its first failure per location."""
        with self._lock:
            self.extractor_errors += 1
            first = where not in self._warned
            self._warned.add(where)
        if first:
            _log.warning("auditrail: expression %s raised %s: %s (field left empty)", where, type(exc).__name__,
                         _LOG_REDACTOR.scrub(str(exc)[:_MAX_STR_SCAN]))  # no secret in logs either

    def capture_failed(self, where: str) -> None:
        """Count an internal failure (logged with its traceback)."""
        with self._lock:
            self.capture_errors += 1
        _log.exception("auditrail: could not capture %s; the call itself was not affected", where)


class ContextSources:
    """audit.yaml `context:` fallbacks: expressions tried in order when an event does not say; after them,
    those the integrations set up now add (add_fallback)."""

    def __init__(self, actor: Sequence[Expression] = (), tenant: Sequence[Expression] = (),
                 source_ip: Sequence[Expression] = (), marker: Sequence[Expression] = ()) -> None:
        # context.impersonation.marker: the evidence linking an action to a session
        self._own = {"actor": tuple(actor), "tenant": tuple(tenant), "source_ip": tuple(source_ip),
                     "marker": tuple(marker)}
        self.actor = self.tenant = self.source_ip = self.marker = ()
        with _added_lock:
            _all_sources.add(self)
            self._combine()

    def _combine(self) -> None:
        """The tuples the recorder reads (plain attributes: the hot path), config's own first (under _added_lock)."""
        for field, own in self._own.items():
            setattr(self, field, own + tuple(source for name, source in _added if name == field))


# The integrations' fallbacks (field, source) in the order added, and every ContextSources they apply to: a
# fallback belongs to the integration that added it, not to the recorder there was then (configure() makes
# a new one; uninstrument removes it once).
_added: list[tuple[str, Expression]] = []
_all_sources: weakref.WeakSet[ContextSources] = weakref.WeakSet()
_added_lock = threading.Lock()


def add_fallback(field: str, source: Expression) -> Callable[[], None]:
    """Add a `context:` fallback for `field` to every recorder's sources, now and later, after audit.yaml's own;
    returns what removes it (integrations: Hooks.add_fallback, undone on uninstrument)."""
    if field not in ("actor", "tenant", "source_ip", "marker"):
        raise ValueError(f"no context fallback field {field!r}")
    entry = (field, source)
    with _added_lock:
        _added.append(entry)
        for sources in list(_all_sources):
            sources._combine()

    def remove() -> None:
        with _added_lock:
            if entry in _added:
                _added.remove(entry)
            for sources in list(_all_sources):
                sources._combine()

    return remove


class Recorder:
    """Builds events from captured fields and submits them to the audit LoggerProvider."""

    def __init__(
        self,
        provider: AuditLoggerProvider,
        *,
        policy: PayloadPolicy | None = None,
        sources: ContextSources | None = None,
        counters: Counters | None = None,
        fail_closed: bool = False,
        durable: bool = False,
    ) -> None:
        self.provider = provider
        # fail_closed: an action whose event cannot be recorded is refused (AuditUnavailable).
        self.fail_closed = fail_closed
        # Asked before every audited action (None: nothing to ask): fail_closed refuses what cannot be
        # recorded; durable refuses or waits at the spool's disk cap (delivery.on_full).
        self.guard = provider.check_recordable if fail_closed else provider.admit if durable else None
        self.policy = policy or PayloadPolicy()
        self.sources = sources or ContextSources()
        self.counters = counters or Counters()
        self.approvals: Any = None  # the approval service's client (approvals.py), when audit.yaml names one

    def record(
        self,
        event_type: str,
        *,
        tenant: Any = None,
        actor: Any = None,
        actor_type: str | None = None,
        payload: Mapping[str, Any] | None = None,
        source_ip: Any = None,
        reason: Any = None,
        outcome: str = "success",
        risk: str | None = None,
        approval_id: Any = None,
        event_id: str | None = None,
        cleaned: bool = False,
        marker: Any = None,
    ) -> AuditEvent:
        """Complete the fields (context fallbacks, impersonation, trace) and submit the event.

        `payload` is the caller's fresh dict: it may be extended (impersonation ids), never kept.
        `cleaned` says it already went through this recorder's payload policy (redaction, safe values).
        `marker` is the impersonation marker (the evidence that links an action to a session).
        """
        return self.record_positional(
            event_type, tenant, actor, actor_type, payload if payload is not None else {}, source_ip, reason,
            outcome, risk or default_risk(event_type), approval_id, event_id, cleaned, False, False, marker,
        )

    def record_positional(
        self, event_type: str, tenant: Any, actor: Any, actor_type: str | None, body: dict[str, Any],
        source_ip: Any, reason: Any, outcome: str, risk: str, approval_id: Any, event_id: str | None,
        cleaned: bool, deferrable: bool = False, resolved: bool = False, marker: Any = None,
    ) -> AuditEvent | None:
        """`record` for the wrappers' hot path: every argument given, in order (keywords cost here).

        `deferrable` (wrappers): when the provider builds events in its drain (best_effort), everything
        that does not depend on the call's context (JSON text, event id, the AuditEvent) is left to the
        drain, and None is returned. `resolved` (wrappers): tenant, actor, source_ip and the impersonation
        marker already had their context defaults applied, before the audited call (see `context_value`):
        None stays None.
        """
        if not resolved:
            # Inline checks: this runs on every audited call, and each avoided call is ~0.1 us here.
            sources = self.sources
            if tenant is None:
                tenant = _tenant.get()
                if tenant is None and sources.tenant:
                    tenant = self._fallback("tenant", sources.tenant)
            if actor is None:
                actor = _actor.get()
                if actor is None and sources.actor:
                    actor = self._fallback("actor", sources.actor)
            if source_ip is None:
                source_ip = _source_ip.get()
                if source_ip is None and sources.source_ip:
                    source_ip = self._fallback("source_ip", sources.source_ip)
        if tenant is not None and type(tenant) is not str:
            tenant = str(tenant)
        if actor is not None and type(actor) is not str:
            actor = str(actor)
        if event_type in _SESSION_EVENTS:
            if marker is None and not resolved and self.sources.marker:
                marker = self._fallback("marker", self.sources.marker)
            session = self._session_event(event_type, tenant, actor, body, _text(marker))
        else:
            # The marker is read only while a session could match it (none open: no cost).
            if marker is None and not resolved and self.sources.marker and impersonations.has_markers:
                marker = self._fallback("marker", self.sources.marker)
            session = impersonations.find(tenant, actor, marker if marker is None else _text(marker))
        if not cleaned:
            body = self.policy.clean(body)
        fields = (
            event_type,
            tenant,
            actor,
            actor_type or ("user" if actor is not None else "system"),
            body,
            _text(source_ip),
            _text(reason),
            outcome,
            risk,
            # Start/end events are the impersonator's own acts: they carry the session id, not the marker.
            session.impersonator if session is not None and event_type not in _SESSION_EVENTS else None,
            session.session_id if session is not None else None,
            _text(approval_id),
            event_id,
            time_ns(),
            get_current_span(),  # (its span context is immutable: read when the event is built)
        )
        if deferrable and self.provider.defers:
            self.provider.submit_deferred(self._build, fields)
            return None
        event = self._build(*fields)
        self.provider.submit(event)
        return event

    def _build(self, event_type: str, tenant: str | None, actor: str | None, actor_type: str,
               body: dict[str, Any], source_ip: str | None, reason: str | None, outcome: str, risk: str,
               impersonator: str | None, session_id: str | None, approval_id: str | None,
               event_id: str | None, time_unix_nano: int, span: Any) -> AuditEvent:
        """The event from its resolved fields (`body` cleaned): on the call's thread, or in the drain."""
        policy = self.policy
        if reason is not None:  # free text: scrubbed like the payload's strings (identity fields are ids)
            reason = policy.scrub_text(reason)
        event = AuditEvent(event_type, tenant, actor, actor_type, policy.encode(body), source_ip, reason,
                           outcome, risk, impersonator, session_id, approval_id, event_id or new_event_id(time_unix_nano),
                           time_unix_nano)
        context = span.get_span_context()
        if context.is_valid:
            event.trace_id, event.span_id, event.trace_flags = (context.trace_id, context.span_id,
                                                                int(context.trace_flags))
        return event

    def context_value(self, field: str) -> Any:
        """The default of an identity field an event left empty (`tenant`, `actor`, `source_ip`, `marker`):
        the value `audit_context` set (the marker has none), else the first non-None of audit.yaml's
        `context:` sources. The wrappers read it before the audited call, as they read the event's own
        identity expressions."""
        var = _CONTEXT_VARS.get(field)
        value = None if var is None else var.get()
        return self.context_default(field) if value is None else value

    def context_default(self, field: str) -> Any:
        """The first non-None value of audit.yaml's `context:` sources for `field` (None without any)."""
        sources = getattr(self.sources, field)
        return self._fallback(field, sources) if sources else None

    def _fallback(self, field: str, sources: Sequence[Expression]) -> Any:
        """The first non-None value of the audit.yaml `context:` sources for `field`."""
        namespace = {"request": current_request()}
        for expr in sources:
            try:
                value = expr.evaluate(namespace)
            except Exception as exc:  # noqa: BLE001 - a bad fallback leaves the field empty
                self.counters.extractor_failed(f"context.{field} {expr.source!r}", exc)
                continue
            if value is not None:
                return value
        return None

    def _session_event(self, event_type: str, tenant: str | None, actor: str | None,
                       payload: dict[str, Any], marker: str | None) -> Impersonation | None:
        """Open or close the session an impersonation start/end event names.

        A start's marker is stored with the session: later actions are linked only when theirs equals it.
        """
        if event_type == IMPERSONATION_START:
            user = _text(payload.get("impersonated"))
            session_id = _text(payload.get("session")) or new_event_id()
            payload["session"] = session_id
            if user is None:
                _log.warning("auditrail: %s without payload.impersonated; actions cannot be linked", event_type)
                return Impersonation(session_id, actor, "", tenant)
            session = Impersonation(session_id, actor, user, tenant, marker)
            impersonations.open(session)
            return session
        session_id = _text(payload.get("session"))  # the end of a session: by its id, else by its marker
        user = _text(payload.get("impersonated"))
        closed = impersonations.close(session_id=session_id, marker=marker, user=user, tenant=tenant)
        if closed is not None:
            payload.setdefault("session", closed.session_id)
            payload.setdefault("impersonated", closed.user)
            return closed
        return Impersonation(session_id, actor, user, tenant) if session_id else None


def _text(value: Any) -> str | None:
    """Attribute values are strings (ids may come in as ints or UUIDs); None stays None."""
    if value is None or isinstance(value, str):
        return value
    return str(value)

