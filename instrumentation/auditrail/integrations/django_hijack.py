"""django-hijack: `admin.impersonation.start/.end`, and every action of a hijacked session linked to it.

Seams: the library's own signals `hijack_started` and `hijack_ended` (public, sent with the request and
both users). Evidence for later requests: `request.session["hijack_history"]`, whose last entry is the
hijacker's pk (Django cycles the session key at the hijack, so the cookie is no evidence). The logins
hijack performs to switch users are the start and end, not `auth.login` events.
"""

from __future__ import annotations

from typing import Any

from . import Hooks, Integration, capture_internal_exceptions
from ._impersonation import emit_session, marker
from .django import MARKERS, SWITCHES, _user


def _marker(request: Any) -> str | None:
    """The session marker of a request made while hijacked (None for everyone else)."""
    session = getattr(request, "session", None)
    history = session.get("hijack_history") if session is not None else None
    user = _user(request) if history else None
    return marker("hijack", history[-1], user.pk) if user is not None else None


def _switching(request: Any) -> bool:
    """Whether this request is hijack's own acquire/release view (its login() is the user switch)."""
    match = getattr(request, "resolver_match", None)
    return match is not None and "hijack" in match.app_names


class DjangoHijackIntegration(Integration):
    """django-hijack's sessions."""

    name = "django_hijack"
    library = "hijack"
    distribution = "django-hijack"
    versions = ">=3.4,<4"
    events = ("admin.impersonation.start", "admin.impersonation.end")

    def setup(self, hooks: Hooks) -> None:
        """Connect to hijack's signals when it is imported."""
        hooks.register(MARKERS, _marker)
        hooks.register(SWITCHES, _switching)
        hooks.on_import("hijack.signals", lambda mod: (hooks.connect(mod.hijack_started, _started),
                                                       hooks.connect(mod.hijack_ended, _ended)))


def _started(sender: Any, request: Any = None, hijacker: Any = None, hijacked: Any = None, **kwargs: Any) -> None:
    with capture_internal_exceptions("integration django_hijack start"):
        emit_session("hijack", True, request, hijacker, hijacked)


def _ended(sender: Any, request: Any = None, hijacker: Any = None, hijacked: Any = None, **kwargs: Any) -> None:
    with capture_internal_exceptions("integration django_hijack end"):
        emit_session("hijack", False, request, hijacker, hijacked)


INTEGRATION = DjangoHijackIntegration
