"""Attribute names of an audit event as an OTel LogRecord (DESIGN.md, "One audit event as an OTel LogRecord")."""

from __future__ import annotations

SCOPE_NAME = "auditrail"

EVENT_ID = "audit.event_id"
ACTOR = "enduser.id"
ACTOR_TYPE = "audit.actor.type"
TENANT = "audit.tenant_id"
PAYLOAD = "audit.payload"
SOURCE_IP = "client.address"
REASON = "audit.reason"
OUTCOME = "audit.outcome"
RISK = "audit.risk"
IMPERSONATOR = "audit.impersonator.id"
IMPERSONATION = "audit.impersonation.id"
APPROVAL = "audit.approval.id"
CHAIN_ID = "audit.chain.id"
CHAIN_SEQ = "audit.chain.seq"
CHAIN_PREV = "audit.chain.prev_hash"
CHAIN_HASH = "audit.chain.hash"

GLOBAL_TENANT = "*"
OUTCOMES = ("success", "failure")
RISKS = ("low", "medium", "high", "critical")
ACTOR_TYPES = ("user", "service", "system")
