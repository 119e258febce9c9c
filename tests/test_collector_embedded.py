"""The embedded variant: collector-config/otelcol-embedded.yaml sends every audit event to `auditrail serve`
(the store service over embedded chDB) with otlp_http, authenticated with an ingest token from the environment.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml
from auditrail_store import ingest_fast, ingest_limits
from collector import (CONFIG_DIR, EMBEDDED_CONFIGS, AuditEvent, Collector, audit_request, collector_env,
                       require_binary, wait_for_at_least)
from processes import free_port, terminate, wait_for_http

AUDITRAIL = Path(sys.executable).with_name("auditrail")  # the console script `pip install -e .` made


def auditrail(*args: str) -> str:
    """Run the auditrail CLI; its stdout."""
    done = subprocess.run([str(AUDITRAIL), *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_embedded_variant_delivers_every_event_to_auditrail_serve(tmp_path: Path) -> None:
    require_binary()
    store_url = f"chdb://{tmp_path / 'store'}"
    auditrail("migrate", "--url", store_url)
    port = free_port()
    with open(tmp_path / "serve.log", "wb") as log:
        serve = subprocess.Popen([str(AUDITRAIL), "serve", "--url", store_url, "--port", str(port)],
                                 stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    collector = None
    try:
        service = f"http://127.0.0.1:{port}"
        wait_for_http(f"{service}/healthz", serve, "auditrail serve")
        token = auditrail("tokens", "create", "--tenant", "*", "--scope", "admin", "--url", store_url).splitlines()[-1]
        collector = Collector(tmp_path / "collector", collector_env(
            AUDITRAIL_STORE_ENDPOINT=service, AUDITRAIL_STORE_TOKEN=token), configs=list(EMBEDDED_CONFIGS))
        collector.start()
        tenant = "t-embedded"
        events = [AuditEvent(f"custom.e{i % 4}", "low", tenant) for i in range(120)]
        for start in range(0, len(events), 40):
            assert collector.send(audit_request(events[start:start + 40])) == 200

        def exported() -> dict[str, str]:
            out = auditrail("export", "--tenant", tenant, "--format", "ndjson", "--out", "-", "--no-progress",
                            "--url", store_url)
            rows = [json.loads(line) for line in out.splitlines() if line.strip()]
            return {r["event_id"]: r["event_type"] for r in rows}

        got = wait_for_at_least(exported, len(events), timeout=60, what="events in the store")
        assert got == {e.event_id: e.event_name for e in events}
    finally:
        if collector is not None:
            collector.stop()
        terminate(serve, 20)


def test_store_requests_fit_one_store_insert_and_the_store_limits() -> None:
    """The store exporter's batches (collector-config/otelcol-embedded.yaml) are sized for the store's group
    insert and stay inside its request limits even for the smallest audit records: the exporter does not retry a
    413, so a batch over a limit would be lost to the store."""
    config = yaml.safe_load((CONFIG_DIR / "otelcol-embedded.yaml").read_text())
    batch = config["exporters"]["otlp_http/store"]["sending_queue"]["batch"]
    assert batch["sizer"] == "bytes"
    assert batch["min_size"] <= batch["max_size"] <= ingest_fast.GROUP_BYTES
    assert batch["max_size"] < ingest_limits.DEFAULT_MAX_BODY
    smallest = [AuditEvent("a.b", "low", "t", actor="", payload="") for _ in range(1000)]
    record_bytes = len(audit_request(smallest, service="s").SerializeToString()) / len(smallest)
    assert batch["max_size"] / record_bytes < ingest_limits.DEFAULT_MAX_RECORDS, record_bytes
