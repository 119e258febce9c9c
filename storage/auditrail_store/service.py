"""The store service (``auditrail serve``): OTLP/HTTP ingest, tenant-scoped exports, verification, tokens.

Routes (the OpenAPI document at ``/openapi.json`` is the contract the tests fuzz):

* ``POST /v1/logs``: OTLP/HTTP logs, protobuf or JSON, gzip/deflate or not; an ``ingest`` or ``admin``
  bearer token. A token of one tenant may only send that tenant's events (``audit.tenant_id``); anything
  else is refused whole (403). Malformed input: 400 with a ``google.rpc.Status`` in the request's
  encoding, nothing written (ingest.py decodes and validates all of it before the single insert). Over a
  limit (ingest_limits.py: records, bytes of a record, messages, bytes; checked on the wire before anything
  decodes it): 413 naming it, nothing written.
* ``GET /v1/tenants/{tenant}/events?since=&until=&type=&actor=&format=csv|json|ndjson``: streamed from
  the engine (export.py); a ``read`` token of that tenant (or ``*``), or ``admin``.
* ``GET /v1/tenants/{tenant}/verify``: the chain verification of that tenant's stored events, streamed
  chain by chain (verify_store.verify_stored).
* ``GET /v1/tenants/{tenant}/archive?month=YYYY-MM``: that tenant-month as Parquet, streamed from the engine
  (archive.py); what ``auditrail archive`` uploads while the service owns an embedded store.
* ``GET /healthz``; ``/v1/admin/tokens`` (create, list, revoke: admin of ``*``).
* ``/v1/approvals`` and the ``/approvals`` page: dual approval of sensitive actions (approvals/).
* With ``grafana_port`` (``serve --grafana-port``), on its own port: the read-only ClickHouse HTTP interface
  for Grafana over the same engine (grafana/).
* ``/reviews``: the monthly reviews, their sign-off, and the monthly close's log (reviews/).
* With ``forward_otlp`` (``serve --forward-otlp``): the service's own audit events go to the collector too
  (forward.py), for its alert rules.

Auth is one dependency (:func:`principal`); tenant checks are :meth:`TokenInfo.allows`. Each export and
verify opens its own engine handle, so a long export never blocks ingest on the shared client's lock.
An error after an export's 200 went out aborts the response (no last chunk; :func:`_closing` logs it): the
client sees the transfer cut, never a complete-looking end.
On an embedded store the service writes its local admin door (admin.py) so the CLI keeps working.
Slow clients are cut off by connections.py (header and body timeouts); :func:`serve` caps the connections.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import threading
from collections.abc import Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from pydantic import BaseModel, Field
from starlette.requests import ClientDisconnect

from auditrail import semconv

from . import admin
from .allocator import keep_request_memory
from .connections import (DEFAULT_BODY_TIMEOUT, DEFAULT_HEADER_TIMEOUT, DEFAULT_MAX_CONNECTIONS, BodyDeadline,
                          client_disconnected, header_timeout_protocol)
from .archive import MONTH_PATTERN, PARQUET_MEDIA_TYPE, parquet_chunks
from .db import DEFAULT_DATABASE, TENANT_MAX, TENANT_PATTERN, TENANT_SYNTAX, Store, StoreError, default_url
from .export import FORMATS, ExportFilters, parse_time, stream_export
from .ingest import (JSON, PROTOBUF, EncodedRows, IngestError, LogBatch, LogWriter, content_kind, decode_json, decompress,
                     media_type, protobuf_slices)
from .ingest_json import json_to_protobuf, native_json
from .ingest_limits import IngestLimits, LimitError, check_protobuf
from .ingest_fast import Arrival, FastLogWriter
from .validation import check_batch
from .openapi import OTLP_LOGS_BODY, install_allow_handler, install_otlp_schemas, responses
from .tokens import ALL_TENANTS, SCOPES, TokenInfo, TokenStore
from .approvals.service import include_approvals, open_approvals
from .reviews.service import include_reviews, open_reviews

__all__ = ["create_app", "serve"]

logger = logging.getLogger("auditrail.store")

_LOCAL_ADMIN = TokenInfo("local-admin", ALL_TENANTS, "admin", "the service's local admin door")
_MEDIA = {"csv": "text/csv; charset=utf-8", "json": "application/json", "ndjson": "application/x-ndjson"}


@dataclass
class _State:
    url: str
    database: str
    store: Store
    writer: LogWriter
    tokens: TokenStore
    local_secret: str | None
    limits: IngestLimits
    write_lock: threading.Lock
    handles: _Handles


def _state(request: Request) -> _State:
    return request.app.state.auditrail


# Declares the scheme in the OpenAPI document; principal() reads and checks the header itself.
_BEARER = HTTPBearer(auto_error=False, description="a store token: `art_<token_id>_<secret>` (`auditrail tokens`)")


def principal(request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]) -> TokenInfo:
    """The caller: a valid bearer token, or the local admin door; 401 otherwise."""
    state = _state(request)
    local = request.headers.get(admin.LOCAL_ADMIN_HEADER)
    if (local and state.local_secret and _from_this_host(request)
            and hmac.compare_digest(local.encode(), state.local_secret.encode())):
        return _LOCAL_ADMIN
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    info = state.tokens.authenticate(token) if scheme.lower() == "bearer" else None
    if info is None:
        raise HTTPException(401, "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"})
    return info


def _from_this_host(request: Request) -> bool:
    """The local admin door is for this machine's CLI: a loopback peer, or one connecting from the very
    address it reached (the service bound to a LAN address); never another host, whatever it sends."""
    client, server = request.client, request.scope.get("server")
    try:
        peer = ipaddress.ip_address(client.host) if client else None
    except ValueError:
        return False
    peer = getattr(peer, "ipv4_mapped", None) or peer  # ::ffff:127.0.0.1 is loopback too
    return peer is not None and (peer.is_loopback or (server is not None and client.host == server[0]))


Caller = Annotated[TokenInfo, Depends(principal)]
# ISO-8601 filter bounds: what the document says, and export.parse_time reads (a bound outside the years the
# store holds selects what the nearest one does).
TimeQuery = Annotated[str | None, Query(max_length=64, description="ISO-8601 date-time or date (UTC without an "
                                        "offset); since is inclusive, until exclusive", json_schema_extra={
    "anyOf": [{"type": "string", "format": "date-time"}, {"type": "string", "format": "date"}, {"type": "null"}]})]
TenantPath = Annotated[str, Path(min_length=1, max_length=TENANT_MAX, pattern=TENANT_PATTERN,
                                  description=f"the tenant id: {TENANT_SYNTAX}")]


_MAY = {"read": "read the events of tenant {tenant!r}", "ingest": "ingest events",
        "admin": "administer tokens (an admin token of tenant '*' may)"}


def _require(info: TokenInfo, scope: str, tenant: str | None) -> None:
    if not info.allows(scope, tenant):
        raise HTTPException(403, f"token {info.token_id} ({info.scope} of tenant {info.tenant_id!r}) may not "
                                 + _MAY[scope].format(tenant=tenant))


class TokenRequest(BaseModel):
    """A token to create."""

    tenant: str = Field(min_length=1, max_length=TENANT_MAX, pattern=TENANT_PATTERN,
                        description=f"tenant id ({TENANT_SYNTAX}); * for all tenants")
    scope: Literal["read", "ingest", "approve", "admin"]
    description: str = Field(default="", max_length=500)


class TokenOut(BaseModel):
    """A token's metadata (never its secret)."""

    token_id: str
    tenant: str
    scope: str
    description: str
    created_at: str | None
    created_by: str
    revoked_at: str | None
    revoked_by: str
    active: bool


class CreatedToken(TokenOut):
    """A new token: ``token`` is shown this once."""

    token: str


class Health(BaseModel):
    """Liveness and the store behind it."""

    status: str
    embedded: bool
    database: str


def create_app(url: str | None = None, database: str = DEFAULT_DATABASE, *, migrate_schema: bool = True,
               limits: IngestLimits | None = None, host: str = "127.0.0.1", port: int | None = None,
               body_timeout: float = DEFAULT_BODY_TIMEOUT, grafana_port: int | None = None,
               forward_otlp: str | None = None) -> FastAPI:
    """The FastAPI app over the store at `url`; the store is opened (and migrated) when the app starts.
    `limits`: per-request ingest limits (default: ``AUDITRAIL_INGEST_MAX_*`` or the defaults); a request's
    body must arrive within `body_timeout` seconds of its headers (408 otherwise). `grafana_port`: also serve
    the read-only ClickHouse HTTP interface for Grafana there (embedded stores). `forward_otlp`: also send the
    service's own audit events to this collector (forward.py; default $AUDITRAIL_FORWARD_OTLP)."""
    url = url or default_url()
    limits = limits or IngestLimits.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        store = Store.open(url, database)
        if migrate_schema:
            from .migrate import migrate

            applied = migrate(store)
            if applied:
                logger.info("migrated: %s", ", ".join(applied))
        secret = admin.write_control(url, host, port) if (store.embedded and port) else None
        token_handle = Store.open(url, database)  # its own handle: auth never waits behind an insert
        app.state.auditrail = _State(url, database, store, LogWriter(store.client, store.database),
                                     TokenStore(token_handle), secret, limits, threading.Lock(),
                                     _Handles(url, database))
        # Protobuf requests of all-tenant tokens on an embedded store: decoded by the engine (ingest_fast.py).
        app.state.auditrail_fast = FastLogWriter.for_store(store, app.state.auditrail.writer.columns)
        # Its own handle and lock; its approval.* events are written through the ingest writer.
        app.state.auditrail_approvals = open_approvals(url, database,
                                                       lambda batch: _write(app.state.auditrail, batch), forward_otlp)
        grafana = _start_grafana(store, app.state.auditrail.tokens, host, grafana_port)
        # The monthly close (reviews/schedule.py) and /reviews: review.* events go through the same writer.
        app.state.auditrail_reviews = open_reviews(url, database, lambda batch: _write(app.state.auditrail, batch),
                                                   forward_otlp)
        try:
            yield
        finally:
            if grafana is not None:
                grafana.close()
            if app.state.auditrail_fast is not None:
                app.state.auditrail_fast.close()
            admin.remove_control(url, secret)
            app.state.auditrail_reviews.shutdown()
            app.state.auditrail_approvals.close()
            app.state.auditrail.handles.close()
            token_handle.close()
            store.close()

    app = FastAPI(title="auditrail store", version="1", lifespan=lifespan,
                  description="OTLP/HTTP ingest of audit events, tenant-scoped exports and chain verification.")

    @app.post("/v1/logs", summary="OTLP/HTTP logs ingest (protobuf or JSON, gzip)", openapi_extra=OTLP_LOGS_BODY,
              responses={200: {"content": {"application/x-protobuf": {}, "application/json": {}}},
                         **responses(400, 401, 403, 408, 413, otlp=True)})
    async def ingest_logs(request: Request, caller: Caller) -> Response:
        _require(caller, "ingest", None)  # before the body is read: an unknown or read token costs nothing more
        state = _state(request)
        content_type = request.headers.get("content-type")
        kind = content_kind(content_type)
        is_protobuf = kind == PROTOBUF
        max_body = state.limits.max_body
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > max_body:
            return _otlp_error(413, f"request larger than {max_body} bytes (--max-body)", is_protobuf)
        fast: FastLogWriter | None = request.app.state.auditrail_fast
        # a request the engine path may take (protobuf, or OTLP/JSON that the native core transcodes to it) is
        # announced while its body arrives: an insert about to start alone waits a little for it
        # (ingest_fast.GROUP_WAIT: a burst's requests make one group, not 1 + n)
        engine_path = is_protobuf or (kind == JSON and native_json())
        arrival = fast.arrive() if fast is not None and engine_path and caller.tenant_id == ALL_TENANTS else None
        try:
            chunks: list[bytes] = []
            received = 0
            async for chunk in request.stream():  # bounded even without Content-Length (chunked uploads)
                received += len(chunk)
                if received > max_body:
                    return _otlp_error(413, f"request larger than {max_body} bytes (--max-body)", is_protobuf)
                chunks.append(chunk)
            # the chunks are joined in the worker: a 4 MB join on the event loop held every other request
            refused = await run_in_threadpool(_ingest, state, fast, caller, chunks, content_type,
                                              request.headers.get("content-encoding"), arrival)
        except LimitError as error:
            return _otlp_error(413, str(error), is_protobuf)
        except IngestError as error:
            return _otlp_error(400, str(error), is_protobuf)
        finally:
            if fast is not None:
                fast.leave(arrival)  # gone (413, 400, a client that left) or declined: no group waits for it
        if refused:
            return _otlp_error(403, refused, is_protobuf)
        if is_protobuf:
            return Response(ExportLogsServiceResponse().SerializeToString(), media_type=PROTOBUF)
        return Response(b"{}", media_type="application/json")

    @app.get("/v1/tenants/{tenant}/events", summary="one tenant's events, streamed",
             responses={200: {"content": {_MEDIA["csv"]: {}, _MEDIA["json"]: {}, _MEDIA["ndjson"]: {}}},
                        **responses(400, 401, 403)})
    def tenant_events(
        request: Request,
        caller: Caller,
        tenant: TenantPath,
        since: TimeQuery = None,
        until: TimeQuery = None,
        type: Annotated[str | None, Query(description="event type; `billing.*` or `billing.` for a prefix",
                                          max_length=256)] = None,
        actor: Annotated[str | None, Query(max_length=1024)] = None,
        format: Annotated[Literal["csv", "json", "ndjson"], Query()] = "json",
        csv_escape: Annotated[bool, Query(description="CSV only: a text cell starting with = + - @, tab or CR gets "
                                          "a leading ' so spreadsheets do not run it as a formula (OWASP); false "
                                          "writes every value as stored")] = True,
    ) -> StreamingResponse:
        _require(caller, "read", tenant)
        filters = _filters(since, until, type, actor)
        store = _open_handle(_state(request))
        chunks = stream_export(store, tenant, filters, format, csv_escape=csv_escape)
        return StreamingResponse(_closing(_state(request), store, chunks, f"export of tenant {tenant!r}"),
                                 media_type=_MEDIA[format], headers={
                                     "Content-Disposition": f'attachment; filename="audit-events.{format}"'})

    @app.get("/v1/tenants/{tenant}/verify", summary="verify the hash chains of a tenant's stored events",
             responses=responses(400, 401, 403))
    def tenant_verify(request: Request, caller: Caller, tenant: TenantPath, since: TimeQuery = None,
                      until: TimeQuery = None) -> dict[str, Any]:
        _require(caller, "read", tenant)
        from .verify_store import verify_stored

        filters = _filters(since, until, None, None)
        state = _state(request)
        store = _open_handle(state)
        try:
            report = verify_stored(store, tenant, filters)
        except BaseException:
            store.close()
            raise
        state.handles.give(store)
        return report.to_dict()

    @app.get("/v1/tenants/{tenant}/archive", summary="one tenant-month as Parquet, streamed (`auditrail archive`)",
             responses={200: {"content": {PARQUET_MEDIA_TYPE: {}}}, **responses(401, 403)})
    def tenant_archive(
        request: Request,
        caller: Caller,
        tenant: TenantPath,
        month: Annotated[str, Query(description="YYYY-MM (UTC), 1900-01 to 2262-03",
                                         # archive.month_range's own rule: any other month is a 422 here
                                         pattern=MONTH_PATTERN)],
        schema_only: Annotated[bool, Query(description="no rows: the archive's Parquet schema")] = False,
    ) -> StreamingResponse:
        # The CLI uploads what this returns with the operator's own cloud credentials (archive.py says why).
        _require(caller, "read", tenant)
        state = _state(request)
        store = _open_handle(state)
        chunks = parquet_chunks(store, tenant, month, empty=schema_only)
        return StreamingResponse(_closing(state, store, chunks, f"archive of tenant {tenant!r}, {month}"),
                                 media_type=PARQUET_MEDIA_TYPE)

    @app.get("/healthz", summary="liveness: the store answers")
    def healthz(request: Request) -> Health:
        state = _state(request)
        with state.write_lock:
            state.store.query("SELECT 1")
        return Health(status="ok", embedded=state.store.embedded, database=state.database)

    @app.post("/v1/admin/tokens", summary="create a token (admin of every tenant)", status_code=201,
              responses=responses(400, 401, 403))
    def create_token(request: Request, caller: Caller, body: TokenRequest) -> CreatedToken:
        _require(caller, "admin", ALL_TENANTS)
        state = _state(request)
        try:
            token, info = state.tokens.create(body.tenant, body.scope, body.description,
                                                  created_by=f"token:{caller.token_id}")
        except StoreError as error:
            raise HTTPException(400, str(error))
        logger.info("token %s created (tenant %r, scope %s) by %s", info.token_id, info.tenant_id, info.scope,
                    caller.token_id)
        return CreatedToken(token=token, **info.to_dict())

    @app.get("/v1/admin/tokens", summary="list tokens (no secrets)", responses=responses(401, 403))
    def list_tokens(request: Request, caller: Caller, all: bool = False) -> list[TokenOut]:
        _require(caller, "admin", ALL_TENANTS)
        state = _state(request)
        return [TokenOut(**info.to_dict()) for info in state.tokens.list(include_revoked=all)]

    @app.delete("/v1/admin/tokens/{token_id}", summary="revoke a token", status_code=204,
                responses=responses(401, 403, 404))
    def revoke_token(request: Request, caller: Caller,
                     token_id: Annotated[str, Path(pattern="^[0-9a-f]{16}$")]) -> Response:
        _require(caller, "admin", ALL_TENANTS)
        state = _state(request)
        revoked = state.tokens.revoke(token_id, revoked_by=f"token:{caller.token_id}")
        if not revoked:
            raise HTTPException(404, f"no active token {token_id}")
        logger.info("token %s revoked by %s", token_id, caller.token_id)
        return Response(status_code=204)

    include_approvals(app)
    include_reviews(app)

    @app.exception_handler(StoreError)
    async def store_error(request: Request, error: StoreError) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=400)

    app.add_exception_handler(ClientDisconnect, client_disconnected)
    app.add_middleware(BodyDeadline, seconds=body_timeout)

    install_allow_handler(app)
    install_otlp_schemas(app)
    assert SCOPES and FORMATS  # the names the routes' Literal types spell out
    return app


def _filters(since: str | None, until: str | None, event_type: str | None, actor: str | None) -> ExportFilters:
    return ExportFilters(parse_time(since, "since"), parse_time(until, "until"), event_type or None, actor or None)


def _foreign_tenants(caller: TokenInfo, batch: LogBatch) -> set[str | None]:
    """Tenants in the batch that the caller's token may not ingest for."""
    if caller.tenant_id == ALL_TENANTS:
        return set()
    return {t for t in batch.attribute_values(semconv.TENANT) if t != caller.tenant_id}


def _ingest(state: _State, fast: FastLogWriter | None, caller: TokenInfo, chunks: list[bytes],
            content_type: str | None, encoding: str | None, arrival: Arrival | None = None) -> str | None:
    """Join the body's chunks, decompress, check the limits, decode and write one request (in a worker thread);
    the 403 message when the token may not ingest one of its tenants. LimitError (413) before anything
    proportional to the records runs: the limits are checked on the wire (protobuf; JSON transcoded to it as a
    stream, records counted and measured as they are read, the body's brackets first). IngestError (400), LimitError and a 403: nothing written."""
    kind = media_type(content_type)
    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    chunks.clear()
    data = decompress(body, encoding, state.limits.max_body)
    del body
    size = len(data)  # the budgets that follow the request's size are the body's, also once transcoded
    if kind != PROTOBUF and native_json():
        # OTLP/JSON read as a stream into protobuf (limits counted as it reads): one pipeline from here
        data = json_to_protobuf(data, state.limits)
        kind = PROTOBUF
    if kind == PROTOBUF:
        if fast is not None and caller.tenant_id == ALL_TENANTS and fast.write(data, state.limits, size, arrival) is not None:
            return None  # the engine path wrote it, the limits checked as it read (no tenant check to make for
            # an all-tenant token)
        # before upb or the Python decoder read it; a record plainly of another tenant than a tenant-scoped
        # token's stops it too (the check after decoding judges the rest)
        scanned = check_protobuf(data, state.limits, None if caller.tenant_id == ALL_TENANTS else caller.tenant_id,
                                 size)
        if scanned.foreign is not None:
            return (f"token {caller.token_id} may not ingest events of tenant(s) {scanned.foreign[1][:200]!r} "
                    f"(log record {scanned.foreign[0]})")
        # the existing path (tenant-scoped tokens, servers, what the engine declined), a slice at a time
        batches = protobuf_slices(data)
    else:  # no native core: decode_json, the reference reading
        batches = iter([decode_json(data, state.limits)])
    del data  # the skeleton protobuf_slices reads holds what is left of the body
    rows = EncodedRows(state.writer.columns)
    try:
        refused: set[str | None] = set()
        first = 0
        for batch in batches:  # every slice checked and encoded before anything is written: all or nothing
            check_batch(batch, first)  # times the store cannot hold, tenant ids outside the syntax: 400 naming it
            first += len(batch)
            refused |= _foreign_tenants(caller, batch)
            if not refused:
                rows.add(batch)
        if refused:
            return (f"token {caller.token_id} may not ingest events of tenant(s) "
                    f"{', '.join(sorted(repr(t) for t in refused))[:200]}")
        with state.write_lock:
            state.writer.write_encoded(rows)
    finally:
        rows.close()
    return None


def _write(state: _State, batch: LogBatch) -> int:
    """Write one decoded batch under the service's write lock (ingest and the approval service's events)."""
    with state.write_lock:
        return state.writer.write(batch)


class _Handles:
    """Store handles for reads, reused: each export or verify takes one of its own (chDB: another handle
    on the same engine, ~20 ms to open; servers: another connection), so a long export never holds the
    ingest client's lock, and a short query does not pay for a new handle."""

    def __init__(self, url: str, database: str, keep: int = 4) -> None:
        self._url, self._database, self._keep = url, database, keep
        self._idle: list[Store] = []
        self._lock = threading.Lock()

    def take(self) -> Store:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return Store.open(self._url, self._database)

    def give(self, store: Store) -> None:
        with self._lock:
            if len(self._idle) < self._keep:
                self._idle.append(store)
                return
        store.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for store in idle:
            store.close()


def _open_handle(state: _State) -> Store:
    """A read handle from the pool; give it back with state.handles.give (``_closing`` does)."""
    return state.handles.take()


def _closing(state: _State, store: Store, chunks: Iterator[bytes], what: str) -> Iterator[bytes]:
    """`chunks`, then the handle back to the pool. An error after the 200 went out (the engine failed
    mid-stream) propagates: uvicorn then closes the connection without the chunked body's last chunk, so
    the client sees a cut transfer, never a complete-looking one. Logged here with the engine's message
    only (queries bind their values; tokens never reach them)."""
    sent = 0
    try:
        for chunk in chunks:
            sent += len(chunk)
            yield chunk
    except BaseException as error:
        store.close()  # a stream cut half-way may leave the handle mid-query: never reuse it
        if isinstance(error, Exception):
            logger.error("%s aborted after %d bytes, the response is cut: %s: %s", what, sent,
                         type(error).__name__, error)
        raise
    else:
        state.handles.give(store)


def _embedded_only_for_grafana(url: str) -> None:
    """`--grafana-port` serves the embedded store only; a server is Grafana's to reach directly."""
    if not url.startswith("chdb://"):
        raise StoreError("--grafana-port serves the embedded store only: point Grafana's ClickHouse data source "
                         "at the ClickHouse server itself, with a reader account (auditrail migrate --grants)")


def _start_grafana(store: Store, tokens: TokenStore, host: str, port: int | None) -> Any:
    """The Grafana interface on `port` over the service's engine (grafana/); None when off."""
    if port is None:
        return None
    _embedded_only_for_grafana(store.url)
    from urllib.parse import urlparse

    from .grafana import GrafanaInterface

    return GrafanaInterface(urlparse(store.url).path, store.database, tokens, host, port).start()


def _otlp_error(status: int, message: str, protobuf: bool) -> Response:
    """An OTLP/HTTP error: google.rpc.Status in the request's encoding."""
    code = {400: 3, 401: 16, 403: 7, 413: 8}.get(status, 13)
    if protobuf:
        return Response(Status(code=code, message=message).SerializeToString(), status_code=status,
                        media_type=PROTOBUF)
    return JSONResponse({"code": code, "message": message}, status_code=status)


def serve(host: str = "127.0.0.1", port: int = 4320, url: str | None = None, database: str = DEFAULT_DATABASE,
          log_level: str = "info", *, limits: IngestLimits | None = None,
          header_timeout: float = DEFAULT_HEADER_TIMEOUT, body_timeout: float = DEFAULT_BODY_TIMEOUT,
          max_connections: int = DEFAULT_MAX_CONNECTIONS, grafana_port: int | None = None,
          forward_otlp: str | None = None) -> None:
    """Run the service with uvicorn until interrupted: slow clients cut off (connections.py), at most
    `max_connections` served at once (503 beyond)."""
    import copy

    import uvicorn
    from uvicorn.config import LOGGING_CONFIG

    if grafana_port is not None:
        _embedded_only_for_grafana(url or default_url())  # before uvicorn starts: a plain error and exit 2
    from .forward import forward_url

    forward_otlp = forward_url(forward_otlp)  # the same: a URL that cannot be one stops the start
    keep_request_memory()  # request bodies reuse freed memory, not fresh pages (allocator.py)
    app = create_app(url, database, host=host, port=port, limits=limits, body_timeout=body_timeout,
                     grafana_port=grafana_port, forward_otlp=forward_otlp)
    log_config = copy.deepcopy(LOGGING_CONFIG)  # the service's own lines beside uvicorn's, in its format
    log_config["loggers"][logger.name] = {"handlers": ["default"], "level": log_level.upper(), "propagate": False}
    uvicorn.run(app, host=host, port=port, log_level=log_level, proxy_headers=False, server_header=False,
                http=header_timeout_protocol(header_timeout), limit_concurrency=max_connections,
                log_config=log_config)
