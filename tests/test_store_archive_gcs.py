"""`auditrail archive --to gs://` through real GCS emulators (fake-gcs-server, gcp-storage-emulator) on 127.0.0.1,
read back with pyarrow and compared with the store's own export, on a store a running `auditrail serve` owns
and on one it does not; and `--bigquery-ddl` checked against google-cloud-bigquery's own types."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
storage = pytest.importorskip("google.cloud.storage")
bigquery = pytest.importorskip("google.cloud.bigquery")
pytest.importorskip("gcp_storage_emulator")

from processes import wait_for_port  # noqa: E402
from test_store_archive import _WRITE  # noqa: E402  (after the skips: the same 12 events, 8 of acme)
from test_store_service import PYTHON, Service, cli, events, free_port, seeded_service  # noqa: E402

BUCKET = "audit-archive"
MONTH = datetime.now(timezone.utc).strftime("%Y-%m")  # the seeded events are stamped now


# fake-gcs-server (Go, from the Go module proxy; built once into .tools/ by the first test run that needs it)
# and gcp-storage-emulator (Python, from PyPI, in the dev extra): two independent implementations of GCS's
# JSON API, so a quirk of one cannot pass for the protocol.
FAKE_GCS_VERSION = "v1.56.1"
TOOLS = Path(__file__).resolve().parent.parent / ".tools"


def _fake_gcs_server() -> Path:
    """The fake-gcs-server binary, built with `go install` at the pinned version if it is not there yet."""
    binary = TOOLS / f"fake-gcs-server-{FAKE_GCS_VERSION}"
    if binary.exists():
        return binary
    go = shutil.which("go") or ("/usr/local/go/bin/go" if os.access("/usr/local/go/bin/go", os.X_OK) else None)
    if go is None:
        pytest.skip("fake-gcs-server needs Go to build (the gcp-storage-emulator runs still test gs://)")
    gobin = Path(tempfile.mkdtemp(prefix=".fake-gcs.", dir=TOOLS.parent))
    try:
        subprocess.run([go, "install", f"github.com/fsouza/fake-gcs-server@{FAKE_GCS_VERSION}"], check=True,
                       env=dict(os.environ, GOBIN=str(gobin)), capture_output=True, timeout=1200)
        TOOLS.mkdir(exist_ok=True)
        os.replace(gobin / "fake-gcs-server", binary)  # whole or absent: a cut build is never run
    finally:
        shutil.rmtree(gobin, ignore_errors=True)
    return binary


@pytest.fixture(scope="module", params=["fake-gcs-server", "gcp-storage-emulator"])
def gcs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A GCS emulator on a free loopback port, in memory, with the archive bucket; its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("gcs") / "emulator.log"
    if request.param == "fake-gcs-server":
        command = [str(_fake_gcs_server()), "-scheme", "http", "-host", "127.0.0.1", "-port", str(port),
                   "-backend", "memory", "-external-url", url, "-public-host", f"127.0.0.1:{port}"]
    else:
        command = [PYTHON, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1", "--port", str(port),
                   "--in-memory"]
    process = subprocess.Popen(command, stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, process, request.param, details=log.read_text)
        os.environ["STORAGE_EMULATOR_HOST"] = url
        try:
            storage.Client().create_bucket(BUCKET)
        finally:
            del os.environ["STORAGE_EMULATOR_HOST"]
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, gcs: str) -> Iterator[Service]:
    """A running service (owning its embedded store) with chained, signed events of three tenants."""
    for svc in seeded_service(tmp_path_factory.mktemp("store")):
        svc.env["STORAGE_EMULATOR_HOST"] = gcs
        yield svc


def _blob_table(emulator: str, key: str) -> object:
    os.environ["STORAGE_EMULATOR_HOST"] = emulator  # read by the client at construction
    try:
        data = storage.Client().bucket(BUCKET).blob(key).download_as_bytes()
    finally:
        del os.environ["STORAGE_EMULATOR_HOST"]
    return pq.read_table(io.BytesIO(data))


def test_archive_to_gcs_while_serving_reads_back_as_the_export(served: Service, gcs: str) -> None:
    result = cli("archive", "--tenant", "acme", "--month", MONTH, "--to", f"gs://{BUCKET}/exports", env=served.env)
    key = f"exports/tenant=acme/month={MONTH}/events.parquet"
    assert result.stdout.strip() == f"gs://{BUCKET}/{key}"
    assert "through the running service" in result.stderr
    table = _blob_table(gcs, key)
    exported = events(served, "acme", served.read_acme)
    assert table.num_rows == len(exported) >= 10  # 10 events of acme and its chain's checkpoint events
    rows = table.to_pylist()
    # Each event once, oldest first, field by field as the export spells it.
    assert [r["event_id"] for r in rows] == [e["event_id"] for e in exported]
    for row, event in zip(rows, exported, strict=True):
        assert row["tenant_id"] == "acme" and row["event_type"] == event["event_type"]
        assert (row["actor"], row["reason"], row["source_ip"]) == (event["actor"], event["reason"], event["source_ip"])
        assert (row["chain_id"], row["chain_seq"], row["chain_hash"]) == (event["chain_id"], event["chain_seq"],
                                                                         event["chain_hash"])
        assert json.loads(row["payload"]) == event["payload"]
        assert json.loads(row["attributes"]) == event["attributes"]
        assert row["timestamp"].isoformat().replace("+00:00", "") == event["timestamp"][:26]
        assert datetime.fromtimestamp(row["time_unix_nano"] // 10**9, timezone.utc) == row["timestamp"].replace(
            microsecond=0)
    assert str(table.schema.field("timestamp").type) == "timestamp[us, tz=UTC]"


def test_rerunning_a_month_replaces_its_object(served: Service, gcs: str) -> None:
    for _ in range(2):
        cli("archive", "--tenant", "globex", "--month", MONTH, "--to", f"gs://{BUCKET}/again", env=served.env)
    os.environ["STORAGE_EMULATOR_HOST"] = gcs
    try:
        names = [b.name for b in storage.Client().list_blobs(BUCKET, prefix="again/")]
    finally:
        del os.environ["STORAGE_EMULATOR_HOST"]
    assert names == [f"again/tenant=globex/month={MONTH}/events.parquet"]
    assert _blob_table(gcs, names[0]).num_rows == len(events(served, "globex", served.read_globex))


def test_archive_errors_are_one_clear_line(served: Service) -> None:
    missing = cli("archive", "--tenant", "acme", "--month", MONTH, "--to", "gs://no-such-bucket/x", env=served.env,
                  check=False)
    assert missing.returncode != 0 and "no-such-bucket" in missing.stderr and "Traceback" not in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1, missing.stderr
    bad = cli("archive", "--tenant", "acme", "--month", "2026-13", "--to", f"gs://{BUCKET}/x", env=served.env,
              check=False)
    assert bad.returncode != 0 and "invalid month '2026-13'" in bad.stderr
    with httpx.Client(base_url=served.base, headers={"Authorization": f"Bearer {served.read_acme}"}) as client:
        for month in ("0000-05", "2026-00", "2262-04", "26-1"):  # outside the store's DateTime64 range: 4xx, not 500
            response = client.get("/v1/tenants/acme/archive", params={"month": month})
            assert response.status_code in (400, 422) and "month" in response.text, (month, response.text)
        assert client.get("/v1/tenants/globex/archive", params={"month": MONTH}).status_code == 403
    other = cli("archive", "--tenant", "acme", "--month", MONTH, "--to", "ftp://b/x", env=served.env, check=False)
    assert other.returncode != 0 and "use s3://bucket/prefix or gs://bucket/prefix" in other.stderr
    endpoint = cli("archive", "--tenant", "acme", "--month", MONTH, "--to", f"gs://{BUCKET}/x", "--endpoint",
                   "http://127.0.0.1:9", env=served.env, check=False)
    assert endpoint.returncode != 0 and "set STORAGE_EMULATOR_HOST" in endpoint.stderr


def test_archive_to_gcs_on_the_store_itself(tmp_path: Path, gcs: str) -> None:
    env = dict(os.environ, AUDITRAIL_CLICKHOUSE_URL=f"chdb://{tmp_path}/store", STORAGE_EMULATOR_HOST=gcs)
    subprocess.run([PYTHON, "-c", _WRITE, str(Path(__file__).parent)], env=env, check=True, capture_output=True,
                   timeout=120)
    result = cli("archive", "--tenant", "acme", "--month", MONTH, "--to", f"gs://{BUCKET}/direct/", env=env)
    assert "through the running service" not in result.stderr
    table = _blob_table(gcs, f"direct/tenant=acme/month={MONTH}/events.parquet")
    assert table.num_rows == 8 and set(table.column("tenant_id").to_pylist()) == {"acme"}
    assert result.stderr.startswith("archived 8 events of tenant 'acme'")


def _ddl_columns(ddl: str, statement: str) -> list[tuple[str, str, bool]]:
    body = ddl.split(statement, 1)[1].split("\n)", 1)[0]
    return [(m.group(1), m.group(2), bool(m.group(3))) for m in re.finditer(r"`(\w+)` (\w+)( NOT NULL)?", body)]


def test_bigquery_ddl_matches_the_archive_in_bigquerys_own_types(served: Service, gcs: str) -> None:
    from google.cloud.bigquery import _pandas_helpers
    from google.cloud.bigquery.enums import StandardSqlTypeNames

    cli("archive", "--tenant", "initech", "--month", MONTH, "--to", f"gs://{BUCKET}/bq", env=served.env)
    table = _blob_table(gcs, f"bq/tenant=initech/month={MONTH}/events.parquet")
    ddl = cli("archive", "--bigquery-ddl", "--to", f"gs://{BUCKET}/bq", "--table", "proj.audit.events",
              env=served.env).stdout
    columns = _ddl_columns(ddl, "CREATE EXTERNAL TABLE `proj.audit.events` (")
    assert [c[0] for c in columns] == table.column_names
    for name, kind, required in columns:
        assert kind in StandardSqlTypeNames.__members__, kind
        field = bigquery.SchemaField(name, kind, mode="REQUIRED" if required else "NULLABLE")
        arrow = table.schema.field(name)
        # google-cloud-bigquery's own BigQuery -> Arrow mapping gives back the archive's column type (or, for
        # a narrower integer such as severity_number's uint8, the INT64 that holds it losslessly).
        back = _pandas_helpers.bq_to_arrow_data_type(field)
        widened = pa.types.is_integer(arrow.type) and back == pa.int64() and arrow.type.bit_width < 64
        assert back == arrow.type or widened, (name, kind, arrow.type)
        assert required == (not arrow.nullable), name
    assert "WITH PARTITION COLUMNS (\n  `tenant` STRING,\n  `month` STRING\n)" in ddl
    assert f"uris = ['gs://{BUCKET}/bq/*']" in ddl and f"hive_partition_uri_prefix = 'gs://{BUCKET}/bq'" in ddl
    assert _ddl_columns(ddl, "LOAD DATA OVERWRITE `proj.audit.events` (") == columns
    assert "FROM FILES (\n  format = 'PARQUET'" in ddl


def test_bigquery_ddl_refuses_what_bigquery_cannot_read(served: Service) -> None:
    s3 = cli("archive", "--bigquery-ddl", "--to", "s3://b/p", env=served.env, check=False)
    assert s3.returncode != 0 and "BigQuery reads gs:// archives" in s3.stderr
    table = cli("archive", "--bigquery-ddl", "--to", "gs://b/p", "--table", "x`; DROP", env=served.env, check=False)
    assert table.returncode != 0 and "invalid table" in table.stderr


_WITHOUT_GOOGLE = """
import sys
sys.modules["google.cloud.storage"] = None  # as on an install without the archive extra
sys.modules["google.cloud.bigquery"] = None
from auditrail.cli import main
sys.exit(main())
"""


def test_without_the_archive_extra_it_says_what_to_install(tmp_path: Path) -> None:
    env = dict(os.environ, AUDITRAIL_CLICKHOUSE_URL=f"chdb://{tmp_path}/store")
    for args in (["--tenant", "acme", "--month", MONTH, "--to", f"gs://{BUCKET}/x"], ["--bigquery-ddl", "--to",
                                                                                     f"gs://{BUCKET}/x"]):
        result = subprocess.run([PYTHON, "-c", _WITHOUT_GOOGLE, "archive", *args], env=env, capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 2, result.stderr
        assert "pip install 'auditrail[archive]'" in result.stderr and "Traceback" not in result.stderr


def test_a_large_archive_goes_up_resumably_in_chunks(tmp_path: Path, gcs: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import hashlib

    from auditrail_store import archive

    path = tmp_path / "events.parquet"
    path.write_bytes(os.urandom(archive._UPLOAD_CHUNK + 3 * (1 << 20)))  # past the 8 MiB multipart limit: 2 chunks
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs)
    assert archive._gcs_upload(path, BUCKET, "big/events.parquet") == f"gs://{BUCKET}/big/events.parquet"
    data = storage.Client().bucket(BUCKET).blob("big/events.parquet").download_as_bytes()
    assert hashlib.sha256(data).digest() == hashlib.sha256(path.read_bytes()).digest()
