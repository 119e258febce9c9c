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
from .spool import MemorySpool, Spool

_log = logging.getLogger("auditrail")


def make_spool(config: AuditConfig) -> Spool:
    """The spool for `delivery.mode` (the on-disk spool is the delivery layer's; best_effort is memory)."""
    if config.delivery.mode != "best_effort":
        _log.warning(
            "auditrail: delivery.mode=%s needs the on-disk spool, which this build does not have yet; "
            "buffering audit events in memory (best_effort)",
            config.delivery.mode,
        )
    return MemorySpool()


def configure(config: AuditConfig | None = None, *, exporter: LogRecordExporter | None = None) -> Recorder:
    """Start auditing with `config` (defaults if None) and make it the process's active recorder."""
    config = config or AuditConfig()
    attributes = dict(config.resource)
    if not os.environ.get("OTEL_SERVICE_NAME"):
        attributes[SERVICE_NAME] = config.service_name
    provider = AuditLoggerProvider(
        exporter or make_exporter(),
        resource=Resource.create(attributes),
        spool=make_spool(config),
    )
    recorder = Recorder(
        provider,
        policy=PayloadPolicy(config.redact, config.payload_max_bytes),
        sources=ContextSources(**{k: v for k, v in config.context.items()}),
    )
    previous = runtime.set_recorder(recorder)
    if previous is not None:
        previous.provider.shutdown()
    return recorder


def shutdown(timeout_millis: int = 10_000) -> None:
    """Flush and stop the active recorder."""
    previous = runtime.set_recorder(None)
    if previous is not None:
        previous.provider.shutdown(timeout_millis)
