"""`auditrail review generate|sign|pack`: the monthly review from the command line."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..db import StoreError

__all__ = ["add_parser", "run_review"]

URL_HELP = "storage URL (default $AUDITRAIL_CLICKHOUSE_URL or chdb://./.auditrail/store)"


def _this_month() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m")


def add_parser(sub: Any) -> None:
    """`review` and its verbs."""
    review = sub.add_parser("review", help="monthly review: generate the report, sign it off, pack the evidence")
    rsub = review.add_subparsers(dest="review_command", required=True)
    gen = rsub.add_parser("generate", help="write the month's review (HTML, PDF, JSON) per tenant and for '*'")
    gen.add_argument("--month", default=None, help="YYYY-MM, UTC (default: this month)")
    gen.add_argument("--tenant", default=None, help="one tenant (default: every tenant with events, and '*')")
    gen.add_argument("--out", default=None, help="directory (default $AUDITRAIL_REVIEWS_DIR, else beside the store)")
    gen.add_argument("--config", default=None, help="the app's audit.yaml: which actions require an approval "
                                                   "(default $AUDITRAIL_CONFIG or ./audit.yaml when present)")
    gen.add_argument("--burst", type=int, default=30, help="events by one actor in one minute that make a burst")
    gen.add_argument("--failures", type=int, default=3, help="failures of one action by one actor in an hour")
    gen.add_argument("--integrity", choices=("full", "quick"), default="full",
                     help="full (default): verify the month's chains, hashes and signatures (streams every event "
                          "through Python); quick: the chains' seq gaps, repeats and checkpoint cover, in the engine")
    gen.add_argument("--url", default=None, help=URL_HELP)
    sign = rsub.add_parser("sign", help="record review.completed (the report's SHA-256, reviewer, notes)")
    sign.add_argument("--month", required=True)
    sign.add_argument("--tenant", default="*")
    sign.add_argument("--reviewer", required=True)
    sign.add_argument("--notes", required=True)
    sign.add_argument("--out", default=None, help="the reviews directory (where generate wrote the report)")
    sign.add_argument("--url", default=None, help=URL_HELP)
    pack = rsub.add_parser("pack", help="the evidence pack: report, exports, verification, keys, sign-off, manifest")
    pack.add_argument("--month", required=True)
    pack.add_argument("--tenant", required=True)
    pack.add_argument("--out", required=True, dest="zip_path", help="FILE.zip")
    pack.add_argument("--reports", default=None, help="the reviews directory (default: as generate)")
    pack.add_argument("--url", default=None, help=URL_HELP)


def run_review(args: Any) -> int:
    """Dispatch `review <verb>`."""
    from ..admin import open_store_or_service

    store, service = open_store_or_service(args.url)
    if service is not None and args.review_command == "sign":  # the service signs its own report
        from urllib.parse import quote

        from ..admin import _service_error

        response = service.request("POST", f"/v1/reviews/{quote(args.tenant, safe='')}/{args.month}/sign",
                                   json={"reviewer": args.reviewer, "notes": args.notes})
        if response.status_code != 201:
            raise StoreError(_service_error(response))
        _print_signed(args, response.json())
        return 0
    if service is not None:
        raise StoreError("a running `auditrail serve` owns the embedded store: it generates the reports itself "
                         "(the monthly close; see /reviews), or stop it for a moment (chDB allows one process per "
                         "directory)")
    from .generate import reports_dir

    with store:
        from ..migrate import migrate

        migrate(store)
        if args.review_command == "generate":
            return _generate(store, args, Path(args.out) if args.out else reports_dir(store.url))
        if args.review_command == "sign":
            from .signoff import sign

            event = sign(store, args.tenant, args.month, args.reviewer, args.notes,
                         Path(args.out) if args.out else reports_dir(store.url))
            _print_signed(args, event)
            return 0
        from .pack import build_pack

        path = build_pack(store, args.tenant, args.month, Path(args.zip_path),
                          Path(args.reports) if args.reports else reports_dir(store.url))
        print(f"evidence pack written: {path}")
        return 0


def _print_signed(args: Any, payload: dict[str, Any]) -> None:
    print(f"review.completed recorded for tenant {args.tenant!r}, {args.month}: report SHA-256 "
          f"{payload['report_sha256']}, reviewer {payload['reviewer']}")


def _generate(store: Any, args: Any, directory: Path) -> int:
    from .generate import generate, tenants_of
    from .report import ReviewOptions

    month = args.month or _this_month()
    options = ReviewOptions(burst_per_minute=args.burst, failures_per_hour=args.failures, config=args.config,
                            integrity=args.integrity)
    tenants = [args.tenant] if args.tenant else tenants_of(store, month)
    for tenant in tenants:
        done = generate(store, tenant, month, directory, options)
        print(f"review of tenant {tenant!r}, {month}: {done.pdf} (and .html, .json); SHA-256 {done.pdf_sha256}",
              file=sys.stderr)
        print(json.dumps(done.to_dict()))
    return 0
