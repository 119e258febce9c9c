"""Zero-code wrapping: post-import hooks patch each audit.yaml target with an auditing wrapper.

Hooks fire when the target module finishes importing (or at once if it already has), before any
`from module import target` statement binds the name, so import order never matters. Each wrapper
evaluates `before` and the identity fields ahead of the call and everything else after it (after the
work it returned completes, for a Deferred or a future: awaitables.py), then emits through the Recorder.
Every step of ours runs under a guard: the app sees its own result or its own exception, never ours.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import threading
from collections.abc import Callable
from typing import Any

import wrapt

from . import runtime
from .config import EventSpec, PayloadSpec
from .context import current_request
from .events import default_risk
from .awaitables import SETTLED, on_completion, pending
from .codegen import DEFAULTED, after_call, generate, generate_emitter, identity_expressions
from .expressions import CALL_NAMES, Expression, evaluating, get_ident
from .pipeline import AuditUnavailable
from .semconv import ACTOR_TYPES

_log = logging.getLogger("auditrail")
_MISSING = object()


class _Binder:
    """Maps a call's args/kwargs to parameter names, faster than inspect.Signature.bind."""

    __slots__ = ("positional", "defaults", "var_pos", "var_kw", "named", "simple")

    def __init__(self, fn: Callable[..., Any], skip_first: bool) -> None:
        try:
            params = list(inspect.signature(fn).parameters.values())
        except (TypeError, ValueError):
            params = []
        if skip_first and params and params[0].kind in (params[0].POSITIONAL_ONLY, params[0].POSITIONAL_OR_KEYWORD):
            params = params[1:]
        kinds = inspect.Parameter
        self.positional = tuple(p.name for p in params if p.kind in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD))
        self.defaults = {p.name: p.default for p in params if p.default is not kinds.empty}
        self.var_pos = next((p.name for p in params if p.kind is kinds.VAR_POSITIONAL), None)
        self.var_kw = next((p.name for p in params if p.kind is kinds.VAR_KEYWORD), None)
        self.named = frozenset(p.name for p in params if p.kind not in (kinds.VAR_POSITIONAL, kinds.VAR_KEYWORD))
        # Plain positional parameters only: a call passing all of them positionally binds with one zip.
        self.simple = len(self.named) == len(self.positional) and not (self.var_pos or self.var_kw)

    def names(self) -> frozenset[str]:
        """Every name a call binds."""
        return self.named | {n for n in (self.var_pos, self.var_kw) if n}

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """The call's parameters by name (defaults filled in)."""
        if self.simple and not kwargs and len(args) == len(self.positional):
            return dict(zip(self.positional, args, strict=True))
        ns = dict(self.defaults) if self.defaults else {}
        ns.update(zip(self.positional, args, strict=False))  # fewer args than params: defaults stay
        if self.var_pos:
            ns[self.var_pos] = args[len(self.positional):]
        if kwargs:
            if self.var_kw:
                extra = {}
                for key, value in kwargs.items():
                    if key in self.named:
                        ns[key] = value
                    else:
                        extra[key] = value
                ns[self.var_kw] = extra
            else:
                ns.update(kwargs)
        elif self.var_kw:
            ns[self.var_kw] = {}
        return ns


class AuditWrapper:
    """The wrapt wrapper for one target: evaluates `before`, calls through, evaluates the rest, records.

    Fast path: functions generated for this target (codegen.py) take the call's own arguments. The
    generic path binds the arguments into a namespace and evaluates each expression on its own; it
    serves failed calls, targets whose signature cannot be mirrored, and calls the generated
    functions cannot bind. Both give the same event.
    """

    def __init__(self, spec: EventSpec, fn: Callable[..., Any], kind: str,
                 get_recorder: Callable[[], Any] | None = None) -> None:
        self.spec = spec
        # Zero-code wrappers pass through when auditing is off (uninstrumented); decorators configure lazily.
        self.get_recorder = get_recorder or _active_recorder
        self.kind = kind  # "function" | "method" | "classmethod" | "staticmethod"
        self.binder = _Binder(fn, skip_first=kind in ("method", "classmethod"))
        self.self_name = {"method": "self", "classmethod": "cls"}.get(kind)
        self.is_async = inspect.iscoroutinefunction(fn)
        exprs = [*spec.fields.values(), *_exprs(spec.before), *_exprs(spec.after), *_exprs(spec.payload)]
        if isinstance(spec.actor_type, Expression):
            exprs.append(spec.actor_type)
        self.uses_request = any("request" in e.names for e in exprs)
        self._check_names(exprs)
        self._identity = identity_expressions(spec)
        # Identity fields naming result/error: evaluated after the call (the others before it).
        self._late = frozenset(name for name, expr in self._identity.items() if expr is not None and after_call(expr))
        self._when = spec.fields.get("when")
        self._emitter = generate_emitter(spec, spec.risk or default_risk(spec.event), self.binder.names())
        self._gen = generate(spec, fn, kind, self.is_async, self._emitter, self._generated_failed)
        self.approval = None
        if spec.approval is not None:  # `approval:`: the gate runs on the generic path, before the call
            from .approvals import Gate

            self.approval = Gate(self, spec.approval)
            self._gen = None

    def _generated_failed(self, recorder: Any, label: str, expr: Expression, exc: BaseException) -> None:
        if "error" in expr.names and "result" not in expr.names:
            return  # (after a successful call: error is None) expected, not an extractor failure
        recorder.counters.extractor_failed(f"{self.spec.where} {label} {expr.source!r}", exc)

    def _check_names(self, exprs: list[Expression]) -> None:
        """Names not checked at load time (target unknown then) are checked against the real signature."""
        known = self.binder.names() | frozenset(CALL_NAMES)
        for expr in exprs:
            unknown = expr.names - known
            if unknown:
                _log.error(
                    "auditrail: %s (%s): expression %r uses %s, which %s does not have; that field will be empty",
                    self.spec.where, self.spec.event, expr.source, ", ".join(sorted(unknown)), self.spec.target,
                )

    def __call__(self, wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        recorder = self.get_recorder()
        if evaluating and get_ident() in evaluating:  # called from an audit expression: unaudited, no recursion
            return wrapped(*args, **kwargs)
        gen = self._gen
        if self.is_async:
            if recorder is None:
                return wrapped(*args, **kwargs)  # the coroutine itself: nothing of ours around it
            if gen is not None:
                return gen.acall(self, recorder, wrapped, instance, args, kwargs)
            return self.generic_acall(recorder, wrapped, instance, args, kwargs)
        if recorder is None:
            return wrapped(*args, **kwargs)
        if gen is not None:
            return gen.call(self, recorder, wrapped, instance, args, kwargs)
        return self.generic_call(recorder, wrapped, instance, args, kwargs)

    def generic_call(self, recorder: Any, wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...],
                     kwargs: dict[str, Any]) -> Any:
        """The call with every expression evaluated one by one (no generated function, or one that cannot
        bind these arguments)."""
        early = self._start(recorder, instance, args, kwargs)
        if self.approval is not None:  # raises ApprovalRequired: the target does not run
            early = self.approval.check(self, recorder, early, self._namespace(instance, args, kwargs))
        try:
            result = wrapped(*args, **kwargs)
        except Exception as exc:
            self._finish(recorder, early, instance, args, kwargs, None, exc)
            raise
        if type(result) not in SETTLED and pending(result):
            return self.later(recorder, early, instance, args, kwargs, result)
        self._finish(recorder, early, instance, args, kwargs, result, None)
        return result

    async def generic_acall(self, recorder: Any, wrapped: Callable[..., Any], instance: Any,
                            args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """generic_call for coroutine functions."""
        early = self._start(recorder, instance, args, kwargs)
        if self.approval is not None:  # a network round trip: in a worker thread, not on the event loop
            early = await asyncio.to_thread(self.approval.check, self, recorder, early,
                                            self._namespace(instance, args, kwargs))
        try:
            result = await wrapped(*args, **kwargs)
        except Exception as exc:
            self._finish(recorder, early, instance, args, kwargs, None, exc)
            raise
        self._finish(recorder, early, instance, args, kwargs, result, None)
        return result

    def failed(self, recorder: Any, early: tuple[Any, ...], instance: Any, args: tuple[Any, ...],
               kwargs: dict[str, Any], error: BaseException) -> None:
        """The generated call's target raised: the rest of its event comes from the generic path."""
        self._finish(recorder, early, instance, args, kwargs, None, error)

    def later(self, recorder: Any, early: tuple[Any, ...], instance: Any, args: tuple[Any, ...],
              kwargs: dict[str, Any], value: Any) -> Any:
        """The target returned work still running (awaitables.py): its event is recorded when that
        completes, with its value or its failure. Returns what the caller gets (the same object)."""

        # The callback runs wherever the work completes (a worker thread, the reactor): in the call's own
        # context, so the event keeps its trace, request, audit_context and impersonation scope.
        context = contextvars.copy_context()

        def finish(result: Any, error: BaseException | None) -> None:  # in the awaitable's callback
            try:
                context.run(self._finish, recorder, early, instance, args, kwargs, result, error)
            except Exception:  # noqa: BLE001 - fail_closed cannot refuse an action that already ran
                recorder.counters.capture_failed(f"{self.spec.target} ({self.spec.event}, on completion)")

        def finish_awaited(result: Any, error: BaseException | None) -> None:  # in the caller's await
            self._finish(recorder, early, instance, args, kwargs, result, error)

        try:
            return on_completion(value, finish, finish_awaited)
        except Exception:  # noqa: BLE001
            recorder.counters.capture_failed(f"{self.spec.target} (waiting for its {type(value).__name__})")
            return value

    def _start(self, recorder: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        """Evaluate what is read before the call (guarded: a failure here only empties fields): `before`,
        and each identity field that does not name result/error, with its context default.

        Returns (before, *IDENTITY values; a late field holds its context default). fail_closed (and
        durable with on_full: refuse, at the spool's cap): raises AuditUnavailable, and the target never
        runs; durable with on_full: block waits here, before the action, for room in the spool.
        """
        guard = recorder.guard
        if guard is not None:
            guard()
        try:
            ns = self._namespace(instance, args, kwargs)
            early = [None if self.spec.before is None else self._evaluate(recorder, self.spec.before, ns, "before")]
            for name, expr in self._identity.items():
                value = None if expr is None or name in self._late else self._value(recorder, expr, ns, name)
                if value is None and name in DEFAULTED:
                    value = recorder.context_value(name)
                early.append(value)
            return tuple(early)
        except Exception:  # noqa: BLE001
            recorder.counters.capture_failed(f"{self.spec.target} (before the call)")
            return (None,) * (1 + len(self._identity))

    def _namespace(self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """The call's names for the generic path: parameters, self/cls, request."""
        ns = self.binder.bind(args, kwargs)
        if self.self_name:
            ns[self.self_name] = instance
        if self.uses_request and "request" not in ns:  # a parameter named `request` (Django views) wins
            ns["request"] = current_request()
        return ns

    def _finish(self, recorder: Any, early: tuple[Any, ...], instance: Any, args: tuple[Any, ...],
                kwargs: dict[str, Any], result: Any, error: BaseException | None) -> None:
        """Evaluate the rest one by one and emit (guarded). After a failure `result` is None (after a
        success `error` is), and every expression is still evaluated; `when` is not: failures are
        always recorded."""
        try:
            ns = self._namespace(instance, args, kwargs)
            ns["result"] = result
            ns["error"] = error
            when = self._when
            if when is not None and error is None and not self._value(recorder, when, ns, "when"):
                return
            # payload hygiene, record
            self._emitter(self, recorder, *self._one_by_one(recorder, early, ns), early[0], error)
        except Exception as exc:  # noqa: BLE001
            self.emit_failed(recorder, exc, error)

    def emit_failed(self, recorder: Any, exc: Exception, error: BaseException | None = None) -> None:
        """Capturing after the call failed: count it, unless fail_closed could not make the event durable."""
        if recorder.fail_closed and isinstance(exc, OSError) and error is None:
            # The action ran but its event could not be made durable: the caller must know.
            raise AuditUnavailable(
                f"auditrail (fail_closed): {self.spec.event} ran but its audit event could not be recorded: {exc}"
            ) from exc
        recorder.counters.capture_failed(f"{self.spec.target} ({self.spec.event})")

    def bad_actor_type(self, recorder: Any, actor_type: Any) -> None:
        """An actor_type expression gave a value that is not one of DESIGN.md's (the field is left empty)."""
        recorder.counters.extractor_failed(
            f"{self.spec.where} actor_type", ValueError(f"{actor_type!r} is not one of {ACTOR_TYPES}"))

    def _one_by_one(self, recorder: Any, early: tuple[Any, ...], ns: dict[str, Any]) -> tuple[Any, ...]:
        """The emitter's values field by field, the before-call ones from `early`: the generic path."""
        fields = []
        for i, (name, expr) in enumerate(self._identity.items(), 1):
            value = self._value(recorder, expr, ns, name) if name in self._late else None  # type: ignore[arg-type]
            fields.append(early[i] if value is None else value)  # (a late field's early value: its default)
        fields.append(None if self.spec.after is None else self._evaluate(recorder, self.spec.after, ns, "after"))
        fields.append(None if self.spec.payload is None else self._evaluate(recorder, self.spec.payload, ns, "payload"))
        return tuple(fields)

    def _value(self, recorder: Any, expr: Expression, ns: dict[str, Any], where: str) -> Any:
        try:
            return expr.evaluate(ns)
        except Exception as exc:  # noqa: BLE001 - the field stays empty, the event is still emitted
            if not _reads_the_absent_one(expr, ns):
                recorder.counters.extractor_failed(f"{self.spec.where} {where} {expr.source!r}", exc)
            return None

    def _evaluate(self, recorder: Any, spec: PayloadSpec, ns: dict[str, Any], where: str) -> Any:
        if isinstance(spec, dict):
            return {key: self._value(recorder, expr, ns, f"{where}.{key}") for key, expr in spec.items()}
        return self._value(recorder, spec, ns, where)  # type: ignore[arg-type]


def _reads_the_absent_one(expr: Expression, ns: dict[str, Any]) -> bool:
    """After a failed call `result` is None (after a good one `error` is): an expression reading only that
    one and raising (`result.pages`) leaves its field empty, as expected, not as an extractor failure."""
    if "result" not in ns or ("result" in expr.names) == ("error" in expr.names):
        return False
    return (ns["error"] is not None) == ("result" in expr.names)


def _active_recorder() -> Any:
    return runtime.recorder


def _exprs(spec: PayloadSpec) -> list[Expression]:
    if spec is None:
        return []
    return list(spec.values()) if isinstance(spec, dict) else [spec]


# --- installing and removing ----------------------------------------------------------------------


class Patcher:
    """Registers post-import hooks for targets and undoes exactly the patches it made."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._patched: list[tuple[Any, str, Any]] = []  # (owner, attribute, original static value)
        self._generation = 0

    def install(self, specs: list[EventSpec]) -> None:
        """Patch each target when its module is imported (now, if it already was)."""
        generation = self._generation
        for spec in specs:
            wrapt.register_post_import_hook(self._hook(spec, generation), spec.module)

    def install_hook(self, module: str, apply: Callable[[Any], None]) -> None:
        """Run `apply(module)` when `module` is imported, unless uninstalled by then."""
        generation = self._generation

        def hook(mod: Any) -> None:
            if generation == self._generation:
                apply(mod)

        wrapt.register_post_import_hook(hook, module)

    def _hook(self, spec: EventSpec, generation: int) -> Callable[[Any], None]:
        def hook(module: Any) -> None:
            if generation != self._generation:
                return  # uninstrumented since: post-import hooks cannot be unregistered
            try:
                self.patch(module, spec)
            except Exception:  # noqa: BLE001 - never break the import of the app's module
                _log.exception("auditrail: %s: cannot wrap %s", spec.where, spec.target)

        return hook

    def patch(self, module: Any, spec: EventSpec) -> None:
        """Wrap `spec.target` inside the just-imported `module`."""
        *owner_path, name = spec.qualname.split(".")
        owner = module
        for part in owner_path:
            owner = getattr(owner, part)
        static = inspect.getattr_static(owner, name, _MISSING)
        if static is _MISSING:
            _log.error("auditrail: %s: %s has no attribute %r; %s is not audited", spec.where, spec.module, spec.qualname, spec.event)
            return
        kind, fn = _kind(owner, name, static)
        self.wrap(owner, name, AuditWrapper(spec, fn, kind))

    def wrap(self, owner: Any, name: str, wrapper: Callable[..., Any]) -> None:
        """Apply a wrapt wrapper to owner.name, remembering the original for `uninstall`."""
        static = inspect.getattr_static(owner, name)
        wrapt.wrap_function_wrapper(owner, name, wrapper)
        with self._lock:
            self._patched.append((owner, name, static))

    def uninstall(self) -> None:
        """Restore every patched attribute (newest first) and disarm pending hooks."""
        with self._lock:
            self._generation += 1
            patched, self._patched = self._patched, []
        for owner, name, original in reversed(patched):
            setattr(owner, name, original)


def _kind(owner: Any, name: str, static: Any) -> tuple[str, Callable[..., Any]]:
    """How the target binds: function, method, classmethod or staticmethod; and the plain function."""
    if isinstance(static, classmethod):
        return "classmethod", static.__func__
    if isinstance(static, staticmethod):
        return "staticmethod", static.__func__
    if inspect.isclass(owner):
        return "method", static
    if not inspect.ismodule(owner) and inspect.isfunction(static) and name not in getattr(owner, "__dict__", {}):
        # `module:instance.method`: a function of the instance's class, bound to it (its first
        # parameter is the instance, not the caller's first argument)
        return "method", static
    return "function", static


patcher = Patcher()
