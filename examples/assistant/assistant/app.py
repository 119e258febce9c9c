"""The assistant-admin HTTP API: `uvicorn assistant.app:app`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request, status
from fastapi.responses import JSONResponse

from . import admin, billing, crawler, db
from .auth import CurrentPrincipal, Principal, authorize_tenant, require_support, tenant_role
from .errors import Conflict, FeatureDisabled, Forbidden, InvalidInput, NotFound
from .killswitch import GLOBAL, KillSwitches
from .policies import PolicyStore
from .prompts import PromptStore
from .schemas import (
    CrawlRequest,
    GraceStart,
    ImpersonationStart,
    KillSwitchChange,
    PlanChange,
    PolicyEdit,
    PromptEdit,
    QuotaOverride,
)

prompts = PromptStore()
policies = PolicyStore()
switches = KillSwitches()

Viewer = Annotated[Principal, Depends(tenant_role("viewer"))]
Editor = Annotated[Principal, Depends(tenant_role("editor"))]
AdminOrSupport = Annotated[Principal, Depends(tenant_role("admin", support=True))]


async def _support_for_tenant(tenant_id: str, principal: CurrentPrincipal) -> Principal:
    """Vendor support staff, acting on an existing tenant."""
    if not db.tenant_exists(tenant_id):
        raise NotFound(f"no tenant {tenant_id!r}")
    require_support(principal)
    return principal


SupportForTenant = Annotated[Principal, Depends(_support_for_tenant)]


# --- tenants: prompt, crawls, policies, billing --------------------------------------------------------

tenants = APIRouter(prefix="/tenants/{tenant_id}", tags=["tenants"])


@tenants.get("/prompt")
def get_prompt(tenant_id: str, _: Viewer) -> dict[str, Any]:
    """The tenant's current prompt and version."""
    latest = prompts.latest(tenant_id)
    if latest is None:
        raise NotFound(f"tenant {tenant_id!r} has no prompt yet")
    return asdict(latest)


@tenants.put("/prompt")
def put_prompt(tenant_id: str, body: PromptEdit, principal: Editor) -> dict[str, Any]:
    """Replace the tenant's prompt with a new version."""
    version = prompts.update(tenant_id, body.text, principal.user_id, body.reason)
    return {"tenant_id": tenant_id, "version": version}


@tenants.post("/crawls", status_code=status.HTTP_201_CREATED)
async def post_crawl(tenant_id: str, body: CrawlRequest, _: Editor) -> Any:
    """Crawl a domain for the tenant now; 502 when the crawl cannot run."""
    if not switches.is_enabled("crawler", tenant_id):
        raise FeatureDisabled(f"the crawler is switched off for tenant {tenant_id!r}")
    try:
        result = await crawler.run_crawl(tenant_id, body.domain, body.trigger)
    except crawler.CrawlError as exc:
        return JSONResponse(
            {"detail": str(exc), "run_id": exc.run_id, "domain": exc.domain}, status.HTTP_502_BAD_GATEWAY
        )
    return {"tenant_id": tenant_id, "domain": body.domain, "trigger": body.trigger, **asdict(result)}


@tenants.get("/crawls/{run_id}")
def get_crawl(tenant_id: str, run_id: str, _: Viewer) -> dict[str, Any]:
    """One recorded crawl run of the tenant."""
    run = crawler.get_run(run_id)
    if run is None or run["tenant_id"] != tenant_id:
        raise NotFound(f"no crawl run {run_id!r} in tenant {tenant_id!r}")
    return run


@tenants.get("/policies/{key}")
def get_policy(tenant_id: str, key: str, _: Viewer) -> dict[str, Any]:
    """A policy value with who last set it and why."""
    return policies.describe(tenant_id, key)


@tenants.put("/policies/{key}")
def put_policy(tenant_id: str, key: str, body: PolicyEdit, principal: Editor) -> dict[str, Any]:
    """Set a policy value."""
    value = policies.set(tenant_id, key, body.value, principal.user_id, body.justification)
    return {"tenant_id": tenant_id, "key": key, "value": value}


@tenants.get("/billing")
def get_billing(tenant_id: str, _: AdminOrSupport) -> dict[str, Any]:
    """The tenant's plan, quota and grace period."""
    return billing.summary(tenant_id)


@tenants.put("/billing/plan")
def put_plan(tenant_id: str, body: PlanChange, principal: AdminOrSupport) -> dict[str, Any]:
    """Move the tenant to another plan (tenant admins self-serve; support can too)."""
    billing.change_plan(tenant_id, body.plan, principal.user_id)
    return billing.summary(tenant_id)


@tenants.put("/billing/quota")
def put_quota(tenant_id: str, body: QuotaOverride, principal: SupportForTenant) -> dict[str, Any]:
    """Override the tenant's monthly answer quota (support only)."""
    billing.override_quota(tenant_id, body.quota, principal.user_id, body.reason)
    return billing.summary(tenant_id)


@tenants.post("/billing/grace", status_code=status.HTTP_201_CREATED)
def post_grace(tenant_id: str, body: GraceStart, principal: SupportForTenant) -> dict[str, Any]:
    """Open a payment grace period (support only)."""
    billing.start_grace(tenant_id, body.days, principal.user_id)
    return billing.summary(tenant_id)


@tenants.delete("/billing/grace")
def delete_grace(tenant_id: str, principal: SupportForTenant) -> dict[str, Any]:
    """Close the open payment grace period (support only)."""
    billing.end_grace(tenant_id, principal.user_id)
    return billing.summary(tenant_id)


# --- support tools: impersonation ----------------------------------------------------------------------

support = APIRouter(prefix="/admin", tags=["support"])


@support.post("/impersonations", status_code=status.HTTP_201_CREATED)
def post_impersonation(body: ImpersonationStart, principal: CurrentPrincipal) -> dict[str, Any]:
    """Start acting as a customer's user; send `X-Impersonation: <session_id>` on the requests that follow."""
    require_support(principal)
    if not db.tenant_exists(body.tenant_id):
        raise NotFound(f"no tenant {body.tenant_id!r}")
    session = admin.start_impersonation(principal.user_id, body.user_id, body.tenant_id, body.reason)
    return asdict(session)


@support.delete("/impersonations/{session_id}")
def delete_impersonation(session_id: str, principal: CurrentPrincipal) -> dict[str, Any]:
    """End an impersonation session (its impersonator, or any support staff)."""
    session = admin.get_session(session_id)
    if principal.real_user_id != session.impersonator and not principal.is_support:
        raise Forbidden("not your impersonation session")
    return asdict(admin.end_impersonation(session_id))


# --- kill switches -------------------------------------------------------------------------------------

killswitches = APIRouter(prefix="/killswitches", tags=["kill switches"])


def _authorize_switch(principal: Principal, scope: str) -> None:
    """Global switches are for support staff; a tenant's switch also for that tenant's admins."""
    if scope == GLOBAL:
        require_support(principal)
    else:
        authorize_tenant(principal, scope, "admin", support=True)


@killswitches.post("/{feature}/disable")
def disable_feature(feature: str, body: KillSwitchChange, principal: CurrentPrincipal) -> dict[str, Any]:
    """Switch a feature off for one tenant or (scope "*") for all."""
    _authorize_switch(principal, body.scope)
    state = switches.disable(feature, body.scope, body.reason, principal.user_id)
    return {"feature": feature, "scope": body.scope, "state": state}


@killswitches.post("/{feature}/enable")
def enable_feature(feature: str, body: KillSwitchChange, principal: CurrentPrincipal) -> dict[str, Any]:
    """Switch a feature back on for one tenant or (scope "*") for all."""
    _authorize_switch(principal, body.scope)
    state = switches.enable(feature, body.scope, body.reason, principal.user_id)
    return {"feature": feature, "scope": body.scope, "state": state}


@killswitches.get("/{feature}")
def get_feature(feature: str, principal: CurrentPrincipal, scope: str = GLOBAL) -> dict[str, Any]:
    """A kill switch's state at a scope (default: global)."""
    if scope != GLOBAL:
        authorize_tenant(principal, scope, "viewer", support=True)
    return {"feature": feature, "scope": scope, "state": switches.state(feature, scope)}


# --- the app -------------------------------------------------------------------------------------------


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    """Create the schema and seed data before serving."""
    db.init_db()
    yield


app = FastAPI(title="assistant-admin", version="1.0.0", lifespan=lifespan)
app.include_router(tenants)
app.include_router(support)
app.include_router(killswitches)

_ERROR_STATUS: dict[type[Exception], int] = {
    NotFound: status.HTTP_404_NOT_FOUND,
    Forbidden: status.HTTP_403_FORBIDDEN,
    Conflict: status.HTTP_409_CONFLICT,
    InvalidInput: 422,  # as FastAPI answers bodies that fail validation
    FeatureDisabled: status.HTTP_503_SERVICE_UNAVAILABLE,
}


def _error_handler(code: int) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    """An exception handler answering `code` with the error's message as `detail`."""

    async def handle(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=code)

    return handle


for _error, _code in _ERROR_STATUS.items():
    app.add_exception_handler(_error, _error_handler(_code))


@app.get("/healthz", tags=["ops"])
def healthz() -> dict[str, str]:
    """Liveness: the process serves requests."""
    return {"status": "ok"}


@app.get("/me", tags=["ops"])
def me(request: Request, principal: CurrentPrincipal) -> dict[str, Any]:
    """Who the request acts as, who is behind it, and the client address the app sees."""
    return {
        "user_id": principal.user_id,
        "kind": principal.kind,
        "real_user_id": principal.real_user_id,
        "impersonation": principal.session.session_id if principal.session else None,
        "client_ip": request.client.host if request.client else None,
    }
