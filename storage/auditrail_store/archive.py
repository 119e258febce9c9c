"""`auditrail archive`: one tenant-month of audit events as Parquet on S3 or Google Cloud Storage.

The object is ``<prefix>/tenant=<tenant>/month=<YYYY-MM>/events.parquet`` (Hive-style partition folders, which
BigQuery and Athena external tables read as columns); re-running the same month replaces it. The rows are the
canonical read (db.select_events: tenant scope, each event once, oldest first).

* ``s3://``: the engine writes it, ``INSERT INTO FUNCTION s3(url, key, secret, 'Parquet') SELECT ...``, so
  rows stream from ClickHouse to the object store without passing through Python. Credentials come from
  ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` (or ``AUDITRAIL_S3_*``) and travel as bound parameters.
* ``gs://``: the engine streams Parquet into a temporary file (memory stays flat), which google-cloud-storage
  uploads (resumable, CRC32C-checked) with Application Default Credentials, or to ``STORAGE_EMULATOR_HOST``.

While ``auditrail serve`` owns an embedded store, the CLI asks the service for the month's Parquet over its
local door (``GET /v1/tenants/{tenant}/archive``, admin.py) and uploads it itself: the operator's cloud
credentials stay in the operator's process (the service never receives a secret, nor calls out at a local
caller's request), and a slow upload holds no engine handle. An ``s3://`` upload of that file goes through a
scratch in-process engine (``s3(...) SELECT * FROM file(...)``), so S3 needs no extra library either way.

Columns keep the store's types with three changes for BigQuery and Athena: ``timestamp`` and ``inserted_at`` as
microsecond UTC timestamps (the exact nanoseconds ride beside in ``time_unix_nano``), ``chain_seq`` as a
signed 64-bit integer (BigQuery has no unsigned one), and ``attributes`` as JSON text like ``payload``
(BigQuery's loaders disagree on Parquet maps; JSON_VALUE reads text). ``--bigquery-ddl`` prints the
external table (and a load job) over the files, its types from this very schema (:func:`bigquery_fields`).
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

from .db import EVENT_COLUMNS, Store, StoreError, quote_identifier, select_events

__all__ = ["MONTH_PATTERN", "PARQUET_MEDIA_TYPE", "S3Options", "archive_month", "bigquery_ddl", "bigquery_fields", "main_archive", "object_url",
           "parquet_chunks", "upload_parquet"]

PARQUET_MEDIA_TYPE = "application/vnd.apache.parquet"
# The months the store's DateTime64(9) holds wholly (1900-01-01 .. 2262-04-11): 1900-01 to 2262-03. The one
# rule for month_range and the OpenAPI document's `month` parameter.
MONTH_PATTERN = r"^((19[0-9]{2}|2[01][0-9]{2}|22[0-5][0-9]|226[01])-(0[1-9]|1[0-2])|2262-0[1-3])$"
_MONTH = re.compile(MONTH_PATTERN)
_CHUNK = 1 << 20
_UPLOAD_CHUNK = 8 << 20  # a multiple of 256 KiB, as GCS's resumable uploads require
_PARQUET_SETTINGS = " SETTINGS output_format_parquet_compression_method = 'zstd'"
_NEEDS_ARCHIVE_EXTRA = "pip install 'auditrail[archive]'"


def month_range(month: str) -> tuple[datetime, datetime]:
    """[first instant, first instant of the next month) of YYYY-MM, UTC."""
    if not _MONTH.fullmatch(month or ""):
        raise StoreError(f"invalid month {month!r}: use YYYY-MM, 1900-01 to 2262-03")
    year, number = int(month[:4]), int(month[5:7])
    start = datetime(year, number, 1, tzinfo=timezone.utc)
    end = datetime(year + (number == 12), number % 12 + 1, 1, tzinfo=timezone.utc)
    return start, end


def parse_target(target: str) -> tuple[str, str, str]:
    """(scheme, bucket, prefix) of s3://bucket/prefix or gs://bucket/prefix."""
    parsed = urlparse(target or "")
    if parsed.scheme not in ("s3", "gs") or not parsed.netloc:
        raise StoreError(f"invalid target {target!r}: use s3://bucket/prefix or gs://bucket/prefix")
    return parsed.scheme, parsed.netloc, parsed.path.strip("/")


def object_key(prefix: str, tenant: str, month: str) -> str:
    """The object's key under the prefix: Hive-style tenant= and month= folders."""
    return "/".join(p for p in (prefix, f"tenant={quote(tenant, safe='')}", f"month={month}", "events.parquet") if p)


def object_url(target: str, tenant: str, month: str, endpoint: str | None, region: str) -> str:
    """The HTTP(S) URL of the Parquet object for s3://bucket/prefix (path-style on an endpoint)."""
    scheme, bucket, prefix = parse_target(target)
    if scheme != "s3":
        raise StoreError(f"invalid target {target!r}: not s3://")
    # Percent-encode the tenant: ClickHouse reads *, ?, { and } in s3 URLs as globs.
    key = object_key(prefix, tenant, month)
    key = key.replace("*", "%2A").replace("{", "%7B").replace("}", "%7D").replace("?", "%3F")
    if endpoint:
        return f"{endpoint.rstrip('/')}/{bucket}/{key}"
    return f"https://{bucket}.s3.{region}.amazonaws.com/{key}"


def _select_expression(column: str) -> str:
    name = quote_identifier(column)
    if column == "event_id":
        return f"toString({name}) AS {name}"
    if column == "timestamp":  # BigQuery and Athena read microsecond timestamps; the exact ns ride beside
        return f"toDateTime64({name}, 6, 'UTC') AS {name}, toUnixTimestamp64Nano({name}) AS `time_unix_nano`"
    if column == "inserted_at":
        return f"toDateTime64({name}, 6, 'UTC') AS {name}"
    if column == "chain_seq":  # BigQuery has no UINT64; sequence numbers stay far below 2^63
        return f"toInt64({name}) AS {name}"
    if column == "attributes":  # JSON text, like payload: one reading in BigQuery, Athena and pyarrow
        return f"toJSONString({name}) AS {name}"
    return name


def archive_query(store: Store, tenant: str, month: str, *, empty: bool = False) -> tuple[str, dict[str, Any]]:
    """The SELECT of one tenant-month in the archive's columns: (sql, parameters); `empty`: no rows (the schema)."""
    start, end = month_range(month)
    inner, params = select_events(store, tenant, since=start, until=end)
    columns = ", ".join(_select_expression(c) for c in EVENT_COLUMNS)
    return f"SELECT {columns} FROM ({inner}){' LIMIT 0' if empty else ''}", params


def parquet_chunks(store: Store, tenant: str, month: str, *, empty: bool = False) -> Iterator[bytes]:
    """One tenant-month as a Parquet file (zstd), streamed from the engine as it writes it."""
    sql, params = archive_query(store, tenant, month, empty=empty)
    # The settings ride in the query's own clause so the chDB backend streams (export.py says why).
    stream = store.client.raw_stream(sql + _PARQUET_SETTINGS, parameters=params, fmt="Parquet")
    try:
        while chunk := stream.read(_CHUNK):
            yield chunk
    finally:
        stream.close()


def spool(chunks: Iterable[bytes], directory: str) -> Path:
    """Write the chunks to a file in `directory` (flat memory); its path."""
    path = Path(directory) / "events.parquet"
    with open(path, "wb") as out:
        for chunk in chunks:
            out.write(chunk)
    return path


def parquet_rows(path: Path) -> int:
    """Rows in a Parquet file, from its footer: what was actually uploaded."""
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(path).metadata.num_rows)


@dataclass(frozen=True)
class S3Options:
    """Where and as whom s3:// archives are written; :meth:`from_env` fills what is not given."""

    endpoint: str | None = None
    region: str = "us-east-1"
    access_key: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, endpoint: str | None = None, region: str | None = None) -> S3Options:
        """The given endpoint/region, else $AUDITRAIL_S3_ENDPOINT / $AWS_REGION; keys from AUDITRAIL_S3_* or AWS_*."""
        env = os.environ.get
        return cls(endpoint or env("AUDITRAIL_S3_ENDPOINT"),
                   region or env("AWS_REGION") or env("AWS_DEFAULT_REGION") or "us-east-1",
                   env("AUDITRAIL_S3_ACCESS_KEY_ID") or env("AWS_ACCESS_KEY_ID"),
                   env("AUDITRAIL_S3_SECRET_ACCESS_KEY") or env("AWS_SECRET_ACCESS_KEY"))


def _s3_insert(store: Store, url: str, select: str, params: dict[str, Any], s3: S3Options) -> None:
    params = dict(params, s3_url=url)
    if s3.access_key and s3.secret_key:
        params.update(s3_key=s3.access_key, s3_secret=s3.secret_key)
        function = "s3({s3_url:String}, {s3_key:String}, {s3_secret:String}, 'Parquet')"
    else:
        function = "s3({s3_url:String}, 'Parquet')"
    store.command(f"INSERT INTO FUNCTION {function} {select}", params,
                  settings={"s3_truncate_on_insert": 1, "output_format_parquet_compression_method": "zstd"})


def _require_extra(module: str, what: str) -> None:
    """Fail before any work when the archive extra is missing."""
    import importlib

    try:
        importlib.import_module(module)
    except ImportError:
        raise StoreError(f"{what} need the archive extra: {_NEEDS_ARCHIVE_EXTRA} "
                         f"(not installed: {module.replace('.', '-')})") from None


def _gcs_upload(path: Path, bucket: str, key: str) -> str:
    """Upload the file to gs://bucket/key with google-cloud-storage; the gs:// URL."""
    _require_extra("google.cloud.storage", "gs:// archives")
    from google.api_core import exceptions as api_exceptions
    from google.auth import exceptions as auth_exceptions
    from google.cloud import storage
    from google.cloud.storage.retry import DEFAULT_RETRY

    try:
        client = storage.Client()  # Application Default Credentials; STORAGE_EMULATOR_HOST: anonymous
        # Past 8 MiB the client uploads resumably, chunk by chunk, each chunk in memory: 8 MiB, not its 100 MiB.
        blob = client.bucket(bucket).blob(key, chunk_size=_UPLOAD_CHUNK)
        # Retried on transient errors: the upload is idempotent (it replaces the object with the same bytes).
        blob.upload_from_filename(str(path), content_type=PARQUET_MEDIA_TYPE, checksum="crc32c", retry=DEFAULT_RETRY)
    except auth_exceptions.DefaultCredentialsError as error:
        raise StoreError(f"no Google Cloud credentials for gs://{bucket}: {error}") from None
    except api_exceptions.GoogleAPICallError as error:
        # The client's message ends with its own retry details on later lines: the first is the server's answer.
        reason = str(error.message).splitlines()[0] if error.message else type(error).__name__
        raise StoreError(f"upload to gs://{bucket}/{key} failed: {error.code} {reason}") from None
    return f"gs://{bucket}/{key}"


def archive_month(store: Store, tenant: str, month: str, target: str,
                  s3: S3Options | None = None) -> tuple[str, int]:
    """Write one tenant-month as Parquet to s3:// or gs:// (replacing it); (object URL, rows written).

    One call from anywhere that holds the store (the CLI, the service's monthly close): s3:// settings default
    to the environment (:meth:`S3Options.from_env`), gs:// uses Application Default Credentials.
    """
    scheme, bucket, prefix = parse_target(target)
    month_range(month)
    if scheme == "gs":
        with tempfile.TemporaryDirectory(prefix="auditrail-archive.") as directory:
            path = spool(parquet_chunks(store, tenant, month), directory)
            return _gcs_upload(path, bucket, object_key(prefix, tenant, month)), parquet_rows(path)
    s3 = s3 or S3Options.from_env()
    url = object_url(target, tenant, month, s3.endpoint, s3.region)
    select, params = archive_query(store, tenant, month)
    rows = int(store.query(f"SELECT count() FROM ({select})", params).result_rows[0][0])
    _s3_insert(store, url, select, params, s3)
    return url, rows


def upload_parquet(path: Path, tenant: str, month: str, target: str,
                   s3: S3Options | None = None) -> tuple[str, int]:
    """Upload an archive file made elsewhere (the running service's) to its place; (object URL, rows)."""
    scheme, bucket, prefix = parse_target(target)
    rows = parquet_rows(path)
    if scheme == "gs":
        return _gcs_upload(path, bucket, object_key(prefix, tenant, month)), rows
    s3 = s3 or S3Options.from_env()
    url = object_url(target, tenant, month, s3.endpoint, s3.region)
    # A scratch engine of this process (the store's is the service's) sends the file with the same s3 writer.
    with tempfile.TemporaryDirectory(prefix="auditrail-archive-engine.") as scratch, \
            Store.open(f"chdb://{scratch}/engine") as engine:
        _s3_insert(engine, url, "SELECT * FROM file({archive_file:String}, 'Parquet')",
                   {"archive_file": str(path)}, s3)
    return url, rows


# --------------------------------------------------------------------------------------------------
# BigQuery: the external table over the archive, its column types read off the archive's Parquet schema.

_TABLE = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+){1,2}")
PARTITION_COLUMNS = (("tenant", "STRING"), ("month", "STRING"))


def _bigquery_type(arrow_type: Any) -> str:
    """The BigQuery (GoogleSQL) type that reads a Parquet column of this Arrow type."""
    import pyarrow as pa

    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "STRING"
    if pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type):
        return "BYTES"
    if pa.types.is_boolean(arrow_type):
        return "BOOL"
    if pa.types.is_integer(arrow_type) and not (pa.types.is_uint64(arrow_type)):
        return "INT64"
    if pa.types.is_floating(arrow_type):
        return "FLOAT64"
    if pa.types.is_timestamp(arrow_type):
        return "TIMESTAMP" if arrow_type.tz else "DATETIME"
    if pa.types.is_date(arrow_type):
        return "DATE"
    raise StoreError(f"no BigQuery type for the archive's Parquet type {arrow_type}")


def bigquery_fields(parquet_schema: Any) -> list[Any]:
    """google-cloud-bigquery SchemaFields for the archive's Parquet schema (a pyarrow.Schema)."""
    _require_extra("google.cloud.bigquery", "BigQuery DDLs")
    from google.cloud.bigquery import SchemaField

    return [SchemaField(field.name, _bigquery_type(field.type), mode="NULLABLE" if field.nullable else "REQUIRED")
            for field in parquet_schema]


def _sql_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def bigquery_ddl(fields: list[Any], target: str, table: str) -> str:
    """The CREATE EXTERNAL TABLE over the archive's files under gs://bucket/prefix, and the load-job variant."""
    scheme, bucket, prefix = parse_target(target)
    if scheme != "gs":
        raise StoreError(f"BigQuery reads gs:// archives: {target!r} is not one")
    if not _TABLE.fullmatch(table):
        raise StoreError(f"invalid table {table!r}: use dataset.table or project.dataset.table")
    root = f"gs://{bucket}/{prefix}" if prefix else f"gs://{bucket}"
    columns = ",\n".join(f"  `{f.name}` {f.field_type}{' NOT NULL' if f.mode == 'REQUIRED' else ''}" for f in fields)
    partitions = ",\n".join(f"  `{name}` {kind}" for name, kind in PARTITION_COLUMNS)
    options = (f"  format = 'PARQUET',\n  uris = [{_sql_string(root + '/*')}],\n"
               f"  hive_partition_uri_prefix = {_sql_string(root)}")
    return (f"-- External table: BigQuery reads the Parquet files where they lie; tenant and month are the\n"
            f"-- Hive partition folders (a tenant id is percent-encoded in its folder name; tenant_id holds it as is).\n"
            f"CREATE EXTERNAL TABLE `{table}` (\n{columns}\n)\nWITH PARTITION COLUMNS (\n{partitions}\n)\n"
            f"OPTIONS (\n{options}\n);\n\n"
            f"-- Or a load job into a native table. OVERWRITE: each run reloads every archived month, so\n"
            f"-- re-running it after the next archive never counts an event twice.\n"
            f"LOAD DATA OVERWRITE `{table}` (\n{columns}\n)\n"
            f"FROM FILES (\n{options}\n)\nWITH PARTITION COLUMNS (\n{partitions}\n);\n")


# --------------------------------------------------------------------------------------------------
# The CLI verb: on the store itself, or through the running service that owns it (admin.py).


def _service_parquet(service: Any, tenant: str, month: str, directory: str, empty: bool = False) -> Path:
    """The service's Parquet of one tenant-month, spooled to a file."""
    params = {"month": month, **({"schema_only": "true"} if empty else {})}
    path = Path(directory) / "events.parquet"
    with service.stream(f"/v1/tenants/{quote(tenant, safe='')}/archive", params, "the archive stream",
                        "nothing uploaded") as chunks:
        spool(chunks, directory)
    return path


def _print_ddl(args: Any, store: Store | None, service: Any) -> int:
    import pyarrow.parquet as pq

    tenant, month = args.tenant or "*", args.month or "1970-01"
    with tempfile.TemporaryDirectory(prefix="auditrail-archive.") as directory:
        if service is not None:
            path = _service_parquet(service, tenant, month, directory, empty=True)
        else:
            with store:
                path = spool(parquet_chunks(store, tenant, month, empty=True), directory)
        schema = pq.read_schema(path)
    print(bigquery_ddl(bigquery_fields(schema), args.target, args.table), end="")
    return 0


def main_archive(args: Any) -> int:
    """`auditrail archive --tenant T --month YYYY-MM --to s3://|gs://bucket/prefix`, or `--bigquery-ddl`."""
    from .admin import open_store_or_service

    scheme = parse_target(args.target)[0]
    if args.bigquery_ddl:
        _require_extra("google.cloud.bigquery", "BigQuery DDLs")
    elif scheme == "gs":
        _require_extra("google.cloud.storage", "gs:// archives")
    if not args.bigquery_ddl:
        if not (args.tenant and args.month):
            raise StoreError("archive needs --tenant and --month (or --bigquery-ddl)")
        month_range(args.month)
    if scheme == "gs" and args.endpoint:
        raise StoreError("--endpoint is for s3:// targets; for a GCS emulator set STORAGE_EMULATOR_HOST")
    s3 = S3Options.from_env(args.endpoint, args.region) if scheme == "s3" else None
    store, service = open_store_or_service(args.url)
    if args.bigquery_ddl:
        return _print_ddl(args, store, service)
    if service is not None:
        with tempfile.TemporaryDirectory(prefix="auditrail-archive.") as directory:
            path = _service_parquet(service, args.tenant, args.month, directory)
            url, rows = upload_parquet(path, args.tenant, args.month, args.target, s3)
    else:
        with store:
            url, rows = archive_month(store, args.tenant, args.month, args.target, s3)
    via = " through the running service" if service is not None else ""
    print(f"archived {rows} events of tenant {args.tenant!r}, {args.month}, to {url}{via}", file=sys.stderr)
    print(url)
    return 0
