"""From captured event to exporter: the audit LoggerProvider, its spool and its drain worker.

Audit records never touch the application's (global) LoggerProvider: they go through a provider of
their own, with their own resource and the instrumentation scope `auditrail`, so they are never mixed
with the app's logs, sampled, or dropped by its processors. The hot path only appends a compact
AuditEvent to the spool (the SDK's Logger.emit costs ~25 us here, more than our whole budget); the
worker turns batches into SDK ReadableLogRecords and hands them to a standard SDK LogRecordExporter.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry import _logs as api_logs
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import TraceFlags

from . import metrics, semconv
from .chain import Chain
from .events import AuditEvent, severity_for
from .native import native_function
from .signing import Signer, checkpoint_event
from .spool import MemorySpool, Spool
from .spool_file import SpoolFullError
from .version import __version__

_native_link = native_function("link_events")  # links plain events as Chain.link does; None: Python links

_log = logging.getLogger("auditrail")

_SEVERITY = {n: SeverityNumber(n) for n in (9, 13)}
# Batch mode: requests (of max_batch events) that one take may link, journal and encode, when that much waits.
# Each take gives the GIL up and waits to get it back (5-25 ms beside busy app threads) a few times: a drain
# that has fallen behind catches up in fewer, bigger takes.
_TAKE_REQUESTS = 4


class AuditUnavailable(RuntimeError):
    """delivery.mode fail_closed: the action is refused because its audit event cannot be recorded."""


def to_log_record(event: AuditEvent, resource: Resource, scope: InstrumentationScope) -> ReadableLogRecord:
    """The SDK LogRecord for an event (DESIGN.md's mapping, as event_view spells it)."""
    view = event_view(event, resource, scope)
    record = LogRecord(
        timestamp=view.timestamp,
        observed_timestamp=view.observed_timestamp,
        trace_id=view.trace_id,
        span_id=view.span_id,
        trace_flags=TraceFlags(view.trace_flags),
        severity_text=view.severity_text,
        severity_number=view.severity_number,
        body=view.body,
        attributes=view.attributes,
        event_name=view.event_name,
    )
    return ReadableLogRecord(log_record=record, resource=resource, instrumentation_scope=scope)


class _EventView:
    """An AuditEvent seen as a ReadableLogRecord by the OTLP/JSON encoder: the fields it reads, nothing more.

    Building a real SDK LogRecord (BoundedAttributes, validation) costs more than encoding it; the file
    exporter's encoder only reads attributes, so it gets this, proven equal in test_otlp_json_exporter.
    """

    __slots__ = ("timestamp", "observed_timestamp", "severity_number", "severity_text", "body", "attributes",
                 "trace_id", "span_id", "trace_flags", "event_name", "resource", "instrumentation_scope")
    dropped_attributes = 0

    @property
    def log_record(self) -> "_EventView":
        return self


def event_view(event: AuditEvent, resource: Resource, scope: InstrumentationScope) -> _EventView:
    """The record view of an event for encoders that read SDK records (see _EventView): the one place that
    maps an AuditEvent's fields to LogRecord fields (to_log_record builds its SDK record from it)."""
    number, text = severity_for(event.risk)
    view = _EventView()
    view.timestamp = view.observed_timestamp = event.time_unix_nano
    view.severity_number = _SEVERITY[number]
    view.severity_text = text
    view.body = event.body()
    view.attributes = event.attributes()
    view.trace_id = event.trace_id
    view.span_id = event.span_id
    view.trace_flags = event.trace_flags
    view.event_name = event.event_type
    view.resource = resource
    view.instrumentation_scope = scope
    return view


class AuditLoggerProvider(api_logs.LoggerProvider):
    """The LoggerProvider audit records go through: its own resource, scope, spool and exporter."""

    def __init__(
        self,
        exporter: LogRecordExporter,
        *,
        resource: Resource | None = None,
        spool: Spool | None = None,
        max_batch: int = 2048,  # events per export request: OTLP/HTTP costs ~5 ms of client CPU a request here
        schedule_delay: float = 0.2,
        max_backoff: float = 30.0,
        chained: bool = False,
        signer: Signer | None = None,
        checkpoint_every: int = 1000,
        checkpoint_seconds: float = 60.0,
        on_full: str = "block",
        meter_provider: object = None,
    ) -> None:
        self.resource = resource or Resource.create({})
        # Tamper evidence: every event is linked into the hash chain of its tenant as it enters the spool,
        # under one lock so that seq order is spool order; a signed checkpoint anchors each chain's head every
        # N of its events / T seconds. One chain per tenant (not one per emitter): a tenant's export then
        # holds whole chains, verifiable without another tenant's events (see chain.py).
        self.chains: dict[str | None, Chain] | None = {} if chained else None
        self._since_checkpoint: dict[str | None, int] = {}  # tenant -> events linked since its last checkpoint
        self.signer = signer
        self.checkpoint_every = checkpoint_every
        self.checkpoint_seconds = checkpoint_seconds
        self.checkpoints = 0
        # Durable spool at its cap: "block" audited calls until there is room, or "refuse" them (admit()).
        self.on_full = on_full
        self.spool_full_waits = 0
        self.spool_full_refusals = 0
        self._append_lock = threading.RLock()  # (reentrant: a checkpoint in batch mode links through, and a
        # stretch the native core leaves goes to the linker, which takes it too)
        self._last_checkpoint = time.monotonic()
        self.scope = InstrumentationScope(semconv.SCOPE_NAME, __version__)
        self.exporter = exporter
        # Exporters of ours encode AuditEvents directly (exporters/otlp.py, otlp_json.py); any other SDK
        # LogRecordExporter gets SDK records.
        self._export_events = getattr(exporter, "export_events", None)
        self.spool: Spool = spool if spool is not None else MemorySpool()  # (an empty spool is falsy)
        # The drain links, not the audited call (linking is ~7 us of Python a call). A memory spool keeps
        # nothing across a crash: the drain links the events the calls queued (in submit order) as it spools
        # them. A disk spool stores each event unlinked at once and holds it back from the reader until the
        # drain linked it and wrote its links to disk (DiskSpool.set_linker): replays resend identical events.
        self._link_at_drain = chained and isinstance(self.spool, MemorySpool)
        set_linker = getattr(self.spool, "set_linker", None) if chained else None
        self._spool_links = set_linker is not None
        if set_linker is not None:
            set_linker(self._link_events)
        # Batch mode (a disk spool, the native core, an exporter that sends encoded requests): the drain reads
        # its batches from the spool's segments and links, journals and encodes each in one native call.
        self._export_encoded = getattr(exporter, "export_encoded", None)
        batch_mode = getattr(self.spool, "batch_mode", None) if self._export_encoded is not None else None
        self._batch = bool(batch_mode is not None and self._spool_links and batch_mode())
        if self._batch:
            from .exporters.otlp_proto import EventEncoder  # (the exporters import this module)

            self._fields = EventEncoder(self.resource, self.scope).fields
        # Events (or, from submit_deferred, their builders) queued for the drain to link (memory spool).
        self._pending: collections.deque[AuditEvent | tuple[Callable[..., AuditEvent], tuple[Any, ...]]] = (
            collections.deque())
        self.build_failures = 0
        self.max_batch = max_batch
        self.schedule_delay = schedule_delay
        self.max_backoff = max_backoff
        self.exported = 0
        self.export_failures = 0
        self._wake = threading.Condition(threading.Lock())
        self._idle = threading.Condition(threading.Lock())
        self._stopping = False
        self._flushing = 0  # force_flush calls waiting: the worker sends a short batch without waiting to fill it
        self._shutdown = False
        self._worker: threading.Thread | None = None
        _live_providers.add(self)
        metrics.register(self, meter_provider)
        self._start_worker()
        if hasattr(os, "register_at_fork"):
            # In a forked child the worker thread is gone: start a fresh one (weakly: no leak per provider).
            ref = weakref.ref(self)
            os.register_at_fork(after_in_child=lambda: (p := ref()) is not None and p._after_fork())

    # The API LoggerProvider surface: code that wants raw OTel log records on the audit channel.
    def get_logger(self, name: str, version: str | None = None, schema_url: str | None = None,
                   attributes: object = None) -> api_logs.Logger:
        """A logger whose records are exported beside (never mixed into the app's) audit events."""
        return _PassThroughLogger(self, name, version, schema_url)

    def submit(self, event: AuditEvent) -> None:
        """Hot path: hand an event to the spool and nudge the worker when a batch is ready.

        A spool at its disk cap makes this wait for room (the action already ran: its event must be kept).
        """
        try:
            self._submit(event)
        except SpoolFullError:
            while True:
                self.wait_for_space()
                try:
                    self._submit(event)
                    return
                except SpoolFullError:
                    continue

    def admit(self) -> None:
        """Before an audited action in durable mode: at the spool's cap, refuse it or wait for room (on_full)."""
        if self.spool.full():
            if self.on_full == "refuse":
                self.spool_full_refusals += 1
                raise AuditUnavailable("auditrail (delivery.on_full: refuse): action refused, the audit spool is "
                                       "full because events are not being delivered downstream")
            self.wait_for_space()

    def wait_for_space(self) -> None:
        """Block the calling thread until the spool has room again, saying so loudly (once per episode)."""
        spool = self.spool
        if not spool.full():
            return
        self.spool_full_waits += 1
        _log.error("auditrail: the audit spool is full (delivery.max_bytes): audited calls wait until events are "
                   "delivered downstream (delivery.on_full: block)")
        started = time.monotonic()
        with self._wake:
            self._wake.notify()  # make sure the worker is draining, not sleeping
        while not spool.wait_for_space(timeout=30.0):
            if self._shutdown:
                return
            _log.error("auditrail: audited calls have waited %.0f s for room in the audit spool",
                       time.monotonic() - started)

    def _submit(self, event: AuditEvent) -> None:
        if self._link_at_drain:
            self._queue(event)
            return
        if self.chains is None or self._spool_links:
            size = self.spool.append(event)
        else:
            with self._append_lock:
                size, since = self._link_and_append(event)
            if since == self.checkpoint_every and self.signer is not None:
                size = self.max_batch  # wake the worker (once, on crossing): it writes the checkpoint
        # Only on crossing the threshold: the worker drains all it finds, and a notify per call while
        # it works would make every audited call take the condition's lock.
        if size == self.max_batch:
            with self._wake:
                self._wake.notify()

    @property
    def defers(self) -> bool:
        """Whether events may be built by the drain (submit_deferred): a memory spool linked at the drain."""
        return self._link_at_drain

    def submit_deferred(self, build: Callable[..., AuditEvent], fields: tuple[Any, ...]) -> None:
        """Hot path of best_effort: queue what `build(*fields)` makes into the event; the drain calls it."""
        self._queue((build, fields))

    def _queue(self, item: AuditEvent | tuple[Callable[..., AuditEvent], tuple[Any, ...]]) -> None:
        """Queue an event (or its builder) for the drain to link; nudge it when a batch is ready."""
        pending = self._pending
        pending.append(item)  # (deque.append is atomic: no lock on this path)
        if len(pending) == self.max_batch:
            with self._wake:
                self._wake.notify()

    def check_recordable(self) -> None:
        """Raise AuditUnavailable when the spool would refuse an event (fail_closed, before the action)."""
        reason = self.spool.refusal()
        if reason is not None:
            raise AuditUnavailable(f"auditrail (fail_closed): action refused, its audit event cannot be recorded: {reason}")

    def _link_and_append(self, event: AuditEvent) -> tuple[int, int]:
        """Link an event into its tenant's chain (created on the tenant's first event) and spool it; the
        caller holds the append lock. Returns (events waiting, the chain's events since its checkpoint)."""
        tenant = event.tenant
        chain = self._chain(tenant)
        before = chain.link(event)
        try:
            size = self.spool.append(event)
        except BaseException:
            chain.rewind(*before)  # not stored: its seq goes to the next event, leaving no gap
            raise
        since = self._since_checkpoint[tenant] = self._since_checkpoint.get(tenant, 0) + 1
        return size, since

    def _chain(self, tenant: str | None) -> Chain:
        """The chain of a tenant, started on its first event (under the append lock)."""
        chains = self.chains
        assert chains is not None
        chain = chains.get(tenant)
        if chain is None:
            chain = chains[tenant] = Chain()
        return chain

    def _link_events(self, events: list[AuditEvent]) -> None:
        """A disk spool's linker (the drain): link the events not linked yet into their tenants' chains, in order.
        An event that cannot be linked is exported without chain fields (verify reports it: unchained).

        The native core links the plain events itself (the same hash, parsed and computed with the
        interpreter lock released) and hands the others to :meth:`_link_one`; without it, or should it fail,
        this loop links what is left."""
        counts: dict[str | None, int] = {}
        with self._append_lock:
            if _native_link is not None:
                try:
                    counts = _native_link(events, self._chain, self._link_one)
                except Exception:  # noqa: BLE001 - the loop below links what the native core did not
                    _log.exception("auditrail: the native core could not link a batch; linking it in Python")
                else:  # every event is linked, or was refused by _link_one (logged) once
                    events = []
            for event in events:
                extra = event.extra
                if extra and semconv.CHAIN_HASH in extra:
                    continue
                if self._link_one(self._chain(event.tenant), event):
                    counts[event.tenant] = counts.get(event.tenant, 0) + 1
            self._count_links(counts)

    @staticmethod
    def _link_one(chain: Chain, event: AuditEvent) -> bool:
        """Link one event; False (logged) when it cannot be linked."""
        try:
            chain.link(event)
        except Exception:  # noqa: BLE001 - one bad event must not stop the drain
            _log.exception("auditrail: could not link audit event %s into its hash chain", event.event_id)
            return False
        return True

    def _link_pending(self) -> None:
        """Link the events the audited calls spooled (disk) or queued (memory: spool them too), in order."""
        if self._spool_links:
            self.spool.link_pending()  # type: ignore[attr-defined]
            return
        pending = self._pending
        if not pending or self.chains is None:
            return
        with self._append_lock:
            while pending:
                event = pending.popleft()
                if type(event) is tuple:  # submit_deferred: build it now
                    try:
                        event = event[0](*event[1])
                    except Exception:  # noqa: BLE001 - one bad event must not stop the drain
                        self.build_failures += 1
                        _log.exception("auditrail: could not build a queued audit event; it is lost")
                        continue
                self._link_and_append(event)

    def checkpoint(self, *, due_only: bool = False, link_all: bool = True) -> list[AuditEvent]:
        """Sign each chain head with events since its last checkpoint into an `audit.checkpoint` event.

        The checkpoint carries the chain's tenant, so it is part of that tenant's log (and its exports).
        `due_only`: only the chains with `checkpoint_every` events since their last one.
        `link_all` (the default, and at shutdown): first link every event submitted so far, so the checkpoints
        cover them all. The drain's periodic checkpoints in batch mode pass False: they sign the heads as the
        drain has linked them, and the spooled events not linked yet follow the checkpoint in its chain (their
        seqs come after its seq; the spool holds them before it, and verify orders a chain by seq). Linking a
        drain's whole backlog at each checkpoint would stall its exports behind that work.
        """
        signer = self.signer
        if self.chains is None or signer is None:
            return []
        self._link_pending()  # the checkpoints cover every event submitted before them
        if self._batch and link_all:
            with self._append_lock:
                self._count_links(self.spool.link_through(self._fields, self._chain))  # type: ignore[attr-defined]
        written: list[AuditEvent] = []
        with self._append_lock:
            since = self._since_checkpoint
            for tenant in [t for t, n in since.items() if n and (not due_only or n >= self.checkpoint_every)]:
                chain = self.chains[tenant]
                seq, head = chain.seq, chain.head
                now = time.time_ns()
                event = chain.checkpoint(signer, time_ns=now,
                                         make_event=lambda text, t=tenant, now=now: checkpoint_event(text, now, t))
                try:
                    self.spool.append(event, linked=True)
                except Exception:  # noqa: BLE001 - the next checkpoint will anchor these events
                    chain.rewind(seq, head)
                    _log.exception("auditrail: could not store a checkpoint")
                    continue
                del since[tenant]
                self.checkpoints += 1
                written.append(event)
            if not due_only:
                self._last_checkpoint = time.monotonic()
        return written

    def _checkpoint_due(self) -> bool | None:
        """None: nothing due; False: the chains that reached checkpoint_every; True: every chain (time)."""
        with self._append_lock:  # audited calls add tenants to the dict meanwhile
            counts = list(self._since_checkpoint.values())
        if not any(counts):
            return None
        if time.monotonic() - self._last_checkpoint >= self.checkpoint_seconds:
            return True
        return False if max(counts) >= self.checkpoint_every else None

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Wait until every queued event was exported; False on timeout."""
        deadline = time.monotonic() + timeout_millis / 1000
        with self._wake:
            self._flushing += 1
            self._wake.notify()
        try:
            with self._idle:
                while len(self.spool) or self._pending:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or self._worker is None or not self._worker.is_alive():
                        return len(self.spool) == 0 and not self._pending
                    self._idle.wait(min(remaining, 0.05))
            return True
        finally:
            with self._wake:
                self._flushing -= 1

    def shutdown(self, timeout_millis: int = 10_000) -> None:
        """Flush within the timeout, stop the worker and shut the exporter down. Idempotent."""
        if self._shutdown:
            return
        self._shutdown = True
        self.checkpoint()  # anchor the tail, so a later truncation is detectable
        flushed = self.force_flush(timeout_millis)
        if not flushed:
            _log.error("auditrail: %d audit events not exported at shutdown", len(self.spool))
        self._stopping = True
        with self._wake:
            self._wake.notify()
        if self._worker is not None:
            self._worker.join(timeout=max(0.1, timeout_millis / 1000))
        self.exporter.shutdown()
        self.spool.close()
        _live_providers.discard(self)

    # --- the drain worker ---------------------------------------------------------------------

    def _start_worker(self) -> None:
        self._worker = threading.Thread(target=self._run, name="auditrail-drain", daemon=True)
        self._worker.start()

    def _after_fork(self) -> None:
        """Fresh locks and a fresh worker in a forked child (the parent's thread did not survive the fork)."""
        if self._shutdown:
            return
        self.spool.after_fork_in_child()
        self._append_lock = threading.RLock()
        self._pending = collections.deque()  # the parent's queued events are the parent's to deliver
        if self.chains is not None:
            # Chains of their own: a child continuing the parent's chains would fork them (two seq N).
            self.chains = {}
            self._since_checkpoint = {}
        self._wake = threading.Condition(threading.Lock())
        self._idle = threading.Condition(threading.Lock())
        self._flushing = 0
        self._start_worker()

    def _run(self) -> None:
        backoff = 0.0
        retry_at = 0.0  # while backing off after a failed export, woken early only to link queued events
        sent: bool | None = None
        while True:
            with self._wake:
                if not self._stopping:
                    wait = retry_at - time.monotonic()
                    if wait > 0:
                        self._wake.wait(wait)
                    elif (len(self.spool) < self.max_batch and len(self._pending) < self.max_batch
                          and not (sent and self._flushing)):  # (a flush waits for the rest: send it now)
                        self._wake.wait(self.schedule_delay)
            self._link_pending()
            if not self._stopping and time.monotonic() < retry_at:
                continue
            due = self._checkpoint_due() if self.signer is not None else None
            if due is not None:
                self.checkpoint(due_only=not due, link_all=False)
            sent = self._export_batch() if self._batch else None
            if sent is None:
                sent = self._export_peeked()
            if sent is None:  # nothing to send
                self._notify_idle()
                if self._stopping:
                    return
                continue
            if sent:
                backoff = retry_at = 0.0
                if not len(self.spool) and not self._pending:
                    self._notify_idle()
                continue
            if self._stopping:
                return
            backoff = min(self.max_backoff, max(0.1, backoff * 2))
            retry_at = time.monotonic() + backoff

    def _export_peeked(self) -> bool | None:
        """The spool's next batch of events (peek), exported and, once accepted, acknowledged. True: sent;
        False: the export failed (the caller backs off; the same events are sent again); None: nothing to send."""
        # In batch mode, reading back runs the linker, which takes the append lock inside the spool's read
        # lock; a checkpoint (shutdown's, on another thread) takes them in the other order (link_through):
        # the drain takes the append lock first too.
        with self._append_lock if self._batch else contextlib.nullcontext():
            batch = self.spool.peek(self.max_batch)
        if not batch:
            return None
        if self._export(batch):
            self.spool.ack(len(batch))
            self.exported += len(batch)
            return True
        self.export_failures += 1
        return False

    def _export_batch(self) -> bool | None:
        """Batch mode: take the next batches from the spool's bytes (up to _TAKE_REQUESTS requests) and send
        them in order, each acknowledged once accepted. True: all sent; False: an export failed (the caller backs
        off; its records and those after are read, with their journalled links, and sent again); None: nothing
        to take this way (the peek path runs)."""
        with self._append_lock:
            got = self.spool.take_encoded(  # type: ignore[attr-defined]
                _TAKE_REQUESTS * self.max_batch, self.max_batch, self._fields, self._chain)
            if got is None:
                return None
            requests, counts = got
            self._count_links(counts)
        for request, count, position in requests:
            if not self._sent(lambda r=request, n=count: self._export_encoded(r, n)):  # type: ignore[misc]
                self.export_failures += 1
                return False
            self.spool.ack_encoded(count, position)  # type: ignore[attr-defined]
            self.exported += count
        return True

    def _count_links(self, counts: Any) -> None:
        """Add the records linked per tenant to the counts that make checkpoints due (under the append lock)."""
        since = self._since_checkpoint
        for tenant, linked in counts.items():
            since[tenant] = since.get(tenant, 0) + linked

    def _export(self, batch: Sequence[AuditEvent]) -> bool:
        if self._export_events is not None:
            return self._sent(lambda: self._export_events(batch, self.resource, self.scope))  # type: ignore[misc]
        return self._sent(lambda: self.exporter.export([to_log_record(e, self.resource, self.scope) for e in batch])
                          == LogRecordExportResult.SUCCESS)

    @staticmethod
    def _sent(send: Callable[[], Any]) -> bool:
        """Whether `send()` (an export) succeeded; an exporter that raises has not (logged: a broken exporter
        must not kill the worker, it is retried)."""
        try:
            return bool(send())
        except Exception:  # noqa: BLE001
            _log.exception("auditrail: exporter raised; will retry")
            return False

    def _notify_idle(self) -> None:
        with self._idle:
            self._idle.notify_all()


class _PassThroughLogger(api_logs.Logger):
    """A Logger on the audit channel: exports API LogRecords directly with the audit resource."""

    def __init__(self, provider: AuditLoggerProvider, name: str, version: str | None, schema_url: str | None):
        super().__init__(name, version, schema_url)
        self._provider = provider
        self._scope = InstrumentationScope(name, version, schema_url)

    def enabled(self, **kwargs: object) -> bool:  # type: ignore[override]
        """Always: the audit channel does not filter by severity."""
        return True

    def emit(self, record: LogRecord | None = None, **kwargs: object) -> None:  # type: ignore[override]
        """Export one record synchronously (not spooled: use auditrail.emit for audit events)."""
        rec = record if record is not None else LogRecord(**kwargs)  # type: ignore[arg-type]
        self._provider.exporter.export(
            [ReadableLogRecord(log_record=rec, resource=self._provider.resource, instrumentation_scope=self._scope)]
        )


_live_providers: "weakref.WeakSet[AuditLoggerProvider]" = weakref.WeakSet()


@atexit.register
def _shutdown_all() -> None:
    """At interpreter exit, flush every provider (bounded by its timeout)."""
    for provider in list(_live_providers):
        try:
            provider.shutdown()
        except Exception:  # noqa: BLE001
            _log.exception("auditrail: shutdown failed")
