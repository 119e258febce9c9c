"""The service's own audit events of approvals: `approval.granted`, `approval.denied`, `approval.expired`.

They are recorded when they happen, by the service, through auditrail's own pipeline: a durable disk spool,
one hash chain per tenant (the service is one more emitter beside the apps), signed checkpoints, and an
exporter that writes into this very store through the service's ingest path. So a decision is in the
tenant's chain whether or not the app ever retries, and `verify` covers it like any other event. With a
forward URL (forward.py) each one also goes to the collector, for its alert rules.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlparse

from auditrail.events import AuditEvent, default_risk
from auditrail.exporters.otlp_proto import EventEncoder
from auditrail.pipeline import AuditLoggerProvider
from auditrail.recorder import Recorder
from auditrail.signing import load_signer
from auditrail.spool_file import DiskSpool
from opentelemetry.sdk.resources import SERVICE_NAME, Resource

from ..forward import Forwarded, forward_url, open_forward
from ..ingest import LogBatch, decode_protobuf

__all__ = ["DecisionEvents", "spool_dir_for"]

logger = logging.getLogger("auditrail.store")
SPOOL_ENV = "AUDITRAIL_APPROVALS_SPOOL"


def spool_dir_for(url: str, env: str = SPOOL_ENV, name: str = "approval-spool") -> str:
    """Where the service spools its events: $`env` (AUDITRAIL_APPROVALS_SPOOL), else beside an embedded
    store (`<store>.<name>`), else ./.auditrail/<name>."""
    configured = os.environ.get(env)
    if configured:
        return configured
    parsed = urlparse(url)
    if parsed.scheme == "chdb" and parsed.path:
        return os.path.abspath(parsed.path.rstrip("/")) + "." + name
    return os.path.abspath(os.path.join(".auditrail", name))


class StoreExporter:
    """An auditrail exporter whose receiver is this store: events are encoded as OTLP and written through
    the same decoder and writer as `POST /v1/logs`."""

    def __init__(self, write: Callable[[LogBatch], Any]) -> None:
        self._write = write
        self._encoder: tuple[Any, Any, EventEncoder] | None = None

    def export_events(self, events: Sequence[AuditEvent], resource: Any, scope: Any) -> bool:
        """Write one batch; False (the drain retries) when the store refuses it."""
        if self._encoder is None or self._encoder[0] is not resource or self._encoder[1] is not scope:
            self._encoder = (resource, scope, EventEncoder(resource, scope))
        return self.export_encoded(self._encoder[2].encode(events), len(events))

    def export_encoded(self, request: bytes, count: int) -> bool:
        """Write a request the drain encoded already."""
        try:
            self._write(decode_protobuf(request))
        except Exception as exc:  # noqa: BLE001 - kept in the spool, retried by the drain
            logger.warning("approval events not written yet (%d, retried): %s", count, exc)
            return False
        return True

    def shutdown(self) -> None:
        """Nothing to release."""

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Every write is synchronous."""
        return True


class DecisionEvents:
    """Records the service's approval events into the tenant's chain (this service's chain of it)."""

    def __init__(self, url: str, write: Callable[[LogBatch], Any], *, service_name: str = "auditrail-approvals",
                 spool_dir: str | None = None, forward: str | None = None) -> None:
        spool_dir = spool_dir or spool_dir_for(url)
        resource = Resource.create({SERVICE_NAME: service_name})
        exporter: Any = StoreExporter(write)
        target = forward_url(forward)  # --forward-otlp, else $AUDITRAIL_FORWARD_OTLP: a copy to the collector
        if target is not None:
            exporter = Forwarded(exporter, open_forward(target, spool_dir + ".forward", resource))
            logger.info("%s events are forwarded to %s (spool %s.forward)", service_name, target, spool_dir)
        self.provider = AuditLoggerProvider(
            exporter, resource=resource, spool=DiskSpool.open(spool_dir, mode="durable"), chained=True,
            signer=load_signer(None, spool_dir=spool_dir),
            # Decisions are rare and each must be anchored at once: a signed checkpoint follows every one
            # (else the newest would be verifiable only after the next checkpoint, minutes later).
            checkpoint_every=1)
        self.recorder = Recorder(self.provider, durable=True)

    def record(self, event_type: str, approval: Any) -> None:
        """One approval.* event: the decider is its actor (none for an expiry); no client address (the
        service does not know where the person decided from: the API caller may be a CLI on a server)."""
        decided = event_type in ("approval.granted", "approval.denied")
        actor = approval.decided_by or None if decided else None
        payload = {"action": approval.event_type, "target": approval.target, "requester": approval.requester,
                   "approvers": approval.approvers_so_far, "expires_at": _iso(approval.expires_at)}
        if decided:
            payload["decided_at"] = _iso(approval.decided_at)
        self.recorder.record_positional(
            event_type, approval.tenant_id or None, actor, "user" if actor else "system", payload, None,
            approval.decision_reason or None if decided else None, "success", default_risk(event_type),
            approval.approval_id, None, False, False, True, None)

    def record_event(self, event_type: str, tenant: str, actor: str | None, payload: dict[str, Any],
                     reason: str | None = None) -> None:
        """One of the service's own events (review.completed, review.due, review.overdue) in `tenant`'s chain."""
        self.recorder.record_positional(
            event_type, tenant, actor, "user" if actor else "system", payload, None, reason, "success",
            default_risk(event_type), None, None, False, False, True, None)

    def close(self) -> None:
        """Deliver what is spooled and stop (a final checkpoint is signed)."""
        self.provider.shutdown()


def _iso(value: Any) -> str | None:
    from .store import _iso as iso

    return iso(value)
