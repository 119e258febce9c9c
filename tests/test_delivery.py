"""Delivery guarantees end to end: real subprocesses under auditrail-instrument, a real OTLP/HTTP receiver."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from auditrail import semconv
from otlp_receiver import OTLPHttpReceiver

BIN = Path(sys.executable).parent

MAIN = """
import os, sys, time
from ledger.ops import record
for i in range(int(sys.argv[1])):
    record(f"t{i}")
    print(i, flush=True)  # printed only after the audited call returned
if os.environ.get("HANG"):
    time.sleep(120)
"""


def write_app(root: Path, mode: str, spool: Path) -> None:
    (root / "ledger").mkdir(parents=True)
    (root / "ledger" / "__init__.py").write_text("")
    (root / "ledger" / "ops.py").write_text("DONE = []\n\ndef record(tenant_id):\n    DONE.append(tenant_id)\n")
    (root / "main.py").write_text(textwrap.dedent(MAIN))
    (root / "audit.yaml").write_text(textwrap.dedent(f"""
        service_name: ledger
        delivery: {{mode: {mode}, spool_dir: "{spool}"}}
        events:
          - {{target: ledger.ops:record, event: custom.recorded, tenant: tenant_id}}
        """))


def app_env(endpoint: str) -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "AUDITRAIL_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_EXPORTER_OTLP_TIMEOUT": "1",
            "AUDITRAIL_SIGNING_KEY": "", "PYTHONUNBUFFERED": "1"}


def tenants_received(receiver: OTLPHttpReceiver) -> tuple[dict[str, str], int]:
    """Received events by event id -> tenant (checkpoints left out), and how many records came in all."""
    by_id: dict[str, str] = {}
    records = receiver.received.log_records()
    for r in records:
        attrs = {kv.key: kv.value.string_value for kv in r.attributes}
        if r.event_name == "custom.recorded":
            assert by_id.setdefault(attrs[semconv.EVENT_ID], attrs[semconv.TENANT]) == attrs[semconv.TENANT]
    return by_id, len(records)


def closed_port_endpoint() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens there once closed


def test_kill_9_mid_burst_loses_no_returned_call_and_replays_each_event_once(tmp_path):
    root, spool = tmp_path / "app", tmp_path / "spool"
    write_app(root, "durable", spool)
    # Run 1: downstream unreachable, so every event is still in the spool when the process is killed.
    proc = subprocess.Popen([str(BIN / "auditrail-instrument"), "python", "main.py", "3000"], cwd=root,
                            env={**app_env(closed_port_endpoint()), "HANG": "1"}, stdout=subprocess.PIPE, text=True)
    returned = []
    for line in proc.stdout:
        returned.append(int(line))
        if len(returned) == 1500:
            proc.send_signal(signal.SIGKILL)  # in the middle of the burst
            break
    proc.wait(30)
    returned += [int(line) for line in proc.stdout]  # calls that returned before the kill landed
    assert proc.returncode == -signal.SIGKILL
    # Run 2: a new process adopts the dead one's spool and delivers it.
    with OTLPHttpReceiver() as receiver:
        done = subprocess.run([str(BIN / "auditrail-instrument"), "python", "main.py", "0"], cwd=root,
                              env=app_env(receiver.endpoint), capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        by_id, _ = tenants_received(receiver)
        requests = list(receiver.received.requests)
    got = sorted(by_id.values())
    assert len(got) == len(set(got)), "an event arrived under two ids"
    missing = {f"t{i}" for i in returned} - set(got)
    assert not missing, f"{len(missing)} returned calls lost, e.g. {sorted(missing)[:5]}"
    # The chains verify across the crash: events the dead process had linked keep their links (its drain
    # journalled them), the rest were linked by the adopter. Only the dead process's tail is unanchored (it
    # could not write its final checkpoint).
    from google.protobuf.json_format import MessageToJson

    from auditrail.exporters.otlp_json import read_records
    from auditrail.verify import verify_records

    received = tmp_path / "received.jsonl"
    received.write_text("".join(MessageToJson(r, indent=None) + "\n" for r in requests))
    report = verify_records(read_records([received]))
    assert [p.kind for p in report.problems] in ([], ["unanchored"]), report.render()
    assert len(report.chains) >= 2  # the dead process's chain and the adopter's


def test_downstream_down_for_30_s_then_back_loses_nothing(tmp_path):
    import socket

    root, spool = tmp_path / "app", tmp_path / "spool"
    write_app(root, "durable", spool)
    with socket.socket() as s:  # reserve a port for the receiver that starts late
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**app_env(f"http://127.0.0.1:{port}"), "HANG": "1"}
    proc = subprocess.Popen([str(BIN / "auditrail-instrument"), "python", "main.py", "200"], cwd=root, env=env,
                            stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(30)  # downstream down: the exporter fails, the spool keeps everything
        receiver = OTLPHttpReceiver(port=port)
        with receiver:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and len(tenants_received(receiver)[0]) < 200:
                time.sleep(0.5)
            by_id, _ = tenants_received(receiver)
    finally:
        proc.kill()
        proc.wait(10)
    assert sorted(by_id.values()) == sorted(f"t{i}" for i in range(200))


def test_fail_closed_with_an_unwritable_spool_refuses_the_action_before_it_runs(tmp_path):
    root = tmp_path / "app"
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the spool directory should be")
    write_app(root, "fail_closed", blocker / "spool")
    (root / "main.py").write_text(textwrap.dedent("""
        import auditrail
        from ledger import ops
        try:
            ops.record("acme")
        except auditrail.AuditUnavailable as exc:
            print("refused:", exc)
        print("ran:", ops.DONE)
        """))
    done = subprocess.run([str(BIN / "auditrail-instrument"), "python", "main.py"], cwd=root,
                          env=app_env(closed_port_endpoint()), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "refused: auditrail (fail_closed): action refused, its audit event cannot be recorded" in done.stdout
    assert "ran: []" in done.stdout  # the target never ran
    assert "not-a-dir" in done.stdout  # the reason names the path


@pytest.mark.parametrize("native", ["1", "0"], ids=["native", "python"])
@pytest.mark.parametrize("mode", ["durable", "fail_closed"])
def test_events_reach_downstream_through_the_disk_spool(tmp_path, mode, native):
    """Delivered and chained alike with the native core's drain functions and with their Python twins
    (AUDITRAIL_NATIVE=0)."""
    from google.protobuf.json_format import MessageToJson

    from auditrail.exporters.otlp_json import read_records
    from auditrail.verify import verify_records

    root, spool = tmp_path / "app", tmp_path / "spool"
    write_app(root, mode, spool)
    with OTLPHttpReceiver() as receiver:
        done = subprocess.run([str(BIN / "auditrail-instrument"), "python", "main.py", "50"], cwd=root,
                              env={**app_env(receiver.endpoint), "AUDITRAIL_NATIVE": native},
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        by_id, total = tenants_received(receiver)
        requests = list(receiver.received.requests)
    assert sorted(by_id.values()) == sorted(f"t{i}" for i in range(50))
    assert total >= 51  # and at least the shutdown checkpoint
    received = tmp_path / "received.jsonl"
    received.write_text("".join(MessageToJson(r, indent=None) + "\n" for r in requests))
    report = verify_records(read_records([received]))
    assert report.ok and report.chains, report.render()
    assert not [p for p in spool.iterdir() if p.is_dir()], "a cleanly stopped process leaves no spool behind"
