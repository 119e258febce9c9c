"""The running service's local door, for CLI commands on an embedded store it owns.

chDB lets one process own a data directory, and a running ``auditrail serve`` owns it. So that operators
can still create tokens, export or verify while it runs, the service writes ``<store dir>.service.json``
at start (mode 0600, removed at exit): its pid, its loopback URL and a fresh 256-bit secret. A CLI command
that finds the directory locked reads that file, checks the pid is alive, and sends the same operation to
the service with the secret in ``X-Auditrail-Local-Admin``. The secret is compared in constant time and
is worth exactly what the file's permissions give: whoever can read it could read the data directory
itself. Servers and clusters need none of this (any number of processes connect); tokens live in the
store either way, so there is one source of truth for every replica.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

__all__ = ["LOCAL_ADMIN_HEADER", "LocalService", "control_path", "find_service", "remove_control", "write_control"]

LOCAL_ADMIN_HEADER = "X-Auditrail-Local-Admin"


def control_path(url: str) -> Path | None:
    """Where the service of an embedded store writes its control file; None for servers."""
    parsed = urlparse(url)
    if parsed.scheme != "chdb" or not parsed.path:
        return None
    return Path(os.path.abspath(parsed.path.rstrip("/")) + ".service.json")


def write_control(url: str, host: str, port: int) -> str | None:
    """Write the control file (0600, atomically) for a service on host:port; the secret, or None for servers."""
    path = control_path(url)
    if path is None:
        return None
    secret = secrets.token_urlsafe(32)
    connect_host = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
    if ":" in connect_host and not connect_host.startswith("["):
        connect_host = f"[{connect_host}]"
    content = json.dumps({"pid": os.getpid(), "url": f"http://{connect_host}:{port}", "secret": secret})
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".service.", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as stream:
            stream.write(content)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return secret


def remove_control(url: str, secret: str | None) -> None:
    """Remove the control file if it is still ours."""
    path = control_path(url)
    if path is None or secret is None:
        return
    try:
        if json.loads(path.read_text()).get("secret") == secret:
            path.unlink()
    except (OSError, ValueError):
        pass


@dataclass(frozen=True)
class LocalService:
    """A running service on this machine that owns the embedded store."""

    base_url: str
    secret: str
    pid: int

    def headers(self) -> dict[str, str]:
        """The local admin header."""
        return {LOCAL_ADMIN_HEADER: self.secret}

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """One request to the service (httpx.Response); raises httpx errors."""
        import httpx

        with httpx.Client(base_url=self.base_url, timeout=60.0) as client:
            return client.request(method, path, headers=self.headers(), **kwargs)

    @contextmanager
    def stream(self, path: str, params: dict[str, str], what: str, then: str) -> Iterator[Iterator[bytes]]:
        """The body of a GET, in chunks as they arrive. StoreError for an error answer, or "`what` was cut
        (...); `then`" when the service aborts the response midway (an engine error)."""
        import httpx

        from .db import StoreError

        with httpx.Client(base_url=self.base_url, timeout=None) as client:
            with client.stream("GET", path, params=params, headers=self.headers()) as response:
                if response.status_code != 200:
                    response.read()
                    raise StoreError(_service_error(response))
                try:
                    yield response.iter_bytes()
                except httpx.TransportError as error:
                    raise StoreError(f"{what} was cut ({error}); {then}") from None


def find_service(url: str) -> LocalService | None:
    """The live service that owns the embedded store at `url`, from its control file; None if there is none."""
    path = control_path(url)
    if path is None:
        return None
    try:
        # Only a file the service could have written: not a symlink, ours, 0600. Else anyone who can write
        # the store's parent directory could plant one and receive (and answer) our exports and tokens.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(fd) as stream:
            info = os.fstat(stream.fileno())
            if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
                return None
            data = json.loads(stream.read())
        pid = int(data["pid"])
        os.kill(pid, 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return LocalService(str(data["url"]), str(data["secret"]), pid)


# --------------------------------------------------------------------------------------------------
# The store service's operator commands: `serve`, `tokens`, `export`, `verify`, `archive`. cli.py calls
# add_parsers() and dispatches to run_*; each run_* imports what it needs when it runs.


def add_approvals_parser(sub: Any) -> None:
    """`approvals list|approve|deny` (approvals/cli.py)."""
    from .approvals.cli import add_parser

    add_parser(sub)


def add_parsers(sub: Any) -> None:
    """Add serve / tokens / export / verify / archive to the store CLI's subparsers."""
    url_help = "storage URL (default $AUDITRAIL_CLICKHOUSE_URL or chdb://./.auditrail/store)"

    add_approvals_parser(sub)
    from .reviews.cli import add_parser as add_review_parser

    add_review_parser(sub)
    serve = sub.add_parser("serve", help="run the store service (OTLP/HTTP ingest, exports, verify)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=4320, help="port (default 4320)")
    serve.add_argument("--url", default=None, help=url_help)
    limits = serve.add_argument_group("ingest limits (a request over one is refused whole: 413 naming it)")
    limits.add_argument("--max-records", type=int, default=None,
                        help="log records per request (default $AUDITRAIL_INGEST_MAX_RECORDS or 100000)")
    limits.add_argument("--max-record-bytes", type=int, default=None,
                        help="bytes of one log record (default $AUDITRAIL_INGEST_MAX_RECORD_BYTES or 1048576)")
    limits.add_argument("--max-body", type=int, default=None,
                        help="bytes of a request, decompressed (default $AUDITRAIL_INGEST_MAX_BODY or 67108864)")
    limits.add_argument("--max-attribute-keys", type=int, default=None,
                        help="distinct attribute keys in a request (default $AUDITRAIL_INGEST_MAX_ATTRIBUTE_KEYS or "
                             "10000)")
    clients = serve.add_argument_group("connections")
    clients.add_argument("--header-timeout", type=float, default=None,
                         help="seconds for a request's headers to arrive, else the connection is closed (default "
                              "$AUDITRAIL_SERVE_HEADER_TIMEOUT or 10)")
    clients.add_argument("--body-timeout", type=float, default=None,
                         help="seconds for a request's body to arrive after its headers, else 408 (default "
                              "$AUDITRAIL_SERVE_BODY_TIMEOUT or 60)")
    clients.add_argument("--max-connections", type=int, default=None,
                         help="connections served at once, 503 beyond (default $AUDITRAIL_SERVE_MAX_CONNECTIONS or 128)")
    serve.add_argument("--grafana-port", type=int, default=None,
                       help="also serve a read-only ClickHouse HTTP interface for Grafana on this port "
                            "(embedded store; off by default)")
    serve.add_argument("--forward-otlp", default=None, metavar="URL",
                       help="also send the service's own audit events (approval decisions, review.due/overdue/"
                            "completed) as OTLP/HTTP to the collector at URL, for its alert rules (default "
                            "$AUDITRAIL_FORWARD_OTLP; headers from $AUDITRAIL_FORWARD_OTLP_HEADERS)")

    tokens = sub.add_parser("tokens", help="create, list and revoke API tokens")
    tsub = tokens.add_subparsers(dest="tokens_command", required=True)
    create = tsub.add_parser("create", help="create a token; it is printed once, alone on the last line")
    create.add_argument("--tenant", required=True, help="tenant id, or '*' for every tenant")
    create.add_argument("--scope", required=True, choices=("read", "ingest", "approve", "admin"))
    create.add_argument("--description", default="", help="approve tokens: the holder's identity (the approver)")
    create.add_argument("--url", default=None, help=url_help)
    listing = tsub.add_parser("list", help="list tokens (ids, tenants, scopes; never secrets)")
    listing.add_argument("--all", action="store_true", help="include revoked tokens")
    listing.add_argument("--json", action="store_true")
    listing.add_argument("--url", default=None, help=url_help)
    revoke = tsub.add_parser("revoke", help="revoke a token by its id")
    revoke.add_argument("token_id", help="the token id (the 16 hex digits after art_) or the token")
    revoke.add_argument("--url", default=None, help=url_help)

    export = sub.add_parser("export", help="export one tenant's events as CSV/JSON/NDJSON")
    _tenant_filters(export)
    export.add_argument("--type", dest="event_type", default=None, help="event type, or a prefix ending in . or *")
    export.add_argument("--actor", default=None)
    export.add_argument("--format", choices=("csv", "json", "ndjson"), default=None,
                        help="default: from --out's extension, else json")
    export.add_argument("--no-csv-escape", action="store_true",
                        help="CSV: write cells starting with = + - @, tab or CR as they are (default: a leading ' "
                             "keeps spreadsheets from running them as formulas)")
    export.add_argument("--out", required=True, help="output file ('-' for stdout)")
    export.add_argument("--no-progress", action="store_true", help="no progress bar")
    export.add_argument("--url", default=None, help=url_help)

    verify = sub.add_parser("verify", help="verify stored events (--tenant) or an exported JSON file")
    verify.add_argument("export_file", nargs="?", help="an `auditrail export --format json` file (no store needed)")
    verify.add_argument("--tenant", default=None)
    verify.add_argument("--since", default=None)
    verify.add_argument("--until", default=None)
    verify.add_argument("--key", action="append", default=[], metavar="PEM_FILE",
                        help="trusted checkpoint public key (repeatable); default: the keys the events carry")
    verify.add_argument("--json", action="store_true", help="print the report as JSON")
    verify.add_argument("--url", default=None, help=url_help)

    archive = sub.add_parser("archive", help="archive one tenant-month as Parquet to S3 or GCS (works while serving)")
    archive.add_argument("--tenant", default=None, help="the tenant (required unless --bigquery-ddl)")
    archive.add_argument("--month", default=None, help="YYYY-MM (UTC; required unless --bigquery-ddl)")
    archive.add_argument("--to", required=True, dest="target", help="s3://bucket/prefix or gs://bucket/prefix")
    archive.add_argument("--bigquery-ddl", action="store_true",
                         help="print BigQuery's CREATE EXTERNAL TABLE (and a LOAD DATA job) over the gs:// archive")
    archive.add_argument("--table", default="auditrail.audit_events",
                         help="--bigquery-ddl: [project.]dataset.table (default auditrail.audit_events)")
    archive.add_argument("--endpoint", default=None,
                         help="s3:// only: S3-compatible endpoint, e.g. a local moto or MinIO (default "
                              "$AUDITRAIL_S3_ENDPOINT, else AWS from the bucket's region); GCS emulators: "
                              "$STORAGE_EMULATOR_HOST")
    archive.add_argument("--region", default=None, help="default $AWS_REGION or us-east-1")
    archive.add_argument("--url", default=None, help=url_help)


def _tenant_filters(parser: Any) -> None:
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--since", default=None, help="ISO-8601, inclusive")
    parser.add_argument("--until", default=None, help="ISO-8601, exclusive")


def open_store_or_service(url: str | None) -> tuple[Any, LocalService | None]:
    """(Store, None), or (None, the running service) when that service owns the embedded store."""
    from .db import Store, StoreError, default_url

    url = url or default_url()
    service = find_service(url)  # first: trying the engine on a locked directory makes chDB print errors
    if service is not None:
        return None, service
    try:
        return Store.open(url), None
    except StoreError:
        service = find_service(url)
        if service is None:
            raise
        return None, service


def _service_error(response: Any) -> str:
    try:
        detail = response.json()
        detail = detail.get("detail") or detail.get("message") or detail
    except ValueError:
        detail = response.text
    return f"the service answered {response.status_code}: {detail}"


def run_serve(args: Any) -> int:
    """`auditrail serve`."""
    from .connections import DEFAULT_BODY_TIMEOUT, DEFAULT_HEADER_TIMEOUT, DEFAULT_MAX_CONNECTIONS
    from .db import StoreError
    from .ingest_limits import IngestLimits
    from .service import serve

    def pick(value: float | None, env: str, default: float) -> float:
        return value if value is not None else float(os.environ.get(env) or default)

    try:
        limits = IngestLimits.from_env(args.max_body, args.max_records, args.max_record_bytes,
                                       args.max_attribute_keys)
    except ValueError as error:
        raise StoreError(str(error)) from None
    serve(args.host, args.port, args.url, limits=limits,
          header_timeout=pick(args.header_timeout, "AUDITRAIL_SERVE_HEADER_TIMEOUT", DEFAULT_HEADER_TIMEOUT),
          body_timeout=pick(args.body_timeout, "AUDITRAIL_SERVE_BODY_TIMEOUT", DEFAULT_BODY_TIMEOUT),
          max_connections=int(pick(args.max_connections, "AUDITRAIL_SERVE_MAX_CONNECTIONS", DEFAULT_MAX_CONNECTIONS)),
          grafana_port=args.grafana_port, forward_otlp=args.forward_otlp)
    return 0


def run_tokens(args: Any) -> int:
    """`auditrail tokens create|list|revoke`."""
    import sys

    from .db import StoreError

    if args.tokens_command == "create":
        from .db import check_tenant

        check_tenant(args.tenant)  # here too: the service's answer would be a 422 of its request validation
    store, service = open_store_or_service(args.url)
    if service is not None:
        if args.tokens_command == "create":
            response = service.request("POST", "/v1/admin/tokens", json={
                "tenant": args.tenant, "scope": args.scope, "description": args.description})
            if response.status_code != 201:
                raise StoreError(_service_error(response))
            data = response.json()
            token = data.pop("token")
            _print_created(data)
            print(token)
            return 0
        if args.tokens_command == "list":
            response = service.request("GET", "/v1/admin/tokens", params={"all": "true" if args.all else "false"})
            if response.status_code != 200:
                raise StoreError(_service_error(response))
            _print_tokens(response.json(), args.json)
            return 0
        token_id = _token_id(args.token_id)
        response = service.request("DELETE", f"/v1/admin/tokens/{token_id}")
        if response.status_code == 404:
            print(f"auditrail tokens: no active token {token_id}", file=sys.stderr)
            return 1
        if response.status_code != 204:
            raise StoreError(_service_error(response))
        print(f"revoked {token_id}")
        return 0

    from .migrate import migrate
    from .tokens import TokenStore

    with store:
        migrate(store)
        tokens = TokenStore(store, cache_seconds=0)
        if args.tokens_command == "create":
            token, info = tokens.create(args.tenant, args.scope, args.description)
            _print_created(info.to_dict())
            print(token)
            return 0
        if args.tokens_command == "list":
            _print_tokens([info.to_dict() for info in tokens.list(include_revoked=args.all)], args.json)
            return 0
        token_id = _token_id(args.token_id)
        if not tokens.revoke(token_id):
            print(f"auditrail tokens: no active token {token_id}", file=sys.stderr)
            return 1
        print(f"revoked {token_id}")
        return 0


def _token_id(text: str) -> str:
    from .tokens import parse_token

    parsed = parse_token(text)
    return parsed[0] if parsed else text.strip()


def _print_created(info: dict[str, Any]) -> None:
    print(f"created token {info['token_id']}: tenant {info['tenant']!r}, scope {info['scope']}")
    print("store it now: it is shown once and only its hash is kept. The token:")


def _print_tokens(items: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print(json.dumps(items, indent=1))
        return
    if not items:
        print("no tokens")
        return
    print(f"{'TOKEN ID':<17} {'TENANT':<20} {'SCOPE':<7} {'CREATED':<25} STATUS")
    for item in items:
        status = "active" if item["active"] else f"revoked {item['revoked_at']}"
        print(f"{item['token_id']:<17} {item['tenant'][:20]:<20} {item['scope']:<7} {item['created_at'] or '':<25} "
              f"{status}")


def run_export(args: Any) -> int:
    """`auditrail export --tenant T [--since --until --type --actor --format] --out FILE`."""
    from .export import main_export

    return main_export(args)


def run_verify(args: Any) -> int:
    """`auditrail verify --tenant T` (stored events) or `auditrail verify EXPORT.json` (offline)."""
    from .verify_store import main_verify

    return main_verify(args)


def run_archive(args: Any) -> int:
    """`auditrail archive --tenant T --month YYYY-MM --to s3://|gs://bucket/prefix`, or `--bigquery-ddl`."""
    from .archive import main_archive

    return main_archive(args)


def run_approvals(args: Any) -> int:
    """`auditrail approvals list|approve|deny`."""
    from .approvals.cli import run_approvals as run

    return run(args)


def run_review(args: Any) -> int:
    """`auditrail review generate|sign|pack`."""
    from .reviews.cli import run_review as run

    return run(args)


COMMANDS = {"review": run_review, "serve": run_serve, "tokens": run_tokens, "export": run_export, "verify": run_verify,
            "archive": run_archive, "approvals": run_approvals}
