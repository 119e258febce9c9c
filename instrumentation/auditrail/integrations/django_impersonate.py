"""django-impersonate: `admin.impersonation.start/.end`, and every action of the session linked to it.

Seams: the library's own signals `session_begin` and `session_end` (public: "can be used to hook up
auditing of the session"). Evidence for later requests: `request.session["_impersonate"]` (the
impersonated user's pk), with `request.impersonator` set by its middleware. The start event's `session`
is the library's own ImpersonationLog key when its logging is on.
"""

from __future__ import annotations

from typing import Any

from . import Hooks, Integration, capture_internal_exceptions
from ._impersonation import emit_session, marker
from .django import MARKERS


def _marker(request: Any) -> str | None:
    """The session marker of a request made while impersonating (None for everyone else)."""
    session = getattr(request, "session", None)
    impersonator = getattr(request, "impersonator", None)
    if session is None or impersonator is None or "_impersonate" not in session:
        return None
    return marker("impersonate", impersonator.pk, session["_impersonate"])


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
        hooks.on_import("impersonate.signals", lambda mod: (hooks.connect(mod.session_begin, _begin),
                                                            hooks.connect(mod.session_end, _end)))


def _begin(sender: Any, impersonator: Any = None, impersonating: Any = None, request: Any = None,
           **kwargs: Any) -> None:
    with capture_internal_exceptions("integration django_impersonate start"):
        session = request.session.get("_impersonate_session_id") if request is not None else None
        emit_session("impersonate", True, request, impersonator, impersonating, session)


def _end(sender: Any, impersonator: Any = None, impersonating: Any = None, request: Any = None,
         **kwargs: Any) -> None:
    with capture_internal_exceptions("integration django_impersonate end"):
        emit_session("impersonate", False, request, impersonator, impersonating)


INTEGRATION = DjangoImpersonateIntegration
