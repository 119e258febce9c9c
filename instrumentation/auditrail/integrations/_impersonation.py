"""What django-hijack and django-impersonate share: start/end events and the marker of a session.

Both libraries keep their state in the session, and that state is the evidence: an action is linked to an
impersonation only when its request carries it (the impersonated user's own browser never does). The
marker names both users, `<library>:<impersonator pk>:<impersonated pk>`, the same at the start, in
every request of the session, and at the end.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..events import IMPERSONATION_END, IMPERSONATION_START
from . import Hooks, capture_internal_exceptions
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


def connect_sessions(hooks: Hooks, library: str, module: str, signals: tuple[str, str], users: tuple[str, str],
                     session: Callable[[Any], Any] | None = None) -> None:
    """When `module` is imported, record its start/end `signals`; `users` names their (impersonator,
    impersonated) arguments; `session(request)` gives the library's own session id for the start."""

    def receiver(started: bool) -> Callable[..., None]:
        def receive(sender: Any, **kwargs: Any) -> None:
            with capture_internal_exceptions(f"integration {library} {'start' if started else 'end'}"):
                request = kwargs.get("request")
                own = session(request) if started and session is not None and request is not None else None
                emit_session(library, started, request, kwargs[users[0]], kwargs[users[1]], own)

        return receive

    hooks.on_import(module, lambda mod: (hooks.connect(getattr(mod, signals[0]), receiver(True)),
                                         hooks.connect(getattr(mod, signals[1]), receiver(False))))
