"""The service's own audit events through the collector (issue 18: "a month not signed within N days raises
review.overdue, which the collector rules send to Google Chat"): `auditrail serve --forward-otlp` sends them, the
real collector's rules post one card, and the copy the collector routes back into the store is the same event."""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest

import review_month
from auditrail_store.db import Store
from auditrail_store.migrate import migrate
from auditrail_store.reviews.schedule import CloseConfig, MonthlyClose
from auditrail_store.reviews.signoff import ReviewEvents, sign
from auditrail_store.verify_store import event_conflicts
from clickhouse_http import migrated
from collector import EMBEDDED_CONFIGS, TOKEN, Collector, collector_env, require_binary, wait_until
from destinations import WebhookRecorder
from otlp_receiver import OTLPHttpReceiver
from processes import free_port
from test_collector_alerts import card_fields
from test_store_service import cli, start_service, stop, token_of


def _closed_on_2_november_with_only_globex_october_unsigned(tmp: Path) -> None:
    """A store whose months August-October were closed on 2 November (review.due then, overdue after the 12th)
    and every review but globex's October signed off."""
    reports = Path(f"{tmp}/store.reviews")
    with Store.open(f"chdb://{tmp}/store") as store:
        migrate(store)
        review_month.fill(store)
        events = ReviewEvents(store)
        try:
            MonthlyClose(store, reports, events, CloseConfig()).run(datetime(2026, 11, 2, tzinfo=timezone.utc))
            for month in ("2026-08", "2026-09", "2026-10"):
                for tenant in ("acme", "globex", "*"):
                    if (tenant, month) != ("globex", "2026-10") and (reports / month).exists():
                        try:
                            sign(store, tenant, month, "rita@acme.io", "reviewed", reports, events)
                        except Exception as error:  # noqa: BLE001 - a tenant without events that month has no report
                            assert "no report" in str(error)
        finally:
            events.close()


def test_a_forward_url_that_is_not_one_stops_serve_before_it_starts(tmp_path: Path) -> None:
    env = dict(os.environ, AUDITRAIL_CLICKHOUSE_URL=f"chdb://{tmp_path}/store")
    done = cli("serve", "--port", str(free_port()), "--forward-otlp", "127.0.0.1:4318", env=env, check=False)
    assert done.returncode == 2 and "--forward-otlp='127.0.0.1:4318': give the collector's OTLP/HTTP URL" in done.stderr
    done = cli("serve", "--port", str(free_port()), env={**env, "AUDITRAIL_FORWARD_OTLP": "grpc://x:4317"}, check=False)
    assert done.returncode == 2 and "AUDITRAIL_FORWARD_OTLP='grpc://x:4317'" in done.stderr
    done = cli("serve", "--port", str(free_port()), "--forward-otlp", "http://otel:s3cret@127.0.0.1:4318", env=env,
               check=False)
    assert done.returncode == 2 and "put the collector's token in AUDITRAIL_FORWARD_OTLP_HEADERS" in done.stderr
    assert "s3cret" not in done.stderr + done.stdout
    assert not (tmp_path / "store").exists()  # nothing opened, nothing migrated


def test_an_unsigned_month_past_its_days_posts_one_card_and_is_stored_once(tmp_path: Path) -> None:
    require_binary()
    (tmp_path / "service").mkdir()
    _closed_on_2_november_with_only_globex_october_unsigned(tmp_path / "service")
    ingest = token_of(cli("tokens", "create", "--tenant", "*", "--scope", "ingest",
                          env={"AUDITRAIL_CLICKHOUSE_URL": f"chdb://{tmp_path}/service/store"}))
    chat = WebhookRecorder()
    chat.start()
    collector = Collector(tmp_path / "collector", {}, configs=list(EMBEDDED_CONFIGS))
    # The service starts while the collector is down: its review.overdue waits in the forward spool.
    service, base, env = start_service(tmp_path / "service", "--forward-otlp", collector.otlp_http,
                                       AUDITRAIL_REVIEW_SCHEDULE="on",
                                       AUDITRAIL_FORWARD_OTLP_HEADERS=f"authorization=Bearer%20{TOKEN}")
    try:
        collector.env.update(collector_env(AUDITRAIL_GOOGLE_CHAT_WEBHOOK_URL=chat.url, AUDITRAIL_STORE_ENDPOINT=base,
                                           AUDITRAIL_STORE_TOKEN=ingest, AUDITRAIL_REVIEWS_URL=base))
        time.sleep(2)  # a few forward attempts fail first
        collector.start()
        posts = wait_until(lambda: [p for p in chat.posts if "review.overdue" in json.dumps(p)], timeout=90,
                           what="the review.overdue card")
        reader = token_of(cli("tokens", "create", "--tenant", "globex", "--scope", "read", env=env))
        auth = {"Authorization": f"Bearer {reader}"}

        def stored() -> list[dict[str, str]]:
            return httpx.get(f"{base}/v1/tenants/globex/events", params={"type": "review.overdue"}, headers=auth,
                             timeout=30).json()["events"]

        (event,) = wait_until(stored, timeout=30, what="review.overdue in the store")
        payload = event["payload"]  # (the JSON export shows it as an object)
        time.sleep(3)  # anything else would have arrived by now
        cards = [(p["cardsV2"][0]["card"]["header"]["title"], card_fields(p)) for p in chat.posts]
        assert [title for title, _ in cards].count("review.overdue") == 1, cards
        # Besides it: the months closed since (November on 1 December, ...) are due now, their global reviews
        # (no tenant had events then). Nothing else of the service alerts.
        others = [(title, c["Tenant"], c["Month"]) for title, c in cards if title != "review.overdue"]
        assert others and all(t == "review.due" and who == "*" and m > "2026-10" for t, who, m in others), cards
        due = next(c for title, c in cards if title == "review.due")
        assert due["Due by"] > "2026-12" and due["link"] == f"{base}/reviews#review-{due['Month']}-%2A"
        card = card_fields(posts[0])
        assert posts[0]["cardsV2"][0]["card"]["header"]["title"] == "review.overdue"
        assert posts[0]["cardsV2"][0]["cardId"] == f"alert-{event['event_id']}"
        assert card["Tenant"] == "globex" and card["Month"] == "2026-10"
        assert card["Due by"] == "2026-11-12T00:00:00Z" == payload["overdue_after"]
        days = (datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
                - datetime(2026, 11, 12, tzinfo=timezone.utc)).days
        assert card["Days overdue"] == str(payload["days_overdue"]) == str(days)
        assert card["Days to sign off"] == "10" and card["Report"] == "review-globex-2026-10.pdf"
        assert card["link"] == f"{base}/reviews#review-2026-10-globex" and card["link text"] == "Open the review"
        assert httpx.get(card["link"], timeout=30).status_code == 200

        # The collector's store pipeline delivered its copy back (its exporter sent it), and the store kept one.
        def sent_to_store() -> float:
            return sum(v for k, v in collector.metrics().items() if "sent_log_records" in k and "otlp_http/store" in k)

        wait_until(lambda: sent_to_store() >= 1, timeout=30, what="the collector's copy sent to the store")
        assert len(stored()) == 1
        # The service's chain of globex verifies with the copy in it (since today: review_month's rows are unchained).
        since = datetime.now(timezone.utc).date().isoformat()
        verified = httpx.get(f"{base}/v1/tenants/globex/verify", params={"since": since}, headers=auth,
                             timeout=60).json()
        assert verified["ok"] and verified["chains"], json.dumps(verified)[:3000]
    finally:
        collector.stop()
        chat.stop()
        stop(service)
    with Store.open(f"chdb://{tmp_path}/service/store") as store:
        (arrivals,) = store.query("SELECT count() FROM auditrail.otel_logs WHERE LogAttributes['audit.event_id'] ="
                                  " {id:String}", {"id": event["event_id"]}).result_rows
        assert arrivals == (2,)  # the service's write and the collector's copy...
        assert event_conflicts(store, "globex", None) == []  # ...one identical version


def test_a_copy_the_collector_missed_waits_on_disk_and_goes_out_after_a_restart(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    monkeypatch.setenv("AUDITRAIL_FORWARD_OTLP_HEADERS", "authorization=Bearer%20forward-token")
    with Store.open(f"chdb://{tmp_path}/store") as store:
        migrate(store)
        events = ReviewEvents(store, forward=f"http://127.0.0.1:{port}")  # nothing listens there: collector down
        events.record_event("review.due", "acme", None, {"month": "2026-11"})
        events.close()  # in the store at once; its copy stays in the forward spool
        (stored,) = store.query("SELECT event_id, chain_id, chain_seq, chain_hash FROM auditrail.audit_events FINAL "
                                "WHERE event_type = 'review.due'").result_rows
        with OTLPHttpReceiver(port) as collector:
            events = ReviewEvents(store, forward=f"http://127.0.0.1:{port}")  # the service's next start
            try:
                (record,) = wait_until(lambda: [r for r in collector.received.log_records()
                                                if r.event_name == "review.due"], timeout=60, what="the copy")
            finally:
                events.close()
    attributes = {kv.key: kv.value for kv in record.attributes}
    sent = (attributes["audit.event_id"].string_value, attributes["audit.chain.id"].string_value,
            attributes["audit.chain.seq"].int_value, attributes["audit.chain.hash"].string_value)
    assert sent == (str(stored[0]), *stored[1:])  # the very event the store holds, signed chain fields and all
    assert attributes["audit.tenant_id"].string_value == "acme" and record.severity_text == "INFO"
    (request, *_), (headers, *_) = collector.received.requests, collector.received.headers
    resource = {kv.key: kv.value.string_value for kv in request.resource_logs[0].resource.attributes}
    assert resource["service.name"] == "auditrail-reviews"
    assert request.resource_logs[0].scope_logs[0].scope.name == "auditrail"
    assert headers["authorization"] == "Bearer forward-token"


def test_through_the_clickhouse_pipeline_the_collectors_copy_is_the_same_version_of_each_event(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The large deployment: the service writes into ClickHouse itself and the collector's clickhouse exporter
    writes its copy there too, with the event type copied into LogAttributes['event.name'] (pipelines.yaml,
    transform/event_name). That copy must be the same version of the event, or verify reports every one of the
    service's events as a conflict."""
    require_binary()
    clickhouse = migrated(tmp_path / "chdb")
    collector = Collector(tmp_path / "collector", collector_env(AUDITRAIL_CLICKHOUSE_ENDPOINT=clickhouse.url))
    monkeypatch.setenv("AUDITRAIL_REVIEWS_SPOOL", str(tmp_path / "review-spool"))
    monkeypatch.setenv("AUDITRAIL_FORWARD_OTLP_HEADERS", f"authorization=Bearer%20{TOKEN}")
    try:
        collector.start()
        with Store.open(clickhouse.url) as store:
            events = ReviewEvents(store, forward=collector.otlp_http)
            try:  # review.overdue and its checkpoint
                events.record_event("review.overdue", "globex", None, {"month": "2026-10", "days_overdue": 3})
            finally:
                events.close()
        arrivals = ("SELECT LogAttributes['audit.event_id'] AS id, count() AS n, max(LogAttributes['event.name']) "
                    "AS name FROM auditrail.otel_logs WHERE LogAttributes['audit.tenant_id'] = 'globex' GROUP BY id")
        rows = wait_until(lambda: [r for r in clickhouse.rows(arrivals) if r["n"] == 2] or None, timeout=60,
                          what="the collector's copies in ClickHouse")
        assert {r["name"] for r in rows} == {"review.overdue", "audit.checkpoint"} and len(rows) == 2
        with Store.open(clickhouse.url) as store:  # two arrivals of each (rows above), one version: no conflict
            assert event_conflicts(store, "globex", None) == []
        (stored,) = clickhouse.rows("SELECT count() AS n, any(attributes) AS attributes FROM auditrail.audit_events "
                                    "FINAL WHERE event_type = 'review.overdue'")
        assert int(stored["n"]) == 1 and stored["attributes"] == {}
    finally:
        collector.stop()
        clickhouse.stop()
