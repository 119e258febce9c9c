"""Per-target Python functions for the wrapper's hot path, generated from the checked expressions.

For each audited target, two small functions are written and compiled once:

    def before(__rec, self, tenant_id, new_text, editor, reason):      # the target's own parameters
        try:
            __v0 = sha256(self.get(tenant_id))
        except Exception as __e:
            __v0 = None; __fail(__rec, 0, __e)
        return {'prompt_hash': __v0}

and `after(__rec, result, self, ...)` returning the event's fields. Python binds the call's arguments
itself (defaults, keywords, *args) and the expressions read fast locals; a failing expression empties
only its own field (try/except costs nothing until it raises, in CPython 3.11+). This is what attrs
and dataclasses do for __init__. The source is built only from expressions that passed the checks of
expressions.py and is unparsed from their AST, so the generated code can do no more than they can.
When a target's signature cannot be mirrored, the wrapper evaluates the expressions one by one instead.
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Callable
from typing import Any

from .config import EventSpec, PayloadSpec
from .expressions import _GLOBALS, Expression

RECORD_FIELDS = ("tenant", "actor", "reason", "source_ip", "approval_id")
_RESERVED = frozenset({"result", "error", "request", "self", "cls"})


class Generated:
    """The compiled functions for one target."""

    def __init__(self, before: Callable[..., Any] | None, after: Callable[..., Any]) -> None:
        self.before = before
        self.after = after


def generate(spec: EventSpec, fn: Callable[..., Any], kind: str,
             on_failure: Callable[[Any, str, Expression, BaseException], None]) -> Generated | None:
    """Compile the hot-path functions for `spec` on `fn`, or None when its signature cannot be mirrored."""
    params = _parameters(fn, skip_first=kind in ("method", "classmethod"))
    if params is None:
        return None
    signature, defaults = params
    lead = {"method": "self, ", "classmethod": "cls, "}.get(kind, "")
    code = _Code()
    sources = []
    if spec.before is not None:
        start = len(code.exprs)
        body = code.section(spec.before, "before")
        sources.append(code.function("before", f"__rec, {lead}{signature}", start, f"return {body}"))
    start = len(code.exprs)
    when = spec.fields.get("when")
    guard = ""
    if when is not None:  # evaluated first: nothing else runs for a call it rules out
        guard = f"if not {code.value(when, 'when')}:\n        return None\n"
    gate = len(code.exprs)
    fields = [code.value(spec.fields[n], n) if n in spec.fields else "None" for n in RECORD_FIELDS]
    fields.append(code.value(spec.actor_type, "actor_type") if isinstance(spec.actor_type, Expression) else "None")
    fields.append(code.section(spec.after, "after"))
    fields.append(code.section(spec.payload, "payload"))
    sources.append(code.function("after", f"__rec, result, {lead}{signature}", start,
                                 f"return ({', '.join(fields)},)", guard=guard, gate=gate))
    from .context import current_request

    exprs, labels = code.exprs, code.labels
    namespace: dict[str, Any] = {**_GLOBALS, **defaults, "__request": current_request, "Exception": Exception,
                                 "__fail": lambda rec, i, exc: on_failure(rec, labels[i], exprs[i], exc)}
    exec(compile("".join(sources), f"<auditrail {spec.target}>", "exec"), namespace)  # noqa: S102 - checked ASTs
    return Generated(namespace.get("before"), namespace["after"])


class _Code:
    """Collects the expressions of the generated functions, numbered in evaluation order."""

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

    def function(self, name: str, params: str, start: int, tail: str, guard: str = "", gate: int = -1) -> str:
        """One function: each expression from `start` in its own try block (`guard` after index `gate`)."""
        mine = self.exprs[start:]
        out = [f"def {name}({params}):\n"]
        if any("error" in e.names for e in mine):
            out.append("    error = None\n")
        if any("request" in e.names for e in mine):
            out.append("    request = __request()\n")
        for i in range(start, len(self.exprs)):
            if i == gate and guard:
                out.append("    " + guard)
            out.append(f"    try:\n        __v{i} = {ast.unparse(self.exprs[i].tree)}\n"
                       f"    except Exception as __e:\n        __v{i} = None\n        __fail(__rec, {i}, __e)\n")
        if gate == len(self.exprs) and guard:
            out.append("    " + guard)
        out.append(f"    {tail}\n")
        return "".join(out)


def _parameters(fn: Callable[..., Any], skip_first: bool) -> tuple[str, dict[str, Any]] | None:
    """The parameter list of `fn` as source (defaults by reference), or None if it cannot be mirrored."""
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
    return ", ".join(parts), defaults
