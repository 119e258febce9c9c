"""Peak memory of the worst ingest requests one can build against the limits (issue 15, point 1).

Each request goes to a fresh `auditrail serve` (default limits, embedded chDB) after one small warm-up
request; the figure is the growth of the service's peak RSS (VmHWM) over its peak after the warm-up, beside
the request's size on the wire and decompressed, and the answer.

    .venv/bin/python benchmarks/ingest_limits.py [--only NAME]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
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


def full_records() -> tuple[bytes, str, str]:
    """Real audit records of 15 attributes, as many as the body limit holds (~75,000; 100,000 would be 85 MB)."""
    from storage import batches

    body = batches(75_000, 75_000)[0]
    return body, "protobuf", ""


REQUESTS: dict[str, Callable[[], tuple[bytes, str, str]]] = {
    "empty-records": empty_records, "json-empty-records": json_empty_records, "zip-bomb": zip_bomb,
    "dense-attributes": dense_attributes, "full-records": full_records,
}


def _peak(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1]) * 1024


def measure(name: str, tmp: Path, tenant: str) -> dict[str, object]:
    body, kind, encoding = REQUESTS[name]()
    decompressed = len(gzip.decompress(body)) if encoding == "gzip" and name != "zip-bomb" else len(body)
    url = f"chdb://{tmp}/{name}-{tenant.strip('*') or 'all'}"
    ingest = token(url, tenant, "ingest")
    process, base = start_service(url, tmp / f"{name}.log")
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=sorted(REQUESTS))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="auditrail-limits-") as name:
        for request in [args.only] if args.only else list(REQUESTS):
            for tenant in ("acme", "*"):
                figures = measure(request, Path(name), tenant)
                print(f"{figures['request']:20s} token {tenant:4s} {figures['wire'] / MiB:7.2f} MiB on the wire, "
                      f"{figures['decompressed'] / MiB:7.2f} MiB decompressed: {figures['status']} in "
                      f"{figures['seconds']:.2f} s, peak RSS +{figures['peak_growth'] / 1e6:.0f} MB "
                      f"({figures['message']!r})  [load {os.getloadavg()[0]:.1f}]", flush=True)


if __name__ == "__main__":
    main()
