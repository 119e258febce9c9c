"""OTLP/JSON ingest throughput through `auditrail serve`, this tree beside a baseline commit, same run.

The request mix of benchmarks/storage.py (audit records of 15 attributes, 5,000 a request, as the
instrumentation sends) as OTLP/JSON, an all-tenant token (a collector's), concurrent senders; the service of
this tree reads JSON as a stream into protobuf (ingest_json.py) and takes the protobuf path, the baseline's
(``git archive REV storage``, first on PYTHONPATH; the native core is this tree's) parses it with orjson and
decode_json. Runs alternate (now, baseline, now, ...) on fresh stores; each figure is the median.

    .venv/bin/python benchmarks/ingest_json.py [--baseline 656336e] [--ingest 100000] [--repeats 3] [--python]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from storage import batches, bench_service_ingest  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default="656336e", help="the commit whose storage package is the baseline")
    parser.add_argument("--ingest", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--python", action="store_true",
                        help="the service's Python path (AUDITRAIL_INGEST_FAST=0: slices, as for a tenant's token)")
    args = parser.parse_args()
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    from auditrail.exporters.otlp_json import request_to_collector_json

    bodies = [request_to_collector_json(ExportLogsServiceRequest.FromString(body)).encode()
              for body in batches(args.ingest + args.batch, args.batch)]  # the first is the warm-up
    with tempfile.TemporaryDirectory(prefix="auditrail-json-") as name:
        tmp = Path(name)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.baseline, "storage"], check=True,
                                 capture_output=True).stdout
        (tmp / "baseline").mkdir()
        subprocess.run(["tar", "-x", "-C", str(tmp / "baseline")], input=archive, check=True)
        baseline = {"PYTHONPATH": os.pathsep.join([str(tmp / "baseline" / "storage"),
                                                   os.environ.get("PYTHONPATH", "")])}
        runs: dict[str, list[tuple[float, float, float]]] = {"now": [], "baseline": []}
        for run in range(args.repeats):
            for label, env in (("now", {}), ("baseline", baseline)):
                url = f"chdb://{tmp}/{label}-{run}"
                runs[label].append(bench_service_ingest(bodies, url, tmp / f"{label}-{run}.log", not args.python, args.senders,
                                                        "application/json", **env))
                rate, cpu, peak = runs[label][-1]
                print(f"{label:8s} run {run}: {rate:8.0f} events/s, {cpu:6.1f} us CPU an event, peak RSS "
                      f"{peak / 1e6:.0f} MB  [load {os.getloadavg()[0]:.1f}]", flush=True)
        medians = {label: [statistics.median(r[i] for r in figures) for i in range(3)]
                   for label, figures in runs.items()}
        (now_rate, now_cpu, now_peak), (base_rate, base_cpu, base_peak) = medians["now"], medians["baseline"]
        print(f"median: now {now_rate:.0f} events/s ({now_cpu:.1f} us CPU an event, peak {now_peak / 1e6:.0f} MB), "
              f"{args.baseline} {base_rate:.0f} events/s ({base_cpu:.1f} us, peak {base_peak / 1e6:.0f} MB): "
              f"{now_rate / base_rate:.2f}x the events/s, {base_cpu / now_cpu:.2f}x less CPU an event")


if __name__ == "__main__":
    main()
