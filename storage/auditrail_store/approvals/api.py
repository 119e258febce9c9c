"""`/v1/approvals`: the approval service's API (the app asks; people list, approve and deny).

* ``POST /v1/approvals``: an app's action that needs approval (an ``ingest`` token of its tenant, the
  app's own). 200: a granted approval for this exact action was claimed now (single use): run it.
  201: a new request was created. 202: a request for this action is still pending.
* ``GET /v1/approvals?tenant=&state=``, ``GET /v1/approvals/{id}``: ``read`` or ``approve`` of the tenant.
* ``POST /v1/approvals/{id}/approve`` and ``/deny`` with ``{reason}``: ``approve`` of the request's tenant
  (or ``admin``). The approver is the person the token names (an approve token's description) or, for
  admin, ``approver`` in the body; never the requester, never the requester's impersonator.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from ..db import TENANT_MAX, TENANT_PATTERN, TENANT_SYNTAX
from ..tokens import ALL_TENANTS, TokenInfo
from .store import Approval, ApprovalError, ApprovalStore

__all__ = ["ApprovalOut", "approvals_store", "decide_as", "router"]

logger = logging.getLogger("auditrail.store")

ApprovalId = Annotated[str, Path(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
                                 description="the approval id (a UUID)")]
State = Literal["pending", "granted", "denied", "expired", "used"]


class ApprovalAsk(BaseModel):
    """An action that needs approval, as the app's gate describes it (auditrail.approvals.Gate)."""

    digest: str = Field(pattern=r"^[0-9a-f]{64}$", description="binding digest: SHA-256 of event, target, tenant, "
                                                                "requester and bound values")
    event: str = Field(min_length=1, max_length=256)
    target: str = Field(min_length=1, max_length=1024)
    tenant: str | None = Field(default=None, min_length=1, max_length=TENANT_MAX, pattern=TENANT_PATTERN,
                               description=f"tenant id ({TENANT_SYNTAX}); none for an action of no tenant")
    requester: str | None = Field(default=None, max_length=1024)
    impersonator: str | None = Field(default=None, max_length=1024)
    bound: dict[str, Any] = Field(default_factory=dict, description="the bound values (redacted), shown to approvers")
    before: Any = Field(default=None, description="the state before, as the entry reads it")
    reason: str | None = Field(default=None, max_length=1000)
    approvers: int = Field(default=1, ge=1, le=9)
    ttl_seconds: int = Field(default=3600, ge=1, le=7 * 86400)


class Decision(BaseModel):
    """An approval or a denial."""

    # pattern \S: a blank name or reason is refused by the schema (422), not by the store after (a 400 the
    # document could not predict: schemathesis found approver "\r").
    reason: str | None = Field(default=None, min_length=1, max_length=1000, pattern=r"\S",
                               description="why (optional; not blank)")
    approver: str | None = Field(default=None, min_length=1, max_length=1024, pattern=r"\S",
                                 description="who decides; required with an admin token, else the token's holder")


class ApprovalOut(BaseModel):
    """An approval request and where it stands."""

    id: str
    tenant: str
    digest: str
    event: str
    target: str
    requester: str
    impersonator: str | None
    bound: Any
    before: Any
    reason: str | None
    approvers: int
    approved_by: list[str]
    decided_by: str | None
    decision_reason: str | None
    state: State
    created_at: str | None
    expires_at: str | None
    decided_at: str | None
    used_at: str | None


class Problem(BaseModel):
    """An error."""

    detail: str


def approvals_store(request: Request) -> ApprovalStore:
    """The service's approval store (service.py opens it with the app)."""
    return request.app.state.auditrail_approvals


def _principal(request: Request) -> TokenInfo:
    from ..service import principal  # (service.py includes this router: imported when first called)

    return principal(request, None)  # (the bearer credentials are read from the request itself)


Caller = Annotated[TokenInfo, Depends(_principal)]
Approvals = Annotated[ApprovalStore, Depends(approvals_store)]
_ERRORS: dict[int, dict[str, Any]] = {
    400: {"model": Problem, "description": "the body is not JSON"},
    401: {"model": Problem, "description": "no valid bearer token"},
    403: {"model": Problem, "description": "the token may not do this (an admin token must name the approver), or "
                                           "this person may not decide it"},
    404: {"model": Problem, "description": "no such approval that the token may see"},
    409: {"model": Problem, "description": "not pending (decided, expired or used), or already approved by this "
                                           "person"},
    422: {"description": "the request does not match the schema"},
}


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The error responses an operation can really give (the OpenAPI document lists exactly those)."""
    return {code: _ERRORS[code] for code in codes}


router = APIRouter(prefix="/v1/approvals", tags=["approvals"])


def _may_see(caller: TokenInfo, tenant: str) -> bool:
    return caller.allows("approve", tenant) or caller.allows("read", tenant)


def _may_see_any(caller: TokenInfo) -> bool:
    return caller.allows("approve") or caller.allows("read")


@router.post("", summary="ask for the approval of an action (the app's gate)", status_code=201,
             responses={200: {"model": ApprovalOut, "description": "a granted approval was claimed now (single use)"},
                        201: {"model": ApprovalOut, "description": "a new request, pending"},
                        202: {"model": ApprovalOut, "description": "the request for this action is still pending"},
                        **_errors(400, 401, 403, 422)})
async def ask(caller: Caller, store: Approvals, body: ApprovalAsk) -> JSONResponse:
    tenant = body.tenant or ""
    if not caller.allows("ingest", tenant or ALL_TENANTS):
        raise HTTPException(403, f"token {caller.token_id} may not ask approvals for tenant {tenant!r}")
    status, approval = await run_in_threadpool(store.submit, body.model_dump(), f"token:{caller.token_id}")
    return JSONResponse(_out(approval).model_dump(), status_code=status)


@router.get("", summary="list approval requests", responses=_errors(401, 403, 422))
async def list_approvals(
    caller: Caller, store: Approvals,
    tenant: Annotated[str | None, Query(min_length=1, max_length=TENANT_MAX, pattern=TENANT_PATTERN)] = None,
    state: Annotated[State | None, Query()] = None,
) -> list[ApprovalOut]:
    if tenant is None and caller.tenant_id != ALL_TENANTS:
        tenant = caller.tenant_id
    if tenant is not None and not _may_see(caller, tenant):
        raise HTTPException(403, f"token {caller.token_id} may not read approvals of tenant {tenant!r}")
    if tenant is None and not _may_see_any(caller):
        raise HTTPException(403, f"token {caller.token_id} may not read approvals")
    return [_out(a) for a in await run_in_threadpool(store.list, tenant, state)]


@router.get("/{approval_id}", summary="one approval request", responses=_errors(401, 403, 404, 422))
async def get_approval(caller: Caller, store: Approvals, approval_id: ApprovalId) -> ApprovalOut:
    # A token that reads no approvals (the app's ingest token polls by asking again) learns nothing of ids:
    # 403 before the lookup; a reader of another tenant gets the 404 of an id it may not see.
    if not _may_see_any(caller):
        raise HTTPException(403, f"token {caller.token_id} may not read approvals")
    approval = await run_in_threadpool(store.get, approval_id)
    if approval is None or not _may_see(caller, approval.tenant_id):
        raise HTTPException(404, f"no approval {approval_id} that you may see")
    return _out(approval)


@router.post("/{approval_id}/approve", summary="approve a pending request",
             responses=_errors(400, 401, 403, 404, 409, 422))
async def approve(caller: Caller, store: Approvals, approval_id: ApprovalId, body: Decision) -> ApprovalOut:
    return _out(await run_in_threadpool(decide_as, store, caller, approval_id, True, body.reason or "", body.approver))


@router.post("/{approval_id}/deny", summary="deny a pending request", responses=_errors(400, 401, 403, 404, 409, 422))
async def deny(caller: Caller, store: Approvals, approval_id: ApprovalId, body: Decision) -> ApprovalOut:
    return _out(await run_in_threadpool(decide_as, store, caller, approval_id, False, body.reason or "", body.approver))


def decide_as(store: ApprovalStore, caller: TokenInfo, approval_id: str, approve: bool, reason: str,
              approver: str | None) -> Approval:
    """A decision by the person `caller` stands for (HTTPException with the rule that refused it)."""
    if caller.scope == "admin":
        if not approver:
            # 403, not 400: the body is well formed; this token alone may not decide (it names nobody).
            raise HTTPException(403, "an admin token names no person: say who decides (approver, --as)")
        person = approver
    elif caller.allows("approve"):
        person = caller.description.strip()
        if not person:
            raise HTTPException(403, f"token {caller.token_id} names no person (create approve tokens with "
                                     "--description <their id>)")
        if approver and approver.strip().casefold() != person.casefold():
            raise HTTPException(403, f"token {caller.token_id} is {person}'s and may not decide as {approver}")
    else:
        raise HTTPException(403, f"token {caller.token_id} may not approve")
    verb = "approve" if approve else "deny"
    try:
        approval = store.decide(approval_id, person, approve, reason, lambda tenant: caller.allows("approve", tenant))
    except ApprovalError as error:
        logger.info("approval %s: %s as %s refused (token %s): %s", approval_id, verb, person, caller.token_id, error)
        raise HTTPException(error.status, str(error)) from None
    logger.info("approval %s: %s by %s (token %s), now %s", approval_id, verb, person, caller.token_id,
                approval.state)
    return approval


def _out(approval: Approval) -> ApprovalOut:
    return ApprovalOut(**approval.to_dict())
