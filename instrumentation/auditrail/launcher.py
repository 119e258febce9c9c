"""`auditrail-instrument CMD [ARGS...]`: run a program with audit instrumentation, zero code changes.

Like `opentelemetry-instrument`: audit.yaml is validated first (a mistake stops here, with its file,
line and key, before the app starts; a warning is printed here, once); then CMD is exec'd with a
sitecustomize on PYTHONPATH that starts auditing in the app's interpreter before the app's first import.
An interpreter that cannot import auditrail does not start the app: it would run unaudited (issue 14).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import logging
import os
import shutil
import signal
import sys
import warnings
from pathlib import Path

from .config import CONFIG_ENV, AuditConfig, ConfigError, ConfigWarning, config_path, load_config
from .exporters import EXPORTER_ENV, ExporterError, check_exporter_spec
from .version import __version__

BOOTSTRAP_DIR = str(Path(__file__).parent / "_bootstrap")
# What the launcher tells the process it execs (JSON): its pid (exec keeps it, so _bootstrap/sitecustomize
# knows whether it runs in that process or in a child), how to install auditrail, and that the config's
# warnings were printed already.
LAUNCH_ENV = "AUDITRAIL_LAUNCH"
_log = logging.getLogger("auditrail")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="auditrail-instrument",
        description="Run a Python program with auditrail's audit instrumentation (configured by audit.yaml).",
        epilog=f"audit.yaml is read from --config, ${CONFIG_ENV}, or ./audit.yaml. "
        f"${EXPORTER_ENV} chooses the exporter: otlp (default), console, file:PATH.",
    )
    parser.add_argument("--config", help="path to audit.yaml")
    parser.add_argument("--check", action="store_true", help="validate audit.yaml and the targets, then exit")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("command", nargs="?", help="the program to run, e.g. uvicorn or python")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="its arguments")
    return parser


def _search_path(command: str | None, args: list[str]) -> list[str]:
    """Where the app will look for its modules: cwd, PYTHONPATH, and a `python script.py`'s folder."""
    paths = [os.getcwd(), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    if command and Path(command).name.startswith("python") and args and args[0].endswith(".py"):
        paths.insert(0, str(Path(args[0]).resolve().parent))
    return paths


def validate(path: Path, search_path: list[str]) -> tuple[AuditConfig, list[str]]:
    """Load audit.yaml with target checks; returns (the config, its warnings). Raises ConfigError."""
    saved = list(sys.path)
    sys.path[:0] = [p for p in search_path if p not in sys.path]
    try:
        config, notes = load_quietly(path, check_targets=True)
    finally:
        sys.path[:] = saved
    return config, notes


def load_quietly(path: Path, *, check_targets: bool = False) -> tuple[AuditConfig, list[str]]:
    """load_config with its ConfigWarnings returned as text, for the caller to print once as one line each."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConfigWarning)
        config = load_config(path, check_targets=check_targets)
    for other in (w for w in caught if not issubclass(w.category, ConfigWarning)):
        warnings.showwarning(other.message, other.category, other.filename, other.lineno)
    return config, [str(w.message) for w in caught if issubclass(w.category, ConfigWarning)]


def _install_spec() -> str:
    """How to install this auditrail elsewhere: its checkout when installed from one, else the PyPI name."""
    try:
        direct = json.loads(importlib.metadata.distribution("auditrail").read_text("direct_url.json") or "{}")
    except (importlib.metadata.PackageNotFoundError, ValueError):
        direct = {}
    url = direct.get("url", "")
    if url.startswith("file://"):
        return ("-e " if direct.get("dir_info", {}).get("editable") else "") + url[len("file://"):]
    return "auditrail"


def main(argv: list[str] | None = None, prog: str = "auditrail-instrument") -> int:
    """Entry point of `auditrail-instrument` (and of `auditrail check`, whose messages carry that name)."""
    options = _parser().parse_args(argv)
    if not options.command and not options.check:
        _parser().print_usage(sys.stderr)
        print(f"{prog}: error: give the command to run, or --check", file=sys.stderr)
        return 2
    path = config_path(options.config)
    if path is None:
        print(f"{prog}: no audit.yaml in {os.getcwd()} and ${CONFIG_ENV} is not set", file=sys.stderr)
        return 2
    try:
        check_exporter_spec(os.environ.get(EXPORTER_ENV, "otlp"))
        config, notes = validate(path, _search_path(options.command, options.args))
    except (ConfigError, ExporterError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    for note in notes:
        print(f"{prog}: warning: {note}", file=sys.stderr)
    if options.check:
        print(f"{path}: OK, {len(config.events)} audited target(s)")
        return 0
    executable = shutil.which(options.command)
    if executable is None:
        print(f"auditrail-instrument: command not found: {options.command}", file=sys.stderr)
        return 127
    env = os.environ
    env[CONFIG_ENV] = str(path.resolve())
    python_path = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != BOOTSTRAP_DIR]
    if os.getcwd() not in python_path:
        python_path.insert(0, os.getcwd())  # as opentelemetry-instrument does: apps run by their own executable
    env["PYTHONPATH"] = os.pathsep.join([BOOTSTRAP_DIR, *python_path])
    env[LAUNCH_ENV] = json.dumps({"pid": os.getpid(), "python": sys.executable, "install": _install_spec(),
                                  "warned": env[CONFIG_ENV]})
    os.execv(executable, [executable, *options.args])
    return 0  # not reached


def bootstrap() -> None:
    """In the app's interpreter: start auditing, then hand over to any other sitecustomize on the path."""
    try:
        from .instrumentor import AuditInstrumentor

        AuditInstrumentor().instrument()
        _flush_on_sigterm()
    except Exception:  # noqa: BLE001 - the app must start; the failure is reported, loudly
        _log.exception("auditrail: instrumentation failed; this process is NOT audited")
    _chain_sitecustomize()


def _flush_on_sigterm() -> None:
    """Make SIGTERM flush queued audit events before the process dies of it.

    A process killed by SIGTERM's default action skips atexit. Servers such as uvicorn install their own
    handler for a graceful stop, then restore the previous one and re-raise the signal: that lands here.
    Only the default disposition is replaced; an app's own handler is left alone.
    """
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return

    def on_sigterm(signum: int, frame: object) -> None:
        from .setup import shutdown

        try:
            shutdown()
        finally:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)  # die of the signal, as without us

    signal.signal(signal.SIGTERM, on_sigterm)


def _chain_sitecustomize() -> None:
    """Import the next sitecustomize module (e.g. opentelemetry-instrument's), as if ours were not there."""
    saved = list(sys.path)
    ours = sys.modules.pop("sitecustomize", None)
    try:
        sys.path[:] = [p for p in sys.path if os.path.abspath(p) != BOOTSTRAP_DIR]
        import importlib

        try:
            importlib.import_module("sitecustomize")
        except ImportError:
            pass
    finally:
        sys.path[:] = saved
        if ours is not None:
            sys.modules["sitecustomize"] = ours
