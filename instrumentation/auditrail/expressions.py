"""The safe expression language of audit.yaml: parsed and checked with `ast` once, evaluated per call.

Allowed: names (the call's parameters by name, `self`, `cls`, `result`, `error`, `request`), literals,
attribute / item / method access, comparisons, boolean logic, arithmetic, conditional expressions,
f-strings, list/tuple/dict literals and the functions in FUNCTIONS. Not allowed: dunder or private
attributes, lambdas, comprehensions, assignment, imports, or any name not listed above. Because every
node is checked before compiling, the compiled code can only reach what the namespace hands it.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import json
from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry import baggage as otel_baggage

from .native import native_function

_openssl_sha256 = hashlib.sha256
# sha256() of a str, the common case (a prompt's hash): natively ~0.6 us against ~0.95 (encode, hashlib,
# hexdigest); the Python form is the definition, and runs without the native core.
_sha256_text: Callable[[str], str] = native_function("sha256_text") or (
    lambda text: _openssl_sha256(text.encode("utf-8")).hexdigest())

# Names an expression may use beside the target's parameters.
CALL_NAMES = ("self", "cls", "result", "error", "request")


class ExpressionError(ValueError):
    """An expression that is not valid in the audit expression language."""


def _sha256(value: Any) -> str | None:
    """Hex SHA-256 of text/bytes, or of canonical JSON for other values; None stays None."""
    if type(value) is str:  # the common case first: this runs in audited calls
        return _sha256_text(value)
    if value is None:
        return None
    if isinstance(value, bytes):
        data = value
    elif isinstance(value, str):
        data = value.encode("utf-8")
    else:
        data = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode("utf-8")
    return _openssl_sha256(data).hexdigest()


def _coalesce(*values: Any) -> Any:
    """The first value that is not None."""
    for value in values:
        if value is not None:
            return value
    return None


def _baggage(key: str) -> Any:
    """The value of an OpenTelemetry baggage entry in the current context."""
    return otel_baggage.get_baggage(key)


_call_cache: dict[str, Callable[[], Any]] = {}


def resolve_callable(spec: str) -> Callable[..., Any]:
    """Import `module:qualname` and return the object it names."""
    module_name, _, qualname = spec.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _call(spec: str, *args: Any, **kwargs: Any) -> Any:
    """Call the app's own function `module:qualname` (resolved once, on first use) with the given arguments."""
    fn = _call_cache.get(spec)
    if fn is None:
        fn = _call_cache[spec] = resolve_callable(spec)
    return fn(*args, **kwargs)


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sha256": _sha256,
    "len": len,
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "coalesce": _coalesce,
    "baggage": _baggage,
    "call": _call,
}

_GLOBALS: dict[str, Any] = {"__builtins__": {}, **FUNCTIONS}

# str.format can walk attributes ("{0.__class__}"), which would bypass the private-attribute rule.
_FORBIDDEN_METHODS = frozenset({"format", "format_map"})

_ALLOWED_NODES = (
    ast.Expression, ast.Name, ast.Load, ast.Attribute, ast.Subscript, ast.Slice, ast.Constant,
    ast.Call, ast.keyword, ast.List, ast.Tuple, ast.Dict, ast.BoolOp, ast.And, ast.Or,
    ast.UnaryOp, ast.Not, ast.USub, ast.UAdd, ast.BinOp, ast.Add, ast.Sub, ast.Mult, ast.Div,
    ast.FloorDiv, ast.Mod, ast.Compare, ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE,
    ast.In, ast.NotIn, ast.Is, ast.IsNot, ast.IfExp, ast.JoinedStr, ast.FormattedValue,
)


class Expression:
    """One compiled expression; `evaluate(namespace)` runs it against a call's names."""

    __slots__ = ("source", "names", "tree", "_code")

    def __init__(self, source: str, tree: ast.expr, names: frozenset[str]) -> None:
        self.source = source
        self.tree = tree  # the checked expression node, for compiling several into one (`compile_group`)
        self._code = compile(ast.fix_missing_locations(ast.Expression(tree)), "<audit.yaml>", "eval")
        self.names = names  # the call names it reads, e.g. {"tenant_id", "result"}

    def evaluate(self, namespace: dict[str, Any]) -> Any:
        """Evaluate against `namespace` (may raise whatever the app's objects raise)."""
        return eval(self._code, _GLOBALS, namespace)  # noqa: S307 - the AST was checked node by node

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"


def _check(tree: ast.AST, allowed_names: Iterable[str] | None) -> frozenset[str]:
    """Reject every node outside the language; return the non-function names used."""
    used: set[str] = set()
    allowed = None if allowed_names is None else set(allowed_names)
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED_NODES):
            raise ExpressionError(f"{type(node).__name__} is not allowed in audit expressions")
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            raise ExpressionError(f"access to private attribute {node.attr!r} is not allowed")
        if isinstance(node, ast.Attribute) and node.attr in _FORBIDDEN_METHODS:
            raise ExpressionError(f"{node.attr}() is not allowed (format strings can reach private attributes)")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id not in FUNCTIONS:
                raise ExpressionError(
                    f"unknown function {node.func.id!r} (available: {', '.join(sorted(FUNCTIONS))})"
                )
            if node.func.id == "call":
                _check_call_target(node)
            continue
        if isinstance(node, ast.Name):
            if node.id in FUNCTIONS and not _is_called(tree, node):
                raise ExpressionError(f"function {node.id!r} must be called, e.g. {node.id}(...)")
            if node.id.startswith("__"):
                raise ExpressionError(f"name {node.id!r} is not allowed")
            if node.id not in FUNCTIONS:
                if allowed is not None and node.id not in allowed:
                    raise ExpressionError(
                        f"unknown name {node.id!r} (available: {', '.join(sorted(allowed))})"
                    )
                used.add(node.id)
    return frozenset(used)


def _is_called(tree: ast.AST, name: ast.Name) -> bool:
    return any(isinstance(n, ast.Call) and n.func is name for n in ast.walk(tree))


def _check_call_target(node: ast.Call) -> None:
    """`call(...)` starts with a literal "module:function" string, checked now rather than at first use."""
    first = node.args[0] if node.args else None
    if not isinstance(first, ast.Constant) or not isinstance(first.value, str) or ":" not in first.value:
        raise ExpressionError('call() needs a literal "module:function" first, e.g. call("app.billing:get_plan", tenant_id)')


def compile_expression(source: str, allowed_names: Iterable[str] | None = None) -> Expression:
    """Parse and check `source`; `allowed_names` (when known) limits the names it may read."""
    if not isinstance(source, str) or not source.strip():
        raise ExpressionError("an expression must be a non-empty string")
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"syntax error in {source!r}: {exc.msg}") from None
    names = _check(tree, allowed_names)
    return Expression(source, tree.body, names)


def constant(value: Any) -> Expression:
    """An expression that always yields `value` (for literals written in YAML, e.g. numbers)."""
    return Expression(repr(value), ast.Constant(value), frozenset())
