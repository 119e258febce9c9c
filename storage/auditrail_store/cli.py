"""`auditrail <store command>`: the store's command line.

`auditrail.cli` forwards `serve|migrate|export|tokens|retention|archive` (and `verify --tenant`) here with
argv[0] the subcommand. One `build_parser()` holds every subparser; `COMMANDS` maps a subcommand to the
function that runs it, `run_X(args) -> int`. Modules are imported inside those functions, so `migrate`
never loads FastAPI and `serve` never loads argparse helpers it does not need.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable


def build_parser() -> argparse.ArgumentParser:
    """Every store subcommand and its options."""
    parser = argparse.ArgumentParser(prog="auditrail", description="auditrail store: ClickHouse schema and service.")
    sub = parser.add_subparsers(dest="command", required=True)
    # --url sits on each subcommand: argv arrives as `migrate --url ...` from `auditrail migrate --url ...`.
    url = argparse.ArgumentParser(add_help=False)
    url.add_argument("--url", default=None,
                     help="storage URL: chdb:///path or http(s)://user:pass@host:port "
                          "(default $AUDITRAIL_CLICKHOUSE_URL or chdb://./.auditrail/store)")

    migrate = sub.add_parser("migrate", parents=[url], help="create or upgrade the ClickHouse schema (idempotent)")
    migrate.add_argument("--cluster", default=None,
                         help="emit ON CLUSTER DDL with Replicated*/Distributed engines for this cluster")
    migrate.add_argument("--print", dest="print_only", action="store_true",
                         help="print the DDL that would run, run nothing")
    migrate.add_argument("--grants", action="store_true",
                         help="also create the auditrail_writer / auditrail_reader roles and row policy (servers)")

    retention = sub.add_parser("retention", help="per-tenant retention contracts and legal hold")
    rsub = retention.add_subparsers(dest="retention_command", required=True)
    rset = rsub.add_parser("set", parents=[url], help="set a tenant's retention in days (default contract: 365)")
    rset.add_argument("--tenant", required=True)
    rset.add_argument("--days", required=True, type=int)
    rset.add_argument("--force", action="store_true", help="allow fewer than 365 days")
    rsub.add_parser("list", parents=[url], help="list every tenant's contract and hold")
    rhold = rsub.add_parser("hold", parents=[url], help="legal hold: nothing of the tenant expires while on")
    rhold.add_argument("--tenant", required=True)
    onoff = rhold.add_mutually_exclusive_group(required=True)
    onoff.add_argument("--on", dest="hold", action="store_true")
    onoff.add_argument("--off", dest="hold", action="store_false")

    from .admin import add_parsers  # serve, tokens, export, verify, archive: the store service's commands

    add_parsers(sub)
    return parser


def run_migrate(args: argparse.Namespace) -> int:
    """`auditrail migrate [--cluster NAME] [--print] [--grants]`."""
    from .migrate import main_migrate

    return main_migrate(args)


def run_retention(args: argparse.Namespace) -> int:
    """`auditrail retention set|list|hold`."""
    from .retention import main_retention

    return main_retention(args)


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "migrate": run_migrate,
    "retention": run_retention,
}

from .admin import COMMANDS as _SERVICE_COMMANDS  # noqa: E402  (serve, tokens, export, verify, archive)

COMMANDS.update(_SERVICE_COMMANDS)


def main(argv: list[str] | None = None) -> int:
    """Parse argv (argv[0] is the subcommand) and run it; errors print one clear line and exit 2."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    from .db import StoreError

    try:
        return COMMANDS[args.command](args)
    except StoreError as exc:
        print(f"auditrail {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
