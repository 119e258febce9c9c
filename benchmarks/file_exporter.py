"""How fast does the OTLP/JSON-lines file exporter turn audit records into lines?  A benchmark, not a test.

Run it from the repository root:

    .venv/bin/python benchmarks/file_exporter.py
    .venv/bin/python benchmarks/file_exporter.py --records 20000 --batch 512 --runs 7
    .venv/bin/python benchmarks/file_exporter.py --target 30000 --strict   # exit 1 below the target

One run measures, side by side on the same auditrail-shaped records (12 attributes incl. a ~200-byte JSON
payload string, trace context, the audit resource and scope, built by auditrail.pipeline.to_log_record as
the drain worker builds them), batched like the drain worker (--batch, default 512):

  direct     logs_to_collector_json(batch): the exporter's path, SDK records straight to collector JSON
  protobuf   request_to_collector_json(encode_logs(batch)): the previous path, the SDK's protobuf encoder
             then json_format.MessageToDict and reshaping (still the reference the tests compare against)

each as "encode" (the line in memory) and "export" (OTLPJsonLinesExporter.export, i.e. encode + one write
and flush per batch to a file in a temp dir; for protobuf, the same write of its line). Every variant runs
--runs times in rotated order; a figure is the median over the runs of (time / records). The protobuf path
is ~50x slower, so it gets fewer records per run (--protobuf-records). The two paths' lines are compared
once, byte for byte, before timing.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from auditrail import semconv
from auditrail.events import AuditEvent
from auditrail.exporters.otlp_json import OTLPJsonLinesExporter, logs_to_collector_json, request_to_collector_json
from auditrail.pipeline import to_log_record
from auditrail.version import __version__


def make_records(count: int) -> list[ReadableLogRecord]:
    """``count`` distinct auditrail-shaped records sharing one resource and scope, as the drain worker makes them."""
    resource = Resource.create({"service.name": "billing-api", "deployment.environment.name": "prod"})
    scope = InstrumentationScope(semconv.SCOPE_NAME, __version__)
    records = []
    for i in range(count):
        payload = json.dumps(
            {
                "before": {"plan": "free", "seats": 3, "quota": {"tokens": 100_000, "overage": False}},
                "after": {"plan": "pro", "seats": 25, "quota": {"tokens": 5_000_000, "overage": True}},
                "note": f"upgrade requested via billing portal, ticket #{10_000 + i}",
            },
            separators=(",", ":"),
        )
        event = AuditEvent(
            event_type="billing.plan.change",
            tenant=f"tenant-{i % 97}",
            actor=f"user{i % 1000}@example.com",
            payload=payload,
            source_ip="203.0.113.7",
            reason="customer upgrade",
            outcome="success",
            risk="medium",
            approval_id=f"apr-{i:08d}",
            time_unix_nano=1_767_225_600_000_000_000 + i * 1_000,
            trace_id=0x0AF7651916CD43DD8448EB211C80319C + i,
            span_id=0xB7AD6B7169203331 + i,
            trace_flags=1,
            extra={semconv.CHAIN_SEQ: i, semconv.CHAIN_HASH: f"{i:064x}"},
        )
        records.append(to_log_record(event, resource, scope))
    attributes = records[0].log_record.attributes or {}
    assert len(attributes) == 12, sorted(attributes)
    return records


def batches(records: Sequence[ReadableLogRecord], size: int) -> list[Sequence[ReadableLogRecord]]:
    return [records[i : i + size] for i in range(0, len(records), size)]


def time_per_record(work: Callable[[], None], records: int) -> float:
    """Seconds per record of one call of ``work`` that handles ``records`` records."""
    gc.collect()
    start = time.perf_counter()
    work()
    return (time.perf_counter() - start) / records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=20_000, help="records per run of the direct path")
    parser.add_argument("--protobuf-records", type=int, default=2_048, help="records per run of the protobuf path")
    parser.add_argument("--batch", type=int, default=512, help="records per export (the drain worker's max_batch)")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--target", type=float, default=30_000, help="records/s the direct export must reach")
    parser.add_argument("--strict", action="store_true", help="exit 1 when the direct export misses --target")
    args = parser.parse_args(argv)

    records = make_records(max(args.records, args.protobuf_records))
    direct_batches = batches(records[: args.records], args.batch)
    protobuf_batches = batches(records[: args.protobuf_records], args.batch)
    for batch in protobuf_batches:
        if logs_to_collector_json(batch) != request_to_collector_json(encode_logs(batch)).encode("utf-8"):
            print("the direct and the protobuf lines differ", file=sys.stderr)
            return 1
    line = logs_to_collector_json(direct_batches[0])
    print(f"python {platform.python_version()} ({platform.python_implementation()}), {os.cpu_count()} CPUs")
    print(f"{len(records[0].log_record.attributes or {})} attributes per record, {len(line) / len(direct_batches[0]):.0f} bytes "
          f"per record on the line, batches of {args.batch}, median of {args.runs} runs\n")

    with tempfile.TemporaryDirectory() as tmp:
        exporter = OTLPJsonLinesExporter(Path(tmp) / "direct.jsonl")
        protobuf_path = Path(tmp) / "protobuf.jsonl"
        with open(protobuf_path, "ab") as protobuf_file:

            def direct_encode() -> None:
                for batch in direct_batches:
                    logs_to_collector_json(batch)

            def direct_export() -> None:
                for batch in direct_batches:
                    exporter.export(batch)

            def protobuf_encode() -> None:
                for batch in protobuf_batches:
                    request_to_collector_json(encode_logs(batch))

            def protobuf_export() -> None:
                for batch in protobuf_batches:
                    protobuf_file.write((request_to_collector_json(encode_logs(batch)) + "\n").encode("utf-8"))
                    protobuf_file.flush()

            variants: dict[str, tuple[Callable[[], None], int]] = {
                "direct encode": (direct_encode, len(records[: args.records])),
                "direct export": (direct_export, len(records[: args.records])),
                "protobuf encode": (protobuf_encode, len(records[: args.protobuf_records])),
                "protobuf export": (protobuf_export, len(records[: args.protobuf_records])),
            }
            for work, count in variants.values():  # warm-up (caches, file open)
                time_per_record(work, count)
            samples: dict[str, list[float]] = {name: [] for name in variants}
            names = list(variants)
            for run in range(args.runs):
                for name in names[run % len(names) :] + names[: run % len(names)]:
                    work, count = variants[name]
                    samples[name].append(time_per_record(work, count))
        exporter.shutdown()

    median = {name: statistics.median(values) for name, values in samples.items()}
    print(f"{'variant':<18}{'us/record':>12}{'records/s':>14}{'min..max us/record':>24}")
    for name, values in samples.items():
        span = f"{min(values) * 1e6:.1f}..{max(values) * 1e6:.1f}"
        print(f"{name:<18}{median[name] * 1e6:>12.1f}{1 / median[name]:>14,.0f}{span:>24}")
    speedup = median["protobuf export"] / median["direct export"]
    rate = 1 / median["direct export"]
    verdict = "ok" if rate >= args.target else "MISSED"
    print(f"\ndirect export is {speedup:.0f}x the protobuf path; {rate:,.0f} records/s vs target {args.target:,.0f}: {verdict}")
    return 1 if args.strict and rate < args.target else 0


if __name__ == "__main__":
    sys.exit(main())
