"""delivery.on_full: a durable spool at its disk cap blocks audited calls until there is room, or refuses them.

Downstream is a real OTLP/HTTP receiver that is not listening yet (connection refused), so the spool fills;
then it starts on that port and everything queued is delivered, nothing dropped.
"""

from __future__ import annotations

import threading
import time
from urllib.parse import urlparse

import pytest

import auditrail
from auditrail import runtime, semconv
from auditrail.exporters.otlp import HttpEventExporter
from otlp_receiver import OTLPHttpReceiver
from test_delivery import closed_port_endpoint

APP = {"notes/store.py": """
    CALLS = []

    def save(tenant_id, text):
        CALLS.append(tenant_id)
"""}


def instrument_durable(audit, tmp_path, endpoint: str, on_full: str) -> None:
    from auditrail.config import parse_config
    from auditrail.instrumentor import AuditInstrumentor

    config = parse_config(f"""
service_name: notes
delivery: {{mode: durable, spool_dir: {tmp_path / 'spool'}, max_bytes: 1048576, on_full: {on_full}}}
events:
  - target: notes.store:save
    event: notes.save
    tenant: tenant_id
    actor: '"ops"'
    payload: {{text: text}}
""", filename=str(tmp_path / "audit.yaml"))
    exporter = HttpEventExporter(endpoint=f"{endpoint}/v1/logs", timeout=5)
    AuditInstrumentor().instrument(config=config, exporter=exporter)
    audit.instrumented = True
    runtime.recorder.provider.max_backoff = 0.5  # retry often, so the test sees recovery quickly


def fill_spool(store) -> int:
    """Audited calls with 10 KB payloads until the spool says it is full; returns how many ran."""
    spool = runtime.recorder.provider.spool
    calls = 0
    while not spool.full():
        store.save(f"t{calls}", "x" * 10_000)
        calls += 1
        assert calls < 1000, "the spool never filled"
    return calls


def received_tenants(receiver: OTLPHttpReceiver) -> list[str]:
    """Tenants of the received events in arrival order, each event id counted once (delivery is at least
    once: a batch whose response timed out is sent again, and downstream dedups by audit.event_id)."""
    seen: dict[str, str] = {}
    for record in receiver.received.log_records():
        attrs = {kv.key: kv.value.string_value for kv in record.attributes}
        if record.event_name == "notes.save":
            seen.setdefault(attrs[semconv.EVENT_ID], attrs[semconv.TENANT])
    return list(seen.values())


def test_refuse_at_the_cap_raises_before_the_target_runs_then_recovers(audit, tmp_path):
    endpoint = closed_port_endpoint()
    audit.app(APP)
    instrument_durable(audit, tmp_path, endpoint, "refuse")
    from notes import store

    filled = fill_spool(store)
    with pytest.raises(auditrail.AuditUnavailable, match="on_full: refuse"):
        store.save("refused", "y")
    assert "refused" not in store.CALLS
    assert runtime.recorder.provider.spool_full_refusals == 1

    with OTLPHttpReceiver(port=urlparse(endpoint).port) as receiver:
        assert auditrail.flush(30)
        store.save("after", "z")
        assert auditrail.flush(30)
        audit.stop()  # while downstream is up: the final checkpoint goes out at once
        tenants = received_tenants(receiver)
    assert tenants == [f"t{i}" for i in range(filled)] + ["after"]


def test_block_at_the_cap_waits_before_the_action_and_loses_nothing(audit, tmp_path):
    endpoint = closed_port_endpoint()
    audit.app(APP)
    instrument_durable(audit, tmp_path, endpoint, "block")
    from notes import store

    filled = fill_spool(store)
    blocked = threading.Thread(target=store.save, args=("blocked", "y"), daemon=True)
    blocked.start()
    time.sleep(1.0)
    assert blocked.is_alive() and "blocked" not in store.CALLS  # waiting before the action, not after it
    assert runtime.recorder.provider.spool_full_waits >= 1

    with OTLPHttpReceiver(port=urlparse(endpoint).port) as receiver:
        blocked.join(timeout=30)
        assert not blocked.is_alive()
        assert auditrail.flush(30)
        audit.stop()
        tenants = received_tenants(receiver)
    assert store.CALLS[-1] == "blocked"
    assert tenants == [f"t{i}" for i in range(filled)] + ["blocked"]
