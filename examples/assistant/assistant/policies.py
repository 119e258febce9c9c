"""Per-tenant answer policies (thresholds and limits), each with a type, a range and a default."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from . import db
from .errors import InvalidInput, NotFound


@dataclass(frozen=True, slots=True)
class PolicySpec:
    """What values a policy key accepts, and its value when a tenant never set it."""

    kind: type
    minimum: float
    maximum: float
    default: Any


POLICIES: dict[str, PolicySpec] = {
    "answer_confidence_threshold": PolicySpec(float, 0.0, 1.0, 0.6),
    "max_tokens": PolicySpec(int, 64, 32_000, 800),
    "max_sources_per_answer": PolicySpec(int, 1, 20, 5),
}


class PolicyStore:
    """Reads and edits tenants' policy values."""

    def get(self, tenant_id: str, key: str) -> Any:
        """The tenant's value for `key` (the default when never set)."""
        spec = self._spec(key)
        with db.connect() as conn:
            row = conn.execute(
                "SELECT value FROM policies WHERE tenant_id = ? AND key = ?", (tenant_id, key)
            ).fetchone()
        return json.loads(row["value"]) if row else spec.default

    def describe(self, tenant_id: str, key: str) -> dict[str, Any]:
        """The value of `key` with who set it, when and why (None for defaults)."""
        value = self.get(tenant_id, key)
        with db.connect() as conn:
            row = conn.execute(
                "SELECT updated_by, justification, updated_at FROM policies WHERE tenant_id = ? AND key = ?",
                (tenant_id, key),
            ).fetchone()
        meta = dict(row) if row else {"updated_by": None, "justification": None, "updated_at": None}
        return {"tenant_id": tenant_id, "key": key, "value": value, **meta}

    def set(self, tenant_id: str, key: str, value: Any, actor: str, justification: str) -> Any:
        """Validate and store a new value for `key`; return the value as stored."""
        spec = self._spec(key)
        stored = self._coerce(key, spec, value)
        if not justification.strip():
            raise InvalidInput("a justification is required")
        with db.connect() as conn:
            conn.execute(
                "INSERT INTO policies (tenant_id, key, value, updated_by, justification, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (tenant_id, key) DO UPDATE SET value = excluded.value,"
                " updated_by = excluded.updated_by, justification = excluded.justification,"
                " updated_at = excluded.updated_at",
                (tenant_id, key, json.dumps(stored), actor, justification.strip(), db.utcnow()),
            )
        return stored

    @staticmethod
    def _spec(key: str) -> PolicySpec:
        try:
            return POLICIES[key]
        except KeyError:
            raise NotFound(f"unknown policy {key!r} (known: {', '.join(POLICIES)})") from None

    @staticmethod
    def _coerce(key: str, spec: PolicySpec, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidInput(f"{key} must be a number")
        if spec.kind is int and value != int(value):
            raise InvalidInput(f"{key} must be a whole number")
        coerced = spec.kind(value)
        if not spec.minimum <= coerced <= spec.maximum:
            raise InvalidInput(f"{key} must be between {spec.minimum:g} and {spec.maximum:g}")
        return coerced
