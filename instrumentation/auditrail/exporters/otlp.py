"""OTLP over HTTP and gRPC for audit events: the SDK's exporters, fed bytes we encode ourselves.

The SDK's OTLP exporters do everything the standard ``OTEL_EXPORTER_OTLP_*`` variables ask for: endpoint,
headers (bearer tokens), timeout, compression, TLS trust (``..._CERTIFICATE``) and mTLS client certificates
(``..._CLIENT_KEY`` / ``..._CLIENT_CERTIFICATE``), retries within the timeout. We keep all of that and
replace only the encoding step, which for audit events is ~6x cheaper done by
:class:`~auditrail.exporters.otlp_proto.EventEncoder` than through SDK LogRecords and ``encode_logs``.
The pipeline calls :meth:`export_events`; the SDK's ``export(batch)`` keeps working for SDK records.

Both subclasses use one private seam of opentelemetry-exporter-otlp-proto-* 1.45 (pinned <1.46): the
HTTP exporter's ``_client.export(bytes)`` and the gRPC mixin's ``_client`` stub and ``_translate_data``.
``tests/test_exporters.py`` sends through both to real OTLP receivers, so an SDK change that moves
them fails there, not in production.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, NamedTuple

import requests

from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as _SdkGrpcExporter
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as _SdkHttpExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.sdk._logs.export import LogRecordExportResult

from ..events import AuditEvent
from .otlp_proto import EventEncoder

# The SDK's hook for a custom requests Session (auth providers); when set, the SDK's choice stands.
_SESSION_PROVIDER_ENV = "OTEL_PYTHON_EXPORTER_OTLP_HTTP_LOGS_CREDENTIAL_PROVIDER"
_GRPC_EXPORT_METHOD = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"


class _Encoders:
    """The EventEncoder for the provider's (resource, scope): built once, rebuilt only if they change."""

    __slots__ = ("_key", "_encoder")

    def __init__(self) -> None:
        self._key: tuple[Any, Any] | None = None
        self._encoder: EventEncoder | None = None

    def encode(self, events: Sequence[AuditEvent], resource: Any, scope: Any) -> bytes:
        key = self._key
        if key is None or key[0] is not resource or key[1] is not scope or self._encoder is None:
            self._encoder = EventEncoder(resource, scope)
            self._key = (resource, scope)
        return self._encoder.encode(events)


class _CertificateRespectingSession(requests.Session):
    """A requests Session on which a configured CA file wins over REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE.

    requests merges environment settings *over* ``session.verify`` (psf/requests#3829), so with
    REQUESTS_CA_BUNDLE set (common in container images) the SDK silently ignores
    OTEL_EXPORTER_OTLP_CERTIFICATE and TLS to a private CA fails. Proxies from the environment still apply.
    """

    def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any) -> Any:
        settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
        if verify is None and isinstance(self.verify, str):
            settings["verify"] = self.verify
        return settings


class HttpEventExporter(_SdkHttpExporter):
    """OTLP/HTTP (protobuf) exporter of audit events; configured like the SDK's, by the OTEL_* variables."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if "session" not in kwargs and not os.environ.get(_SESSION_PROVIDER_ENV):
            kwargs["session"] = _CertificateRespectingSession()
        super().__init__(*args, **kwargs)
        self._encoders = _Encoders()

    def export_events(self, events: Sequence[AuditEvent], resource: Any, scope: Any) -> bool:
        """Send one batch; True once the receiver accepted it (the SDK client retried transient errors)."""
        if self._shutdown:
            return False
        data = self._encoders.encode(events, resource, scope)
        return self._client.export(data).success

    def export_encoded(self, request: bytes, count: int) -> bool:
        """Send a request the drain encoded already (the native core, from the spool's bytes): as export_events."""
        if self._shutdown:
            return False
        return self._client.export(request).success


class _Encoded(NamedTuple):
    data: bytes
    count: int


class _RawLogsStub:
    """A LogsService stub that sends already-serialized requests (grpc passes bytes through unchanged)."""

    def __init__(self, channel: Any) -> None:
        self.Export = channel.unary_unary(
            _GRPC_EXPORT_METHOD,
            request_serializer=None,
            response_deserializer=ExportLogsServiceResponse.FromString,
        )


class GrpcEventExporter(_SdkGrpcExporter):
    """OTLP/gRPC exporter of audit events; configured like the SDK's, by the OTEL_* variables."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._encoders = _Encoders()
        super().__init__(*args, **kwargs)

    def _initialize_channel_and_stub(self) -> None:
        super()._initialize_channel_and_stub()
        self._client = _RawLogsStub(self._channel)

    def _translate_data(self, data: Any) -> bytes:  # type: ignore[override]
        if isinstance(data, _Encoded):
            return data.data
        return encode_logs(data).SerializeToString()

    def _count_data(self, data: Any) -> int:
        return data.count if isinstance(data, _Encoded) else len(data)

    def export_events(self, events: Sequence[AuditEvent], resource: Any, scope: Any) -> bool:
        """Send one batch; True once the receiver accepted it (the SDK mixin retried transient errors)."""
        encoded = _Encoded(self._encoders.encode(events, resource, scope), len(events))
        return self._export(encoded) == LogRecordExportResult.SUCCESS

    def export_encoded(self, request: bytes, count: int) -> bool:
        """Send a request the drain encoded already (the native core, from the spool's bytes): as export_events."""
        return self._export(_Encoded(request, count)) == LogRecordExportResult.SUCCESS
