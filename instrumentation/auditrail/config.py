"""audit.yaml: loading, validation with file:line:column messages, and the compiled result."""

from __future__ import annotations

import ast
import difflib
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import semconv
from .approvals import ApprovalsConfig, ApprovalSpec, parse_approval, parse_approvals, warn_without_service
from .events import EVENT_NAME_RE, IMPERSONATION_END, IMPERSONATION_START, REQUIRED_PAYLOAD
from .expressions import (
    CALL_NAMES,
    NEVER_CALL_MODULES,
    Expression,
    ExpressionError,
    compile_expression,
    constant,
    set_size_limit,
)
from .context import REQUEST_ATTRIBUTES
from .payload import DEFAULT_MAX_BYTES
from .targets import TargetError, TargetResolver

CONFIG_ENV = "AUDITRAIL_CONFIG"
DEFAULT_CONFIG = "audit.yaml"
DELIVERY_MODES = ("durable", "fail_closed", "best_effort")

TOP_KEYS = ("service_name", "delivery", "integrity", "context", "redact", "redact_allow", "payload_max_bytes", "resource",
            "call_modules", "approvals", "events", "integrations")
DELIVERY_KEYS = ("mode", "spool_dir", "max_bytes", "on_full")
ON_FULL = ("block", "refuse")
INTEGRITY_KEYS = ("checkpoint_every", "checkpoint_seconds", "signing_key_file")
CONTEXT_KEYS = ("actor", "tenant", "source_ip", "impersonation")
IMPERSONATION_KEYS = ("marker",)
FIELD_KEYS = ("tenant", "actor", "reason", "source_ip", "approval_id", "when")
PAYLOAD_KEYS = ("before", "after", "payload")
EVENT_KEYS = ("target", "event", "risk", "actor_type", *FIELD_KEYS, *PAYLOAD_KEYS, "impersonation", "approval")


class ConfigError(ValueError):
    """A mistake in audit.yaml; the message names the file, line, column and key."""


class ConfigWarning(UserWarning):
    """Something in audit.yaml that works but is probably not what was meant."""


PayloadSpec = Expression | dict[str, Expression] | None


@dataclass
class EventSpec:
    """One `events:` entry, compiled."""

    target: str
    module: str
    qualname: str
    event: str
    risk: str | None
    actor_type: str | Expression | None  # a literal word, or an expression giving one
    fields: dict[str, Expression]  # tenant, actor, reason, source_ip, approval_id, when; marker (impersonation)
    before: PayloadSpec
    after: PayloadSpec
    payload: PayloadSpec
    where: str  # "file:line" for messages at run time
    approval: ApprovalSpec | None = None  # `approval:`: runs only with a granted approval (approvals.py)


@dataclass
class DeliveryConfig:
    """`delivery:`: how events are kept until exported."""

    mode: str = "durable"
    spool_dir: str = ".auditrail/spool"
    max_bytes: int = 1 << 30  # disk cap of the spool
    on_full: str = "block"  # durable at the cap: block the audited call until there is room, or refuse it


@dataclass
class IntegrityConfig:
    """`integrity:`: hash-chain checkpoints and the key that signs them."""

    checkpoint_every: int = 1000  # events
    checkpoint_seconds: float = 60.0
    signing_key_file: str | None = None  # else AUDITRAIL_SIGNING_KEY(_FILE), else a generated key (warned)


@dataclass
class AuditConfig:
    """A loaded, validated audit.yaml."""

    path: str | None = None
    service_name: str = "unknown_service"
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    integrity: IntegrityConfig = field(default_factory=IntegrityConfig)
    context: dict[str, list[Expression]] = field(default_factory=dict)  # actor, tenant, source_ip, marker
    redact: list[str] = field(default_factory=list)  # added to the built-in deny-list (redaction.py)
    redact_allow: list[str] = field(default_factory=list)  # whole keys kept although a deny term matches
    payload_max_bytes: int = DEFAULT_MAX_BYTES
    resource: dict[str, str] = field(default_factory=dict)
    call_modules: list[str] = field(default_factory=list)  # what call() may reach (default: the targets' packages)
    events: list[EventSpec] = field(default_factory=list)
    # integrations: name -> checked options ({}: defaults), None: turned off; absent: on when importable
    integrations: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    approvals: ApprovalsConfig | None = None  # the approval service (`approvals: {url, token}`)


# --- YAML with positions --------------------------------------------------------------------------

Path_ = tuple[Any, ...]

# Bounds on the document: YAML aliases repeat a node without repeating its text (a few hundred bytes can
# stand for billions of nodes), and deep nesting recurses.
MAX_YAML_NODES = 20_000
MAX_YAML_DEPTH = 32


class _Located:
    """Plain Python values from a YAML document, plus the position of every node by its key path."""

    call_modules: frozenset[str] | None = None  # what call() may reach; None: not restricted (code)

    def __init__(self, filename: str, text: str, *, positions: bool = True) -> None:
        self.filename = filename
        self.positions = positions  # False for entries given in code: the YAML positions would mislead
        self.marks: dict[Path_, tuple[int, int]] = {}
        self.nodes = 0
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            self.value = None if node is None else self._convert(loader, node, ())
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            where = f"{filename}:{mark.line + 1}:{mark.column + 1}" if mark else filename
            raise ConfigError(f"{where}: invalid YAML: {exc.problem or exc}") from None
        except RecursionError:
            raise ConfigError(f"{filename}: invalid YAML: nested too deeply (limit {MAX_YAML_DEPTH} levels)") from None
        finally:
            loader.dispose()

    def _convert(self, loader: yaml.SafeLoader, node: yaml.Node, path: Path_) -> Any:
        self.nodes += 1
        if self.nodes > MAX_YAML_NODES or len(path) > MAX_YAML_DEPTH:
            where = f"{self.filename}:{node.start_mark.line + 1}:{node.start_mark.column + 1}"
            limit = (f"more than {MAX_YAML_NODES} values (YAML aliases count each time they are used)"
                     if self.nodes > MAX_YAML_NODES else f"nested deeper than {MAX_YAML_DEPTH} levels")
            raise ConfigError(f"{where}: the document has {limit}; audit.yaml is refused")
        # A mapping value's path already holds its key's position (set by the parent): keep it.
        self.marks.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    raise ConfigError(f"{self.filename}:{key_node.start_mark.line + 1}:{key_node.start_mark.column + 1}: "
                                      f"{_dotted(path)}: a key must be a plain value, not a list or mapping")
                key = loader.construct_object(key_node, deep=True)
                if key in out:
                    line = key_node.start_mark.line + 1
                    raise ConfigError(f"{self.filename}:{line}:{key_node.start_mark.column + 1}: "
                                      f"{_dotted(path + (key,))}: duplicate key")
                self.marks[path + (key,)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                out[key] = self._convert(loader, value_node, path + (key,))
                # Point at the value for value errors, but keep the key's mark for unknown-key errors.
                self.marks[path + (key, "<value>")] = (value_node.start_mark.line + 1, value_node.start_mark.column + 1)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self._convert(loader, item, path + (i,)) for i, item in enumerate(node.value)]
        return loader.construct_object(node, deep=True)

    def error(self, path: Path_, message: str, *, at_value: bool = True) -> ConfigError:
        """A ConfigError located at `path`."""
        mark = (self.marks.get(path + ("<value>",)) if at_value else None) or self.marks.get(path)
        probe = path
        while mark is None and probe:
            probe = probe[:-1]
            mark = self.marks.get(probe)
        where = f"{self.filename}:{mark[0]}:{mark[1]}" if mark and self.positions else self.filename
        label = _dotted(path)
        return ConfigError(f"{where}: {label + ': ' if label else ''}{message}")

    def line(self, path: Path_) -> str:
        mark = self.marks.get(path)
        return f"{self.filename}:{mark[0]}" if mark and self.positions else self.filename


def _dotted(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# --- loading --------------------------------------------------------------------------------------


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The audit.yaml to use: explicit, else $AUDITRAIL_CONFIG, else ./audit.yaml if it exists."""
    if explicit:
        return Path(explicit)
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env)
    default = Path.cwd() / DEFAULT_CONFIG
    return default if default.exists() else None


def load_config(path: str | os.PathLike[str], *, check_targets: bool = False) -> AuditConfig:
    """Load and validate an audit.yaml; `check_targets` also proves every target exists (without running it)."""
    filename = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{filename}: cannot read audit config: {exc.strerror or exc}") from None
    return parse_config(text, filename=filename, check_targets=check_targets)


def parse_config(text: str, *, filename: str = "<audit.yaml>", check_targets: bool = False) -> AuditConfig:
    """Validate audit.yaml text and compile every expression in it."""
    doc = _Located(filename, text)
    root = doc.value
    if root is None:
        raise ConfigError(f"{filename}: the file is empty; it needs at least `service_name:` "
                          "(the built-in integrations then run with their defaults)")
    if not isinstance(root, dict):
        raise doc.error((), "the top level must be a mapping of keys such as service_name and events")
    _known_keys(doc, (), root, TOP_KEYS)
    cfg = AuditConfig(path=filename)
    if "service_name" in root:
        cfg.service_name = _string(doc, ("service_name",), root["service_name"])
    cfg.delivery = _delivery(doc, root.get("delivery"))
    cfg.integrity = _integrity(doc, root.get("integrity"))
    if "payload_max_bytes" in root:
        cfg.payload_max_bytes = _number(doc, ("payload_max_bytes",), root["payload_max_bytes"], int, 256)
    set_size_limit(cfg.payload_max_bytes)  # no expression builds a string or list larger than a payload
    cfg.call_modules = _call_modules(doc, root)
    doc.call_modules = frozenset(cfg.call_modules)
    cfg.context = _context(doc, root.get("context"))
    cfg.redact = _string_list(doc, ("redact",), root.get("redact", []))
    cfg.redact_allow = _string_list(doc, ("redact_allow",), root.get("redact_allow", []))
    resource = root.get("resource", {})
    if not isinstance(resource, dict):
        raise doc.error(("resource",), "must be a mapping of resource attribute names to values")
    cfg.resource = {str(k): str(v) for k, v in resource.items()}
    cfg.integrations = _integrations(doc, root.get("integrations"))
    cfg.approvals = parse_approvals(doc, root.get("approvals"))
    events = root.get("events")
    if "events" in root and (not isinstance(events, list) or not events):  # absent: the integrations alone
        raise doc.error(("events",), "must be a non-empty list of {target, event, ...} entries")
    resolver = TargetResolver() if check_targets else None
    cfg.events = [_event(doc, i, entry, resolver) for i, entry in enumerate(events or [])]
    _warn_unlinkable_impersonation(doc, cfg)
    warn_without_service(doc, cfg)
    return cfg


def _call_modules(doc: _Located, root: dict[Any, Any]) -> list[str]:
    """`call_modules:`, or by default the top-level packages of the config's own targets."""
    if "call_modules" not in root:
        events = root.get("events")
        targets = [e.get("target") for e in events if isinstance(e, dict)] if isinstance(events, list) else []
        return sorted({t.partition(":")[0].partition(".")[0] for t in targets if isinstance(t, str) and ":" in t}
                      - NEVER_CALL_MODULES)
    modules = _string_list(doc, ("call_modules",), root["call_modules"])
    for i, module in enumerate(modules):
        if not all(part.isidentifier() and not part.startswith("__") for part in module.split(".")):
            raise doc.error(("call_modules", i), f"{module!r} is not a module name such as myapp or myapp.auth")
        if module in NEVER_CALL_MODULES or module.partition(".")[0] in NEVER_CALL_MODULES:
            raise doc.error(("call_modules", i), f"{module!r} can never be called from audit expressions, even when "
                            f"listed (never: {', '.join(sorted(NEVER_CALL_MODULES))})")
    return modules


def _known_keys(doc: _Located, path: Path_, mapping: dict[Any, Any], allowed: tuple[str, ...]) -> None:
    for key in mapping:
        if key not in allowed:
            hint = difflib.get_close_matches(str(key), allowed, n=1)
            suggestion = f" (did you mean {hint[0]!r}?)" if hint else f" (allowed: {', '.join(allowed)})"
            if any(ch in str(key) for ch in "()[]'\""):
                # The YAML trap DESIGN.md warns about: in {...} a comma ends a plain value.
                suggestion = (" (looks like part of an expression: inside {...} a comma ends a value, "
                              "so quote expressions that contain commas or brackets, or use block style)")
            raise doc.error(path + (key,), f"unknown key {key!r}{suggestion}", at_value=False)


def _string(doc: _Located, path: Path_, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise doc.error(path, "must be a non-empty string")
    return value


def _string_list(doc: _Located, path: Path_, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise doc.error(path, "must be a list of strings")
    return list(value)


def _section(doc: _Located, name: str, value: Any, allowed: tuple[str, ...], example: str) -> dict[Any, Any]:
    """A top-level mapping section, checked for shape and unknown keys ({} when absent)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise doc.error((name,), f"must be a mapping {example}")
    _known_keys(doc, (name,), value, allowed)
    return value


def _delivery(doc: _Located, value: Any) -> DeliveryConfig:
    delivery = DeliveryConfig()
    value = _section(doc, "delivery", value, DELIVERY_KEYS, "such as {mode: durable, spool_dir: .auditrail/spool}")
    if "mode" in value:
        if value["mode"] not in DELIVERY_MODES:
            raise doc.error(("delivery", "mode"), f"must be one of {', '.join(DELIVERY_MODES)}, not {value['mode']!r}")
        delivery.mode = value["mode"]
    if "spool_dir" in value:
        delivery.spool_dir = _string(doc, ("delivery", "spool_dir"), value["spool_dir"])
    if "max_bytes" in value:
        delivery.max_bytes = _number(doc, ("delivery", "max_bytes"), value["max_bytes"], int, 1 << 20)
    if "on_full" in value:
        if value["on_full"] not in ON_FULL:
            raise doc.error(("delivery", "on_full"), f"must be one of {', '.join(ON_FULL)}, not {value['on_full']!r}")
        delivery.on_full = value["on_full"]
    return delivery


def _integrity(doc: _Located, value: Any) -> IntegrityConfig:
    integrity = IntegrityConfig()
    value = _section(doc, "integrity", value, INTEGRITY_KEYS, "such as {checkpoint_every: 1000, checkpoint_seconds: 60}")
    if "checkpoint_every" in value:
        integrity.checkpoint_every = _number(doc, ("integrity", "checkpoint_every"), value["checkpoint_every"], int, 1)
    if "checkpoint_seconds" in value:
        integrity.checkpoint_seconds = float(
            _number(doc, ("integrity", "checkpoint_seconds"), value["checkpoint_seconds"], (int, float), 0.01))
    if "signing_key_file" in value:
        integrity.signing_key_file = _string(doc, ("integrity", "signing_key_file"), value["signing_key_file"])
    return integrity


def _number(doc: _Located, path: Path_, value: Any, kind: Any, minimum: float) -> Any:
    if isinstance(value, bool) or not isinstance(value, kind) or value < minimum:
        raise doc.error(path, f"must be a number of at least {minimum:g}")
    return value


def _context(doc: _Located, value: Any) -> dict[str, list[Expression]]:
    value = _section(doc, "context", value, CONTEXT_KEYS, "with actor, tenant, source_ip and/or impersonation")
    out: dict[str, list[Expression]] = {}
    for key, sources in value.items():
        path: Path_ = ("context", key)
        if key == "impersonation":  # {marker: EXPR or [EXPR, ...]}
            sources = _impersonation_section(doc, path, sources)
            if sources is None:
                continue
            key, path = "marker", path + ("marker",)
        items = sources if isinstance(sources, list) else [sources]
        out[key] = [
            _expression(doc, path + (i,) if isinstance(sources, list) else path, src, ("request",), request_view=True)
            for i, src in enumerate(items)
        ]
    return out


def _impersonation_section(doc: _Located, path: Path_, value: Any) -> Any:
    """The `marker` of an `impersonation: {marker: EXPR}` mapping (None when absent)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise doc.error(path, "must be a mapping such as {marker: 'request.headers.get(\"x-impersonation\")'}")
    _known_keys(doc, path, value, IMPERSONATION_KEYS)
    return value.get("marker")


def _integrations(doc: _Located, value: Any) -> dict[str, dict[str, Any] | None]:
    """`integrations:`: name -> false (off), true, or options checked by the integration itself."""
    from .integrations import OptionError, parse_options

    if value is None:
        return {}
    if not isinstance(value, dict):
        raise doc.error(("integrations",), "must be a mapping such as {django: {models: all}, stripe: false}")
    out = {}
    for name, options in value.items():
        try:
            out[str(name)] = parse_options(str(name), options)
        except OptionError as exc:
            path: Path_ = ("integrations", name, *exc.path)
            raise doc.error(path, str(exc), at_value=not exc.at_key) from None
    return out


def _warn_unlinkable_impersonation(doc: _Located, cfg: AuditConfig) -> None:
    """Impersonation events without a marker: no action can be linked to their sessions (only a code block can)."""
    starts = [i for i, e in enumerate(cfg.events) if e.event == IMPERSONATION_START]
    if not starts:
        return
    default = bool(cfg.context.get("marker"))
    unmarked = [i for i in starts if "marker" not in cfg.events[i].fields and not default]
    actions = default or any("marker" in e.fields for e in cfg.events if e.event not in (IMPERSONATION_START,
                                                                                           IMPERSONATION_END))
    if unmarked or not actions:
        where = doc.line(("events", (unmarked or starts)[0]))
        what = (f"{IMPERSONATION_START} has no impersonation.marker" if unmarked
                else f"only {IMPERSONATION_START} has an impersonation.marker")
        warnings.warn(
            f"{where}: {what} and context: names none, so no action is linked to its sessions (a user name is "
            "no evidence). Add `impersonation: {marker: EXPR}` to the start and to the actions (or under "
            "`context:` for a marker auditrail's request view can read, such as a header): e.g. for django-hijack "
            "named[\"hijacker\"].pk on the start, and (request.session.get(\"hijack_history\") or [None])[-1] on "
            "each entry whose target takes Django's request",
            ConfigWarning,
            stacklevel=2,
        )


def _expression(doc: _Located, path: Path_, value: Any, allowed: tuple[str, ...] | frozenset[str] | None,
                *, request_view: bool = False) -> Expression:
    """Compile one expression; `request_view`: its `request` is auditrail's RequestInfo, not a parameter."""
    if isinstance(value, (int, float, bool)) or value is None:
        return constant(value)
    if not isinstance(value, str):
        raise doc.error(path, f"must be an expression (a string), not a {type(value).__name__}")
    try:
        compiled = compile_expression(value, allowed, doc.call_modules)
    except ExpressionError as exc:
        raise doc.error(path, f"bad expression {value!r}: {exc}") from None
    if request_view and "request" in compiled.names:
        _check_request_view(doc, path, value)
    return compiled


def _check_request_view(doc: _Located, path: Path_, value: str) -> None:
    """`request.user` where `request` is auditrail's view of the HTTP request always failed at run time: refuse it."""
    for node in ast.walk(ast.parse(value.strip(), mode="eval")):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "request" \
                and node.attr not in REQUEST_ATTRIBUTES:
            where = "in context:" if path[0] == "context" else "here (the target has no `request` parameter)"
            raise doc.error(path, f"bad expression {value!r}: `request` {where} is auditrail's view of the HTTP "
                            f"request, which has no {node.attr!r} (it has {', '.join(sorted(REQUEST_ATTRIBUTES))}); "
                            "the framework's own request (Django's request.user, request.session) is readable "
                            "in an entry whose target takes a `request` parameter, e.g. ModelAdmin.save_model")


def _event(doc: _Located, index: int, entry: Any, resolver: TargetResolver | None) -> EventSpec:
    path: Path_ = ("events", index)
    if not isinstance(entry, dict):
        raise doc.error(path, "each event must be a mapping with at least `target` and `event`")
    _known_keys(doc, path, entry, EVENT_KEYS)
    for required in ("target", "event"):
        if required not in entry:
            raise doc.error(path, f"missing required key {required!r}")
    target = _string(doc, path + ("target",), entry["target"])
    module, sep, qualname = target.partition(":")
    if not sep or not module or not qualname or not all(p.isidentifier() for p in qualname.split(".")) or not all(
        p.isidentifier() for p in module.split(".")
    ):
        raise doc.error(path + ("target",), f"target {target!r} must look like 'package.module:Class.method' or 'module:function'")
    event = _string(doc, path + ("event",), entry["event"])
    if not EVENT_NAME_RE.match(event):
        raise doc.error(path + ("event",), f"event type {event!r} must be dotted lower-case words, e.g. prompt.update")
    risk = entry.get("risk")
    if risk is not None and risk not in semconv.RISKS:
        raise doc.error(path + ("risk",), f"must be one of {', '.join(semconv.RISKS)}, not {risk!r}")
    try:
        params = resolver.parameters(module, qualname) if resolver else None
    except TargetError as exc:
        raise doc.error(path + ("target",), str(exc)) from None
    after_names = None if params is None else frozenset(params) | frozenset(CALL_NAMES)
    view = params is not None and "request" not in params  # `request` is then auditrail's RequestInfo
    before_names = None if after_names is None else after_names - {"result", "error"}

    # actor_type: one of the literal words, or an expression that yields one of them.
    actor_type: str | Expression | None = entry.get("actor_type")
    if actor_type is not None and actor_type not in semconv.ACTOR_TYPES:
        unknown_word = (isinstance(actor_type, str) and after_names is not None and actor_type.isidentifier()
                        and actor_type not in after_names)
        if not isinstance(actor_type, str) or unknown_word:
            raise doc.error(path + ("actor_type",), f"must be one of {', '.join(semconv.ACTOR_TYPES)} "
                            f"or an expression giving one, not {actor_type!r}")
        actor_type = _expression(doc, path + ("actor_type",), actor_type, after_names, request_view=view)

    fields = {k: _expression(doc, path + (k,), entry[k], after_names, request_view=view)
              for k in FIELD_KEYS if k in entry}
    marker = _impersonation_section(doc, path + ("impersonation",), entry.get("impersonation"))
    if marker is not None:
        fields["marker"] = _expression(doc, path + ("impersonation", "marker"), marker, after_names,
                                       request_view=view)
    before = _payload_spec(doc, path + ("before",), entry.get("before"), before_names, view)
    if before is not None and after_names is None:
        _reject_outcome_names(doc, path + ("before",), before)
    after = _payload_spec(doc, path + ("after",), entry.get("after"), after_names, view)
    payload = _payload_spec(doc, path + ("payload",), entry.get("payload"), after_names, view)
    if isinstance(payload, dict):
        for key in ("before", "after"):
            if key in payload and entry.get(key) is not None:
                raise doc.error(path + ("payload", key), f"payload.{key} clashes with the event's own `{key}:`")
    _warn_missing_fields(doc, path, event, before, after, payload)
    approval = parse_approval(doc, path + ("approval",), entry.get("approval"))
    return EventSpec(target, module, qualname, event, risk, actor_type, fields, before, after, payload, doc.line(path),
                     approval)


def _payload_spec(doc: _Located, path: Path_, value: Any, allowed: frozenset[str] | None,
                  request_view: bool = False) -> PayloadSpec:
    if value is None:
        return None
    if isinstance(value, dict):
        out = {}
        for key, expr in value.items():
            if not isinstance(key, str) or not key:
                raise doc.error(path + (key,), "payload keys must be non-empty strings", at_value=False)
            out[key] = _expression(doc, path + (key,), expr, allowed, request_view=request_view)
        return out
    return _expression(doc, path, value, allowed, request_view=request_view)


def _reject_outcome_names(doc: _Located, path: Path_, spec: PayloadSpec) -> None:
    """`before` runs before the call: it cannot see result or error (checked even when the target is unknown)."""
    exprs = spec.items() if isinstance(spec, dict) else [(None, spec)]
    for key, expr in exprs:
        if expr is not None and expr.names & {"result", "error"}:
            where = path + ((key,) if key else ())
            raise doc.error(where, f"{expr.source!r} uses result/error, which do not exist before the call")


def _warn_missing_fields(doc: _Located, path: Path_, event: str, before: PayloadSpec, after: PayloadSpec,
                         payload: PayloadSpec) -> None:
    required = REQUIRED_PAYLOAD.get(event, ())
    have = {"before"} if before is not None else set()
    have |= {"after"} if after is not None else set()
    if isinstance(payload, dict):
        have |= set(payload)
    elif payload is not None:
        return  # a whole-object expression: keys cannot be known before it runs
    missing = [k for k in required if k not in have]
    if missing:
        warnings.warn(
            f"{doc.line(path)}: {event} events should carry {', '.join(missing)} (see the event types table in the README)",
            ConfigWarning,
            stacklevel=2,
        )


def compile_event(entry: dict[str, Any], *, where: str) -> EventSpec:
    """Compile one event entry given in code (the @audited decorator), with the same checks as audit.yaml."""
    text = yaml.safe_dump({"events": [entry]}, sort_keys=False)
    doc = _Located(where, text, positions=False)
    return _event(doc, 0, doc.value["events"][0], None)
