"""django-impersonate: `admin.impersonation.start/.end`, and every action of the session linked to it.

Seams: the library's own signals `session_begin` and `session_end` (public: "can be used to hook up
auditing of the session"). Evidence for later requests: `request.session["_impersonate"]` (the
impersonated user's pk), with `request.impersonator` set by its middleware. The start event's `session`
is the library's own ImpersonationLog key when its logging is on.
"""

from __future__ import annotations

from typing import Any

from ._impersonation import ImpersonationIntegration, linked
from .django import _user


class DjangoImpersonateIntegration(ImpersonationIntegration):
    """django-impersonate's sessions."""

    name = "django_impersonate"
    library = "impersonate"
    distribution = "django-impersonate"
    versions = ">=1.9,<2"
    signals = ("session_begin", "session_end")
    users = ("impersonator", "impersonating")

    def marker(self, request: Any) -> str | None:
        """The session marker of a request made while impersonating (None for everyone else)."""
        session = getattr(request, "session", None)
        impersonator = getattr(request, "impersonator", None)
        active = impersonator is not None and session is not None and "_impersonate" in session
        user = _user(request) if active else None
        if user is None:
            return None
        return linked(request, "impersonate", impersonator.pk, user, lambda: impersonator)

    def session(self, request: Any) -> Any:
        """Its ImpersonationLog key (when its logging is on), set by its own receiver just before ours."""
        return request.session.get("_impersonate_session_id")


INTEGRATION = DjangoImpersonateIntegration
