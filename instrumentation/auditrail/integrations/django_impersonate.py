"""django-impersonate: `admin.impersonation.start/.end`, and every action of the session linked to it.

Seams: the library's own signals `session_begin` and `session_end` (public: "can be used to hook up
auditing of the session"). Evidence for later requests: `request.session["_impersonate"]` (the
impersonated user's pk), with `request.impersonator` set by its middleware. The start event's `session`
is the library's own ImpersonationLog key when its logging is on.
"""

from __future__ import annotations

from typing import Any

from . import Hooks, Integration
from ._impersonation import connect_sessions, linked
from .django import MARKERS, _user


def _marker(request: Any) -> str | None:
    """The session marker of a request made while impersonating (None for everyone else)."""
    session = getattr(request, "session", None)
    impersonator = getattr(request, "impersonator", None)
    user = _user(request) if impersonator is not None and session is not None and "_impersonate" in session else None
    if user is None:
        return None
    return linked(request, "impersonate", impersonator.pk, user, lambda: impersonator)


class DjangoImpersonateIntegration(Integration):
    """django-impersonate's sessions."""

    name = "django_impersonate"
    library = "impersonate"
    distribution = "django-impersonate"
    versions = ">=1.9,<2"
    events = ("admin.impersonation.start", "admin.impersonation.end")

    def setup(self, hooks: Hooks) -> None:
        """Connect to django-impersonate's signals when they are imported."""
        hooks.register(MARKERS, _marker)
        connect_sessions(hooks, "impersonate", "impersonate.signals", ("session_begin", "session_end"),
                         ("impersonator", "impersonating"),
                         session=lambda request: request.session.get("_impersonate_session_id"))


INTEGRATION = DjangoImpersonateIntegration
