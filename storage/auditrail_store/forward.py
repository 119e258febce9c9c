"""The service's own audit events to the collector too: ``auditrail serve --forward-otlp URL``.

The service records its events (approval.granted / denied / expired, review.completed / due / overdue, their
checkpoints) into its own store (approvals/events.py). Alerts on them (a review not signed in time: a Google
Chat card) are the collector's job, so with a forward URL each event, once the store accepted it, is also
sent as OTLP/HTTP to the collector: the same signed, chained record (the OTLP encoder of the apps' events,
the same resource and scope), through a durable spool of its own (``<recorder spool>.forward``) and the
apps' OTLP exporter (exporters/otlp.py, the SDK's HTTP client). A collector that is down delays the copy,
never the store; the spool keeps it across restarts. When the collector routes the copy back into the store
(otelcol-embedded.yaml), the store keeps it once: same event id, same content.

Configuration: ``--forward-otlp URL`` or ``AUDITRAIL_FORWARD_OTLP`` (the collector's OTLP/HTTP address, e.g.
``http://127.0.0.1:4318``; ``/v1/logs`` is added to a URL without a path). Headers (the collector's bearer
token) from ``AUDITRAIL_FORWARD_OTLP_HEADERS`` in the ``OTEL_EXPORTER_OTLP_HEADERS`` format, else the
standard ``OTEL_EXPORTER_OTLP_LOGS_HEADERS`` / ``OTEL_EXPORTER_OTLP_HEADERS``; TLS by the standard
``OTEL_EXPORTER_OTLP_CERTIFICATE`` / ``..._CLIENT_KEY`` / ``..._CLIENT_CERTIFICATE``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from auditrail.events import AuditEvent
from auditrail.pipeline import AuditLoggerProvider
from auditrail.spool_file import DiskSpool

from .db import StoreError

__all__ = ["FORWARD_ENV", "Forwarded", "forward_url", "open_forward"]

logger = logging.getLogger("auditrail.store")
FORWARD_ENV = "AUDITRAIL_FORWARD_OTLP"
HEADERS_ENV = "AUDITRAIL_FORWARD_OTLP_HEADERS"
SHUTDOWN_FLUSH_MS = 5_000


def forward_url(value: str | None = None) -> str | None:
    """The OTLP/HTTP logs URL to forward to: `value` (``--forward-otlp``), else $AUDITRAIL_FORWARD_OTLP, else
    None (off). StoreError naming the setting when it is no http(s) URL."""
    source = "--forward-otlp" if value else FORWARD_ENV
    value = (value or os.environ.get(FORWARD_ENV) or "").strip()
    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise StoreError(f"{source}={value!r}: give the collector's OTLP/HTTP URL, e.g. http://127.0.0.1:4318")
    if parts.username or parts.password:  # (never echoed: it would put the secret in the log)
        raise StoreError(f"{source}: a URL with credentials; put the collector's token in {HEADERS_ENV} "
                         "(authorization=Bearer%20<token>)")
    if parts.path in ("", "/"):
        parts = parts._replace(path="/v1/logs")  # as OTEL_EXPORTER_OTLP_ENDPOINT: the base of the logs path
    return urlunsplit(parts)


def _headers() -> dict[str, str] | None:
    """$AUDITRAIL_FORWARD_OTLP_HEADERS as a dict; None lets the SDK read the standard OTEL_* variables."""
    text = os.environ.get(HEADERS_ENV)
    if not text:
        return None
    from opentelemetry.util.re import parse_env_headers

    return parse_env_headers(text, liberal=True)


def open_forward(url: str, spool_dir: str, resource: Any) -> AuditLoggerProvider:
    """The forwarding pipeline of one recorder: its durable spool and the OTLP/HTTP exporter, with the
    recorder's own resource (service.name is part of the stored event: the collector's copy must match)."""
    from auditrail.exporters.otlp import HttpEventExporter

    exporter = HttpEventExporter(endpoint=url, headers=_headers())
    # Unchained: the events arrive linked and signed by the recorder; this spool only carries them.
    return AuditLoggerProvider(exporter, resource=resource, spool=DiskSpool.open(spool_dir, mode="durable"))


class Forwarded:
    """The recorder's exporter: `store` first, then, once it accepted a batch, the batch into `forward`'s spool.

    It offers no ``export_encoded``, so the recorder's drain hands it events (a few a day: the batch path's
    speed is not needed) that the forward spool can keep as they are."""

    def __init__(self, store: Any, forward: AuditLoggerProvider) -> None:
        self.store, self.forward = store, forward

    def export_events(self, events: Sequence[AuditEvent], resource: Any, scope: Any) -> bool:
        """False (the drain retries the batch; the store keeps each event id once) until both took it."""
        if not self.store.export_events(events, resource, scope):
            return False
        if self.forward.spool.full():
            logger.error("the forward spool is full (the collector has not taken events for long): %d events wait "
                         "in the service's spool", len(events))
            return False
        for event in events:
            self.forward.submit(event)  # on disk before we return (durable spool)
        return True

    def shutdown(self) -> None:
        """Deliver what the forward spool holds, for a few seconds: the rest waits on disk for the next start (a
        stop must not hang on a collector that is down)."""
        self.store.shutdown()
        self.forward.shutdown(timeout_millis=SHUTDOWN_FLUSH_MS)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """The forward's flush (the store's writes are synchronous)."""
        return self.forward.force_flush(timeout_millis)
