"""Dual approval of sensitive actions: the `approval:` key of an events: entry, and the gate that enforces it.

An entry marked ``approval: {approvers: 1, ttl: 1h, bind: [...]}`` runs only with an approval granted by
someone else. The gate runs where fail_closed refuses (before the target, after the values read before
the call): it computes the action's **binding digest**, HMAC-SHA256 (keyed with the app's approvals token)
of the canonical JSON of the event type, the target, the tenant, the requester (the event's actor) and the
bound values (``bind:``, default: every parameter the entry's expressions read, valued before the call),
and asks the approval service (``approvals: {url, token}`` in audit.yaml; the store service's
``/v1/approvals``) in one request:

* a granted, unexpired, unused approval with that digest: the service claims it (single use, atomically)
  and the call runs; ``approval.used`` is recorded, and the action's event carries ``audit.approval.id``;
* otherwise a pending request with that digest, or a new one (``approval.requested``): the target does
  not run and :class:`ApprovalRequired` is raised with the approval id and the URL to approve it.

The service records ``approval.granted``/``denied``/``expired`` itself, when they happen, in its own chain
of the tenant.
The service cannot be reached, or answers nonsense: :class:`ApprovalUnavailable` (fail closed).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from typing import Any

import orjson

from .expressions import Expression, ExpressionError, compile_expression
from .pipeline import AuditUnavailable

__all__ = ["ApprovalRequired", "ApprovalSpec", "ApprovalUnavailable", "ApprovalsConfig", "binding_digest"]

_log = logging.getLogger("auditrail")
APPROVAL_KEYS = ("approvers", "ttl", "bind", "when")
APPROVALS_KEYS = ("url", "token", "timeout")
_DURATION = re.compile(r"(\d+)\s*(s|m|h|d)")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_ENV = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}")
MAX_TTL = 7 * 86400


class ApprovalRequired(Exception):
    """The action needs an approval it does not have: it did not run. Carries the approval id and URL."""

    status = "pending"

    def __init__(self, message: str, approval_id: str | None = None, url: str | None = None,
                 event: str | None = None) -> None:
        super().__init__(message)
        self.approval_id = approval_id
        self.url = url
        self.event = event

    def to_dict(self) -> dict[str, Any]:
        """The JSON body of the HTTP answer (web.py)."""
        return {"error": "approval_required", "status": self.status, "message": str(self),
                "approval_id": self.approval_id, "approval_url": self.url, "event": self.event}


class ApprovalUnavailable(ApprovalRequired, AuditUnavailable):
    """The approval service could not be asked: the action is refused (fail closed)."""

    status = "unavailable"


@dataclass(frozen=True)
class ApprovalSpec:
    """One entry's `approval:`: how many people besides the requester, for how long, bound to what."""

    approvers: int = 1
    ttl_seconds: int = 3600
    bind: tuple[Expression, ...] | None = None  # None: every parameter the entry's expressions read
    when: Expression | None = None  # only calls for which it is true need approval (read before the call)


@dataclass(frozen=True)
class ApprovalsConfig:
    """audit.yaml's top-level `approvals:`: where the approval service is."""

    url: str
    token: str | None = None
    timeout: float = 5.0


def parse_duration(text: Any) -> int | None:
    """Seconds of 90 (a number), `30s`, `15m`, `1h`, `2d`, `1h30m`; None when not a duration."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text if text > 0 else None
    if not isinstance(text, str) or not text.strip():
        return None
    spec = text.replace(" ", "")
    parts = _DURATION.findall(spec)
    if "".join(a + u for a, u in parts) != spec:
        return None
    seconds = sum(int(a) * _UNITS[u] for a, u in parts)
    return seconds or None


def parse_approval(doc: Any, path: tuple[Any, ...], value: Any) -> ApprovalSpec | None:
    """An entry's `approval:` mapping, checked (`doc` is config._Located, for located errors)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise doc.error(path, "must be a mapping such as {approvers: 1, ttl: 1h}")
    for key in value:
        if key not in APPROVAL_KEYS:
            raise doc.error(path + (key,), f"unknown key {key!r} (allowed: {', '.join(APPROVAL_KEYS)})", at_value=False)
    approvers = value.get("approvers", 1)
    if isinstance(approvers, bool) or not isinstance(approvers, int) or not 1 <= approvers <= 9:
        raise doc.error(path + ("approvers",), "must be a whole number of people besides the requester, 1 to 9")
    ttl = parse_duration(value.get("ttl", "1h"))
    if ttl is None or ttl > MAX_TTL:
        raise doc.error(path + ("ttl",), "must be a duration such as 30m, 1h or 2d (at most 7d)")
    bind = value.get("bind")
    exprs: tuple[Expression, ...] | None = None
    if bind is not None:
        if not isinstance(bind, list) or not bind or not all(isinstance(b, str) and b for b in bind):
            raise doc.error(path + ("bind",), "must be a non-empty list of expressions such as [feature, scope]")
        exprs = tuple(_before_call(doc, path + ("bind", i), source) for i, source in enumerate(bind))
    when = value.get("when")
    if when is not None and not (isinstance(when, str) and when):
        raise doc.error(path + ("when",), "must be an expression such as 'scope == \"*\"'")
    return ApprovalSpec(approvers, ttl, exprs, None if when is None else _before_call(doc, path + ("when",), when))


def _before_call(doc: Any, path: tuple[Any, ...], source: str) -> Expression:
    """An expression of `approval:`: evaluated before the call, so it cannot read result or error."""
    try:
        expr = compile_expression(source)
    except ExpressionError as exc:
        raise doc.error(path, f"bad expression {source!r}: {exc}") from None
    if expr.names & {"result", "error"}:
        raise doc.error(path, f"{source!r} uses result/error: approval expressions are read before the call")
    return expr


def parse_approvals(doc: Any, value: Any) -> ApprovalsConfig | None:
    """audit.yaml's `approvals: {url, token, timeout}`; `${env:NAME}` in token/url reads the environment."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise doc.error(("approvals",), "must be a mapping such as {url: http://127.0.0.1:4320, token: ${env:TOKEN}}")
    for key in value:
        if key not in APPROVALS_KEYS:
            raise doc.error(("approvals", key), f"unknown key {key!r} (allowed: {', '.join(APPROVALS_KEYS)})",
                            at_value=False)
    url = value.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://", "${env:")):
        raise doc.error(("approvals", "url"), "must be the approval service's http(s):// URL")
    token = value.get("token")
    if token is not None and not isinstance(token, str):
        raise doc.error(("approvals", "token"), "must be a string (e.g. ${env:AUDITRAIL_APPROVALS_TOKEN})")
    timeout = value.get("timeout", 5.0)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 60:
        raise doc.error(("approvals", "timeout"), "must be seconds, more than 0 and at most 60")
    return ApprovalsConfig(url, token, float(timeout))


def warn_without_service(doc: Any, config: Any) -> None:
    """Entries with `approval:` and no `approvals:` service: every such call would be refused. Say so at load."""
    gated = [i for i, spec in enumerate(config.events) if spec.approval is not None]
    if gated and config.approvals is None:
        import warnings

        from .config import ConfigWarning

        warnings.warn(f"{doc.line(('events', gated[0]))}: `approval:` needs the approval service "
                      "(`approvals: {url: ..., token: ...}` at the top level): without it every such call is refused",
                      ConfigWarning, stacklevel=3)


def _expand(text: str | None) -> str | None:
    """`${env:NAME}` replaced by the variable's value (read when the client is made, never logged)."""
    if text is None:
        return None
    return _ENV.sub(lambda m: os.environ.get(m.group(1), ""), text)


def _canonical(value: Any) -> bytes:
    """Canonical JSON: sorted keys; values JSON does not know by their str() (an object without a stable
    str() then never matches an approval: the safe way to be wrong)."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS, default=str)


def binding_digest(event: str, target: str, tenant: Any, requester: Any, bound: dict[str, Any],
                   key: bytes = b"") -> str:
    """Hex HMAC-SHA256 of what an approval is for: event type, target, tenant, requester and bound values.

    Keyed with the app's approvals token: the digest the service stores then tells nothing of the bound
    values (a secret or a guessable value among them cannot be tried against it)."""
    import hashlib
    import hmac

    text = _canonical({"event": event, "target": target, "tenant": tenant, "requester": requester, "bound": bound})
    return hmac.new(key, text, hashlib.sha256).hexdigest()


class ApprovalClient:
    """Talks to the approval service (`/v1/approvals`) for the gate."""

    def __init__(self, config: ApprovalsConfig) -> None:
        import requests

        self.url = (_expand(config.url) or "").rstrip("/")
        self.timeout = config.timeout
        self._session = requests.Session()
        self._session.trust_env = False  # never through a proxy from the environment: the token goes here
        token = _expand(config.token)
        self.digest_key = (token or "").encode()  # every replica of the app has the same: the same digests
        if token:
            self._session.headers["Authorization"] = f"Bearer {token}"

    def page_url(self, approval_id: str) -> str:
        """Where a person approves it."""
        return f"{self.url}/approvals/{approval_id}"

    def ask(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """POST the action; (status, JSON answer). Raises ApprovalUnavailable when no usable answer comes."""
        import requests

        if not self.url:
            raise ApprovalUnavailable(f"auditrail: {body['event']} needs an approval and approvals.url is empty (is its "
                                      "environment variable set?); the action was refused", event=body["event"])
        try:
            response = self._session.post(f"{self.url}/v1/approvals", data=_canonical(body),
                                          headers={"Content-Type": "application/json"}, timeout=self.timeout)
        except requests.RequestException as exc:
            raise ApprovalUnavailable(
                f"auditrail: {body['event']} needs an approval and the approval service at {self.url} cannot be "
                f"reached ({type(exc).__name__}); the action was refused", event=body["event"]) from None
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if response.status_code not in (200, 201, 202) or not isinstance(answer, dict) or "id" not in answer:
            detail = answer.get("detail") if isinstance(answer, dict) else None
            raise ApprovalUnavailable(
                f"auditrail: {body['event']} needs an approval and the approval service at {self.url} answered "
                f"{response.status_code}{': ' + str(detail)[:200] if detail else ''}; the action was refused",
                event=body["event"])
        return response.status_code, answer


def default_bind(wrapper: Any) -> tuple[str, ...]:
    """The parameters an entry's expressions read (self/cls/request/result/error aside), in a stable order."""
    from .codegen import identity_expressions

    spec = wrapper.spec
    exprs: list[Expression] = [e for e in identity_expressions(spec).values() if e is not None]
    for section in (spec.before, spec.after, spec.payload):
        if isinstance(section, dict):
            exprs.extend(section.values())
        elif section is not None:
            exprs.append(section)
    params = wrapper.binder.names()
    return tuple(sorted({name for e in exprs for name in e.names if name in params}))


class Gate:
    """The approval check of one audited target, run before the call (generic path of the wrapper)."""

    def __init__(self, wrapper: Any, spec: ApprovalSpec) -> None:
        self.spec = spec
        self.event = wrapper.spec.event
        self.target = wrapper.spec.target
        if spec.bind is not None:
            self.bind = tuple((e.source, e) for e in spec.bind)
        else:
            self.bind = tuple((name, compile_expression(name)) for name in default_bind(wrapper))
        known = wrapper.binder.names() | {"self", "cls", "request"}
        for expr in (*(e for _, e in self.bind), *([spec.when] if spec.when is not None else [])):
            if expr.names - known:  # (at run time it cannot be read: the call is refused, saying so)
                _log.error("auditrail: %s (%s): approval expression %r uses %s, which %s does not have",
                           wrapper.spec.where, self.event, expr.source, ", ".join(sorted(expr.names - known)),
                           self.target)

    def check(self, wrapper: Any, recorder: Any, early: tuple[Any, ...], ns: dict[str, Any]) -> tuple[Any, ...]:
        """Return `early` with the claimed approval id in its approval_id slot, or raise ApprovalRequired.

        `early` is the wrapper's before-call values: (before, tenant, actor, reason, source_ip, approval_id,
        actor_type, marker); `ns` the call's names.
        """
        from .context import impersonations

        if self.spec.when is not None:
            try:
                needed = bool(self.spec.when.evaluate(ns))
            except Exception:  # noqa: BLE001 - cannot tell: the approval is asked for (fail closed)
                needed = True
            if not needed:
                return early
        client: ApprovalClient | None = getattr(recorder, "approvals", None)
        if client is None:
            raise ApprovalUnavailable(f"auditrail: {self.event} needs an approval but audit.yaml names no "
                                      "`approvals: {url, token}` service; the action was refused", event=self.event)
        before, tenant, actor = early[0], _text(early[1]), _text(early[2])
        if "request" not in ns and any("request" in e.names for _, e in self.bind):
            from .context import current_request

            ns["request"] = current_request()
        bound = {}
        for name, expr in self.bind:
            try:
                bound[name] = expr.evaluate(ns)
            except Exception as exc:  # noqa: BLE001 - unreadable means unbindable: refuse, say why
                raise ApprovalUnavailable(f"auditrail: {self.event} needs an approval and its bound value {name!r} "
                                          f"cannot be read ({type(exc).__name__}); the action was refused",
                                          event=self.event) from None
        session = impersonations.find(tenant, actor, _text(early[7]))
        policy = recorder.policy
        body = {
            "digest": binding_digest(self.event, self.target, tenant, actor, bound, client.digest_key),
            "event": self.event, "target": self.target, "tenant": tenant, "requester": actor,
            "impersonator": session.impersonator if session is not None else None,
            # What the approver sees: the values as an event would show them (secrets redacted).
            "bound": policy.clean(dict(bound)), "before": policy.clean({"value": before})["value"],
            "reason": None if early[3] is None else policy.scrub_text(_text(early[3])),
            "approvers": self.spec.approvers, "ttl_seconds": self.spec.ttl_seconds,
        }
        status, answer = client.ask(body)
        approval_id = str(answer["id"])
        if answer.get("state") == "used":
            self._record(recorder, "approval.used", tenant, actor, answer)
            return (*early[:5], approval_id, *early[6:])
        if status == 201:
            self._record(recorder, "approval.requested", tenant, actor, answer)
        url = client.page_url(approval_id)
        raise ApprovalRequired(f"{self.event} needs approval by {self.spec.approvers} other person(s): "
                               f"approval {approval_id} is pending at {url}", approval_id, url, self.event)

    def _record(self, recorder: Any, event_type: str, tenant: str | None, actor: str | None,
                approval: dict[str, Any]) -> None:
        """approval.requested / approval.used: the requester's own acts in this call, in the tenant's chain
        (the service records approval.granted/denied/expired when they happen)."""
        payload = {"action": self.event, "target": self.target, "requester": approval.get("requester"),
                   "approvers": approval.get("approved_by") or [], "expires_at": approval.get("expires_at")}
        if event_type == "approval.requested":
            payload["bound"] = approval.get("bound")
        try:
            recorder.record(event_type, tenant=tenant, actor=actor, payload=payload, approval_id=str(approval["id"]))
        except AuditUnavailable:
            raise  # fail_closed (or a full spool that refuses): the action is refused, as for any event
        except Exception:  # noqa: BLE001 - never the app's problem: counted and logged
            recorder.counters.capture_failed(f"{self.target} ({event_type})")


def _text(value: Any) -> str | None:
    return value if value is None or isinstance(value, str) else str(value)


# --- the HTTP answer (web.py installs these into the frameworks it hooks) ----------------------------

APPROVAL_REQUIRED_STATUS = 428  # Precondition Required: the action waits for an approval; retry once granted
UNAVAILABLE_STATUS = 503


def http_answer(exc: ApprovalRequired) -> tuple[int, dict[str, Any]]:
    """(status, JSON body) of an app's answer to a request whose action needs approval."""
    return (UNAVAILABLE_STATUS if isinstance(exc, ApprovalUnavailable) else APPROVAL_REQUIRED_STATUS), exc.to_dict()


async def _starlette_handler(request: Any, exc: Exception) -> Any:
    from starlette.responses import JSONResponse

    status, body = http_answer(exc)  # type: ignore[arg-type]
    return JSONResponse(body, status_code=status)


def answer_in_starlette(app: Any) -> None:
    """Starlette/FastAPI: an exception handler, added before the app first builds its middleware stack
    (from the hook on its first request), so ApprovalRequired is answered, not turned into a 500."""
    handlers = getattr(app, "exception_handlers", None)
    if isinstance(handlers, dict) and ApprovalRequired not in handlers:
        handlers[ApprovalRequired] = _starlette_handler


def _flask_handler(exc: ApprovalRequired) -> tuple[dict[str, Any], int]:
    status, body = http_answer(exc)
    return body, status


def answer_in_flask(app: Any) -> None:
    """Flask: an error handler for ApprovalRequired (its registry directly: registering through
    register_error_handler is refused once the app has served a request)."""
    spec = getattr(app, "error_handler_spec", None)
    if spec is not None:
        handlers = spec[None][None]
        if ApprovalRequired not in handlers:
            handlers[ApprovalRequired] = _flask_handler


def answer_in_django(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Django: wraps django.core.handlers.exception.response_for_exception(request, exc), where every view's
    and middleware's exception becomes a response."""
    exc = args[1] if len(args) > 1 else kwargs.get("exc")
    if isinstance(exc, ApprovalRequired):
        from django.http import JsonResponse

        status, body = http_answer(exc)
        return JsonResponse(body, status=status)
    return wrapped(*args, **kwargs)
