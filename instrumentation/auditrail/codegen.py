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
        ...                                          # identity (tenant, actor, reason): __v1.., before the call
        __before = {'prompt_hash': __v0}
        if __v1 is None:                             # context defaults, before the call too
            __v1 = __cv_tenant.get() ...
        __i_source_ip = __cv_source_ip.get() ...
        try:
            result = __wrapped(*__args, **__kwargs)
        except Exception as error:
            __w.failed(__rec, (__before, __v1, __v2, __v3, __i_source_ip, None, None), ..., error)
            raise
        if __type(result) not in __SETTLED and __pending(result):   # a Deferred, a future: awaitables.py
            return __w.later(__rec, (__before, __v1, ...), __instance, __args, __kwargs, result)
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
the wrapper evaluates the expressions one by one instead (the generic path, also taken by failed calls
and by work still running, with the values read before the call).
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Callable, Iterator
from typing import Any

from .awaitables import SETTLED, pending
from .config import EventSpec, PayloadSpec
from .expressions import _GLOBALS, Expression
from .payload import _MAX_STR_SCAN, _PLAIN, _clean, _clean_str
from .redaction import NUMBERS, REDACT, REDACTED
from .semconv import ACTOR_TYPES

RECORD_FIELDS = ("tenant", "actor", "reason", "source_ip", "approval_id")
# The emitter's first six values, in its order: the event's identity and attribution fields.
IDENTITY = (*RECORD_FIELDS, "actor_type", "marker")
# Identity fields that fall back, when None, to audit_context and then to audit.yaml's `context:` sources.
DEFAULTED = ("tenant", "actor", "source_ip", "marker")
# The audit_context variables of the defaulted fields that have one (the impersonation marker has none).
_CONTEXT_VARS = ("tenant", "actor", "source_ip")
_RESERVED = frozenset({"result", "error", "request", "self", "cls"})


def identity_expressions(spec: EventSpec) -> dict[str, Expression | None]:
    """The event's expression (or None) for each IDENTITY field."""
    exprs: dict[str, Expression | None] = {name: spec.fields.get(name) for name in RECORD_FIELDS}
    exprs["actor_type"] = spec.actor_type if isinstance(spec.actor_type, Expression) else None
    exprs["marker"] = spec.fields.get("marker")  # impersonation.marker: the evidence linking to a session
    return exprs


def after_call(expr: Expression) -> bool:
    """When an identity field is evaluated: before the call, unless it names `result` or `error`.

    (Who acts and for whom is what holds when the action starts: a login or an impersonation switches
    the session's user during the call, a delete empties the row.)
    """
    return not expr.names.isdisjoint(("result", "error"))


class Generated:
    """The compiled call functions for one target (`acall` only for coroutine functions)."""

    def __init__(self, call: Callable[..., Any], acall: Callable[..., Any] | None) -> None:
        self.call = call
        self.acall = acall


def generate(spec: EventSpec, fn: Callable[..., Any], kind: str, is_async: bool, emit: Callable[..., None],
             on_failure: Callable[[Any, str, Expression, BaseException], None]) -> Generated | None:
    """Compile the hot-path call function for `spec` on `fn`, or None when its signature cannot be mirrored.

    `emit` is the target's emitter (generate_emitter), called with the identity values, `after`,
    `payload` and `before`. Evaluated before the call: `before` and the identity fields (with their
    context defaults) that do not name result/error; after it: `when`, the rest of the identity,
    `after`, `payload`. A failed call, and one that returned work still running (awaitables.py),
    hand the before-call values to the wrapper, which evaluates the rest one by one.
    """
    params = _parameters(fn, skip_first=kind in ("method", "classmethod"))
    if params is None:
        return None
    signature, names, defaults = params
    code = _Code()
    before = code.section(spec.before, "before")
    exprs = identity_expressions(spec)
    final: dict[str, str] = {}  # field -> the local holding its value when the event is emitted
    early: dict[str, str] = {}  # field -> the local holding its before-call value (or its default)
    for name, expr in exprs.items():
        if expr is not None and not after_call(expr):
            final[name] = early[name] = code.value(expr, name)
    n_before = len(code.exprs)
    defaults_code = []
    for name in DEFAULTED:
        if name in early:
            defaults_code.append(f"if {early[name]} is None:\n" + _indent(_context_default(early[name], name)))
        else:
            early[name] = f"__i_{name}"
            defaults_code.append(_context_default(early[name], name))
    when = spec.fields.get("when")
    when_local = code.value(when, "when") if when is not None else None
    n_when = len(code.exprs)
    late_defaults = []
    for name, expr in exprs.items():
        if expr is not None and after_call(expr):
            final[name] = code.value(expr, name)
            if name in DEFAULTED:  # its context default was read before the call
                late_defaults.append(f"if {final[name]} is None:\n    {final[name]} = {early[name]}\n")
        elif name not in final:
            final[name] = early.get(name, "None")
    fields = [final[name] for name in IDENTITY]
    fields.append(code.section(spec.after, "after"))
    fields.append(code.section(spec.payload, "payload"))
    pre = f"(__before, {', '.join(early.get(name, 'None') for name in IDENTITY)})"

    bind = f"{names}, = __bind(*__args, **__kwargs)" if names else "__bind(*__args, **__kwargs)"
    self_name = {"method": "self", "classmethod": "cls"}.get(kind)
    head = [f"{self_name} = __instance\n"] if self_name else []
    head.append("__guard = __rec.guard\nif __guard is not None:\n    __guard()\n")
    if any("request" in e.names for e in code.exprs):
        head.append("request = __request()\n")
    head.extend(code.block(0, n_before))
    head.append(f"__before = {before}\n")
    head.extend(defaults_code)

    def body(call: str, generic: str, sync: bool) -> str:
        out = ["try:\n", f"    {bind}\n", "except TypeError:\n",
               f"    return {generic}(__rec, __wrapped, __instance, __args, __kwargs)\n",
               *head,
               "try:\n", f"    result = {call}\n",
               "except Exception as error:\n",
               f"    __w.failed(__rec, {pre}, __instance, __args, __kwargs, error)\n",
               "    raise\n"]
        if sync:  # work still running (a Deferred, a future): its event waits for it
            out.append(f"if __type(result) not in __SETTLED and __pending(result):\n"
                       f"    return __w.later(__rec, {pre}, __instance, __args, __kwargs, result)\n")
        out.append("try:\n")
        after = []
        if any("error" in e.names for e in code.exprs[n_before:]):
            after.append("error = None\n")
        if when_local is not None:  # evaluated first: nothing else runs after a call it rules out
            after.extend(code.block(n_before, n_when))
            after.append(f"if not {when_local}:\n    return result\n")
        after.extend(code.block(n_when, len(code.exprs)))
        after.extend(late_defaults)
        after.append(f"__emit(__w, __rec, {', '.join(fields)}, __before, None)\n")
        out.append(_indent("".join(after)))
        out.append("except Exception as __e:\n    __w.emit_failed(__rec, __e)\nreturn result\n")
        return _indent("".join(out))

    params_src = "__w, __rec, __wrapped, __instance, __args, __kwargs"
    source = f"def __bind({signature}):\n    return ({names}{',' if names else ''})\n\n"
    source += f"def __call({params_src}):\n{body('__wrapped(*__args, **__kwargs)', '__w.generic_call', True)}\n"
    if is_async:
        source += (f"async def __acall({params_src}):\n"
                   f"{body('await __wrapped(*__args, **__kwargs)', 'await __w.generic_acall', False)}\n")
    from .context import _actor, _source_ip, _tenant, current_request

    exprs_list, labels = code.exprs, code.labels
    namespace: dict[str, Any] = {**_GLOBALS, **defaults, "__request": current_request, "Exception": Exception,
                                 "TypeError": TypeError, "__emit": emit, "__type": type, "__SETTLED": SETTLED,
                                 "__pending": pending, "__cv_tenant": _tenant, "__cv_actor": _actor,
                                 "__cv_source_ip": _source_ip,
                                 "__fail": lambda rec, i, exc: on_failure(rec, labels[i], exprs_list[i], exc)}
    exec(compile(source, f"<auditrail {spec.target}>", "exec"), namespace)  # noqa: S102 - checked ASTs
    return Generated(namespace["__call"], namespace.get("__acall"))


def _context_default(local: str, name: str) -> str:
    """Statements reading `name`'s context default into `local`: audit_context's value (the marker has
    none), else `context:`."""
    first = f"{local} = __cv_{name}.get()\n" if name in _CONTEXT_VARS else f"{local} = None\n"
    return (first + f"if {local} is None and __rec.sources.{name}:\n"
            f"    {local} = __rec.context_default({name!r})\n")


def _indent(text: str) -> str:
    return "".join("    " + line for line in text.splitlines(keepends=True))


_EMIT_PARAMS = ("__w, __rec, tenant, actor, reason, source_ip, approval_id, actor_type, marker, after, payload, before, "
                "error")


def generate_emitter(spec: EventSpec, risk: str, params: frozenset[str] = frozenset()) -> Callable[..., None]:
    """Compile the function that cleans a call's values into the event's payload and records it.

        emit(__w, __rec, tenant, actor, reason, source_ip, approval_id, actor_type, marker, after, payload, before,
             error)

    Both paths of the wrapper end in it. Payload hygiene, specialised to the config: whether each fixed
    key of a mapping section is redacted is decided once per payload policy (redaction.py; a tuple of
    verdicts, recomputed only when the recorder's policy changes), text values are scrubbed only when
    they are not plain words (redaction.plain_word, inline), and only values that are not plain (int, bool, None) take
    the general walk (payload.PayloadPolicy.clean); a fixed key whose expression is `sha256(...)` holds a hex
    digest or None, never scanned (unless `params`, the target's parameter names, shadow sha256); a
    whole-object section is cleaned as a whole and
    never mutated (it may be the app's own object). The body is the `payload` section (a non-mapping
    one under "value"), then "before", "after" and, for a failed call, "error" (its message scrubbed).
    """
    sections = [(name, section) for name, section in (("payload", spec.payload), ("before", spec.before),
                                                      ("after", spec.after)) if section is not None]
    fixed = [key for _, section in sections if isinstance(section, dict) for key in section]
    out = ["__p = __rec.policy\n__red = __p.redactor\n"]
    if fixed:  # the verdicts of the fixed keys, for this policy (a tuple swap: safe across threads)
        out.append("__s = __S[0]\nif __s[0] is not __p:\n    __s = __S[0] = (__p, __verdicts(__red))\n"
                   "__x = __s[1]\n")
    index = iter(range(len(fixed)))
    if spec.payload is None:
        out.append("__body = {}\n")
    digests = "sha256" not in params
    for name, section in sections:
        out.extend(_clean_section(name, section, index, digests))
        if name == "payload":
            out.append("__body = payload if type(payload) is dict else {'value': payload}\n")
        else:
            out.append(f"__body[{name!r}] = {name}\n")
    out.append("if error is not None:\n"
               "    __body['error'] = {'type': type(error).__name__,\n"
               "                       'message': __cstr(str(error)[:__SCAN], __red, 1)[:500]}\n")
    if isinstance(spec.actor_type, Expression):
        out.append("if actor_type is not None and actor_type not in __ACTOR_TYPES:\n"
                   "    __w.bad_actor_type(__rec, actor_type)\n    actor_type = None\n")
    else:
        out.append(f"actor_type = {spec.actor_type!r}\n")
    out.append(f"__rec.record_positional({spec.event!r}, tenant, actor, actor_type, __body, source_ip, reason, "
               f"'success' if error is None else 'failure', {risk!r}, approval_id, None, True, True, True, marker)\n")
    source = f"def __emit({_EMIT_PARAMS}):\n" + "".join("    " + line for line in "".join(out).splitlines(True))
    namespace: dict[str, Any] = {"__builtins__": {"type": type, "str": str, "dict": dict},
                                 "__ACTOR_TYPES": ACTOR_TYPES, "__PLAIN": _PLAIN, "__NUMBERS": NUMBERS,
                                 "__REDACTED": REDACTED, "__REDACT": REDACT, "__clean": _clean,
                                 "__cstr": _clean_str, "__SCAN": _MAX_STR_SCAN, "__S": [(None, ())],
                                 "__verdicts": lambda red: tuple(red.verdict(key) for key in fixed)}
    exec(compile(source, f"<auditrail emit {spec.target}>", "exec"), namespace)  # noqa: S102 - our own text
    return namespace["__emit"]


def _clean_section(name: str, section: PayloadSpec, index: Iterator[int], digests: bool) -> list[str]:
    """Statements cleaning the local `name` (a before/after/payload value) in place or by replacement.

    `index` numbers the fixed keys in the order of the emitter's verdict tuple `__x`; `digests`: the
    values of `sha256(...)` keys need no scan.
    """
    if not isinstance(section, dict):
        return [f"{name} = __clean({name}, __red, 0)\n"]
    out = [f"if type({name}) is dict:\n"]
    for key, expr in section.items():
        i = next(index)
        out.append(f"    __v = {name}[{key!r}]\n"
                   f"    if __x[{i}] and (__x[{i}] == __REDACT or type(__v) not in __NUMBERS):\n"
                   f"        {name}[{key!r}] = __REDACTED\n")
        if digests and _is_digest(expr):
            continue
        out.append(f"    elif type(__v) is str:\n"
                   f"        if not (__v.isascii() and (__b := __v.encode()).isalnum()) or __b.isdigit():\n"
                   f"            {name}[{key!r}] = __cstr(__v, __red, 1)\n"
                   f"    elif type(__v) not in __PLAIN:\n"
                   f"        {name}[{key!r}] = __clean(__v, __red, 1)\n")
    out.append(f"else:\n    {name} = __clean({name}, __red, 0)\n")
    return out


def _is_digest(expr: Expression) -> bool:
    """`sha256(...)`: its value is a hex digest or None."""
    tree = expr.tree
    return isinstance(tree, ast.Call) and isinstance(tree.func, ast.Name) and tree.func.id == "sha256"


class _Code:
    """Collects the expressions of the generated function, numbered in evaluation order."""

    def __init__(self) -> None:
        self.exprs: list[Expression] = []
        self.labels: list[str] = []

    def value(self, expr: Expression, label: str) -> str:
        """The local that will hold `expr` (every expression is evaluated, whatever it reads)."""
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
