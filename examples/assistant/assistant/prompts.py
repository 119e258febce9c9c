"""Per-tenant system prompts, versioned: every edit adds a version with its editor and reason."""

from __future__ import annotations

from dataclasses import dataclass

from . import db
from .errors import InvalidInput

MAX_PROMPT_CHARS = 20_000


@dataclass(frozen=True, slots=True)
class PromptVersion:
    """One stored version of a tenant's prompt."""

    tenant_id: str
    version: int
    text: str
    editor: str
    reason: str
    created_at: str


class PromptStore:
    """Reads and edits tenants' system prompts."""

    def get(self, tenant_id: str) -> str | None:
        """The tenant's current prompt text, or None when it has none."""
        latest = self.latest(tenant_id)
        return latest.text if latest else None

    def latest(self, tenant_id: str) -> PromptVersion | None:
        """The tenant's current prompt version with its metadata."""
        with db.connect() as conn:
            row = conn.execute(
                "SELECT * FROM prompt_versions WHERE tenant_id = ? ORDER BY version DESC LIMIT 1", (tenant_id,)
            ).fetchone()
        return PromptVersion(**dict(row)) if row else None

    def update(self, tenant_id: str, new_text: str, editor: str, reason: str) -> int:
        """Store `new_text` as the tenant's next prompt version and return that version number."""
        if not new_text.strip():
            raise InvalidInput("prompt text must not be empty")
        if len(new_text) > MAX_PROMPT_CHARS:
            raise InvalidInput(f"prompt text is longer than {MAX_PROMPT_CHARS} characters")
        if not reason.strip():
            raise InvalidInput("a reason is required")
        with db.connect() as conn:
            # One statement picks and takes the next version, so concurrent edits cannot collide.
            (version,) = conn.execute(
                "INSERT INTO prompt_versions (tenant_id, version, text, editor, reason, created_at)"
                " SELECT ?, COALESCE(MAX(version), 0) + 1, ?, ?, ?, ? FROM prompt_versions WHERE tenant_id = ?"
                " RETURNING version",
                (tenant_id, new_text, editor, reason.strip(), db.utcnow(), tenant_id),
            ).fetchone()
        return int(version)
