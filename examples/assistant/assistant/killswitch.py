"""Kill switches: turn a feature off for one tenant or, with scope "*", for every tenant."""

from __future__ import annotations

from . import db
from .errors import InvalidInput, NotFound

FEATURES = ("embed", "answers", "crawler")
GLOBAL = "*"


class KillSwitches:
    """Reads and flips feature kill switches."""

    def disable(self, feature: str, scope: str, reason: str, actor: str) -> str:
        """Turn `feature` off in `scope` (a tenant id or "*"); return the switch's new state."""
        return self._set(feature, scope, True, reason, actor)

    def enable(self, feature: str, scope: str, reason: str, actor: str) -> str:
        """Turn `feature` back on in `scope`; return the switch's new state."""
        return self._set(feature, scope, False, reason, actor)

    def state(self, feature: str, scope: str) -> str:
        """The switch of `feature` at exactly `scope`: "enabled" or "disabled"."""
        self._check(feature, scope)
        with db.connect() as conn:
            row = conn.execute(
                "SELECT disabled FROM kill_switches WHERE feature = ? AND scope = ?", (feature, scope)
            ).fetchone()
        return "disabled" if row and row["disabled"] else "enabled"

    def is_enabled(self, feature: str, tenant_id: str) -> bool:
        """Whether `feature` may run for `tenant_id`: neither its global nor its tenant switch is off."""
        return self.state(feature, GLOBAL) == "enabled" and self.state(feature, tenant_id) == "enabled"

    def _set(self, feature: str, scope: str, disabled: bool, reason: str, actor: str) -> str:
        self._check(feature, scope)
        if not reason.strip():
            raise InvalidInput("a reason is required")
        with db.connect() as conn:
            conn.execute(
                "INSERT INTO kill_switches (feature, scope, disabled, reason, actor, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (feature, scope) DO UPDATE SET disabled = excluded.disabled,"
                " reason = excluded.reason, actor = excluded.actor, updated_at = excluded.updated_at",
                (feature, scope, int(disabled), reason.strip(), actor, db.utcnow()),
            )
        return "disabled" if disabled else "enabled"

    @staticmethod
    def _check(feature: str, scope: str) -> None:
        if feature not in FEATURES:
            raise NotFound(f"unknown feature {feature!r} (features: {', '.join(FEATURES)})")
        if scope != GLOBAL and not db.tenant_exists(scope):
            raise NotFound(f"no tenant {scope!r}")
