"""`POST /v1/reviews/{tenant}/{month}/sign`: the sign-off over the API, so `auditrail review sign` works while
`serve` owns an embedded store (through the local admin door) and scripts can sign with an approve token."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request
from pydantic import BaseModel, Field

from ..db import StoreError
from ..openapi import responses
from ..service import Caller, TenantPath
from .signoff import ReportMissing, sign

__all__ = ["router"]

router = APIRouter(prefix="/v1/reviews", tags=["reviews"])


class SignRequest(BaseModel):
    """Who signs, and what they did about it."""

    # pattern \S: blank names and notes are refused by the published schema (422), as the sign-off needs both.
    reviewer: str = Field(min_length=1, max_length=256, pattern=r"\S", description="who reviewed the month")
    notes: str = Field(min_length=1, max_length=8000, pattern=r"\S", description="what they found and did")


@router.post("/{tenant}/{month}/sign", status_code=201, summary="sign off a month's review (review.completed)",
             responses=responses(400, 401, 403, 404))
def sign_month(request: Request, caller: Caller, tenant: TenantPath,
               month: Annotated[str, Path(pattern=r"^\d{4}-(0[1-9]|1[0-2])$")], body: SignRequest) -> dict[str, Any]:
    if not (caller.allows("approve", tenant) or caller.allows("admin", tenant)):
        raise HTTPException(403, f"token {caller.token_id} may not sign off tenant {tenant!r}")
    reviews = request.app.state.auditrail_reviews
    try:
        with reviews.close.lock:
            return sign(reviews.store, tenant, month, body.reviewer, body.notes, reviews.directory, reviews.events)
    except ReportMissing as error:
        raise HTTPException(404, str(error)) from None
    except StoreError as error:
        raise HTTPException(400, str(error)) from None
