"""`auditrail`: the command line (subcommands grow with the product)."""

from __future__ import annotations

import argparse
import importlib.util
import sys

from .version import __version__


# Subcommands of the store (storage/auditrail_store): imported only when used, so the instrumentation
# side never loads the ClickHouse engine.
STORE_COMMANDS = {
    "serve": "run the store service (OTLP/HTTP ingest, exports, verify)",
    "migrate": "create or upgrade the ClickHouse schema",
    "export": "export one tenant's events as CSV/JSON/NDJSON",
    "tokens": "create, list and revoke API tokens",
    "retention": "per-tenant retention and legal hold",
    "archive": "archive one tenant-month as Parquet to S3-compatible storage",
    "approvals": "list, approve and deny approval requests",
    "review": "monthly review: generate the report, sign it off, pack the evidence",
}
# What `pip install 'auditrail[store]'` adds (pyproject.toml's `store` extra), by import name. The plain
# install is the instrumentation alone: an app's environment never carries the ClickHouse engine.
STORE_MODULES = ("clickhouse_connect", "chdb", "fastapi", "uvicorn", "httpx", "jinja2")
STORE_INSTALL = "pip install 'auditrail[store]'"


def missing_store_modules() -> list[str]:
    """The store's dependencies that are not installed (found without importing them)."""
    return [name for name in STORE_MODULES if importlib.util.find_spec(name) is None]


def main(argv: list[str] | None = None) -> int:
    """Entry point of `auditrail`."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and (argv[0] in STORE_COMMANDS or (argv[0] == "verify" and _store_verify(argv[1:]))):
        missing = missing_store_modules()
        if missing:
            print(f"auditrail {argv[0]} needs the store: {STORE_INSTALL} "
                  f"(not installed: {', '.join(missing)})", file=sys.stderr)
            return 2
        from auditrail_store.cli import main as store_main

        return store_main(argv)
    parser = argparse.ArgumentParser(prog="auditrail", description="auditrail: audit logging on OpenTelemetry.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    show = sub.add_parser("show", help="print audit events from OTLP JSON files (AUDITRAIL_EXPORTER=file:...)",
                          add_help=False)
    show.add_argument("rest", nargs=argparse.REMAINDER)
    verify = sub.add_parser("verify", help="verify hash chains and signed checkpoints in OTLP JSON files",
                            add_help=False)
    verify.add_argument("rest", nargs=argparse.REMAINDER)
    keys = sub.add_parser("keys", help="checkpoint signing keys: `keys public` prints the public key", add_help=False)
    keys.add_argument("rest", nargs=argparse.REMAINDER)
    integrations = sub.add_parser("integrations", help="list the built-in integrations, their libraries and events",
                                  add_help=False)
    integrations.add_argument("rest", nargs=argparse.REMAINDER)
    check = sub.add_parser("check", help="validate an audit.yaml and its targets")
    check.add_argument("config", nargs="?", help="path (default: $AUDITRAIL_CONFIG or ./audit.yaml)")
    for name, text in STORE_COMMANDS.items():
        sub.add_parser(name, help=text, add_help=False)
    args, rest = parser.parse_known_args(argv)
    if args.command == "show":
        from .show import main_show

        return main_show([*args.rest, *rest])
    if args.command == "verify":
        from .verify import main_verify

        return main_verify([*args.rest, *rest])
    if args.command == "integrations":
        from .integrations.listing import main_integrations

        return main_integrations([*args.rest, *rest])
    if args.command == "keys":
        from .signing import main_keys

        return main_keys([*args.rest, *rest])
    from .launcher import main as launcher_main

    return launcher_main(["--check", *(["--config", args.config] if args.config else [])], prog="auditrail check")


def _store_verify(args: list[str]) -> bool:
    """`verify --tenant T` and `verify EXPORT.json` (a store export) go to the store; OTLP JSON-lines files stay."""
    import re

    if any(a == "--tenant" or a.startswith("--tenant=") for a in args):
        return True
    for arg in args:
        if arg.startswith("-"):
            continue
        if arg.endswith(".zip"):  # an evidence pack (`auditrail review pack`)
            return True
        try:
            with open(arg, "rb") as stream:  # a store export starts with its format marker
                head = stream.read(64)
        except OSError:
            continue
        if re.match(rb'\s*\{\s*"format"\s*:\s*"auditrail\.export/', head):
            return True
    return False


if __name__ == "__main__":
    sys.exit(main())
