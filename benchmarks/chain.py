"""Cost of hash-chain linking on the hot path (Chain.link) and of hashing for the verifier.  A benchmark, not a test.

    .venv/bin/python benchmarks/chain.py [--events 100000] [--runs 5]

Prints the median over runs of microseconds per call for: Chain.link (fields + RFC 8785 canonical JSON via
orjson + SHA-256 + lock + chain attributes), event_hash (the verifier's path, generic canonical_json), and
the pure-Python rfc8785 package on the same object for comparison.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import time

import rfc8785

from auditrail.chain import Chain, event_fields, event_hash
from auditrail.events import AuditEvent


def _event(i: int) -> AuditEvent:
    payload = json.dumps({"before": {"prompt_hash": "a" * 64}, "after": {"prompt_hash": "b" * 64}, "n": i})
    return AuditEvent("prompt.update", tenant="tenant-1", actor="alice@example.com", payload=payload,
                      source_ip="203.0.113.7", reason="fix typo", risk="high")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    results: dict[str, list[float]] = {"Chain.link": [], "event_hash": [], "rfc8785 package": []}
    for _ in range(args.runs):
        events = [_event(i) for i in range(args.events)]
        chain = Chain()
        start = time.perf_counter()
        for event in events:
            chain.link(event)
        results["Chain.link"].append((time.perf_counter() - start) / args.events * 1e6)
        fields = event_fields(events[0], chain.chain_id, 1, "0" * 64)
        start = time.perf_counter()
        for _ in range(args.events):
            event_hash(fields)
        results["event_hash"].append((time.perf_counter() - start) / args.events * 1e6)
        n = max(1, args.events // 10)
        start = time.perf_counter()
        for _ in range(n):
            hashlib.sha256(rfc8785.dumps(fields)).hexdigest()
        results["rfc8785 package"].append((time.perf_counter() - start) / n * 1e6)
    for name, values in results.items():
        print(f"{name:16s} {statistics.median(values):7.2f} us/event (median of {args.runs})")


if __name__ == "__main__":
    main()
