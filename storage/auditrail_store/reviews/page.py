"""`/reviews`: the monthly reviews, their sign-off button, and the monthly close's log. Server-rendered like
`/approvals` (its form, CSRF and redirect helpers are reused): the person pastes a token once (kept in an
HttpOnly, SameSite=Strict cookie scoped to ``/reviews``); a ``read`` token sees its tenant's reviews and
the close's steps, an ``approve`` or ``admin`` token may also sign off.
"""

from __future__ import annotations

from pathlib import Path as FilePath
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from ..approvals.page import (_HEADERS, _back, _checked_form, _csrf, _form, _signed_in, _signed_out,
                              _start_session)
from ..db import StoreError
from ..tokens import ALL_TENANTS, TokenInfo
from .generate import report_paths
from .queries import step_log
from .signoff import sign, signoffs

__all__ = ["router"]

COOKIE = "auditrail_reviewer"
_templates = Environment(loader=FileSystemLoader(FilePath(__file__).with_name("templates")),
                         autoescape=select_autoescape(default=True, default_for_string=True))
router = APIRouter(prefix="/reviews", include_in_schema=False)
Month = Annotated[str, Path(pattern=r"^\d{4}-\d{2}$")]


def _may_sign(info: TokenInfo, tenant: str) -> bool:
    return info.allows("approve", tenant) or info.allows("admin", tenant)


def _overview(request: Request, info: TokenInfo) -> dict[str, Any]:
    """The reviews this token may see (from the close's log), each with its sign-offs, and the log."""
    reviews = request.app.state.auditrail_reviews
    tenant = None if info.tenant_id == ALL_TENANTS else info.tenant_id
    with reviews.close.lock:
        log = step_log(reviews.store, tenant)
        items: dict[tuple[str, str], dict[str, Any]] = {}
        for _at, month, who, step, status, detail in sorted(log, key=lambda r: r[0]):
            item = items.setdefault((month, who), {"month": month, "tenant": who, "steps": {}})
            item["steps"][step] = status if status != "done" or step != "overdue" or "signed" in detail else "overdue"
        for item in items.values():
            item["pdf"] = report_paths(reviews.directory, item["tenant"], item["month"])[1].exists()
            item["signoffs"] = [{"at": r[0], "reviewer": r[2], "notes": r[5]}
                                for r in signoffs(reviews.store, item["tenant"], item["month"])]
            item["may_sign"] = _may_sign(info, item["tenant"])
    return {"reviews": sorted(items.values(), key=lambda i: (i["month"], i["tenant"]), reverse=True), "log": log}


def _render(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(_templates.get_template(name).render(**context), status_code=status, headers=_HEADERS)


@router.get("", response_class=HTMLResponse)
async def page(request: Request) -> HTMLResponse:
    info = await run_in_threadpool(_signed_in, request, COOKIE)
    if info is None or not (info.allows("read") or info.allows("approve")):
        return _render("reviews.html", signin=True, error=request.query_params.get("error"))
    overview = await run_in_threadpool(_overview, request, info)
    return _render("reviews.html", info=info, csrf=_csrf(info), ok=request.query_params.get("ok"),
                   error=request.query_params.get("error"), **overview)


@router.get("/report/{month}/{tenant}.pdf")
async def report(request: Request, month: Month, tenant: Annotated[str, Path(max_length=256)]) -> FileResponse:
    info = await run_in_threadpool(_signed_in, request, COOKIE)
    if info is None or not (info.allows("read", tenant) or _may_sign(info, tenant)):
        raise HTTPException(404, "no such report that you may see")
    pdf = report_paths(request.app.state.auditrail_reviews.directory, tenant, month)[1]
    if not pdf.exists():
        raise HTTPException(404, "no such report that you may see")
    return FileResponse(pdf, media_type="application/pdf", filename=pdf.name, headers={"Cache-Control": "no-store"})


@router.post("/signin")
async def signin(request: Request) -> RedirectResponse:
    form = await _form(request)
    token = form.get("token", "").strip()
    info = await run_in_threadpool(request.app.state.auditrail.tokens.authenticate, token)
    if info is None or not (info.allows("read") or info.allows("approve")):
        return _back("/reviews", "that token is not valid for reviews", ok=False)
    response = RedirectResponse("/reviews", status_code=303, headers=_HEADERS)
    _start_session(response, request, COOKIE, token, "/reviews")
    return response


@router.post("/signout")
async def signout(request: Request) -> RedirectResponse:
    return await _signed_out(request, COOKIE, "/reviews")


@router.post("/sign")
async def sign_off(request: Request) -> RedirectResponse:
    info = await run_in_threadpool(_signed_in, request, COOKIE)
    if info is None:
        return _back("/reviews", "sign in first", ok=False)
    form = await _checked_form(request, info)
    month, tenant = form.get("month", ""), form.get("tenant", "")
    if not _may_sign(info, tenant):
        return _back("/reviews", f"token {info.token_id} may not sign off tenant {tenant!r}", ok=False)
    reviews = request.app.state.auditrail_reviews

    def run() -> dict[str, Any]:
        with reviews.close.lock:
            return sign(reviews.store, tenant, month, form.get("reviewer", ""), form.get("notes", ""),
                        reviews.directory, reviews.events)

    try:
        payload = await run_in_threadpool(run)
    except StoreError as error:
        return _back("/reviews", str(error), ok=False)
    return _back("/reviews", f"signed off {tenant} {month} as {payload['reviewer']}: report SHA-256 "
                             f"{payload['report_sha256'][:16]}…; review.completed recorded")


