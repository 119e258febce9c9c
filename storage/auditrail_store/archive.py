"""`auditrail archive`: one tenant-month of audit events as Parquet on S3-compatible storage.

The engine writes it: ``INSERT INTO FUNCTION s3(url, key, secret, 'Parquet') SELECT ...`` over the
canonical read (db.select_events: tenant scope, each event once, oldest first), so rows stream from
ClickHouse to the object store without passing through Python. The object is
``<prefix>/tenant=<tenant>/month=<YYYY-MM>/events.parquet`` (Hive-style partition folders, which BigQuery
and Athena external tables read as columns); re-running the same month replaces it.

GCS works through its S3-compatible XML API (``--endpoint https://storage.googleapis.com`` with HMAC
keys); tests use moto in server mode on 127.0.0.1. Credentials come from ``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY`` (or ``AUDITRAIL_S3_*``); they travel as bound query parameters and are never
printed. Parquet columns keep the store's types, except ``event_id`` (its text) and ``timestamp`` (a microsecond UTC
timestamp, what BigQuery and Athena read) with the exact nanoseconds beside it in ``time_unix_nano``.
"""

from __future__ import annotations

import os
import re
import sys
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote, urlparse

from .db import EVENT_COLUMNS, Store, StoreError, quote_identifier, select_events

__all__ = ["archive_month", "main_archive", "object_url"]

_MONTH = re.compile(r"(\d{4})-(\d{2})")


def month_range(month: str) -> tuple[datetime, datetime]:
    """[first instant, first instant of the next month) of YYYY-MM, UTC."""
    match = _MONTH.fullmatch(month or "")
    if not match or not 1 <= int(match.group(2)) <= 12:
        raise StoreError(f"invalid month {month!r}: use YYYY-MM")
    year, number = int(match.group(1)), int(match.group(2))
    start = datetime(year, number, 1, tzinfo=timezone.utc)
    end = datetime(year + (number == 12), number % 12 + 1, 1, tzinfo=timezone.utc)
    return start, end


def object_url(target: str, tenant: str, month: str, endpoint: str | None, region: str) -> str:
    """The HTTP(S) URL of the Parquet object for s3://bucket/prefix (path-style on an endpoint)."""
    parsed = urlparse(target)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise StoreError(f"invalid target {target!r}: use s3://bucket/prefix")
    prefix = parsed.path.strip("/")
    # Percent-encode the tenant: ClickHouse reads *, ?, { and } in s3 URLs as globs.
    key = "/".join(p for p in (prefix, f"tenant={quote(tenant, safe='')}", f"month={month}", "events.parquet") if p)
    key = key.replace("*", "%2A").replace("{", "%7B").replace("}", "%7D").replace("?", "%3F")
    if endpoint:
        return f"{endpoint.rstrip('/')}/{parsed.netloc}/{key}"
    return f"https://{parsed.netloc}.s3.{region}.amazonaws.com/{key}"


def _select_expression(column: str) -> str:
    name = quote_identifier(column)
    if column == "event_id":
        return f"toString({name}) AS {name}"
    if column == "timestamp":  # BigQuery and Athena read microsecond timestamps; the exact ns ride beside
        return f"toDateTime64({name}, 6, 'UTC') AS {name}, toUnixTimestamp64Nano({name}) AS `time_unix_nano`"
    return name


def archive_month(store: Store, tenant: str, month: str, target: str, endpoint: str | None = None,
                  region: str | None = None, access_key: str | None = None, secret_key: str | None = None) -> tuple[str, int]:
    """Write one tenant-month as Parquet; (object URL, rows written)."""
    start, end = month_range(month)
    region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    url = object_url(target, tenant, month, endpoint, region)
    inner, params = select_events(store, tenant, since=start, until=end)
    columns = ", ".join(_select_expression(c) for c in EVENT_COLUMNS)
    params = dict(params, s3_url=url)
    if access_key and secret_key:
        function = "s3({s3_url:String}, {s3_key:String}, {s3_secret:String}, 'Parquet')"
        params.update(s3_key=access_key, s3_secret=secret_key)
    else:
        function = "s3({s3_url:String}, 'Parquet')"
    rows = int(store.query(f"SELECT count() FROM ({inner})", params).result_rows[0][0])
    store.command(f"INSERT INTO FUNCTION {function} SELECT {columns} FROM ({inner})", params,
                  settings={"s3_truncate_on_insert": 1, "output_format_parquet_compression_method": "zstd"})
    return url, rows


def main_archive(args: Any) -> int:
    """`auditrail archive --tenant T --month YYYY-MM --to s3://bucket/prefix [--endpoint URL]`."""
    endpoint = args.endpoint or os.environ.get("AUDITRAIL_S3_ENDPOINT")
    access_key = os.environ.get("AUDITRAIL_S3_ACCESS_KEY_ID") or os.environ.get("AWS_ACCESS_KEY_ID")
    secret_key = os.environ.get("AUDITRAIL_S3_SECRET_ACCESS_KEY") or os.environ.get("AWS_SECRET_ACCESS_KEY")
    try:
        store = Store.open(args.url)
    except StoreError as error:
        raise StoreError(f"{error} (archive runs in the engine: stop the service for a moment, or run the "
                         "store on a ClickHouse server)") from None
    with store:
        url, rows = archive_month(store, args.tenant, args.month, args.target, endpoint, args.region,
                                  access_key, secret_key)
    print(f"archived {rows} events of tenant {args.tenant!r}, {args.month}, to {url}", file=sys.stderr)
    print(url)
    return 0
