"""django-hijack: `admin.impersonation.start/.end`, and every action of a hijacked session linked to it.

Seams: the library's own signals `hijack_started` and `hijack_ended` (public, sent with the request and
both users). Evidence for later requests: `request.session["hijack_history"]`, whose last entry is the
hijacker's pk (Django cycles the session key at the hijack, so the cookie is no evidence). The logins
hijack performs to switch users are the start and end, not `auth.login` events.
"""

from __future__ import annotations

from typing import Any

from . import Hooks
from ._impersonation import ImpersonationIntegration, linked
from .django import SWITCHES, _user


def _switching(request: Any) -> bool:
    """Whether this request is hijack's own acquire/release view (its login() is the user switch)."""
    match = getattr(request, "resolver_match", None)
    return match is not None and "hijack" in match.app_names


class DjangoHijackIntegration(ImpersonationIntegration):
    """django-hijack's sessions."""

    name = "django_hijack"
    library = "hijack"
    distribution = "django-hijack"
    versions = ">=3.4,<4"
    signals = ("hijack_started", "hijack_ended")
    users = ("hijacker", "hijacked")

    def marker(self, request: Any) -> str | None:
        """The session marker of a request made while hijacked (None for everyone else)."""
        session = getattr(request, "session", None)
        history = session.get("hijack_history") if session is not None else None
        user = _user(request) if history else None
        if user is None:
            return None
        from django.contrib.auth import get_user_model

        hijacker = history[-1]
        return linked(request, "hijack", hijacker, user,
                      lambda: get_user_model()._default_manager.filter(pk=hijacker).first())

    def setup(self, hooks: Hooks) -> None:
        """The signals and the marker, and hijack's own logins told apart from users' logins."""
        super().setup(hooks)
        hooks.register(SWITCHES, _switching)


INTEGRATION = DjangoHijackIntegration
