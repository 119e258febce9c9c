"""Built-in integrations: audit a library's own actions with no `events:` entry (issue 16).

One module per library, in the style of sentry-python's `sentry_sdk/integrations/` and the
opentelemetry-python-contrib instrumentors. Each `Integration` subclass says which library it covers
(import name, distribution, supported versions), the event types it emits and the options it takes;
its `setup(hooks)` registers post-import hooks, so an integration whose library the app never imports
costs nothing. Everything an integration runs inside the app's code is under
`capture_internal_exceptions()`: auditing never raises into the app.

    integrations:            # audit.yaml; every integration is on when its library is importable
      stripe: false          # off
      django:                # on, with options
        models: [catalog.Policy]
        trusted_proxies: [10.0.0.0/8]

Writing one: subclass `Integration`, declare `name`, `library`, `distribution`, `versions`, `events`
and `options` (each an `Option` with a parser from this module), implement `setup(hooks)` with
`hooks.on_import`, `hooks.wrap` and `hooks.connect`, emit with `record()`, and add the module to
`MODULES`. `hooks` undoes exactly what it did on uninstrument.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import importlib.util
import ipaddress
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from .. import runtime
from ..expressions import Expression, ExpressionError, compile_expression
from ..recorder import add_fallback

_log = logging.getLogger("auditrail")

# Every integration module, in the order they are listed and set up (a module per library).
MODULES = ("django", "django_hijack", "django_impersonate", "flask_login", "flask_admin",
           "sqlalchemy", "stripe", "scrapy")


# --- never raise into the app ---------------------------------------------------------------------


@contextmanager
def capture_internal_exceptions(where: str) -> Iterator[None]:
    """Run auditrail's own code inside the app: any exception is counted and logged, never raised."""
    try:
        yield
    except Exception:  # noqa: BLE001 - the app must never see auditing's failures
        recorder = runtime.recorder
        if recorder is not None:
            recorder.counters.capture_failed(where)
        else:
            _log.exception("auditrail: integration %s failed; the app was not affected", where)


# --- options --------------------------------------------------------------------------------------


class OptionError(ValueError):
    """A bad integration option; `path` is where under the option it is (for file:line:col), `at_key` says
    the key itself is wrong (an unknown name: point at it), not its value."""

    def __init__(self, message: str, path: tuple[Any, ...] = (), *, at_key: bool = False) -> None:
        super().__init__(message)
        self.path = path
        self.at_key = at_key


@dataclass(frozen=True)
class Option:
    """One option of an integration: its default, a one-line description, and how a value is checked."""

    default: Any
    help: str
    parse: Callable[[Any], Any]


def boolean(value: Any) -> bool:
    """An option that is true or false."""
    if not isinstance(value, bool):
        raise OptionError(f"must be true or false, not {value!r}")
    return value


def positive_int(value: Any) -> int:
    """An option that is a whole number of at least 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise OptionError(f"must be a whole number of at least 1, not {value!r}")
    return value


def string(value: Any) -> str:
    """An option that is a non-empty string."""
    if not isinstance(value, str) or not value:
        raise OptionError(f"must be a non-empty string, not {value!r}")
    return value


def networks(value: Any) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """A list of proxy addresses or CIDR networks, e.g. [127.0.0.1, 10.0.0.0/8]."""
    if not isinstance(value, list):
        raise OptionError("must be a list of addresses or networks, e.g. [127.0.0.1, 10.0.0.0/8]")
    out = []
    for i, item in enumerate(value):
        try:
            out.append(ipaddress.ip_network(str(item), strict=False))
        except ValueError:
            raise OptionError(f"{item!r} is not an IP address or network", (i,)) from None
    return tuple(out)


def expression(*names: str) -> Callable[[Any], Expression | None]:
    """An option that is an expression over `names` (e.g. `tenant: obj.tenant_id`)."""

    def parse(value: Any) -> Expression | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise OptionError(f"must be an expression over {', '.join(names)} (a string), not {value!r}")
        try:
            return compile_expression(value, (*names, "request"))
        except ExpressionError as exc:
            raise OptionError(f"bad expression {value!r}: {exc}") from None

    return parse


# --- the base class and the registry --------------------------------------------------------------


class Integration:
    """One library's integration; subclasses declare what it covers and implement `setup`."""

    name: ClassVar[str]  # the key under `integrations:` in audit.yaml
    library: ClassVar[str]  # the import name whose import enables it
    distribution: ClassVar[str]  # the installed distribution, for its version
    versions: ClassVar[str]  # supported versions, a PEP 440 range
    events: ClassVar[tuple[str, ...]]  # the event types it emits (README, `auditrail integrations`)
    options: ClassVar[Mapping[str, Option]] = {}

    def __init__(self, options: Mapping[str, Any]) -> None:
        self.config = {name: options.get(name, option.default) for name, option in self.options.items()}

    def setup(self, hooks: Hooks) -> None:
        """Register the post-import hooks, wrappers and signal receivers (nothing runs before the import)."""
        raise NotImplementedError


def integration_classes() -> list[type[Integration]]:
    """Every integration, in `MODULES` order (importing a module imports only auditrail, never the library)."""
    out: list[type[Integration]] = []
    for module in MODULES:
        mod = importlib.import_module(f"{__name__}.{module}")
        out.append(mod.INTEGRATION)
    return out


def by_name() -> dict[str, type[Integration]]:
    """The integrations by their audit.yaml name."""
    return {cls.name: cls for cls in integration_classes()}


def parse_options(name: str, value: Any) -> dict[str, Any] | None:
    """The checked options of `integrations.<name>` (None: turned off). Raises OptionError with a path."""
    known = by_name()
    if name not in known:
        raise OptionError(f"unknown integration {name!r}{_suggest(name, known, 'known')}", at_key=True)
    if value is False:
        return None
    if value is True or value is None:
        return {}
    if not isinstance(value, dict):
        raise OptionError("must be false (off), true (on) or a mapping of options")
    cls = known[name]
    out = {}
    for key, item in value.items():
        option = cls.options.get(key)
        if option is None:
            raise OptionError(f"unknown option {key!r} of the {name} integration"
                              f"{_suggest(key, cls.options, 'options')}", (key,), at_key=True)
        try:
            out[key] = option.parse(item)
        except OptionError as exc:
            raise OptionError(str(exc), (key, *exc.path)) from None
    return out


def _suggest(word: Any, choices: Iterable[str], label: str) -> str:
    """' (did you mean X?)' for a near miss, else ' (label: all, choices)'."""
    choices = list(choices)
    hint = difflib.get_close_matches(str(word), choices, n=1)
    return f" (did you mean {hint[0]!r}?)" if hint else f" ({label}: {', '.join(choices) or 'none'})"


@dataclass(frozen=True)
class LibraryStatus:
    """Whether an integration's library is installed here, its version, and whether that is supported."""

    present: bool
    version: str | None
    supported: bool
    too_old: bool = False  # below the range's minimum: the integration stays off


def library_status(cls: type[Integration]) -> LibraryStatus:
    """Found without importing the library (its metadata only)."""
    if importlib.util.find_spec(cls.library) is None:
        return LibraryStatus(False, None, False)
    try:
        version = importlib.metadata.version(cls.distribution)
    except importlib.metadata.PackageNotFoundError:
        return LibraryStatus(True, None, True)  # vendored or renamed: trust it
    supported = supports(cls, version)
    minimum = next((s.version for s in SpecifierSet(cls.versions) if s.operator in (">=", ">", "==")), None)
    try:
        too_old = not supported and minimum is not None and Version(version) < Version(minimum)
    except InvalidVersion:
        too_old = False
    return LibraryStatus(True, version, supported, too_old)


def supports(cls: type[Integration], version: str) -> bool:
    """Whether `version` is inside the integration's range."""
    try:
        return SpecifierSet(cls.versions).contains(Version(version), prereleases=True)
    except InvalidVersion:
        return True


# --- the hooks an integration registers, undone on uninstrument ------------------------------------


class Hooks:
    """What one integration patched and connected, so that `undo` removes exactly that."""

    def __init__(self, integration: Integration, patcher: Any) -> None:
        self.integration = integration
        self._patcher = patcher
        self._lock = threading.Lock()
        self._undo: list[Callable[[], None]] = []
        self._live = True

    def on_import(self, module: str, apply: Callable[[Any], None]) -> None:
        """Run `apply(module)` once `module` is imported (now, if it is), under the integration's guard."""
        where = f"{self.integration.name} ({module})"

        def guarded(mod: Any) -> None:
            if self._live:
                with capture_internal_exceptions(f"integration {where} setup"):
                    apply(mod)

        self._patcher.install_hook(module, guarded)

    def wrap(self, owner: Any, name: str, wrapper: Callable[..., Any]) -> None:
        """wrapt-wrap `owner.name` (restored by the patcher on uninstrument)."""
        self._patcher.wrap(owner, name, wrapper)

    def replace(self, owner: Any, name: str, make: Callable[[Any], Callable[..., Any]]) -> None:
        """Set `owner.name` to `make(original)`, a plain function, restored on uninstrument.

        For the hottest seams: a plain function costs a third of a wrapt wrapper's call with keywords.
        """
        original = owner.__dict__[name]
        replacement = make(original)
        replacement.__wrapped__ = original  # type: ignore[attr-defined]
        setattr(owner, name, replacement)
        with self._lock:
            self._undo.append(lambda: setattr(owner, name, original))

    def connect(self, signal: Any, receiver: Callable[..., Any], sender: Any = None) -> None:
        """Connect a Django-style signal receiver (strongly held), disconnected on uninstrument."""
        uid = f"auditrail.{self.integration.name}.{receiver.__qualname__}.{id(sender)}"
        signal.connect(receiver, sender=sender, weak=False, dispatch_uid=uid)
        with self._lock:
            self._undo.append(lambda: signal.disconnect(sender=sender, dispatch_uid=uid))

    def on_undo(self, step: Callable[[], None]) -> None:
        """Run `step` on uninstrument (e.g. remove a SQLAlchemy event listener)."""
        with self._lock:
            self._undo.append(step)

    def add_fallback(self, field: str, source: Any) -> None:
        """Add a `context:` fallback for `field` (an object with `source`, `names` and `evaluate(namespace)`) to
        every recorder, after audit.yaml's own; removed on uninstrument (see recorder.add_fallback)."""
        remove = add_fallback(field, source)
        with self._lock:
            self._undo.append(remove)

    def register(self, registry: list[Any], item: Any) -> None:
        """Append `item` to a module-level list (e.g. marker providers), removed on uninstrument."""
        registry.append(item)
        with self._lock:
            self._undo.append(lambda: registry.remove(item))

    def undo(self) -> None:
        """Disconnect everything connected (the patcher restores the wrapped attributes)."""
        self._live = False
        with self._lock:
            undo, self._undo = self._undo, []
        for step in reversed(undo):
            with capture_internal_exceptions(f"integration {self.integration.name} teardown"):
                step()


_active: list[Hooks] = []
_active_lock = threading.Lock()


def covered_by_events(cls: type[Integration], targets: Iterable[str]) -> bool:
    """Whether audit.yaml's `events:` already target this integration's library (its module or a submodule)."""
    return any(t == cls.library or t.startswith(cls.library + ".") for t in targets)


def setup_integrations(settings: Mapping[str, dict[str, Any] | None], patcher: Any,
                       targets: Iterable[str] = ()) -> list[Integration]:
    """Set up every integration not turned off in `settings` (audit.yaml's `integrations:`); returns them.

    An integration whose library is not installed registers a post-import hook that never fires; one
    whose installed version is below its range is not set up (said once); above it, it is, with a warning.
    One whose library the `events:` entries (their module names: `targets`) audit by hand stands aside,
    unless `integrations:` names it: the same action would be recorded twice.
    """
    targets = list(targets)
    started = []
    for cls in integration_classes():
        if cls.name in settings and settings[cls.name] is None:
            continue
        if cls.name not in settings and covered_by_events(cls, targets):
            # Said at warning level: the app's own entries silently replacing a whole integration would surprise.
            _log.warning("auditrail: events: audits %s by hand, so the %s integration is off "
                         "(integrations: {%s: true} runs it as well)", cls.library, cls.name, cls.name)
            continue
        status = library_status(cls)
        if status.too_old:
            _log.warning("auditrail: the %s integration needs %s %s; %s is installed, so it is off",
                         cls.name, cls.distribution, cls.versions, status.version)
            continue
        if status.present and not status.supported:
            _log.warning("auditrail: the %s integration is tested with %s %s; %s is installed",
                         cls.name, cls.distribution, cls.versions, status.version)
        integration = cls(settings.get(cls.name) or {})
        hooks = Hooks(integration, patcher)
        with capture_internal_exceptions(f"integration {cls.name} setup"):
            integration.setup(hooks)
            started.append(integration)
        with _active_lock:
            _active.append(hooks)
    return started


def teardown_integrations() -> None:
    """Disconnect every integration's receivers (the patcher restores what they wrapped)."""
    with _active_lock:
        active, _active[:] = list(_active), []
    for hooks in reversed(active):
        hooks.undo()


# --- what every integration needs at event time ---------------------------------------------------


def client_ip(remote_addr: str | None, forwarded_for: str | None,
              trusted: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> str | None:
    """The client's address: the peer, unless it is a trusted proxy; then X-Forwarded-For, right to left,
    skipping trusted proxies (a client can write any X-Forwarded-For it likes: only proxies' additions count)."""
    if not trusted or not forwarded_for or not _is_trusted(remote_addr, trusted):
        return remote_addr
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop, trusted):
            return hop
    return hops[0] if hops else remote_addr


def _is_trusted(address: str | None, trusted: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> bool:
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def admit() -> None:
    """Before an audited action, as `events:` wrappers do: in fail_closed (or on_full: refuse) mode raise
    AuditUnavailable when its event could not be recorded, so the action does not happen unaudited; with
    on_full: block, wait for room. Outside any guard on purpose: this is the one refusal the app is told."""
    recorder = runtime.recorder
    if recorder is not None and recorder.guard is not None:
        recorder.guard()


def record(event_type: str, **fields: Any) -> None:
    """Emit one event through the active recorder (nothing when auditing is off); never raises."""
    recorder = runtime.recorder
    if recorder is None:
        return
    with capture_internal_exceptions(f"event {event_type}"):
        recorder.record(event_type, **fields)


def evaluate(expr: Expression | None, where: str, namespace: dict[str, Any]) -> Any:
    """An option's expression against `namespace`; a raising one is counted and gives None."""
    if expr is None:
        return None
    try:
        return expr.evaluate(namespace)
    except Exception as exc:  # noqa: BLE001 - a bad option leaves the field empty, like any expression
        recorder = runtime.recorder
        if recorder is not None:
            recorder.counters.extractor_failed(f"integrations.{where} {expr.source!r}", exc)
        return None
