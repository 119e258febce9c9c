"""Tenant billing: plan tier, monthly answer quota (plan default or an override), payment grace periods."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from . import db
from .errors import Conflict, InvalidInput, NotFound

# Plan -> monthly answer quota.
PLAN_QUOTAS: dict[str, int] = {"free": 1_000, "starter": 10_000, "pro": 50_000, "enterprise": 250_000}
MAX_GRACE_DAYS = 60


def _tenant(tenant_id: str) -> dict[str, object]:
    with db.connect() as conn:
        row = conn.execute("SELECT * FROM tenants WHERE id = ?", (tenant_id,)).fetchone()
    if row is None:
        raise NotFound(f"no tenant {tenant_id!r}")
    return dict(row)


def get_plan(tenant_id: str) -> str:
    """The tenant's current plan."""
    return str(_tenant(tenant_id)["plan"])


def get_quota(tenant_id: str) -> int:
    """The tenant's effective monthly answer quota: its override, else its plan's quota."""
    row = _tenant(tenant_id)
    override = row["quota_override"]
    return int(override) if override is not None else PLAN_QUOTAS[str(row["plan"])]


def get_grace(tenant_id: str) -> str | None:
    """When the tenant's open payment grace period ends (ISO-8601), or None when there is none."""
    grace = _tenant(tenant_id)["grace_until"]
    return str(grace) if grace else None


def summary(tenant_id: str) -> dict[str, object]:
    """Plan, quota and grace period of a tenant in one dict."""
    return {
        "tenant_id": tenant_id,
        "plan": get_plan(tenant_id),
        "quota": get_quota(tenant_id),
        "grace_until": get_grace(tenant_id),
    }


def change_plan(tenant_id: str, new_plan: str, actor: str) -> str:
    """Move the tenant to `new_plan`; return the plan now in force."""
    if new_plan not in PLAN_QUOTAS:
        raise InvalidInput(f"unknown plan {new_plan!r} (plans: {', '.join(PLAN_QUOTAS)})")
    _update(tenant_id, actor, "plan = ?", new_plan)
    return new_plan


def override_quota(tenant_id: str, quota: int, actor: str, reason: str) -> int:
    """Set a quota that replaces the plan's quota; return the effective quota."""
    if quota < 0:
        raise InvalidInput("quota must not be negative")
    if not reason.strip():
        raise InvalidInput("a reason is required")
    _update(tenant_id, actor, "quota_override = ?", quota)
    return quota


def start_grace(tenant_id: str, days: int, actor: str) -> str:
    """Open (or extend) a payment grace period of `days` days from now; return when it ends."""
    if not 1 <= days <= MAX_GRACE_DAYS:
        raise InvalidInput(f"grace period must be 1 to {MAX_GRACE_DAYS} days")
    until = (datetime.now(UTC) + timedelta(days=days)).isoformat(timespec="seconds").replace("+00:00", "Z")
    _update(tenant_id, actor, "grace_until = ?", until)
    return until


def end_grace(tenant_id: str, actor: str) -> None:
    """Close the tenant's open grace period."""
    if get_grace(tenant_id) is None:
        raise Conflict(f"tenant {tenant_id!r} has no open grace period")
    _update(tenant_id, actor, "grace_until = ?", None)


def _update(tenant_id: str, actor: str, assignment: str, value: object) -> None:
    """Apply one column assignment (a constant from this module) and stamp who changed billing, when."""
    with db.connect() as conn:
        changed = conn.execute(
            f"UPDATE tenants SET {assignment}, billing_updated_by = ?, billing_updated_at = ? WHERE id = ?",
            (value, actor, db.utcnow(), tenant_id),
        ).rowcount
    if not changed:
        raise NotFound(f"no tenant {tenant_id!r}")
