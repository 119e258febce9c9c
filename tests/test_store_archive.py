"""`auditrail archive` writes a tenant-month as Parquet into S3: a real moto server on 127.0.0.1."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from processes import free_port, wait_for_port

boto3 = pytest.importorskip("boto3")
pq = pytest.importorskip("pyarrow.parquet")
pytest.importorskip("moto.server")

PYTHON = sys.executable
_WRITE = """
import sys, time
sys.path.insert(0, sys.argv[1])
from otlp_requests import logs_request, uuid7ish
from auditrail_store.db import Store
from auditrail_store.migrate import migrate
from auditrail_store.ingest import LogWriter, decode_protobuf
now = time.time_ns()
request = logs_request({"time_unix_nano": now + i, "event_name": "crawl.run",
                        "attributes": {"audit.event_id": uuid7ish(i), "audit.tenant_id": "acme" if i % 3 else "globex",
                                       "audit.payload": '{"pages": 3}'}} for i in range(12))
with Store.open() as store:
    migrate(store)
    LogWriter(store.client, store.database).write(decode_protobuf(request.SerializeToString()))
"""


@pytest.fixture
def moto_endpoint(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen([PYTHON, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                               stdout=open(tmp_path / "moto.log", "wb"), stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_for_port(port, process, "moto.server", details=(tmp_path / "moto.log").read_text)
        yield endpoint
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_archive_writes_one_tenant_month_as_parquet(tmp_path: Path, moto_endpoint: str) -> None:
    env = dict(os.environ, AUDITRAIL_CLICKHOUSE_URL=f"chdb://{tmp_path}/store", AWS_ACCESS_KEY_ID="testing",
               AWS_SECRET_ACCESS_KEY="testing", AWS_REGION="us-east-1")
    subprocess.run([PYTHON, "-c", _WRITE, str(Path(__file__).parent)], env=env, check=True, capture_output=True, timeout=120)
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1", aws_access_key_id="testing",
                      aws_secret_access_key="testing")
    s3.create_bucket(Bucket="audit-archive")
    month = datetime.now(timezone.utc).strftime("%Y-%m")
    result = subprocess.run([PYTHON, "-m", "auditrail.cli", "archive", "--tenant", "acme", "--month", month,
                             "--to", "s3://audit-archive/exports", "--endpoint", moto_endpoint],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    key = f"exports/tenant=acme/month={month}/events.parquet"
    assert result.stdout.strip().endswith(key)
    assert "testing" not in result.stdout + result.stderr  # credentials are never printed
    table = pq.read_table(io.BytesIO(s3.get_object(Bucket="audit-archive", Key=key)["Body"].read()))
    assert table.num_rows == 8
    assert set(table.column("tenant_id").to_pylist()) == {"acme"}
    assert table.column_names[:7] == ["event_id", "event_type", "timestamp", "time_unix_nano", "tenant_id", "actor",
                                      "source_ip"]
    assert str(table.schema.field("timestamp").type) == "timestamp[us, tz=UTC]"


def test_archive_to_s3_while_the_service_owns_the_store(tmp_path: Path, moto_endpoint: str) -> None:
    from test_store_service import cli, events, seeded_service

    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1", aws_access_key_id="testing",
                      aws_secret_access_key="testing")
    s3.create_bucket(Bucket="audit-archive")
    month = datetime.now(timezone.utc).strftime("%Y-%m")
    for svc in seeded_service(tmp_path):
        env = dict(svc.env, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_REGION="us-east-1")
        result = cli("archive", "--tenant", "globex", "--month", month, "--to", "s3://audit-archive/live",
                     "--endpoint", moto_endpoint, env=env)
        assert "through the running service" in result.stderr and "testing" not in result.stdout + result.stderr
        key = f"live/tenant=globex/month={month}/events.parquet"
        table = pq.read_table(io.BytesIO(s3.get_object(Bucket="audit-archive", Key=key)["Body"].read()))
        assert table.column("event_id").to_pylist() == [e["event_id"] for e in events(svc, "globex", svc.read_globex)]
        assert set(table.column("tenant_id").to_pylist()) == {"globex"}
        # The route's `month` schema is exactly the months it archives (1900-01 .. 2262-03): others are 422.
        with svc.client(svc.read_globex) as client:
            codes = {month: client.get("/v1/tenants/globex/archive",
                                       params={"month": month, "schema_only": "true"}).status_code
                     for month in ("0000-00", "1899-12", "2026-13", "2262-04", "1900-01", "2262-03")}
        assert codes == {"0000-00": 422, "1899-12": 422, "2026-13": 422, "2262-04": 422, "1900-01": 200,
                         "2262-03": 200}
