"""Who is calling: bearer-token authentication, support impersonation, and per-tenant roles.

`authenticate` is an async dependency on purpose: it runs in the request's own task, so the contextvar it
sets is seen by the endpoint and everything the endpoint calls (sync endpoints get a copy of the context).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, HTTPException, status

from . import admin, db
from .errors import Forbidden, NotFound

ROLE_RANK = {"viewer": 1, "editor": 2, "admin": 3}


@dataclass(frozen=True, slots=True)
class Principal:
    """The identity a request acts as, and the person behind it."""

    user_id: str  # who the request acts as (the impersonated user while impersonating)
    kind: str  # user | service
    global_role: str | None  # "support" for vendor staff
    real_user_id: str  # who authenticated
    session: admin.Session | None = None  # the impersonation session, when impersonating

    @property
    def is_support(self) -> bool:
        """Vendor support staff acting as themselves (never true while impersonating)."""
        return self.global_role == "support" and self.session is None


_principal: ContextVar[Principal | None] = ContextVar("assistant.principal", default=None)


def current_principal() -> Principal | None:
    """The current request's principal, or None outside an authenticated request."""
    return _principal.get()


def current_user_id() -> str | None:
    """The id of the user the current request acts as (the impersonated user while impersonating)."""
    principal = _principal.get()
    return principal.user_id if principal else None


def current_real_user_id() -> str | None:
    """The id of the person who authenticated the current request (the impersonator while impersonating)."""
    principal = _principal.get()
    return principal.real_user_id if principal else None


def current_actor_type() -> str | None:
    """The kind of account the current request acts as: "user" or "service"."""
    principal = _principal.get()
    return principal.kind if principal else None


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"})


async def authenticate(
    authorization: Annotated[str | None, Header()] = None,
    x_impersonation: Annotated[str | None, Header()] = None,
) -> Principal:
    """Resolve `Authorization: Bearer <token>` (and `X-Impersonation: <session>`) to the request's principal."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("missing bearer token")
    with db.connect() as conn:
        row = conn.execute(
            "SELECT id, kind, global_role FROM users WHERE token_sha256 = ?", (db.hash_token(token.strip()),)
        ).fetchone()
    if row is None:
        raise _unauthorized("invalid token")
    principal = Principal(user_id=row["id"], kind=row["kind"], global_role=row["global_role"], real_user_id=row["id"])
    if x_impersonation:
        principal = _impersonate(principal, x_impersonation.strip())
    _principal.set(principal)
    return principal


def _impersonate(principal: Principal, session_id: str) -> Principal:
    """The principal of the impersonated user, if `principal` holds that open session."""
    try:
        session = admin.get_session(session_id)
    except NotFound:
        session = None
    if session is None or session.impersonator != principal.user_id:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "not your impersonation session")
    if not session.active:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "impersonation session has ended")
    with db.connect() as conn:
        target = conn.execute("SELECT global_role FROM users WHERE id = ?", (session.user_id,)).fetchone()
    return Principal(
        user_id=session.user_id,
        kind="user",
        global_role=target["global_role"] if target else None,
        real_user_id=principal.user_id,
        session=session,
    )


def authorize_tenant(principal: Principal, tenant_id: str, role: str, *, support: bool = False) -> None:
    """Raise unless `principal` holds at least `role` in `tenant_id` (support staff pass when `support`)."""
    if not db.tenant_exists(tenant_id):
        raise NotFound(f"no tenant {tenant_id!r}")
    if principal.session is not None and principal.session.tenant_id != tenant_id:
        raise Forbidden(f"this impersonation session is limited to tenant {principal.session.tenant_id!r}")
    if support and principal.is_support:
        return
    with db.connect() as conn:
        row = conn.execute(
            "SELECT role FROM memberships WHERE user_id = ? AND tenant_id = ?", (principal.user_id, tenant_id)
        ).fetchone()
    if row is None or ROLE_RANK[row["role"]] < ROLE_RANK[role]:
        raise Forbidden(f"{principal.user_id} needs the {role} role in tenant {tenant_id!r}")


def require_support(principal: Principal) -> None:
    """Raise unless `principal` is vendor support staff acting as themselves."""
    if not principal.is_support:
        raise Forbidden("vendor support staff only")


CurrentPrincipal = Annotated[Principal, Depends(authenticate)]


def tenant_role(role: str, *, support: bool = False) -> Callable[[str, Principal], Awaitable[Principal]]:
    """A dependency: the principal, once checked for `role` in the path's `tenant_id`."""

    async def dependency(tenant_id: str, principal: CurrentPrincipal) -> Principal:
        authorize_tenant(principal, tenant_id, role, support=support)
        return principal

    return dependency
