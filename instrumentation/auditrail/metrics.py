"""auditrail's own health as OpenTelemetry metrics (spool usage, exports, failures, drops).

Registered on the global MeterProvider through the API: with no SDK MeterProvider configured they cost
nothing; under ``opentelemetry-instrument`` (or any app that sets one up) they go out with the app's own
metrics, so an operator can alert on a spool filling up before it reaches ``delivery.max_bytes``.
Instruments are observable: the hot path does no metric work, the reader's collection asks the provider.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from .version import __version__

if TYPE_CHECKING:  # pragma: no cover
    from .pipeline import AuditLoggerProvider

METER_NAME = "auditrail"


def register(provider: AuditLoggerProvider, meter_provider: Any = None) -> None:
    """Observe `provider` (weakly: a provider that is gone reports nothing) on `meter_provider` or the global one."""
    ref = weakref.ref(provider)
    meter = (meter_provider or metrics.get_meter_provider()).get_meter(METER_NAME, __version__)

    def observe(read: Any) -> Any:
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            live = ref()
            if live is None:
                return []
            value = read(live)
            return [] if value is None else [Observation(value)]
        return callback

    meter.create_observable_up_down_counter(
        "auditrail.spool.events", callbacks=[observe(lambda p: len(p.spool) + len(p._pending))], unit="{event}",
        description="Audit events recorded and not yet confirmed by the exporter")
    meter.create_observable_up_down_counter(
        "auditrail.spool.usage", callbacks=[observe(lambda p: getattr(p.spool, "disk_bytes", None))], unit="By",
        description="Bytes of the durable spool on disk (unacknowledged segments)")
    meter.create_observable_up_down_counter(
        "auditrail.spool.limit", callbacks=[observe(lambda p: getattr(p.spool, "max_bytes", None))], unit="By",
        description="delivery.max_bytes: at this usage audited calls block or are refused (delivery.on_full)")
    meter.create_observable_counter(
        "auditrail.events.exported", callbacks=[observe(lambda p: p.exported)], unit="{event}",
        description="Audit events (checkpoints included) the exporter confirmed")
    meter.create_observable_counter(
        "auditrail.export.failures", callbacks=[observe(lambda p: p.export_failures)], unit="{batch}",
        description="Export attempts that failed and will be retried")
    meter.create_observable_counter(
        "auditrail.spool.full", callbacks=[observe(lambda p: p.spool_full_waits + p.spool_full_refusals)],
        unit="{occurrence}", description="Times audited calls waited for room in, or were refused by, a full spool")
    meter.create_observable_counter(
        "auditrail.events.dropped", callbacks=[observe(lambda p: getattr(p.spool, "dropped", 0) + p.build_failures)],
        unit="{event}", description="Events dropped by the best_effort memory spool at its cap, or that its drain "
        "could not build (durable modes never drop)")
