"""`/approvals`: the page where people approve or deny. Server-rendered (Jinja2, autoescaped), plain HTML forms,
no JavaScript and no build step.

Sign-in: the person pastes their ``approve`` token once; it is kept in an HttpOnly, SameSite=Strict cookie
scoped to ``/approvals`` (Secure when served over https) and checked on every request like a bearer token.
CSRF: every form carries a token, HMAC-SHA256(the service's per-start secret, the session's token id),
compared in constant time; SameSite=Strict alone already keeps another site's form from sending the cookie,
and an ``Origin`` header, when the browser sends one, must be this service's own.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path as FilePath
from typing import Annotated, Any
from urllib.parse import parse_qs, quote, urlsplit

from fastapi import APIRouter, HTTPException, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from ..tokens import TokenInfo
from .api import ApprovalId, approvals_store, decide_as

__all__ = ["router"]

COOKIE = "auditrail_approver"
_MAX_FORM = 16 * 1024
_templates = Environment(loader=FileSystemLoader(FilePath(__file__).with_name("templates")),
                         autoescape=select_autoescape(default=True, default_for_string=True))
_SECRET = secrets.token_bytes(32)  # the CSRF key: new at each start (a restart asks forms to be reloaded)

router = APIRouter(prefix="/approvals", include_in_schema=False)
_HEADERS = {"Cache-Control": "no-store", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                                       "frame-ancestors 'none'"}


def _csrf(info: TokenInfo) -> str:
    return hmac.new(_SECRET, info.token_id.encode(), hashlib.sha256).hexdigest()


def _signed_in(request: Request, cookie: str = COOKIE) -> TokenInfo | None:
    """The token the page's session `cookie` holds, if it is still valid."""
    token = request.cookies.get(cookie)
    if not token:
        return None
    return request.app.state.auditrail.tokens.authenticate(token)


def _start_session(response: RedirectResponse, request: Request, cookie: str, token: str, path: str) -> None:
    """The session cookie of a page under `path`: HTTP-only, same-site strict, 8 hours."""
    response.set_cookie(cookie, token, httponly=True, samesite="strict", path=path,
                        secure=request.url.scheme == "https", max_age=8 * 3600)


def _render(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(_templates.get_template(name).render(**context), status_code=status, headers=_HEADERS)


async def _checked_form(request: Request, info: TokenInfo) -> dict[str, str]:
    """The form of a signed-in action, refused unless it carries the CSRF value of `info`'s page."""
    form = await _form(request)
    if not hmac.compare_digest(form.get("csrf", ""), _csrf(info)):
        raise HTTPException(403, "the form is stale or not from this page: reload it")
    return form


async def _form(request: Request) -> dict[str, str]:
    """A urlencoded form, bounded, from this site (Origin, when sent, must be ours)."""
    origin = request.headers.get("origin")
    if origin and origin != "null":
        own = f"{request.url.scheme}://{request.url.netloc}"
        if origin.rstrip("/") != own:
            raise HTTPException(403, "a form from another site")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_FORM:
            raise HTTPException(413, "form too large")
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=20)
    return {key: values[0] for key, values in fields.items()}


def _back(path: str, message: str, ok: bool = True) -> RedirectResponse:
    """303 to the page with a one-line message (post/redirect/get: a reload never posts twice)."""
    return RedirectResponse(f"{path}?{'ok' if ok else 'error'}={quote(message[:300])}", status_code=303,
                            headers=_HEADERS)


@router.get("", response_class=HTMLResponse)
async def page(request: Request, state: str = "pending") -> HTMLResponse:
    info = await run_in_threadpool(_signed_in, request)
    if info is None:
        return _render("signin.html", message=request.query_params.get("error"))
    tenant = None if info.tenant_id == "*" else info.tenant_id
    state_filter = state if state in ("pending", "granted", "denied", "expired", "used") else None
    items = await run_in_threadpool(approvals_store(request).list, tenant, state_filter)
    return _render("list.html", info=info, items=[a.to_dict() for a in items], state=state_filter or "all",
                   csrf=_csrf(info), ok=request.query_params.get("ok"), error=request.query_params.get("error"))


@router.get("/{approval_id}", response_class=HTMLResponse)
async def one(request: Request, approval_id: ApprovalId) -> HTMLResponse:
    info = await run_in_threadpool(_signed_in, request)
    if info is None:
        return _render("signin.html", message=request.query_params.get("error"), next=f"/approvals/{approval_id}")
    approval = await run_in_threadpool(approvals_store(request).get, approval_id)
    if approval is None or not (info.allows("approve", approval.tenant_id) or info.allows("read", approval.tenant_id)):
        return _render("list.html", status=404, info=info, items=[], state="", csrf=_csrf(info),
                       error=f"no approval {approval_id} that you may see")
    return _render("list.html", info=info, items=[approval.to_dict()], state="", csrf=_csrf(info), single=True,
                   ok=request.query_params.get("ok"), error=request.query_params.get("error"))


@router.post("/signin")
async def signin(request: Request) -> RedirectResponse:
    form = await _form(request)
    token = form.get("token", "").strip()
    info = await run_in_threadpool(request.app.state.auditrail.tokens.authenticate, token)
    target = form.get("next") or "/approvals"
    if not target.startswith("/approvals") or urlsplit(target).netloc:
        target = "/approvals"  # never redirect off this service
    if info is None or not (info.allows("approve") or info.allows("read")):
        return _back("/approvals", "that token is not valid for approvals", ok=False)
    response = RedirectResponse(target, status_code=303, headers=_HEADERS)
    _start_session(response, request, COOKIE, token, "/approvals")
    return response


async def _signed_out(request: Request, cookie: str, path: str) -> RedirectResponse:
    """End the session of the page under `path`: a signed-in session's form must carry its CSRF value (else
    another page could sign the person out); with no valid session there is nothing to protect."""
    info = await run_in_threadpool(_signed_in, request, cookie)
    if info is not None:
        await _checked_form(request, info)
    else:
        await _form(request)
    response = RedirectResponse(path, status_code=303, headers=_HEADERS)
    response.delete_cookie(cookie, path=path)
    return response


@router.post("/signout")
async def signout(request: Request) -> RedirectResponse:
    return await _signed_out(request, COOKIE, "/approvals")


@router.post("/{approval_id}/decide")
async def decide(request: Request, approval_id: Annotated[str, Path(max_length=64)]) -> RedirectResponse:
    info = await run_in_threadpool(_signed_in, request)
    if info is None:
        return _back("/approvals", "sign in first", ok=False)
    form = await _checked_form(request, info)
    decision = form.get("decision")
    if decision not in ("approve", "deny"):
        return _back(f"/approvals/{approval_id}", "choose approve or deny", ok=False)
    reason = form.get("reason", "").strip()
    if not reason:
        return _back(f"/approvals/{approval_id}", "give a reason", ok=False)
    try:
        approval = await run_in_threadpool(decide_as, approvals_store(request), info, approval_id,
                                           decision == "approve", reason, None)
    except HTTPException as error:
        return _back(f"/approvals/{approval_id}", str(error.detail), ok=False)
    verb = "approved" if decision == "approve" else "denied"
    return _back(f"/approvals/{approval_id}", f"{verb} {approval.approval_id}: now {approval.effective_state()}")
