"""Turning a loaded audit.yaml into a running recorder."""

from __future__ import annotations

import logging
import os

from opentelemetry.sdk._logs.export import LogRecordExporter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource

from . import runtime
from .config import AuditConfig
from .exporters import make_exporter
from .payload import PayloadPolicy
from .pipeline import AuditLoggerProvider
from .recorder import ContextSources, Recorder
from .signing import Signer, load_signer
from .spool import MemorySpool, RefusingSpool, Spool
from .spool_file import DiskSpool

_log = logging.getLogger("auditrail")


def make_spool(config: AuditConfig) -> Spool:
    """The spool for `delivery.mode`: on disk for durable and fail_closed, memory for best_effort."""
    delivery = config.delivery
    if delivery.mode == "best_effort":
        return MemorySpool()
    try:
        return DiskSpool.open(delivery.spool_dir, mode=delivery.mode, max_bytes=delivery.max_bytes)
    except OSError as exc:
        if delivery.mode == "fail_closed":
            _log.error("auditrail: %s; fail_closed: every audited action will be refused", exc)
            return RefusingSpool(str(exc))
        # durable: the app must run; say loudly that a crash would now lose events.
        _log.error("auditrail: %s; keeping audit events in memory only (a crash would lose them)", exc)
        return MemorySpool()


def make_signer(config: AuditConfig) -> Signer | None:
    """The key that signs this process's checkpoints (None, loudly, when it cannot be loaded)."""
    spool_dir = None if config.delivery.mode == "best_effort" else config.delivery.spool_dir
    try:
        signer = load_signer(config.integrity.signing_key_file, spool_dir=spool_dir)
    except (OSError, ValueError) as exc:
        _log.error("auditrail: no signing key (%s); checkpoints are not written", exc)
        signer = None
    return signer


def configure(config: AuditConfig | None = None, *, exporter: LogRecordExporter | None = None) -> Recorder:
    """Start auditing with `config` (defaults if None) and make it the process's active recorder."""
    config = config or AuditConfig()
    attributes = dict(config.resource)
    if not os.environ.get("OTEL_SERVICE_NAME"):
        attributes[SERVICE_NAME] = config.service_name
    signer = make_signer(config)
    provider = AuditLoggerProvider(
        exporter or make_exporter(),
        resource=Resource.create(attributes),
        spool=make_spool(config),
        chained=True,
        signer=signer,
        checkpoint_every=config.integrity.checkpoint_every,
        checkpoint_seconds=config.integrity.checkpoint_seconds,
        on_full=config.delivery.on_full,
    )
    recorder = Recorder(
        provider,
        policy=PayloadPolicy(config.redact, config.payload_max_bytes, allow=config.redact_allow),
        sources=ContextSources(**{k: v for k, v in config.context.items()}),
        fail_closed=config.delivery.mode == "fail_closed",
        durable=config.delivery.mode == "durable",
    )
    if config.approvals is not None:
        from .approvals import ApprovalClient

        recorder.approvals = ApprovalClient(config.approvals)
    previous = runtime.set_recorder(recorder)
    if previous is not None:
        previous.provider.shutdown()
    return recorder


def shutdown(timeout_millis: int = 10_000) -> None:
    """Flush and stop the active recorder."""
    previous = runtime.set_recorder(None)
    if previous is not None:
        previous.provider.shutdown(timeout_millis)
