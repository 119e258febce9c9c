"""auditrail's health metrics, read through a real OTel SDK MeterProvider."""

from __future__ import annotations

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from auditrail.events import AuditEvent
from auditrail.exporters.otlp_json import OTLPJsonLinesExporter
from auditrail.pipeline import AuditLoggerProvider
from auditrail.spool_file import DiskSpool


def read(reader: InMemoryMetricReader) -> dict[str, float]:
    data = reader.get_metrics_data()
    return {m.name: m.data.data_points[0].value for rm in data.resource_metrics for sm in rm.scope_metrics
            for m in sm.metrics if sm.scope.name == "auditrail" and m.data.data_points}


def test_spool_usage_exports_and_limit_are_observable(tmp_path):
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    spool = DiskSpool.open(str(tmp_path / "spool"), mode="durable", max_bytes=1 << 20)
    provider = AuditLoggerProvider(OTLPJsonLinesExporter(tmp_path / "out.jsonl"), spool=spool,
                                   schedule_delay=60, meter_provider=meters)
    for i in range(10):
        provider.submit(AuditEvent("custom.thing", tenant=f"t{i}"))
    before = read(reader)
    assert before["auditrail.spool.events"] == 10
    assert before["auditrail.spool.usage"] > 0
    assert before["auditrail.spool.limit"] == 1 << 20
    assert before["auditrail.events.exported"] == 0
    assert provider.force_flush(10_000)
    after = read(reader)
    assert after["auditrail.spool.events"] == 0 and after["auditrail.events.exported"] == 10
    assert after["auditrail.export.failures"] == 0 and after["auditrail.spool.full"] == 0
    provider.shutdown()
    meters.shutdown()
