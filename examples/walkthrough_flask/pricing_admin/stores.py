"""The state the back office edits: plan prices, the assistant's prompt, integration settings."""

from __future__ import annotations

from pricing_admin.db import connect


class PlanStore:
    """Plan prices per tenant."""

    def prices(self, tenant_id: str) -> dict[str, int]:
        """Every plan of the tenant and its monthly price in cents."""
        with connect() as conn:
            rows = conn.execute("SELECT plan_id, price_cents FROM plans WHERE tenant_id = ? ORDER BY plan_id",
                                (tenant_id,)).fetchall()
        return {r["plan_id"]: r["price_cents"] for r in rows}

    def price(self, tenant_id: str, plan_id: str) -> int | None:
        """One plan's price, None when there is no such plan."""
        return self.prices(tenant_id).get(plan_id)

    def set_price(self, tenant_id: str, plan_id: str, price_cents: int, reason: str) -> None:
        """Change a plan's price."""
        if price_cents < 0:
            raise ValueError("a price cannot be negative")
        with connect() as conn:
            updated = conn.execute("UPDATE plans SET price_cents = ? WHERE tenant_id = ? AND plan_id = ?",
                                   (price_cents, tenant_id, plan_id)).rowcount
        if not updated:
            raise KeyError(plan_id)

    def delete(self, tenant_id: str, plan_id: str) -> bool:
        """Retire a plan; False when there was none."""
        with connect() as conn:
            return conn.execute("DELETE FROM plans WHERE tenant_id = ? AND plan_id = ?",
                                (tenant_id, plan_id)).rowcount > 0


class PromptStore:
    """The assistant's system prompt per tenant."""

    def get(self, tenant_id: str) -> str:
        """The current prompt text."""
        with connect() as conn:
            return conn.execute("SELECT text FROM prompts WHERE tenant_id = ?", (tenant_id,)).fetchone()["text"]

    def update(self, tenant_id: str, text: str, reason: str) -> None:
        """Replace the prompt."""
        with connect() as conn:
            conn.execute("UPDATE prompts SET text = ? WHERE tenant_id = ?", (text, tenant_id))


class SettingsStore:
    """Integration settings per tenant (a webhook and the tenant's own model provider key)."""

    def load(self, tenant_id: str) -> dict[str, str]:
        """Every setting of the tenant."""
        with connect() as conn:
            rows = conn.execute("SELECT key, value FROM settings WHERE tenant_id = ? ORDER BY key",
                                (tenant_id,)).fetchall()
        return {r["key"]: r["value"] for r in rows}

    def save(self, tenant_id: str, values: dict[str, str]) -> None:
        """Store the submitted settings (each key replaced)."""
        with connect() as conn:
            conn.executemany("INSERT OR REPLACE INTO settings VALUES (?, ?, ?)",
                             [(tenant_id, k, v) for k, v in values.items()])


plans = PlanStore()
prompts = PromptStore()
settings = SettingsStore()
