"""auditrail: audit logging for AI-assistant SaaS, built on OpenTelemetry.

Zero code: write an audit.yaml and start the app with `auditrail-instrument CMD ...`.
In code, for those who want it:

    import auditrail
    auditrail.emit("killswitch.disable", tenant="*", actor="ops@acme.io", reason="incident 42",
                   payload={"feature": "embed", "scope": "*"})
    with auditrail.audit_context(actor="alice", tenant="acme", source_ip="203.0.113.9"):
        ...
    with auditrail.impersonation("ops@vendor.io", "bob@globex.com", tenant="globex", reason="ticket 7"):
        ...                                   # events here carry audit.impersonator.id / .impersonation.id
"""

from .api import audited, configure, emit, flush, impersonation
from .context import audit_context, current_request
from .approvals import ApprovalRequired, ApprovalUnavailable
from .pipeline import AuditUnavailable
from .setup import shutdown
from .version import __version__

__all__ = [
    "ApprovalRequired",
    "ApprovalUnavailable",
    "AuditUnavailable",
    "__version__",
    "audit_context",
    "audited",
    "configure",
    "current_request",
    "emit",
    "flush",
    "impersonation",
    "shutdown",
]
