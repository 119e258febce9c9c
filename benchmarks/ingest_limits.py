"""Peak memory of the worst ingest requests one can build against the limits (issue 15, point 1).

Each request goes to a fresh `auditrail serve` (default limits, embedded chDB) after one small warm-up
request; the figure is the growth of the service's peak RSS (VmHWM) over its peak after the warm-up, beside
the request's size on the wire and decompressed, the answer, and the growth over the decompressed size. With
``--baseline REV`` each request also goes, in the same run, to a service running the storage package of commit
REV (``git archive``, first on PYTHONPATH; the native core is this tree's).

    .venv/bin/python benchmarks/ingest_limits.py [--only NAME ...] [--baseline 1b15ab5]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from otlp_requests import length_delimited as _field  # noqa: E402
from otlp_requests import uuid7ish  # noqa: E402
from storage import start_service, stop, token  # noqa: E402

MiB = 1 << 20


def _wrap(records: list[bytes]) -> bytes:
    return _field(1, _field(2, b"".join(_field(2, record) for record in records)))


def empty_records() -> tuple[bytes, str, str]:
    """The red team's: 8,000,000 empty LogRecords, gzip."""
    return gzip.compress(_field(1, _field(2, b"\x12\x00" * 8_000_000))), "protobuf", "gzip"


def json_empty_records() -> tuple[bytes, str, str]:
    """2,000,000 JSON `{}` records, gzip."""
    body = b'{"resourceLogs":[{"scopeLogs":[{"logRecords":[' + b",".join([b"{}"] * 2_000_000) + b"]}]}]}"
    return gzip.compress(body), "json", "gzip"


def zip_bomb() -> tuple[bytes, str, str]:
    """1 GiB of zeros in ~1 MB of gzip."""
    return gzip.compress(b"\x00" * (1 << 30), compresslevel=9), "protobuf", "gzip"


def dense_attributes() -> tuple[bytes, str, str]:
    """Just inside every limit, the most messages the Python path turns into objects: 64 MiB of records of
    1 MiB, each ~55,000 distinct 10-character keys with 1-character values (19 bytes, two messages each:
    9.5 bytes a message, the density limit is 8)."""
    records = []
    size = 0
    n = 0
    while size < 64 * MiB - 2 * MiB:
        pairs = []
        length = 0
        while length < MiB - 64:
            key = b"%010d" % n
            n += 1
            pair = _field(6, _field(1, key) + _field(2, _field(1, b"v")))
            pairs.append(pair)
            length += len(pair)
        attributes = b"".join(pairs[:-1])
        tenant = _field(6, _field(1, b"audit.tenant_id") + _field(2, _field(1, b"acme")))
        records.append(attributes + tenant)
        size += len(records[-1])
    return _wrap(records), "protobuf", ""


def _shared_keys(per_record: int, key_size: int, value: bytes | None) -> bytes:
    """63 MiB of audit records (scope `auditrail`, an event id and the tenant acme: the view copies them into
    audit_events, and both tokens' requests are written) of `per_record` attributes each, keys of `key_size`
    characters from one pool of 10,000 (the distinct keys limit, with the two) shared by every record, each
    valued `value` (None: no value at all)."""
    pool = [(b"%0" + str(key_size).encode() + b"d") % n for n in range(9_998)]
    tenant = _field(6, _field(1, b"audit.tenant_id") + _field(2, _field(1, b"acme")))
    records = []
    size = 0
    n = 0
    while size < 63 * MiB:
        pairs = []
        for _ in range(per_record):
            key = pool[n % len(pool)]
            n += 1
            pairs.append(_field(6, _field(1, key) + (b"" if value is None else _field(2, _field(1, value)))))
        event = _field(6, _field(1, b"audit.event_id") + _field(2, _field(1, uuid7ish(len(records)).encode())))
        records.append(tenant + event + b"".join(pairs[2:]))
        size += len(records[-1]) + 3
    return _field(1, _field(2, _field(1, _field(1, b"auditrail")) + b"".join(_field(2, record) for record in records)))


def json_keys_only() -> tuple[bytes, str, str]:
    """keys-only's records as OTLP/JSON (`{"key":"00001"}`, 16 bytes and one object an attribute: the objects
    limit is one per 8 bytes), 63 MiB."""
    pairs = ",".join('{"key":"%05d"}' % i for i in range(9_998))
    record = '{"attributes":[{"key":"audit.tenant_id","value":{"stringValue":"acme"}},' + pairs + "]}"
    records = ",".join([record] * ((63 << 20) // (len(record) + 1)))
    body = '{"resourceLogs":[{"scopeLogs":[{"scope":{"name":"auditrail"},"logRecords":[' + records + "]}]}]}"
    return body.encode(), "json", ""


def resource_rows() -> tuple[bytes, str, str]:
    """A resource every row repeats, at the map entries limit (250,000 for a request this small): 1,000
    attributes over 250 one-attribute records, 26 KB."""
    resource = _field(1, b"".join(_field(1, _field(1, b"r%05d" % i) + _field(2, _field(1, b"v"))) for i in range(1000)))
    record = _field(2, _field(6, _field(1, b"audit.tenant_id") + _field(2, _field(1, b"acme"))))
    return _field(1, resource + _field(2, record * 249)), "protobuf", ""


def shared_keys() -> tuple[bytes, str, str]:
    """The densest request within every limit since the distinct keys limit: records of 10,000 attributes
    (10-character keys of one pool of 10,000, 1-character values: 19 bytes, two messages each), 63 MiB (~350
    records: the Python path for every token)."""
    return _shared_keys(10_000, 10, b"v"), "protobuf", ""


def tiny_records() -> tuple[bytes, str, str]:
    """~96,000 records (just under the records limit) of 36 such attributes each, 63 MiB: the native path for
    an all-tenant token, the Python path for a tenant's."""
    return _shared_keys(36, 10, b"v"), "protobuf", ""


def keys_only() -> tuple[bytes, str, str]:
    """Attributes with a key and no value, 9 bytes and one message each (the messages limit is one per 8 bytes),
    records of 10,000, 63 MiB: ~7.3 million map entries."""
    return _shared_keys(10_000, 5, None), "protobuf", ""


def full_records() -> tuple[bytes, str, str]:
    """Real audit records of 15 attributes, as many as the body limit holds (~75,000; 100,000 would be 85 MB)."""
    from storage import batches

    body = batches(75_000, 75_000)[0]
    return body, "protobuf", ""


REQUESTS: dict[str, Callable[[], tuple[bytes, str, str]]] = {
    "empty-records": empty_records, "json-empty-records": json_empty_records, "zip-bomb": zip_bomb,
    "dense-attributes": dense_attributes, "shared-keys": shared_keys, "tiny-records": tiny_records,
    "keys-only": keys_only, "json-keys-only": json_keys_only, "resource-rows": resource_rows, "full-records": full_records,
}


def _peak(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1]) * 1024


def measure(name: str, tmp: Path, tenant: str, storage: Path | None = None) -> dict[str, object]:
    """One request against a fresh service (of the storage package at `storage`, else this tree's)."""
    body, kind, encoding = REQUESTS[name]()
    decompressed = len(gzip.decompress(body)) if encoding == "gzip" and name != "zip-bomb" else len(body)
    label = f"{name}-{tenant.strip('*') or 'all'}-{'baseline' if storage else 'now'}"
    url = f"chdb://{tmp}/{label}"
    ingest = token(url, tenant, "ingest")
    env = {"PYTHONPATH": os.pathsep.join([str(storage), os.environ.get("PYTHONPATH", "")])} if storage else {}
    process, base = start_service(url, tmp / f"{label}.log", **env)
    headers = {"Authorization": f"Bearer {ingest}",
               "Content-Type": "application/x-protobuf" if kind == "protobuf" else "application/json"}
    if encoding:
        headers["Content-Encoding"] = encoding
    try:
        with httpx.Client(base_url=base, timeout=600) as client:
            client.post("/v1/logs", content=json.dumps({"resourceLogs": []}).encode(),
                        headers={**headers, "Content-Type": "application/json", "Content-Encoding": "identity"})
            before = _peak(process.pid)
            started = time.perf_counter()
            response = client.post("/v1/logs", content=body, headers=headers)
            elapsed = time.perf_counter() - started
            after = _peak(process.pid)
    finally:
        stop(process)
    message = response.text if kind == "json" else response.content.decode(errors="replace")
    return {"request": name, "token": tenant, "wire": len(body), "decompressed": decompressed,
            "status": response.status_code, "seconds": elapsed, "peak_growth": after - before,
            "message": message[:120]}


def _line(figures: dict[str, object]) -> str:
    return (f"{figures['status']} in {figures['seconds']:.2f} s, peak RSS +{figures['peak_growth'] / 1e6:.0f} MB "
            f"({figures['peak_growth'] / figures['decompressed']:.1f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=sorted(REQUESTS), nargs="+")
    parser.add_argument("--baseline", metavar="REV", help="also measure the storage package of this commit")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="auditrail-limits-") as name:
        tmp = Path(name)
        baseline = None
        if args.baseline:
            baseline = tmp / "baseline"
            baseline.mkdir()
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.baseline, "storage"], check=True,
                                     capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", str(baseline)], input=archive, check=True)
            baseline = baseline / "storage"
        for request in args.only or list(REQUESTS):
            for tenant in ("acme", "*"):
                figures = measure(request, tmp, tenant)
                before = f"; {args.baseline}: {_line(measure(request, tmp, tenant, baseline))}" if baseline else ""
                print(f"{figures['request']:18s} token {tenant:4s} {figures['wire'] / MiB:6.2f} MiB on the wire, "
                      f"{figures['decompressed'] / MiB:6.2f} MiB decompressed: {_line(figures)}{before} "
                      f"({figures['message']!r})  [load {os.getloadavg()[0]:.1f}]", flush=True)


if __name__ == "__main__":
    main()
