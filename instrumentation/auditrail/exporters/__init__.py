"""Exporters selected by AUDITRAIL_EXPORTER: `otlp` (default), `console`, `file:PATH`."""

from __future__ import annotations

import os
import sys

from opentelemetry.sdk._logs.export import ConsoleLogRecordExporter, LogRecordExporter

EXPORTER_ENV = "AUDITRAIL_EXPORTER"


class ExporterError(ValueError):
    """An AUDITRAIL_EXPORTER value that names no exporter."""


def check_exporter_spec(spec: str) -> str:
    """Validate an AUDITRAIL_EXPORTER value without building anything; returns it normalised."""
    spec = (spec or "otlp").strip()
    if spec in ("otlp", "console") or (spec.startswith("file:") and len(spec) > 5):
        return spec
    raise ExporterError(
        f"{EXPORTER_ENV}={spec!r} is not an exporter: use otlp, console or file:PATH"
    )


def make_exporter(spec: str | None = None) -> LogRecordExporter:
    """Build the exporter named by `spec` (default: $AUDITRAIL_EXPORTER, else otlp)."""
    spec = check_exporter_spec(spec if spec is not None else os.environ.get(EXPORTER_ENV, "otlp"))
    if spec == "console":
        return ConsoleLogRecordExporter(out=sys.stdout, formatter=lambda r: r.to_json(indent=None) + os.linesep)
    if spec.startswith("file:"):
        from .otlp_json import OTLPJsonLinesExporter

        return OTLPJsonLinesExporter(spec[5:])
    return _otlp_exporter()


def _otlp_exporter() -> LogRecordExporter:
    """The OTLP log exporter for the protocol the standard OTEL_EXPORTER_OTLP_* variables choose.

    http/json is sent as http/protobuf (the SDK has no JSON encoder): every OTLP/HTTP receiver takes both.
    """
    protocol = (
        os.environ.get("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()
    if protocol == "grpc":
        from .otlp import GrpcEventExporter

        return GrpcEventExporter()
    if protocol in ("http/protobuf", "http/json"):
        from .otlp import HttpEventExporter

        return HttpEventExporter()
    raise ExporterError(f"OTLP protocol {protocol!r} is not supported: use grpc or http/protobuf")
