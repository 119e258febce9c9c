"""Request bodies of the HTTP API."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

Reason = Annotated[str, Field(min_length=3, max_length=500)]


class PromptEdit(BaseModel):
    """A new prompt text and why it changes."""

    text: str = Field(min_length=1, max_length=20_000)
    reason: Reason


class CrawlRequest(BaseModel):
    """A crawl to run now."""

    domain: str = Field(min_length=3, max_length=253)
    trigger: Literal["schedule", "manual", "indexnow"] = "manual"


class PolicyEdit(BaseModel):
    """A new policy value and its justification."""

    value: int | float
    justification: Reason


class PlanChange(BaseModel):
    """The plan to move a tenant to."""

    plan: str = Field(min_length=1, max_length=40)


class QuotaOverride(BaseModel):
    """A monthly answer quota replacing the plan's, and why."""

    quota: int = Field(ge=0, le=10_000_000)
    reason: Reason


class GraceStart(BaseModel):
    """How long a payment grace period lasts."""

    days: int = Field(ge=1, le=60)


class ImpersonationStart(BaseModel):
    """Whom to act as, in which tenant, and why (e.g. the support ticket)."""

    user_id: str = Field(min_length=3, max_length=254)
    tenant_id: str = Field(min_length=1, max_length=64)
    reason: Reason


class KillSwitchChange(BaseModel):
    """Where a kill switch applies ("*" for every tenant) and why."""

    scope: str = Field(min_length=1, max_length=64)
    reason: Reason
