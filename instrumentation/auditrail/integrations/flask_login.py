"""Flask-Login: the actor of every event recorded in a Flask request is `current_user`, read per event.

Seam: `flask_login.current_user`, the library's public proxy, resolved when each event is recorded (never
cached: two users in turn are two actors). Nothing runs per request: the actor and source IP are
`context:` fallbacks the recorder asks only when an event is recorded, in a request of a Flask app that
uses Flask-Login, without an actor of its own (an `events:` entry's `actor:` or `context.actor` come first).
"""

from __future__ import annotations

from typing import Any

from . import Hooks, Integration, Option, client_ip, evaluate, expression, networks

_state: dict[str, Any] = {}  # the active integration's options, for flask_admin's source IP


class FlaskSource:
    """A `context:` fallback read from the current Flask request (None outside one)."""

    names: frozenset[str] = frozenset()

    def __init__(self, source: str, read: Any) -> None:
        self.source = source
        self._read = read

    def evaluate(self, namespace: dict[str, Any]) -> Any:
        """The value for the current request of an app that uses Flask-Login, else None."""
        import flask

        # An app without a LoginManager is not this integration's: its events stay as its config makes them.
        if not flask.has_request_context() or getattr(flask.current_app, "login_manager", None) is None:
            return None
        return self._read()


def current_user() -> Any:
    """Flask-Login's user of the current request when authenticated, else None (read now, never cached)."""
    import flask
    from flask_login import current_user as proxy

    if not flask.has_request_context() or getattr(flask.current_app, "login_manager", None) is None:
        return None  # no request, or an app that does not use Flask-Login: no user, and nothing to fail
    user = proxy._get_current_object()
    return user if user is not None and getattr(user, "is_authenticated", False) else None


def source_ip() -> str | None:
    """The request's peer address, or the client behind `trusted_proxies` (X-Forwarded-For)."""
    import flask

    if not flask.has_request_context():
        return None
    request = flask.request
    return client_ip(request.remote_addr, request.headers.get("X-Forwarded-For"), _state.get("trusted_proxies", ()))


class FlaskLoginIntegration(Integration):
    """Flask-Login's current_user as the actor."""

    name = "flask_login"
    library = "flask_login"
    distribution = "Flask-Login"
    versions = ">=0.6,<1"
    events = ()  # it records nothing itself: it names who did what every other event records
    options = {
        "actor": Option(None, "the actor: an expression over user (default user.get_id())", expression("user")),
        "trusted_proxies": Option((), "proxies whose X-Forwarded-For is believed, e.g. [10.0.0.0/8]", networks),
    }

    def setup(self, hooks: Hooks) -> None:
        """Add the actor and source IP fallbacks once flask_login is imported."""
        hooks.on_import("flask_login", lambda mod: self._sources(hooks))

    def actor(self) -> str | None:
        """The current user's id (or the `actor` expression over it), read when the event is recorded."""
        user = current_user()
        if user is None:
            return None
        expr = self.config["actor"]
        if expr is None:
            value = user.get_id()
        else:
            import flask

            value = evaluate(expr, "flask_login.actor", {"user": user, "request": flask.request})
        return None if value is None else str(value)

    def _sources(self, hooks: Hooks) -> None:
        _state["trusted_proxies"] = self.config["trusted_proxies"]
        hooks.on_undo(lambda: _state.pop("trusted_proxies", None))
        hooks.add_fallback("actor", FlaskSource("flask_login current_user", self.actor))
        hooks.add_fallback("source_ip", FlaskSource("flask request address", source_ip))


INTEGRATION = FlaskLoginIntegration
