"""What django-hijack and django-impersonate share: start/end events and the marker of a session.

Both libraries keep their state in the session, and that state is the evidence: an action is linked to an
impersonation only when its request carries it (the impersonated user's own browser never does). The
marker names both users, `<library>:<impersonator pk>:<impersonated pk>`, the same at the start, in
every request of the session, and at the end.

An app runs in several processes (gunicorn workers), and the recorder's open sessions are per process:
the start event's session id is therefore also kept in the library's session (`auditrail_impersonation`),
and a process that serves a request of a session it did not see start registers it then, under the same
id, so every worker links the session's actions alike.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from ..context import Impersonation, impersonations
from ..events import IMPERSONATION_END, IMPERSONATION_START, new_event_id
from . import Hooks, Integration, capture_internal_exceptions
from .django import MARKERS, identity

SESSION_KEY = "auditrail_impersonation"  # in the Django session: the id of the impersonation it belongs to


def marker(library: str, impersonator_pk: Any, impersonated_pk: Any) -> str:
    """The session marker both the start event and the session's actions carry."""
    return f"{library}:{impersonator_pk}:{impersonated_pk}"


def emit_session(library: str, started: bool, request: Any, impersonator: Any, impersonated: Any,
                 session: Any = None) -> None:
    """admin.impersonation.start/.end: the impersonator is the actor; `impersonated`, `session` in the payload."""
    with capture_internal_exceptions(f"integration {library} impersonation"):
        payload: dict[str, Any] = {"impersonated": str(impersonated.get_username()), "library": library}
        store = getattr(request, "session", None)
        if started:
            session = str(session or new_event_id())
            if store is not None:
                store[SESSION_KEY] = session
        elif store is not None:
            session = store.pop(SESSION_KEY, None) or session
        if session is not None:
            payload["session"] = str(session)
        identity().emit(IMPERSONATION_START if started else IMPERSONATION_END, request, payload, user=impersonator,
                        actor=str(impersonator.get_username()),
                        marker=marker(library, impersonator.pk, impersonated.pk))


def linked(request: Any, library: str, impersonator_pk: Any, user: Any,
           impersonator: Callable[[], Any]) -> str:
    """The marker of a request in an impersonated session, registering the session in this process when it
    started in another (`impersonator()` gives the impersonator's user, read only then)."""
    value = marker(library, impersonator_pk, user.pk)
    session_id = request.session.get(SESSION_KEY)
    if session_id and impersonations.lookup(session_id) is None:
        who = impersonator()
        impersonations.open(Impersonation(str(session_id), None if who is None else str(who.get_username()),
                                          str(user.get_username()), None, value))
    return value


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


class ImpersonationIntegration(Integration):
    """An impersonation library: its start/end signals, and the marker its session state gives a request."""

    events = (IMPERSONATION_START, IMPERSONATION_END)
    signals: ClassVar[tuple[str, str]]  # (start, end) in `<library>.signals`
    users: ClassVar[tuple[str, str]]  # the signals' (impersonator, impersonated) arguments

    def marker(self, request: Any) -> str | None:
        """The session marker of `request`, None when it is not made inside an impersonation."""
        raise NotImplementedError

    def session(self, request: Any) -> Any:
        """The library's own id for a session being started, if it keeps one."""
        return None

    def setup(self, hooks: Hooks) -> None:
        """Connect to the library's signals when they are imported; give requests their marker."""
        hooks.register(MARKERS, self.marker)
        connect_sessions(hooks, self.library, f"{self.library}.signals", self.signals, self.users, self.session)
