"""The audit event model: categories, event types, default risk, severity, and the AuditEvent record."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

import uuid_utils

from . import semconv

# Category -> (event types, default risk, what each event must carry). The required payload keys are
# checked when a config is loaded (a warning, since an app may supply them some other way).
CATEGORIES: dict[str, tuple[tuple[str, ...], str, tuple[str, ...]]] = {
    "prompt": (("prompt.update",), "high", ("before", "after")),
    "crawl": (("crawl.run",), "low", ("domain", "run_id", "triggered_by")),
    "policy": (("policy.update",), "medium", ("before", "after")),
    "impersonation": (
        ("admin.impersonation.start", "admin.impersonation.end"),
        "critical",
        ("impersonated",),
    ),
    "billing": (
        ("billing.plan.change", "billing.quota.override", "billing.grace.start", "billing.grace.end"),
        "medium",
        ("before", "after"),
    ),
    "killswitch": (("killswitch.disable", "killswitch.enable"), "critical", ("scope",)),
    "system": (
        ("approval.requested", "approval.granted", "approval.denied", "approval.expired", "approval.used",
         "review.completed", "audit.checkpoint"),
        "low",
        (),
    ),
}

EVENT_CATEGORY: dict[str, str] = {t: cat for cat, (types, _, _) in CATEGORIES.items() for t in types}
DEFAULT_RISK: dict[str, str] = {t: CATEGORIES[cat][1] for t, cat in EVENT_CATEGORY.items()}
REQUIRED_PAYLOAD: dict[str, tuple[str, ...]] = {t: CATEGORIES[cat][2] for t, cat in EVENT_CATEGORY.items()}
# An end event names its session or its user; the recorder fills in the other from the open session.
REQUIRED_PAYLOAD["admin.impersonation.end"] = ()
# Custom event types (an app's own) default to medium: visible, not alarming.
CUSTOM_RISK = "medium"

IMPERSONATION_START = "admin.impersonation.start"
IMPERSONATION_END = "admin.impersonation.end"

EVENT_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$")

# OTel SeverityNumber values: INFO=9, WARN=13 (DESIGN: WARN for high/critical).
SEVERITY_INFO = (9, "INFO")
SEVERITY_WARN = (13, "WARN")


def default_risk(event_type: str) -> str:
    """The risk an event type carries when its config does not say."""
    return DEFAULT_RISK.get(event_type, CUSTOM_RISK)


def severity_for(risk: str) -> tuple[int, str]:
    """OTel severity (number, text) for a risk level."""
    return SEVERITY_WARN if risk in ("high", "critical") else SEVERITY_INFO


def new_event_id(time_unix_nano: int | None = None) -> str:
    """A UUIDv7 string: time-ordered, unique, fixed before the event leaves the process so replays can be
    deduplicated. Its time is `time_unix_nano` when given (an event built after its action: best_effort's
    drain), else now."""
    if time_unix_nano is None:
        return str(uuid_utils.uuid7())
    return str(uuid_utils.uuid7(nanoseconds=time_unix_nano))


@dataclass(slots=True)
class AuditEvent:
    """One audited action, as captured; becomes one LogRecord (see semconv for the attribute names)."""

    event_type: str
    tenant: str | None = None
    actor: str | None = None
    actor_type: str = "user"
    payload: str = "{}"  # JSON object text, already redacted and capped
    source_ip: str | None = None
    reason: str | None = None
    outcome: str = "success"
    risk: str = "medium"
    impersonator: str | None = None
    impersonation_id: str | None = None
    approval_id: str | None = None
    event_id: str = field(default_factory=new_event_id)
    time_unix_nano: int = field(default_factory=time.time_ns)
    trace_id: int = 0
    span_id: int = 0
    trace_flags: int = 0
    extra: dict[str, Any] | None = None  # further attributes, e.g. the chain fields of the delivery layer
    # The bytes the disk spool stored for it (spool_file.encode_event: every field above but `extra`, as
    # it was appended): the native core reads them instead of the attributes. Not part of the event.
    spooled: bytes | None = field(default=None, compare=False, repr=False)

    def attributes(self) -> dict[str, Any]:
        """The LogRecord attributes of this event (absent values are left out, not sent as null)."""
        attrs: dict[str, Any] = {semconv.EVENT_ID: self.event_id}
        optional = (
            (semconv.ACTOR, self.actor),
            (semconv.TENANT, self.tenant),
            (semconv.SOURCE_IP, self.source_ip),
            (semconv.REASON, self.reason),
            (semconv.IMPERSONATOR, self.impersonator),
            (semconv.IMPERSONATION, self.impersonation_id),
            (semconv.APPROVAL, self.approval_id),
        )
        for key, value in optional:
            if value is not None:
                attrs[key] = value
        attrs[semconv.ACTOR_TYPE] = self.actor_type
        attrs[semconv.PAYLOAD] = self.payload
        attrs[semconv.OUTCOME] = self.outcome
        attrs[semconv.RISK] = self.risk
        if self.extra:
            attrs.update(self.extra)
        return attrs

    def body(self) -> str:
        """A one-line human summary, for log viewers that show only the body."""
        who = self.actor or "unknown"
        if self.impersonator:
            who = f"{who} (impersonated by {self.impersonator})"
        return f"{self.event_type} by {who} on tenant {self.tenant or '?'}: {self.outcome}"
