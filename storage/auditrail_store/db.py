"""The one door to ClickHouse: open a store, run parameterised SQL, read one tenant's events.

Contract (the store service, the CLI and the tests code against exactly this)::

    DEFAULT_DATABASE = "auditrail"
    default_url() -> str          # $AUDITRAIL_CLICKHOUSE_URL or "chdb://" + abspath(".auditrail/store")

    class Store:
        Store.open(url: str | None = None, database: str = DEFAULT_DATABASE) -> Store
            # chdb:///path (embedded, created if missing) or http(s)://user:pass@host:port (a server)
        url: str; database: str; embedded: bool; client   # client: the clickhouse_connect Client
        command(sql, parameters=None, settings=None)   # DDL / INSERT ... SELECT / SYSTEM; returns what the client returns
        query(sql, parameters=None, settings=None)     # -> clickhouse_connect QueryResult
        insert(table, rows, column_names)    # table is a bare name in store.database
        close()
        table(name) -> str                   # "`db`.`name`", the only way SQL names our tables

    check_identifier(name, what="identifier") -> str      # the one identifier check (StoreError if bad)
    check_tenant(tenant) -> str                           # the one tenant id check (StoreError if bad)
    tenant_problem(tenant) -> str | None                  # why a tenant id is invalid, or None
    tenant_scope(tenant, parameters) -> str               # "tenant_id = {tenant:String}", binds the tenant
    tenant_settings(store, tenant) -> dict                # per-query settings for the server's row policy
    select_events(store, tenant, since=None, until=None, event_type=None, actor=None,
                  columns=EVENT_COLUMNS, limit=None) -> tuple[str, dict]   # the canonical read (deduplicated)

Rules that keep this layer safe:

* Values only ever travel as server-side bound parameters (``{name:Type}``, clickhouse-connect sends them
  as query parameters; chDB binds them the same way). No value is formatted into SQL text.
* Identifiers (the database, table names, cluster names) cannot be bound, so they pass
  :func:`check_identifier` (``[A-Za-z_][A-Za-z0-9_]*``, at most 64 chars) and are backquoted.
* Every read of audit data goes through :func:`tenant_scope`; :func:`select_events` is the canonical read:
  ``audit_events FINAL`` (ReplacingMergeTree on (key_day, tenant_id, event_key): the event id) so a replayed event is
  seen once even before the background merge has collapsed it (docs/storage.md has the measured cost).
* chDB: one data directory per process and one process per directory (a ``status`` file lock). Opening a
  directory a running ``auditrail serve`` owns fails with a message that says so.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlparse

import clickhouse_connect
from clickhouse_connect.driver.exceptions import ClickHouseError

DEFAULT_DATABASE = "auditrail"
URL_ENV = "AUDITRAIL_CLICKHOUSE_URL"
DEFAULT_STORE_DIR = os.path.join(".auditrail", "store")

# Sent with every query of our clients. optimize_on_insert (default 1) makes every INSERT into a
# ReplacingMergeTree (audit_events, through the MV) collapse duplicates inside the block first: measured on
# chDB 26.9 it cuts that insert from ~340k to ~75k rows/s, and buys nothing, since reads use FINAL anyway.
# The collector's exporter gets the same through connection_params (docs/storage.md).
CLIENT_SETTINGS = {"optimize_on_insert": 0}

# The embedded engine's server configuration (MergeTree settings: compact parts below 32 MiB, so an insert
# creates a few files instead of ~190). Engine-level, not in the tables' DDL (otel_logs stays the exporter's).
# chDB takes it from the first handle of the process: every handle auditrail opens passes it.
ENGINE_CONFIG = Path(__file__).with_name("engine") / "chdb.xml"

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")

# Tenant ids: `*` (global scope), or 1-128 ASCII letters, digits and `. _ : @ + -`, the first a letter or a
# digit. Why so strict: a tenant id travels in URL paths, file names, CSV cells and the TTL's metadata, so no
# spaces, slashes, quotes, control or look-alike characters, and no leading `= + - @` (spreadsheet formulas).
# README "Tenant ids" and docs/storage.md document it; TENANT_PATTERN is the same rule for the OpenAPI document.
TENANT_MAX = 128
TENANT_PATTERN = r"^(\*|[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127})$"
TENANT_SYNTAX = ("'*' (global), or 1-128 characters from A-Z a-z 0-9 . _ : @ + - starting with a letter or "
                 "digit")
_TENANT = re.compile(TENANT_PATTERN)

# The columns of audit_events in export order: DESIGN.md's seed fields first, then the rest of its mapping,
# then what the store adds (transport and bookkeeping).
SEED_COLUMNS: tuple[str, ...] = (
    "event_id", "event_type", "timestamp", "tenant_id", "actor", "source_ip", "payload",
)
EVENT_COLUMNS: tuple[str, ...] = (
    *SEED_COLUMNS,
    "actor_type", "reason", "outcome", "risk", "impersonator_id", "impersonation_id", "approval_id",
    "chain_id", "chain_seq", "chain_prev_hash", "chain_hash",
    "service_name", "severity_text", "severity_number", "trace_id", "span_id", "attributes", "inserted_at",
)


class StoreError(Exception):
    """A storage problem worth one clear line to the operator (bad input, a locked directory, ...)."""


def check_identifier(name: str, what: str = "identifier") -> str:
    """`name` if it is a plain ClickHouse identifier, else StoreError; the only identifier check there is."""
    if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name):
        raise StoreError(f"invalid {what} {name!r}: use letters, digits and '_' (not first), at most 64 chars")
    return name


def tenant_problem(tenant: object) -> str | None:
    """Why `tenant` is not a valid tenant id (a sentence naming the syntax), or None when it is one."""
    if isinstance(tenant, str) and _TENANT.fullmatch(tenant):
        return None
    shown = repr(tenant) if not isinstance(tenant, str) or len(tenant) <= 64 else repr(tenant[:64]) + "..."
    return f"invalid tenant id {shown}: use {TENANT_SYNTAX}"


def check_tenant(tenant: str) -> str:
    """`tenant` if it is a valid tenant id, else StoreError; the only tenant id check there is."""
    problem = tenant_problem(tenant)
    if problem is not None:
        raise StoreError(problem)
    return tenant


def quote_identifier(name: str, what: str = "identifier") -> str:
    """The checked identifier in backquotes, ready for SQL text."""
    return f"`{check_identifier(name, what)}`"


def default_url() -> str:
    """$AUDITRAIL_CLICKHOUSE_URL, else the embedded store under ./.auditrail/store."""
    return os.environ.get(URL_ENV) or "chdb://" + os.path.abspath(DEFAULT_STORE_DIR)


class Store:
    """A ClickHouse connection bound to one database: chDB in-process or a server over HTTP(S)."""

    def __init__(self, url: str, database: str, embedded: bool, client: Any) -> None:
        self.url = url
        self.database = check_identifier(database, "database name")
        self.embedded = embedded
        self.client = client

    @classmethod
    def open(cls, url: str | None = None, database: str = DEFAULT_DATABASE) -> Store:
        """Connect to `url` (default :func:`default_url`); the database need not exist yet (migrate makes it)."""
        url = url or default_url()
        check_identifier(database, "database name")
        scheme = urlparse(url).scheme
        if scheme == "chdb":
            return cls(url, database, True, _open_chdb(url))
        if scheme in ("http", "https"):
            try:
                client = clickhouse_connect.get_client(dsn=url, settings=dict(CLIENT_SETTINGS))
            except ClickHouseError as exc:
                raise StoreError(f"cannot connect to ClickHouse at {_redact(url)}: {exc}") from exc
            return cls(url, database, False, client)
        raise StoreError(f"unsupported storage URL {_redact(url)!r}: use chdb:///path or http(s)://host:port")

    def table(self, name: str) -> str:
        """`db`.`name` for one of our tables."""
        return f"{quote_identifier(self.database)}.{quote_identifier(name, 'table name')}"

    def command(self, sql: str, parameters: dict[str, Any] | None = None,
                settings: dict[str, Any] | None = None) -> Any:
        """Run a statement that returns no rows (DDL, INSERT ... SELECT, SYSTEM, OPTIMIZE)."""
        return self.client.command(sql, parameters=parameters, settings=settings)

    def query(self, sql: str, parameters: dict[str, Any] | None = None,
              settings: dict[str, Any] | None = None) -> Any:
        """Run a SELECT; the clickhouse_connect QueryResult (``.result_rows``, ``.column_names``...)."""
        return self.client.query(sql, parameters=parameters, settings=settings)

    def insert(self, table: str, rows: Iterable[Sequence[Any]], column_names: Sequence[str]) -> Any:
        """Insert rows into `table` (a bare name in this store's database)."""
        check_identifier(table, "table name")
        return self.client.insert(table, list(rows), column_names=list(column_names), database=self.database)

    def close(self) -> None:
        """Release the connection (for chDB: the engine, so another directory can be opened)."""
        self.client.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def tenant_scope(tenant: str, parameters: dict[str, Any]) -> str:
    """The tenant predicate every read carries; binds `tenant` into `parameters` as ``tenant``."""
    if not isinstance(tenant, str) or not tenant:
        raise StoreError("a tenant is required to read audit events")
    parameters["tenant"] = check_tenant(tenant)
    return "tenant_id = {tenant:String}"


def tenant_settings(store: Store, tenant: str) -> dict[str, Any]:
    """Settings to send with a tenant's reads: on a server, the row policy of grants.sql filters by them too.

    Defense in depth beside :func:`tenant_scope`: a reader role under that policy sees nothing of another
    tenant even if a query forgot its WHERE. chDB has no row policies (and rejects the custom setting).
    """
    return {} if store.embedded else {"SQL_auditrail_tenant": tenant}


def select_events(
    store: Store,
    tenant: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    event_type: str | None = None,
    actor: str | None = None,
    columns: Sequence[str] = EVENT_COLUMNS,
    limit: int | None = None,
) -> tuple[str, dict[str, Any]]:
    """The canonical read of one tenant's events, each event once: (sql, parameters).

    Each event id once, whatever its copies differ in (the first stored; migration 0012), in the table's key
    order (migration 0036), read in order as a stream: by event id, which for UUIDv7 ids (the
    instrumentation's) is time order; ids without UUIDv7 time come after them, by id.

    `since` is inclusive and `until` exclusive; naive datetimes are taken as UTC. `event_type` ending in
    ``.`` or ``*`` is a prefix (``billing.`` / ``billing.*``), otherwise exact.
    """
    for column in columns:
        if column not in EVENT_COLUMNS and column != "event_key":  # (event_key: the dedup key, not exported)
            raise StoreError(f"unknown column {column!r}; known: {', '.join(EVENT_COLUMNS)}")
    params: dict[str, Any] = {}
    where = [tenant_scope(tenant, params)]
    conditions, filter_params = event_conditions(since=since, until=until, event_type=event_type, actor=actor)
    where += conditions
    params.update(filter_params)
    sql = (f"SELECT {', '.join(quote_identifier(c) for c in columns)} FROM {store.table('audit_events')} FINAL"
           f" WHERE {' AND '.join(where)} ORDER BY key_day, event_key")
    if limit is not None:
        sql += " LIMIT {limit:UInt64}"
        params["limit"] = int(limit)
    return sql, params


def event_conditions(*, since: datetime | None = None, until: datetime | None = None, event_type: str | None = None,
                     actor: str | None = None) -> tuple[list[str], dict[str, Any]]:
    """select_events' filters but the tenant's: (conditions on a row of audit_events, parameters)."""
    params: dict[str, Any] = {}
    where: list[str] = []
    if since is not None:
        where.append("timestamp >= {since:DateTime64(9, 'UTC')}")
        params["since"] = since
    if until is not None:
        where.append("timestamp < {until:DateTime64(9, 'UTC')}")
        params["until"] = until
    if event_type:
        if event_type.endswith(("*", ".")):
            where.append("startsWith(event_type, {event_type:String})")
            params["event_type"] = event_type.rstrip("*")
        else:
            where.append("event_type = {event_type:String}")
            params["event_type"] = event_type
    if actor:
        where.append("actor = {actor:String}")
        params["actor"] = actor
    return where, params


ENGINE_OPTIONS = {"config-file": str(ENGINE_CONFIG)}


def engine_connection_string(path: str) -> str:
    """chdb.connect's argument for the embedded store at directory `path`: the real path (chDB compares paths
    literally; clickhouse-connect's chdb backend resolves them too) and the engine configuration."""
    return f"{os.path.realpath(path)}?{urlencode(ENGINE_OPTIONS)}"


def _open_chdb(url: str) -> Any:
    """The embedded engine at chdb:///path, with the two chDB locking errors told plainly."""
    path = urlparse(url).path
    if not path or path in ("/memory", "/:memory:"):
        raise StoreError(f"{url!r}: give the store a directory, chdb:///abs/path")
    os.makedirs(path, mode=0o700, exist_ok=True)  # every tenant's events and the token hashes: owner only
    try:
        return clickhouse_connect.get_client(dsn=url, settings=dict(CLIENT_SETTINGS), chdb_options=ENGINE_OPTIONS)
    except ClickHouseError as exc:
        text = str(exc)
        held = re.search(r"already initialized with path '([^']*)'", text)
        if held:
            raise StoreError(f"cannot open {path}: this process already has the chDB directory {held.group(1)} open, "
                             "and chDB runs one data directory per process (close that Store first)") from exc
        if "Error initializing EmbeddedServer" in text or "status" in text:
            raise StoreError(f"the embedded store {path} is in use by another process (a running `auditrail serve` "
                             "owns it: chDB allows one process per directory). Stop it, or use the service's API, "
                             "or point AUDITRAIL_CLICKHOUSE_URL at a ClickHouse server.") from exc
        raise StoreError(f"cannot open the embedded store {path}: {text}") from exc


def _redact(url: str) -> str:
    """The URL without its password, for messages."""
    parsed = urlparse(url)
    if parsed.password:
        return url.replace(f":{parsed.password}@", ":***@")
    return url
