"""Zero-code capture of the current HTTP request, so expressions can read `request` (client, headers...).

ASGI: Starlette (and so FastAPI). WSGI: Flask. Django (WSGI, ASGI and its test client alike): the
request its BaseHandler resolves, through `request.META`, which Django fills the same way for both.
Other frameworks: wrap the app once with `AuditRequestMiddleware` (ASGI) or `AuditWSGIMiddleware`.
The same hooks answer `ApprovalRequired` (approvals.py) with 428 and a JSON body, so the app needs no handler.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .approvals import answer_in_django, answer_in_flask, answer_in_starlette
from .context import enter_request, exit_request
from .wrapping import Patcher

_ASGI_TARGETS = (("starlette.applications", "Starlette", "__call__"),)
_WSGI_TARGETS = (("flask.app", "Flask", "wsgi_app"),)
_DJANGO = "django.core.handlers.base"
_DJANGO_EXCEPTION = "django.core.handlers.exception"


async def _asgi_wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if instance is not None:  # (before the lifespan call too: the app may build its middleware stack there)
        answer_in_starlette(instance)  # ApprovalRequired -> 428 with the approval's id and URL
    scope = args[0] if args else kwargs.get("scope")
    if not isinstance(scope, dict) or scope.get("type") not in ("http", "websocket"):
        return await wrapped(*args, **kwargs)
    token = enter_request("asgi", scope)
    try:
        return await wrapped(*args, **kwargs)
    finally:
        exit_request(token)


def _wsgi_wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    environ = args[0] if args else kwargs.get("environ")
    if instance is not None:
        answer_in_flask(instance)
    token = enter_request("wsgi", environ)
    try:
        return wrapped(*args, **kwargs)
    finally:
        exit_request(token)


def _django_sync(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    request = args[0] if args else kwargs.get("request")
    token = enter_request("wsgi", request.META, request)
    try:
        return wrapped(*args, **kwargs)
    finally:
        exit_request(token)


async def _django_async(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    request = args[0] if args else kwargs.get("request")
    token = enter_request("wsgi", request.META, request)
    try:
        return await wrapped(*args, **kwargs)
    finally:
        exit_request(token)


def install_request_capture(patcher: Patcher) -> None:
    """Hook the request entry points of the supported frameworks, whenever they are imported."""
    hooks = [(module, cls, method, _asgi_wrapper) for module, cls, method in _ASGI_TARGETS]
    hooks += [(module, cls, method, _wsgi_wrapper) for module, cls, method in _WSGI_TARGETS]
    hooks += [(_DJANGO, "BaseHandler", "get_response", _django_sync),
              (_DJANGO, "BaseHandler", "get_response_async", _django_async)]
    for module, cls, method, wrapper in hooks:
        patcher.install_hook(
            module, lambda mod, cls=cls, method=method, wrapper=wrapper: patcher.wrap(getattr(mod, cls), method, wrapper)
        )
    patcher.install_hook(_DJANGO_EXCEPTION, lambda mod: patcher.wrap(mod, "response_for_exception", answer_in_django))


class AuditRequestMiddleware:
    """ASGI middleware for frameworks auditrail does not hook by itself."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        await _asgi_wrapper(self.app, None, (scope, receive, send), {})


class AuditWSGIMiddleware:
    """WSGI middleware for frameworks auditrail does not hook by itself."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        return _wsgi_wrapper(self.app, None, (environ, start_response), {})
