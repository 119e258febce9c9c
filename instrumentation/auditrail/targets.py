"""Static target checks: a target's module is found on sys.path and parsed, never executed.

`module:function`, `module:Class.method` and `module:instance.method` (an object the module creates,
e.g. `hijack.signals:hijack_started.send` where `hijack_started = Signal()`) resolve to the definition
in the source: through `from x import y` re-exports and base classes, to the def whose parameter names
the expressions may use. Where the source cannot tell (a star import, a dynamic base, a `__getattr__`,
an attribute set at run time), the target is accepted and its names are checked when it is wrapped.
"""

from __future__ import annotations

import ast
import importlib.machinery
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

_HOPS = 8  # re-exports and bases followed from one name


class TargetError(ValueError):
    """A target that cannot exist (module, attribute or method missing; a class instead of a callable)."""


@dataclass(frozen=True)
class _Def:
    """A definition found in a module's source: a def/class, or an instance of a class (`x = Cls(...)`)."""

    module: str
    node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
    instance: bool = False


_UNKNOWN = object()  # exists (or may), shape unknown statically
_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


class TargetResolver:
    """Finds a target's module on sys.path and its definition in the source, returning its parameters."""

    def __init__(self) -> None:
        self._trees: dict[str, tuple[ast.Module, bool] | None] = {}

    def parameters(self, module: str, qualname: str) -> list[str] | None:
        """Parameter names of `module:qualname`, None when they cannot be known statically.

        Raises TargetError when the target cannot exist.
        """
        if self._load(module, strict=True) is None:
            return None
        scope: object = module
        parts = qualname.split(".")
        for depth, part in enumerate(parts):
            found = self._member(scope, part, 0)
            if found is None:
                raise TargetError(f"impossible target: {_describe(module, parts[:depth], scope)} defines no {part!r}")
            if found is _UNKNOWN:
                return None
            scope = found
        assert isinstance(scope, _Def)
        if isinstance(scope.node, ast.ClassDef) and scope.instance:  # a callable object: its __call__
            call = self._in_class(scope, "__call__", 0)
            if call is None:
                raise TargetError(f"impossible target: {module}:{qualname} is an instance of "
                                  f"{scope.module}.{scope.node.name}, which is not callable; target one of its methods")
            if not isinstance(call, _Def):
                return None
            scope = call
        if isinstance(scope.node, ast.ClassDef):
            raise TargetError(f"impossible target: {module}:{qualname} is a class; target one of its methods")
        args = scope.node.args
        names = [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)]
        return names + [a.arg for a in (args.vararg, args.kwarg) if a is not None]

    # --- modules -------------------------------------------------------------------------------------

    def _load(self, module: str, *, strict: bool) -> tuple[ast.Module, bool] | None:
        """(tree, is_package) of `module`'s source, None if it has none; strict: a missing module raises."""
        if module in self._trees:
            return self._trees[module]
        try:
            spec = find_spec_without_running(module)
        except (ImportError, ValueError) as exc:
            if strict:
                raise TargetError(f"impossible target: cannot import {module!r} ({exc})") from None
            spec = None
        if spec is None and strict:
            raise TargetError(f"impossible target: module {module!r} not found on sys.path "
                              f"(run from the app's directory or set PYTHONPATH; searched {', '.join(sys.path[:4])}, ...)")
        loaded = None
        if spec is not None and spec.origin and spec.origin.endswith(".py"):
            try:
                tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"), spec.origin)
                loaded = (tree, spec.submodule_search_locations is not None)
            except (OSError, SyntaxError, ValueError, RecursionError, MemoryError):
                loaded = None
        self._trees[module] = loaded
        return loaded

    # --- names -----------------------------------------------------------------------------------------

    def _member(self, scope: object, name: str, hops: int) -> _Def | object | None:
        """`name` looked up in a module (by name) or in a class/instance (a _Def)."""
        if hops > _HOPS:
            return _UNKNOWN
        if isinstance(scope, str):
            return self._in_module(scope, name, hops)
        assert isinstance(scope, _Def)
        if not isinstance(scope.node, ast.ClassDef):
            return _UNKNOWN  # an attribute of a function: set at run time, if at all
        return self._in_class(scope, name, hops)

    def _in_module(self, module: str, name: str, hops: int) -> _Def | object | None:
        loaded = self._load(module, strict=False)
        if loaded is None:
            return _UNKNOWN
        tree, is_package = loaded
        binding = _binding(tree.body, name)
        if binding is None:
            return _UNKNOWN if is_package and _has_submodule(module, name) else None
        if isinstance(binding, _DEFS):
            return _Def(module, binding)
        if isinstance(binding, ast.ImportFrom):
            alias = next(a for a in binding.names if (a.asname or a.name) == name)
            source = _absolute(module, is_package, binding)
            if source is None:
                return _UNKNOWN
            found = self._in_module(source, alias.name, hops + 1)
            # `from package import submodule` binds a module: not resolved further
            return _UNKNOWN if found is None else found
        if isinstance(binding, ast.Assign) and isinstance(binding.value, ast.Call):
            cls = self._class_of(module, binding.value.func, hops + 1)
            return _Def(cls.module, cls.node, instance=True) if isinstance(cls, _Def) else _UNKNOWN
        return _UNKNOWN

    def _class_of(self, module: str, expr: ast.expr, hops: int) -> _Def | object:
        """The class `expr` names in `module`, or _UNKNOWN: a name, or one of an imported module such as
        `admin.ModelAdmin` (`from django.contrib import admin`: the way most Django admins subclass it)."""
        if isinstance(expr, ast.Name):
            found = self._in_module(module, expr.id, hops)
        elif isinstance(expr, ast.Attribute) and (owner := self._module_of(module, expr.value, hops)) is not None:
            found = self._in_module(owner, expr.attr, hops + 1)
        else:
            return _UNKNOWN
        if isinstance(found, _Def) and isinstance(found.node, ast.ClassDef) and not found.instance:
            return found
        return _UNKNOWN

    def _module_of(self, module: str, expr: ast.expr, hops: int) -> str | None:
        """The module `expr` (`admin`, `dj.contrib.admin`) names in `module` through its imports, else None."""
        if isinstance(expr, ast.Attribute):
            owner = self._module_of(module, expr.value, hops)
            return f"{owner}.{expr.attr}" if owner is not None and _has_submodule(owner, expr.attr) else None
        loaded = self._load(module, strict=False) if isinstance(expr, ast.Name) and hops <= _HOPS else None
        if loaded is None:
            return None
        tree, is_package = loaded
        binding = _binding(tree.body, expr.id)
        if isinstance(binding, ast.Import):  # `import a.b` binds `a`; `import a.b as c` binds a.b
            alias = next(a for a in binding.names if (a.asname or a.name.split(".")[0]) == expr.id)
            return alias.name if alias.asname else expr.id
        if isinstance(binding, ast.ImportFrom):  # `from django.contrib import admin`: a submodule, or not a module
            alias = next(a for a in binding.names if (a.asname or a.name) == expr.id)
            source = _absolute(module, is_package, binding)
            return f"{source}.{alias.name}" if source and _has_submodule(source, alias.name) else None
        return None

    def _in_class(self, scope: _Def, name: str, hops: int) -> _Def | object | None:
        cls = scope.node
        assert isinstance(cls, ast.ClassDef)
        binding = _binding(cls.body, name)
        if isinstance(binding, _DEFS):
            return _Def(scope.module, binding)
        if binding is not None:
            return _UNKNOWN  # a class attribute: its value's shape is unknown
        if _binding(cls.body, "__getattr__") is not None:
            return _UNKNOWN  # __getattr__ may supply it
        if scope.instance and _sets_attribute(cls, name):
            return _UNKNOWN  # self.name = ... in a method
        for base in cls.bases:
            base_cls = self._class_of(scope.module, base, hops + 1)
            if base_cls is _UNKNOWN:
                if isinstance(base, ast.Name) and base.id == "object":
                    continue
                return _UNKNOWN
            assert isinstance(base_cls, _Def)
            found = self._in_class(_Def(base_cls.module, base_cls.node, scope.instance), name, hops + 1)
            if found is not None:
                return found
        return None


def _has_submodule(package: str, name: str) -> bool:
    try:
        return find_spec_without_running(f"{package}.{name}") is not None
    except (ImportError, ValueError):
        return False


def _describe(module: str, parts: list[str], scope: object) -> str:
    where = module if not parts else f"{module}:{'.'.join(parts)}"
    if isinstance(scope, _Def) and scope.instance:
        return f"{where} (an instance of {scope.module}.{scope.node.name})"
    return where


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str | None:
    """The absolute module name of a `from ... import` in `module`."""
    if not node.level:
        return node.module
    package = module.split(".") if is_package else module.split(".")[:-1]
    if node.level - 1 > len(package) - 1:
        return None
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base) or None


def _sets_attribute(cls: ast.ClassDef, name: str) -> bool:
    """True if a method of `cls` assigns `self.<name>`."""
    return any(isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store) and n.attr == name
               and isinstance(n.value, ast.Name) and n.value.id == "self" for n in ast.walk(cls))


def _binding(body: list[ast.stmt], name: str) -> ast.stmt | None:
    """The statement that binds `name` in `body`: the last def/class, else the first other binding (a
    star import that may bind it comes back as `pass`: unknown)."""
    definition: ast.stmt | None = None
    other: ast.stmt | None = None
    for node in _flatten(body):
        if isinstance(node, _DEFS) and node.name == name:
            definition = node  # the last definition wins, as at run time
        elif other is None and _binds(node, name):
            other = node
        elif other is None and isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names):
            other = ast.Pass()
    return definition or other


def _flatten(body: list[ast.stmt]) -> list[ast.stmt]:
    """Statements of a body including those under if/try (definitions guarded by version checks)."""
    out: list[ast.stmt] = []
    for node in body:
        out.append(node)
        if isinstance(node, (ast.If, ast.Try)):
            for part in ("body", "orelse", "finalbody"):
                out.extend(_flatten(getattr(node, part, [])))
            for handler in getattr(node, "handlers", []):
                out.extend(_flatten(handler.body))
    return out


def _binds(node: ast.stmt, name: str) -> bool:
    if isinstance(node, ast.Assign):
        return any(isinstance(t, ast.Name) and t.id == name for t in node.targets)
    if isinstance(node, ast.AnnAssign):
        return isinstance(node.target, ast.Name) and node.target.id == name
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return any((a.asname or a.name.split(".")[0]) == name for a in node.names)
    return False


def find_spec_without_running(module: str) -> importlib.machinery.ModuleSpec | None:
    """Locate a module like importlib.util.find_spec, but without executing its parent packages."""
    if module in sys.modules:
        return getattr(sys.modules[module], "__spec__", None) or importlib.util.find_spec(module)
    search: list[str] | None = None
    spec = None
    parts = module.split(".")
    for depth in range(1, len(parts) + 1):
        name = ".".join(parts[:depth])
        spec = importlib.machinery.PathFinder.find_spec(name, search)
        if spec is None:
            return importlib.util.find_spec(module) if depth == 1 and name in sys.builtin_module_names else None
        search = list(spec.submodule_search_locations or [])
        if depth < len(parts) and not search:
            return None  # a plain module has no submodules
    return spec
