"""Nothing lost across a collector crash while ClickHouse is down: the persistent sending queue (file_storage)
holds every accepted event, the restarted collector delivers it once ClickHouse is back, and the store's
dedup by audit.event_id turns the client's retries of unacknowledged requests into exactly-once results.
"""

from __future__ import annotations

import threading
import time
import urllib.error
from pathlib import Path


from collector import AuditEvent, Collector, audit_request, collector_env, require_binary, wait_for_at_least
from clickhouse_http import migrated, stored_events


def send_once(collector: Collector, batch: list[AuditEvent]) -> int | None:
    """One attempt: the HTTP status, or None when the collector is not there (killed, restarting)."""
    try:
        return collector.send(audit_request(batch), timeout=5)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def test_sigkilled_collector_with_clickhouse_down_stores_every_event_once_after_recovery(tmp_path: Path) -> None:
    require_binary()
    clickhouse = migrated(tmp_path / "chdb")
    collector = Collector(tmp_path / "collector", collector_env(
        AUDITRAIL_CLICKHOUSE_ENDPOINT=clickhouse.url, AUDITRAIL_CLICKHOUSE_COMPRESS="none"))
    tenant = "t-crash"
    batches = [[AuditEvent(f"custom.step{i % 3}", "low", tenant) for _ in range(25)] for i in range(24)]
    events = [e for b in batches for e in b]
    acked = 0
    try:
        collector.start()
        # Phase 1: ClickHouse up, the first batches land.
        for batch in batches[:4]:
            assert collector.send(audit_request(batch)) == 200
            acked += 1
        wait_for_at_least(lambda: stored_events(clickhouse, tenant), 100, what="first events stored")

        # Phase 2: ClickHouse goes down; the stream goes on and the collector is SIGKILLed in the middle of it.
        clickhouse.kill()
        progress = {"acked": acked, "retries": 0}

        def stream() -> None:
            for batch in batches[4:]:
                while send_once(collector, batch) != 200:
                    progress["retries"] += 1  # killed or restarting: resend the same batch, as a client does
                    time.sleep(0.1)
                progress["acked"] += 1

        sender = threading.Thread(target=stream, daemon=True)
        sender.start()
        while progress["acked"] < 12:
            time.sleep(0.01)
        collector.kill()  # no shutdown, no flush: only the persistent queue survives
        time.sleep(0.5)
        collector.start()
        sender.join(120)
        assert not sender.is_alive(), "the sender never got every batch acknowledged"
        assert progress["acked"] == len(batches)

        # Phase 3: ClickHouse comes back; the restarted collector drains its queue.
        clickhouse.start()
        got = wait_for_at_least(lambda: stored_events(clickhouse, tenant), len(events), timeout=120,
                                what="every event stored after recovery")
        assert set(got) == {e.event_id for e in events}
        assert all(n == 1 for _, n in got.values()), "an event is visible more than once"
        # Each row keeps its event type in LogAttributes too (see the test below for why that matters).
        names = clickhouse.rows(
            "SELECT LogAttributes['audit.event_id'] AS id, LogAttributes['event.name'] AS name "
            f"FROM auditrail.otel_logs WHERE LogAttributes['audit.tenant_id'] = '{tenant}'")
        assert {r["id"]: r["name"] for r in names} == {e.event_id: e.event_name for e in events}
    finally:
        stop_all(collector, clickhouse)


def stop_all(collector: Collector, clickhouse) -> None:
    collector.stop()
    clickhouse.stop()


def test_event_type_is_stored_when_the_collector_started_while_clickhouse_was_down(tmp_path: Path) -> None:
    """The clickhouse exporter (v0.161.0) detects the EventName column once, at start-up; started while
    ClickHouse is down, it inserts without EventName for its whole life. transform/event_name keeps the type
    in LogAttributes['event.name'], and audit_events must take it from there."""
    require_binary()
    clickhouse = migrated(tmp_path / "chdb")
    clickhouse.kill()
    collector = Collector(tmp_path / "collector", collector_env(
        AUDITRAIL_CLICKHOUSE_ENDPOINT=clickhouse.url, AUDITRAIL_CLICKHOUSE_COMPRESS="none"))
    tenant = "t-late-clickhouse"
    events = [AuditEvent("prompt.update", "high", tenant), AuditEvent("crawl.run", "low", tenant)]
    try:
        collector.start()
        assert collector.send(audit_request(events)) == 200
        clickhouse.start()
        got = wait_for_at_least(lambda: stored_events(clickhouse, tenant), len(events), timeout=60,
                                what="events stored")
        assert set(got) == {e.event_id for e in events}
        assert {got[e.event_id][0] for e in events} == {e.event_name for e in events}
    finally:
        stop_all(collector, clickhouse)
