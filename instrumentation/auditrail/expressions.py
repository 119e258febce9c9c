"""The safe expression language of audit.yaml: parsed and checked with `ast` once, evaluated per call.

Allowed: names (the call's parameters by name, `self`, `cls`, `result`, `error`, `request`), literals,
attribute / item / method access, comparisons, boolean logic, arithmetic, conditional expressions,
f-strings, list/tuple/dict literals and the functions in FUNCTIONS. Not allowed: dunder or private
attributes, dunder keys, lambdas, comprehensions, assignment, imports, or any name not listed above.
Every node is checked before compiling, so the compiled code can only reach what the namespace hands it;
then the checked tree is rewritten so that what can only be known at run time is guarded where it
happens (`_Guard`): attribute and item access refuse modules, frames, code, functions, tracebacks and
generators; repetition and padding refuse results above the size limit before building them; `call()`
resolves its path per call and refuses the modules it may never reach.
"""

from __future__ import annotations

import array
import ast
import collections
import hashlib
import importlib
import json
import re
import sys
import threading
import types
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

# Bounds on the source: a longer or deeper expression is refused at load (with its file:line:column),
# before the parser or compiler could recurse out of the stack.
MAX_EXPRESSION_CHARS = 2000
MAX_EXPRESSION_DEPTH = 40
MAX_EXPRESSION_NODES = 400

# Modules `call()` never reaches, even when `call_modules:` lists them: they run programs, load code or
# native libraries, or reach the interpreter itself.
NEVER_CALL_MODULES = frozenset({
    "builtins", "os", "posix", "nt", "sys", "subprocess", "_posixsubprocess", "importlib", "ctypes", "_ctypes",
    "pickle", "_pickle", "marshal", "shutil", "runpy", "code", "codeop", "gc", "inspect", "types", "operator",
    "io", "_io", "pty", "socket", "multiprocessing",
})


class ExpressionError(ValueError):
    """An expression that is not valid in the audit expression language."""


class ExpressionRefused(Exception):
    """An expression tried, at run time, what the language blocks (its field is left empty)."""


class _Limit:
    """The largest str/bytes/sequence an expression may build (payload_max_bytes of the loaded config)."""

    value = 16 * 1024


def set_size_limit(max_bytes: int) -> None:
    """Bound the strings and sequences expressions build (audit.yaml's payload_max_bytes)."""
    _Limit.value = max(int(max_bytes), 1)


# The threads (by ident) evaluating expressions that may run the app's code: an audited target called
# from there runs unaudited (no event of auditrail's own reads, no recursion). A set, not a
# threading.local: the wrapper's test is one truth test while no thread evaluates (~10 ns against ~100),
# and marking is a dict store and delete (no method calls).
evaluating: dict[int, bool] = {}
get_ident = threading.get_ident


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


# --- run-time guards ------------------------------------------------------------------------------

# Objects whose attributes or items lead out of the app's data: to globals, builtins, other modules.
_FORBIDDEN_TYPES = (
    types.ModuleType, types.FrameType, types.CodeType, types.TracebackType, types.FunctionType,
    types.BuiltinFunctionType, types.GeneratorType, types.CoroutineType, types.AsyncGeneratorType,
)
# Exact types known not to be forbidden: the fast path of `_guard_owner` is one set lookup. Proxies
# (werkzeug LocalProxy, Django SimpleLazyObject) report another __class__ and are never cached, so
# each access checks what they stand for.
_SAFE_TYPES: set[type] = {str, int, float, bool, type(None), dict, list, tuple, bytes}
_MAX_SAFE_TYPES = 4096


def _guard_owner(obj: Any) -> Any:
    """`obj` if attributes and items of it may be read; raises ExpressionRefused otherwise."""
    if isinstance(obj, _FORBIDDEN_TYPES):
        kind = "a module" if isinstance(obj, types.ModuleType) else f"a {type(obj).__name__} object"
        raise ExpressionRefused(f"attribute and item access on {kind} is not allowed in audit expressions")
    kind = type(obj)
    if obj.__class__ is kind and len(_SAFE_TYPES) < _MAX_SAFE_TYPES:
        _SAFE_TYPES.add(kind)
    return obj


def _guard_key(key: Any) -> Any:
    """An item key computed at run time: never a dunder name."""
    if type(key) is str and key.startswith("__"):
        raise ExpressionRefused(f"the key {key[:40]!r} is not allowed in audit expressions")
    return key


def _too_big(size: int, what: str) -> ExpressionRefused:
    return ExpressionRefused(f"{what} would build {size} characters/items, above the limit of {_Limit.value} "
                             "(payload_max_bytes)")


_SEQUENCES = (str, bytes, bytearray, list, tuple, collections.deque, array.array)  # `*` repeats these
_NUMBERS = frozenset({int, float, bool})


def _mul(a: Any, b: Any) -> Any:
    """a * b, refusing a repeated sequence above the size limit before it is built."""
    if type(a) in _NUMBERS and type(b) in _NUMBERS:
        return a * b
    if isinstance(a, _SEQUENCES) and isinstance(b, int):
        size = len(a) * b
    elif isinstance(b, _SEQUENCES) and isinstance(a, int):
        size = len(b) * a
    else:
        return a * b
    if size > _Limit.value:
        raise _too_big(size, "repetition")
    return a * b


# printf-style conversions: %[(key)][flags][width][.precision]
_PRINTF = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")
_PRINTF_BYTES = re.compile(_PRINTF.pattern.encode())


def _check_printf(fmt: str | bytes) -> None:
    pattern = _PRINTF if isinstance(fmt, str) else _PRINTF_BYTES
    star = "*" if isinstance(fmt, str) else b"*"
    for width, precision in pattern.findall(fmt):
        for number in (width, precision):
            if number == star:
                raise ExpressionRefused("a '*' width or precision in %-formatting is not allowed in audit expressions")
            if number and (len(number) > 9 or int(number) > _Limit.value):
                raise _too_big(int(number[:12]), "%-formatting")


def _mod(a: Any, b: Any) -> Any:
    """a % b, refusing %-formatting whose width or precision exceeds the size limit."""
    if isinstance(a, (str, bytes)):
        _check_printf(a)
    return a % b


_DIGITS = re.compile(r"\d+")


def _check_format_spec(spec: str) -> None:
    for number in _DIGITS.findall(spec):
        if len(number) > 9 or int(number) > _Limit.value:
            raise _too_big(int(number[:12]), f"the format spec {spec[:40]!r}")


class _Formatted:
    """An f-string value whose format spec is checked before formatting (a width can allocate GBs)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __format__(self, spec: str) -> str:
        _check_format_spec(spec)
        return format(self.value, spec)


_CONVERSIONS: dict[int, Callable[[Any], str]] = {ord("s"): str, ord("r"): repr, ord("a"): ascii}


def _formatted(value: Any, conversion: int) -> _Formatted:
    return _Formatted(value if conversion == -1 else _CONVERSIONS[conversion](value))


def _width(args: tuple[Any, ...], kwargs: dict[str, Any], name: str, default: int) -> int:
    value = args[0] if args else kwargs.get(name, default)
    return value if isinstance(value, int) else default


def _growth(obj: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[int, tuple[Any, ...]]:
    """The size the call `obj.name(*args, **kwargs)` would build, and the args to call it with."""
    n = len(obj) if isinstance(obj, _SEQUENCES) else 0
    if name in ("ljust", "rjust", "center", "zfill"):
        return max(n, _width(args, kwargs, "width", 0)), args
    if name == "expandtabs":
        return n + obj.count("\t" if isinstance(obj, str) else b"\t") * max(_width(args, kwargs, "tabsize", 8), 0), args
    if name == "replace":
        old = args[0] if args else kwargs.get("old", "")
        new = args[1] if len(args) > 1 else kwargs.get("new", "")
        count = args[2] if len(args) > 2 else kwargs.get("count", -1)
        occurrences = n + 1 if not old else obj.count(old)
        if isinstance(count, int) and count >= 0:
            occurrences = min(occurrences, count)
        return n + occurrences * max(len(new) - len(old), 0), args
    if name == "join":
        items = list(args[0]) if args else []
        lengths = sum(len(i) for i in items if isinstance(i, _SEQUENCES))
        return lengths + n * max(len(items) - 1, 0), (items, *args[1:])
    if name == "translate" and isinstance(obj, str):
        table = args[0] if args else kwargs.get("table")
        if not isinstance(table, dict):
            raise ExpressionRefused("str.translate() with a table that is not a dict is not allowed in audit expressions")
        longest = max((len(v) for v in table.values() if isinstance(v, str)), default=1)
        return n * max(longest, 1), args
    if name == "to_bytes":
        return _width(args, kwargs, "length", 1), args
    return n, args


# Methods of str/bytes/int whose result can be far larger than their inputs.
_GROWTH_METHODS = frozenset({"ljust", "rjust", "center", "zfill", "expandtabs", "replace", "join", "translate",
                             "to_bytes"})
_GROWTH_OWNERS = (str, bytes, bytearray, int)


def _grow(obj: Any, name: str) -> Any:
    """obj.name for a method that can grow its result: bounded for str/bytes/int, plain otherwise."""
    method = getattr(_guard_owner(obj), name)
    if not isinstance(obj, _GROWTH_OWNERS):
        return method  # e.g. datetime.replace: the app's own objects

    def bounded(*args: Any, **kwargs: Any) -> Any:
        size, args = _growth(obj, name, args, kwargs)
        if size > _Limit.value:
            raise _too_big(size, f"{type(obj).__name__}.{name}()")
        return method(*args, **kwargs)

    return bounded


# --- call("module:path") ----------------------------------------------------------------------------

_call_paths: dict[str, tuple[str, tuple[str, ...]]] = {}


def _top(module: str) -> str:
    return module.partition(".")[0]


def _split_call_spec(spec: str) -> tuple[str, tuple[str, ...]]:
    """`module:attr.path` -> (module, attribute names), refusing dunders and the never-callable modules."""
    module, sep, path = spec.partition(":")
    parts = tuple(path.split("."))
    if not sep or not all(p.isidentifier() for p in (*module.split("."), *parts)):
        raise ExpressionError(f'call() needs "module:function", e.g. call("app.billing:get_plan", tenant_id), not {spec!r}')
    if any(p.startswith("__") for p in (*module.split("."), *parts)):
        raise ExpressionError(f"call({spec!r}): dunder names are not allowed")
    if _top(module) in NEVER_CALL_MODULES or module in NEVER_CALL_MODULES:
        raise ExpressionError(f"call({spec!r}): audit expressions can never call into {_top(module)!r}")
    return module, parts


def resolve_callable(spec: str) -> Any:
    """Import `module:attr.path` (the import is kept) and resolve the attribute path now.

    The path is resolved on every call, never cached: `flask_login:current_user.get_id` goes through a
    werkzeug LocalProxy that stands for the current request's user.
    """
    path = _call_paths.get(spec)
    if path is None:
        path = _call_paths[spec] = _split_call_spec(spec)
    module_name, parts = path
    module = obj = sys.modules.get(module_name)  # the app's module as loaded now (a reload replaces it)
    if module is None:
        module = obj = importlib.import_module(module_name)
    for part in parts:
        if isinstance(obj, types.ModuleType):
            # A module on the way: only one of the call's own package (not `app:os.system`).
            if obj is not module and _top(getattr(obj, "__name__", "")) != _top(module_name):
                raise ExpressionRefused(f"call({spec!r}) passes through module {obj.__name__!r}, outside {_top(module_name)!r}")
        elif type(obj) not in _SAFE_TYPES:
            _guard_owner(obj)
        obj = getattr(obj, part)
    owner = getattr(obj, "__module__", None)
    if isinstance(owner, str) and _top(owner) in NEVER_CALL_MODULES:
        raise ExpressionRefused(f"call({spec!r}) reaches {owner}, which audit expressions can never call")
    return obj


def _call(spec: str, *args: Any, **kwargs: Any) -> Any:
    """Call the app's own function `module:attr.path` (module imported once, path resolved per call)."""
    return resolve_callable(spec)(*args, **kwargs)


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

# The names the rewritten trees use (`_Guard`); an expression cannot spell them (no name may start "__").
_GUARDS: dict[str, Any] = {
    "__type": type, "__SAFE": _SAFE_TYPES, "__own": _guard_owner, "__key": _guard_key, "__mul": _mul,
    "__mod": _mod, "__fmt": _formatted, "__grow": _grow, "__evaluating": evaluating,
    "__get_ident": get_ident,
}
_GLOBALS: dict[str, Any] = {"__builtins__": {}, **FUNCTIONS, **_GUARDS}

# str.format can walk attributes ("{0.__class__}"), which would bypass the private-attribute rule.
_FORBIDDEN_METHODS = frozenset({"format", "format_map"})

_ALLOWED_NODES = (
    ast.Expression, ast.Name, ast.Load, ast.Attribute, ast.Subscript, ast.Slice, ast.Constant,
    ast.Call, ast.keyword, ast.List, ast.Tuple, ast.Dict, ast.BoolOp, ast.And, ast.Or,
    ast.UnaryOp, ast.Not, ast.USub, ast.UAdd, ast.BinOp, ast.Add, ast.Sub, ast.Mult, ast.Div,
    ast.FloorDiv, ast.Mod, ast.Compare, ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE,
    ast.In, ast.NotIn, ast.Is, ast.IsNot, ast.IfExp, ast.JoinedStr, ast.FormattedValue,
)
_DUNDER = re.compile(r"__\w+__")


class Expression:
    """One compiled expression; `evaluate(namespace)` runs it against a call's names."""

    __slots__ = ("source", "names", "tree", "runs_app_code", "_code")

    def __init__(self, source: str, tree: ast.expr, names: frozenset[str], runs_app_code: bool = False) -> None:
        self.source = source
        self.tree = tree  # the checked, guarded expression node (codegen.py inlines it into generated code)
        self._code = compile(ast.fix_missing_locations(ast.Expression(tree)), "<audit.yaml>", "eval")
        self.names = names  # the call names it reads, e.g. {"tenant_id", "result"}
        # Calls a method, call(), or reads an attribute or item (a property, __getitem__): may reach an
        # audited target, so it is evaluated with re-entry blocked.
        self.runs_app_code = runs_app_code

    def evaluate(self, namespace: dict[str, Any]) -> Any:
        """Evaluate against `namespace` (may raise whatever the app's objects raise)."""
        ident = get_ident()
        if ident in evaluating:
            return eval(self._code, _GLOBALS, namespace)  # noqa: S307 - the AST was checked node by node
        evaluating[ident] = True  # audited targets it reaches run unaudited
        try:
            return eval(self._code, _GLOBALS, namespace)  # noqa: S307
        finally:
            del evaluating[ident]

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"


def _check(tree: ast.AST, allowed_names: Iterable[str] | None, call_modules: frozenset[str] | None) -> frozenset[str]:
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
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and _DUNDER.search(node.value):
            raise ExpressionError(f"the string {node.value[:40]!r} names a dunder, which is not allowed")
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) and \
                isinstance(node.slice.value, str) and node.slice.value.startswith("__"):
            raise ExpressionError(f"the key {node.slice.value[:40]!r} is not allowed")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id not in FUNCTIONS:
                raise ExpressionError(
                    f"unknown function {node.func.id!r} (available: {', '.join(sorted(FUNCTIONS))})"
                )
            if node.func.id == "call":
                _check_call_target(node, call_modules)
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


def call_module_allowed(module: str, call_modules: Iterable[str]) -> bool:
    """True when `module` is one of `call_modules` or inside one of them."""
    return any(module == m or module.startswith(m + ".") for m in call_modules)


def _check_call_target(node: ast.Call, call_modules: frozenset[str] | None) -> None:
    """`call(...)` starts with a literal "module:function" string, checked now rather than at first use."""
    first = node.args[0] if node.args else None
    if not isinstance(first, ast.Constant) or not isinstance(first.value, str) or ":" not in first.value:
        raise ExpressionError('call() needs a literal "module:function" first, e.g. call("app.billing:get_plan", tenant_id)')
    module, _ = _split_call_spec(first.value)
    if call_modules is not None and not call_module_allowed(module, call_modules):
        allowed = ", ".join(sorted(call_modules)) or "none"
        raise ExpressionError(f"call({first.value!r}): module {module!r} is not in call_modules (allowed: {allowed}); "
                              "list it under call_modules: if audit.yaml may call it")


class _Guard(ast.NodeTransformer):
    """Rewrites a checked tree so what is only known at run time is checked where it happens.

    `x.attr` becomes `(t if type(t := x) in SAFE else own(t)).attr`: one set lookup on the exact type
    when it is known safe, a full check (and caching) otherwise. Growth methods, `*`, `%` and formatted
    values go through bounded helpers. Names the rewrite introduces start with `__`, which no expression
    can spell.
    """

    def __init__(self) -> None:
        self.temps = 0

    def _owner(self, value: ast.expr) -> ast.expr:
        # A constant is not an object to guard; nor are `self` and `cls`, the target's own instance or
        # class (what is read from them is guarded: `self.os.system` stops at `.system`).
        if isinstance(value, ast.Constant) or (isinstance(value, ast.Name) and value.id in ("self", "cls")):
            return value
        name = f"__t{self.temps}"
        self.temps += 1
        return ast.IfExp(
            test=ast.Compare(
                left=ast.Call(ast.Name("__type", ast.Load()), [ast.NamedExpr(ast.Name(name, ast.Store()), value)], []),
                ops=[ast.In()], comparators=[ast.Name("__SAFE", ast.Load())]),
            body=ast.Name(name, ast.Load()),
            orelse=ast.Call(ast.Name("__own", ast.Load()), [ast.Name(name, ast.Load())], []))

    def visit_Attribute(self, node: ast.Attribute) -> ast.expr:
        value = self.visit(node.value)
        if node.attr in _GROWTH_METHODS:
            return ast.Call(ast.Name("__grow", ast.Load()), [value, ast.Constant(node.attr)], [])
        return ast.Attribute(self._owner(value), node.attr, ast.Load())

    def visit_Subscript(self, node: ast.Subscript) -> ast.expr:
        value = self.visit(node.value)
        key = self.visit(node.slice)
        if not isinstance(key, (ast.Constant, ast.Slice)):
            key = ast.Call(ast.Name("__key", ast.Load()), [key], [])
        return ast.Subscript(self._owner(value), key, ast.Load())

    def visit_BinOp(self, node: ast.BinOp) -> ast.expr:
        left, right = self.visit(node.left), self.visit(node.right)
        consts = isinstance(left, ast.Constant) and isinstance(right, ast.Constant)
        if isinstance(node.op, ast.Mult):
            if consts:
                if _sized_repeat(left.value, right.value):  # type: ignore[attr-defined]
                    _mul(left.value, right.value)  # type: ignore[attr-defined] # at load: refuses a huge one
                return ast.BinOp(left, node.op, right)
            return ast.Call(ast.Name("__mul", ast.Load()), [left, right], [])
        if isinstance(node.op, ast.Mod):
            if isinstance(left, ast.Constant):
                if isinstance(left.value, (str, bytes)):
                    _check_printf(left.value)  # at load: a constant format is checked once
                return ast.BinOp(left, node.op, right)
            return ast.Call(ast.Name("__mod", ast.Load()), [left, right], [])
        return ast.BinOp(left, node.op, right)

    def visit_FormattedValue(self, node: ast.FormattedValue) -> ast.expr:
        value = self.visit(node.value)
        spec = node.format_spec
        if spec is None:
            return ast.FormattedValue(value, node.conversion, None)
        if all(isinstance(v, ast.Constant) for v in spec.values):  # type: ignore[attr-defined]
            _check_format_spec("".join(str(v.value) for v in spec.values))  # type: ignore[attr-defined]
            return ast.FormattedValue(value, node.conversion, self.visit(spec))
        wrapped = ast.Call(ast.Name("__fmt", ast.Load()), [value, ast.Constant(node.conversion)], [])
        return ast.FormattedValue(wrapped, -1, self.visit(spec))


def _sized_repeat(a: Any, b: Any) -> bool:
    return (isinstance(a, _SEQUENCES) and isinstance(b, int)) or (isinstance(b, _SEQUENCES) and isinstance(a, int))


def _depth(tree: ast.AST) -> int:
    """Nesting depth of `tree`, computed without recursion."""
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return deepest


def compile_expression(source: str, allowed_names: Iterable[str] | None = None,
                       call_modules: Iterable[str] | None = None) -> Expression:
    """Parse and check `source`; `allowed_names` (when known) limits the names it may read and
    `call_modules` (when given) the modules call() may reach."""
    if not isinstance(source, str) or not source.strip():
        raise ExpressionError("an expression must be a non-empty string")
    if len(source) > MAX_EXPRESSION_CHARS:
        raise ExpressionError(f"the expression is {len(source)} characters long; the limit is {MAX_EXPRESSION_CHARS}")
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"syntax error in {source!r}: {exc.msg}") from None
    except (RecursionError, MemoryError):
        raise ExpressionError(f"the expression is nested too deeply (limit {MAX_EXPRESSION_DEPTH} levels)") from None
    if _depth(tree) > MAX_EXPRESSION_DEPTH:
        raise ExpressionError(f"the expression is nested too deeply (limit {MAX_EXPRESSION_DEPTH} levels)")
    nodes = sum(1 for _ in ast.walk(tree))
    if nodes > MAX_EXPRESSION_NODES:
        raise ExpressionError(f"the expression has {nodes} syntax nodes; the limit is {MAX_EXPRESSION_NODES}")
    names = _check(tree, allowed_names, None if call_modules is None else frozenset(call_modules))
    try:
        guarded = _Guard().visit(tree.body)
    except ExpressionRefused as exc:  # a constant part already over a limit
        raise ExpressionError(str(exc)) from None
    runs_app_code = any(isinstance(n, (ast.Attribute, ast.Subscript)) or (
        isinstance(n, ast.Call) and (not isinstance(n.func, ast.Name) or n.func.id == "call")) for n in ast.walk(tree))
    return Expression(source, guarded, names, runs_app_code)


def constant(value: Any) -> Expression:
    """An expression that always yields `value` (for literals written in YAML, e.g. numbers)."""
    return Expression(repr(value), ast.Constant(value), frozenset())
