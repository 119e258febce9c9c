"""Support impersonation: vendor staff act as a customer's user, inside one tenant, for a limited time."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from . import db
from .errors import Conflict, Forbidden, InvalidInput, NotFound

SESSION_TTL = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Session:
    """One impersonation session."""

    session_id: str
    impersonator: str
    user_id: str
    tenant_id: str
    reason: str
    started_at: str
    ended_at: str | None = None

    @property
    def active(self) -> bool:
        """Open and not past its time limit."""
        started = datetime.fromisoformat(self.started_at.replace("Z", "+00:00"))
        return self.ended_at is None and datetime.now(UTC) < started + SESSION_TTL


def start_impersonation(impersonator: str, user_id: str, tenant_id: str, reason: str) -> Session:
    """Open a session in which `impersonator` acts as `user_id` within `tenant_id`."""
    if not reason.strip():
        raise InvalidInput("a reason (e.g. the support ticket) is required")
    if impersonator == user_id:
        raise InvalidInput("cannot impersonate yourself")
    with db.connect() as conn:
        staff = conn.execute("SELECT global_role FROM users WHERE id = ?", (impersonator,)).fetchone()
        if staff is None or staff["global_role"] != "support":
            raise Forbidden("only support staff may impersonate")
        target = conn.execute("SELECT kind, global_role FROM users WHERE id = ?", (user_id,)).fetchone()
        if target is None:
            raise NotFound(f"no user {user_id!r}")
        if target["kind"] != "user" or target["global_role"] is not None:
            raise Forbidden("only customer users can be impersonated")
        member = conn.execute(
            "SELECT 1 FROM memberships WHERE user_id = ? AND tenant_id = ?", (user_id, tenant_id)
        ).fetchone()
        if member is None:
            raise NotFound(f"{user_id} is not a member of tenant {tenant_id!r}")
        session = Session(
            session_id=f"imp_{uuid.uuid4().hex[:16]}",
            impersonator=impersonator,
            user_id=user_id,
            tenant_id=tenant_id,
            reason=reason.strip(),
            started_at=db.utcnow(),
        )
        conn.execute(
            "INSERT INTO impersonations (session_id, impersonator, user_id, tenant_id, reason, started_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (session.session_id, impersonator, user_id, tenant_id, session.reason, session.started_at),
        )
    return session


def end_impersonation(session_id: str) -> Session:
    """Close an open session and return it with its end time."""
    session = get_session(session_id)
    if session.ended_at is not None:
        raise Conflict(f"session {session_id} already ended at {session.ended_at}")
    ended_at = db.utcnow()
    with db.connect() as conn:
        conn.execute(
            "UPDATE impersonations SET ended_at = ? WHERE session_id = ? AND ended_at IS NULL", (ended_at, session_id)
        )
    return replace(session, ended_at=ended_at)


def get_session(session_id: str) -> Session:
    """A session by id (open or ended)."""
    with db.connect() as conn:
        row = conn.execute("SELECT * FROM impersonations WHERE session_id = ?", (session_id,)).fetchone()
    if row is None:
        raise NotFound(f"no impersonation session {session_id!r}")
    return Session(**dict(row))

