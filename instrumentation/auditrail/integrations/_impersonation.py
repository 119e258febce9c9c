"""What django-hijack and django-impersonate share: start/end events and the marker of a session.

Both libraries keep their state in the session, and that state is the evidence: an action is linked to an
impersonation only when its request carries it (the impersonated user's own browser never does). The
marker names both users, `<library>:<impersonator pk>:<impersonated pk>`, the same at the start, in
every request of the session, and at the end.
"""

from __future__ import annotations

from typing import Any

from ..events import IMPERSONATION_END, IMPERSONATION_START
from . import capture_internal_exceptions
from .django import identity


def marker(library: str, impersonator_pk: Any, impersonated_pk: Any) -> str:
    """The session marker both the start event and the session's actions carry."""
    return f"{library}:{impersonator_pk}:{impersonated_pk}"


def emit_session(library: str, started: bool, request: Any, impersonator: Any, impersonated: Any,
                 session: Any = None) -> None:
    """admin.impersonation.start/.end: the impersonator is the actor; `impersonated`, `session` in the payload."""
    with capture_internal_exceptions(f"integration {library} impersonation"):
        payload: dict[str, Any] = {"impersonated": str(impersonated.get_username()), "library": library}
        if session is not None:
            payload["session"] = str(session)
        identity().emit(IMPERSONATION_START if started else IMPERSONATION_END, request, payload, user=impersonator,
                        actor=str(impersonator.get_username()),
                        marker=marker(library, impersonator.pk, impersonated.pk))
