"""Per-target Python functions for the wrapper's hot path, generated from the checked expressions.

For each audited target, one function is written and compiled once (and its `async def` twin for
coroutine functions). For DESIGN.md's prompt.update example it reads:

    def __call(__w, __rec, __wrapped, __instance, __args, __kwargs):
        try:
            tenant_id, new_text, editor, reason = __bind(*__args, **__kwargs)
        except TypeError:                           # arguments the target cannot take: the generic path
            return __w.generic_call(__rec, __wrapped, __instance, __args, __kwargs)
        self = __instance
        __guard = __rec.guard
        if __guard is not None:
            __guard()                                # fail_closed / on_full: before the action
        try:
            __v0 = sha256(self.get(tenant_id))
        except Exception as __e:
            __v0 = None; __fail(__rec, 0, __e)
        __before = {'prompt_hash': __v0}
        try:
            result = __wrapped(*__args, **__kwargs)
        except Exception as error:
            __w.failed(__rec, __before, __instance, __args, __kwargs, error)
            raise
        try:
            ...                                      # each after-call expression in its own try block
            __emit(__w, __rec, __v1, __v2, ..., __before, None)     # see generate_emitter
        except Exception as __e:
            __w.emit_failed(__rec, __e)
        return result

Python binds the call's arguments itself (`__bind` mirrors the target's parameters: defaults, keywords,
*args) and the expressions read fast locals, in one frame; a failing expression empties only its own
field (try/except costs nothing until it raises, in CPython 3.11+). This is what attrs and dataclasses
do for __init__. The source is built only from expressions that passed the checks of expressions.py and
is unparsed from their AST, so the generated code can do no more than they can. The target is always
called with the caller's own args and kwargs, untouched. When a target's signature cannot be mirrored,
the wrapper evaluates the expressions one by one instead (the generic path, also taken by failed calls).
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Callable
from typing import Any

from .config import EventSpec, PayloadSpec
from .expressions import _GLOBALS, Expression
from .payload import _PLAIN, REDACTED, _clean, _norm_key
from .semconv import ACTOR_TYPES

RECORD_FIELDS = ("tenant", "actor", "reason", "source_ip", "approval_id")
_RESERVED = frozenset({"result", "error", "request", "self", "cls"})


class Generated:
    """The compiled call functions for one target (`acall` only for coroutine functions)."""

    def __init__(self, call: Callable[..., Any], acall: Callable[..., Any] | None) -> None:
        self.call = call
        self.acall = acall


def generate(spec: EventSpec, fn: Callable[..., Any], kind: str, is_async: bool, emit: Callable[..., None],
             on_failure: Callable[[Any, str, Expression, BaseException], None]) -> Generated | None:
    """Compile the hot-path call function for `spec` on `fn`, or None when its signature cannot be mirrored.

    `emit` is the target's emitter (generate_emitter), called with the after-call values and `before`.
    """
    params = _parameters(fn, skip_first=kind in ("method", "classmethod"))
    if params is None:
        return None
    signature, names, defaults = params
    code = _Code()
    before = code.section(spec.before, "before")
    n_before = len(code.exprs)
    when = spec.fields.get("when")
    when_local = code.value(when, "when") if when is not None else None
    n_when = len(code.exprs)
    fields = [code.value(spec.fields[n], n) if n in spec.fields else "None" for n in RECORD_FIELDS]
    fields.append(code.value(spec.actor_type, "actor_type") if isinstance(spec.actor_type, Expression) else "None")
    fields.append(code.section(spec.after, "after"))
    fields.append(code.section(spec.payload, "payload"))

    bind = f"{names}, = __bind(*__args, **__kwargs)" if names else "__bind(*__args, **__kwargs)"
    self_name = {"method": "self", "classmethod": "cls"}.get(kind)
    head = [f"{self_name} = __instance\n"] if self_name else []
    head.append("__guard = __rec.guard\nif __guard is not None:\n    __guard()\n")
    if any("request" in e.names for e in code.exprs):
        head.append("request = __request()\n")
    head.extend(code.block(0, n_before))
    head.append(f"__before = {before}\n")

    def body(call: str, generic: str) -> str:
        out = ["try:\n", f"    {bind}\n", "except TypeError:\n",
               f"    return {generic}(__rec, __wrapped, __instance, __args, __kwargs)\n",
               *head,
               "try:\n", f"    result = {call}\n",
               "except Exception as error:\n",
               "    __w.failed(__rec, __before, __instance, __args, __kwargs, error)\n",
               "    raise\n",
               "try:\n"]
        after = []
        if any("error" in e.names for e in code.exprs[n_before:]):
            after.append("error = None\n")
        after.extend(code.block(n_before, n_when))
        if when_local is not None:  # evaluated first: nothing else runs for a call it rules out
            after.append(f"if not {when_local}:\n    return result\n")
        after.extend(code.block(n_when, len(code.exprs)))
        after.append(f"__emit(__w, __rec, {', '.join(fields)}, __before, None)\n")
        out.extend("    " + line for line in "".join(after).splitlines(keepends=True))
        out.append("except Exception as __e:\n    __w.emit_failed(__rec, __e)\nreturn result\n")
        return "".join("    " + line for line in "".join(out).splitlines(keepends=True))

    params_src = "__w, __rec, __wrapped, __instance, __args, __kwargs"
    source = f"def __bind({signature}):\n    return ({names}{',' if names else ''})\n\n"
    source += f"def __call({params_src}):\n{body('__wrapped(*__args, **__kwargs)', '__w.generic_call')}\n"
    if is_async:
        source += f"async def __acall({params_src}):\n{body('await __wrapped(*__args, **__kwargs)', 'await __w.generic_acall')}\n"
    from .context import current_request

    exprs, labels = code.exprs, code.labels
    namespace: dict[str, Any] = {**_GLOBALS, **defaults, "__request": current_request, "Exception": Exception,
                                 "TypeError": TypeError, "__emit": emit,
                                 "__fail": lambda rec, i, exc: on_failure(rec, labels[i], exprs[i], exc)}
    exec(compile(source, f"<auditrail {spec.target}>", "exec"), namespace)  # noqa: S102 - checked ASTs
    return Generated(namespace["__call"], namespace.get("__acall"))


_EMIT_PARAMS = "__w, __rec, tenant, actor, reason, source_ip, approval_id, actor_type, after, payload, before, error"


def generate_emitter(spec: EventSpec, risk: str) -> Callable[..., None]:
    """Compile the function that cleans a call's values into the event's payload and records it.

        emit(__w, __rec, tenant, actor, reason, source_ip, approval_id, actor_type, after, payload, before,
             error)

    Both paths of the wrapper end in it. Payload hygiene, specialised to the config: each fixed key of a
    mapping section is masked when the recorder's policy redacts it, and only values that are not plain
    (str, int, bool, None) take the general walk (payload.PayloadPolicy.clean); a whole-object section is
    cleaned as a whole and never mutated (it may be the app's own object). The body is the `payload`
    section (a non-mapping one under "value"), then "before", "after" and, for a failed call, "error".
    """
    out = ["__rk = __rec.policy.redact_keys\n"]
    if spec.payload is None:
        out.append("__body = {}\n")
    else:
        out.extend(_clean_section("payload", spec.payload))
        out.append("__body = payload if type(payload) is dict else {'value': payload}\n")
    for name, section in (("before", spec.before), ("after", spec.after)):
        if section is not None:
            out.extend(_clean_section(name, section))
            out.append(f"__body[{name!r}] = {name}\n")
    out.append("if error is not None:\n"
               "    __body['error'] = {'type': type(error).__name__, 'message': str(error)[:500]}\n")
    if isinstance(spec.actor_type, Expression):
        out.append("if actor_type is not None and actor_type not in __ACTOR_TYPES:\n"
                   "    __w.bad_actor_type(__rec, actor_type)\n    actor_type = None\n")
    else:
        out.append(f"actor_type = {spec.actor_type!r}\n")
    out.append(f"__rec.record_positional({spec.event!r}, tenant, actor, actor_type, __body, source_ip, reason, "
               f"'success' if error is None else 'failure', {risk!r}, approval_id, None, True, True)\n")
    source = f"def __emit({_EMIT_PARAMS}):\n" + "".join("    " + line for line in "".join(out).splitlines(True))
    namespace: dict[str, Any] = {"__builtins__": {"type": type, "str": str, "dict": dict},
                                 "__ACTOR_TYPES": ACTOR_TYPES, "__PLAIN": _PLAIN, "__REDACTED": REDACTED,
                                 "__clean": _clean}
    exec(compile(source, f"<auditrail emit {spec.target}>", "exec"), namespace)  # noqa: S102 - our own text
    return namespace["__emit"]


def _clean_section(name: str, section: PayloadSpec) -> list[str]:
    """Statements cleaning the local `name` (a before/after/payload value) in place or by replacement."""
    if not isinstance(section, dict):
        return [f"{name} = __clean({name}, __rk, 0)\n"]
    out = [f"if type({name}) is dict:\n"]
    for key in section:
        # (normalised once here, as PayloadPolicy matches keys: case and separators ignored)
        out.append(f"    if {_norm_key(key)!r} in __rk:\n        {name}[{key!r}] = __REDACTED\n"
                   f"    elif type({name}[{key!r}]) not in __PLAIN:\n"
                   f"        {name}[{key!r}] = __clean({name}[{key!r}], __rk, 1)\n")
    out.append(f"else:\n    {name} = __clean({name}, __rk, 0)\n")
    return out


class _Code:
    """Collects the expressions of the generated function, numbered in evaluation order."""

    def __init__(self) -> None:
        self.exprs: list[Expression] = []
        self.labels: list[str] = []

    def value(self, expr: Expression, label: str) -> str:
        """The local that will hold `expr` after a successful call (None if it reads only `error`)."""
        if "error" in expr.names and "result" not in expr.names:
            return "None"
        self.exprs.append(expr)
        self.labels.append(label)
        return f"__v{len(self.exprs) - 1}"

    def section(self, payload: PayloadSpec, label: str) -> str:
        """Source building a before/after/payload value: a dict display, or one expression's local."""
        if payload is None:
            return "None"
        if isinstance(payload, dict):
            return "{" + ", ".join(f"{k!r}: {self.value(e, f'{label}.{k}')}" for k, e in payload.items()) + "}"
        return self.value(payload, label)

    def block(self, start: int, stop: int) -> list[str]:
        """Statements evaluating expressions start..stop-1, each in its own try block; the thread is marked
        as evaluating when one of them may run the app's code (an audited target it reaches runs unaudited)."""
        body = [f"try:\n    __v{i} = {ast.unparse(self.exprs[i].tree)}\n"
                f"except Exception as __e:\n    __v{i} = None\n    __fail(__rec, {i}, __e)\n"
                for i in range(start, stop)]
        if not any(e.runs_app_code for e in self.exprs[start:stop]):
            return body
        lines = "".join(body).splitlines(keepends=True)
        return ["__i = __get_ident()\n__evaluating[__i] = True\ntry:\n", *("    " + line for line in lines),
                "finally:\n    del __evaluating[__i]\n"]


def _parameters(fn: Callable[..., Any], skip_first: bool) -> tuple[str, str, dict[str, Any]] | None:
    """The parameter list of `fn` as source (defaults by reference) and its names, or None if it cannot
    be mirrored."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return None
    kinds = inspect.Parameter
    if skip_first:
        if not params or params[0].kind not in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD):
            return None
        params = params[1:]
    parts: list[str] = []
    defaults: dict[str, Any] = {}
    star_done = False
    for i, p in enumerate(params):
        if not p.name.isidentifier() or p.name in _RESERVED or p.name.startswith("__"):
            return None  # would shadow a name of the language (or ours): use the generic path
        if p.kind is kinds.KEYWORD_ONLY and not star_done:
            parts.append("*")
            star_done = True
        text = p.name
        if p.kind is kinds.VAR_POSITIONAL:
            text, star_done = "*" + p.name, True
        elif p.kind is kinds.VAR_KEYWORD:
            text = "**" + p.name
        if p.default is not kinds.empty:
            defaults[f"__d{i}"] = p.default
            text += f"=__d{i}"
        parts.append(text)
        if p.kind is kinds.POSITIONAL_ONLY and (i + 1 == len(params) or params[i + 1].kind is not kinds.POSITIONAL_ONLY):
            parts.append("/")
    return ", ".join(parts), ", ".join(p.name for p in params), defaults
