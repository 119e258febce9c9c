"""Google Chat alerts through the real collector: a burst becomes one card plus an exact summary, and the
rate limit per rule and tenant holds, with the rules of collector-config/rules.yaml (windows shortened)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs

from auditrail import ApprovalRequired
from collector import AuditEvent, Collector, audit_request, collector_env, require_binary, wait_until
from destinations import WebhookRecorder
from test_approvals import APP, CONFIG
from test_store_service import cli, start_service, stop, token_of


def test_a_burst_is_deduplicated_and_rate_limited_per_rule_and_tenant_with_exact_summaries(tmp_path: Path) -> None:
    require_binary()
    chat = WebhookRecorder()
    chat.start()
    collector = Collector(tmp_path / "collector", collector_env(
        AUDITRAIL_GOOGLE_CHAT_WEBHOOK_URL=chat.url, AUDITRAIL_ALERT_DEDUP_WINDOW="2s",
        AUDITRAIL_ALERT_RATE_INTERVAL="3s"))
    collector.start()
    try:
        burst = [AuditEvent("prompt.update", "high", "t-burst") for _ in range(500)]  # dedup: 1 card + summary
        for start in range(0, len(burst), 100):
            assert collector.send(audit_request(burst[start:start + 100])) == 200
        switches = [AuditEvent("killswitch.disable", "critical", "t-rate") for _ in range(25)]  # no dedup, 10/3s
        assert collector.send(audit_request(switches)) == 200

        def texts(tenant: str) -> list[str]:
            return [json.dumps(p) for p in chat.posts if tenant in json.dumps(p)]

        wait_until(lambda: len(texts("t-burst")) >= 2 and len(texts("t-rate")) >= 11, timeout=30,
                   what="alert cards and summaries")
        time.sleep(4.0)  # one more window and interval: nothing else may arrive
        burst_posts, rate_posts = texts("t-burst"), texts("t-rate")
        assert len(burst_posts) == 2 and len(rate_posts) == 11, (burst_posts, rate_posts)
        assert re.search(r"499 more prompt\.update events? for tenant t-burst", "".join(burst_posts))
        assert re.search(r"15 more killswitch\.disable events? for tenant t-rate", "".join(rate_posts))
        assert all("key=" not in p and "token=" not in p for p in burst_posts + rate_posts)
    finally:
        collector.stop()
        chat.stop()


def test_space_budget_holds_for_thirty_event_types_and_folds_the_rest_into_one_digest(tmp_path: Path) -> None:
    """issue 20: 30 critical events of 30 types for one tenant gave 30 posts. The space budget (5 per 3 s here)
    caps cards and summaries together, whatever the mix; the rest is one digest with the exact count."""
    require_binary()
    chat = WebhookRecorder()
    chat.start()
    collector = Collector(tmp_path / "collector", collector_env(
        AUDITRAIL_GOOGLE_CHAT_WEBHOOK_URL=chat.url, AUDITRAIL_ALERT_SPACE_BUDGET="5",
        AUDITRAIL_ALERT_SPACE_BUDGET_INTERVAL="3s"))
    collector.start()
    try:
        events = [AuditEvent(f"custom.type{i:02d}", "critical", "t-budget") for i in range(30)]
        assert collector.send(audit_request(events)) == 200
        digests = wait_until(lambda: [p for p in chat.posts if "space budget" in json.dumps(p)], timeout=30,
                             what="the budget's digest")
        time.sleep(4.0)  # one more interval: nothing else may arrive
        cards = [p for p in chat.posts if p["cardsV2"][0]["cardId"].startswith("alert-")]
        assert len(cards) == 5 and len(digests) == 1 and len(chat.posts) == 6, [json.dumps(p)[:120] for p in chat.posts]
        title = digests[0]["cardsV2"][0]["card"]["header"]["title"]
        assert re.match(r"25 more alerts held back by the space budget in the last", title), title
        lines = digests[0]["cardsV2"][0]["card"]["sections"][0]["widgets"][0]["textParagraph"]["text"].split("<br>")
        shown = {c["cardsV2"][0]["card"]["header"]["title"] for c in cards}
        listed = [re.match(r"(\d+) × (\S+) · tenant t-budget", line) for line in lines[:-1]]
        assert all(m and m[1] == "1" and m[2] not in shown for m in listed), lines  # each folded type once
        rest = re.match(r"(\d+) more in (\d+) other groups", lines[-1])  # a digest lists up to 20 lines
        assert rest and len(listed) + int(rest[1]) == 25, lines
    finally:
        collector.stop()
        chat.stop()


def test_an_open_window_survives_a_sigkill_and_its_summary_goes_out_after_the_restart(tmp_path: Path) -> None:
    """issue 20: a summary could be left unsent when the collector stopped. The open window's count is saved in
    file_storage before the request is acknowledged, so even a SIGKILL loses none of it."""
    require_binary()
    chat = WebhookRecorder()
    chat.start()
    collector = Collector(tmp_path / "collector", collector_env(
        AUDITRAIL_GOOGLE_CHAT_WEBHOOK_URL=chat.url, AUDITRAIL_ALERT_DEDUP_WINDOW="4s"))
    collector.start()
    try:
        burst = [AuditEvent("prompt.update", "high", "t-restart") for _ in range(50)]
        for start in range(0, len(burst), 10):
            assert collector.send(audit_request(burst[start:start + 10])) == 200
        wait_until(lambda: len(chat.posts) >= 1, timeout=30, what="the card")
        collector.kill()
        collector.start()
        summaries = wait_until(lambda: [p for p in chat.posts if "more prompt.update" in json.dumps(p)], timeout=30,
                               what="the summary after the restart")
        title = summaries[0]["cardsV2"][0]["card"]["header"]["title"]
        assert title.startswith("49 more prompt.update events for tenant t-restart"), title
        time.sleep(1.0)
        assert len(chat.posts) == 2, [json.dumps(p)[:120] for p in chat.posts]
    finally:
        collector.stop()
        chat.stop()


def card_fields(post: dict[str, Any]) -> dict[str, str]:
    """A posted card as label -> text, its button as "link" and "link text"."""
    out = {}
    for widget in post["cardsV2"][0]["card"]["sections"][0]["widgets"]:
        if "decoratedText" in widget:
            out[widget["decoratedText"]["topLabel"]] = widget["decoratedText"]["text"]
        if "buttonList" in widget:
            button = widget["buttonList"]["buttons"][0]
            out["link"], out["link text"] = button["onClick"]["openLink"]["url"], button["text"]
    return out


def test_an_approval_request_from_the_real_gate_posts_a_card_whose_button_opens_its_page(
        tmp_path: Path, audit: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """issue 17: the approval.requested card says which approval, what action for whom in which tenant, and its
    button opens that request's page on `auditrail serve` (AUDITRAIL_APPROVALS_URL), not an exporter-wide link.
    The record is the app's own: the real gate against a real service, exported as OTLP into the collector."""
    require_binary()
    (tmp_path / "service").mkdir()
    service, base, env = start_service(tmp_path / "service")
    chat = WebhookRecorder()
    chat.start()
    collector = Collector(tmp_path / "collector", collector_env(
        AUDITRAIL_GOOGLE_CHAT_WEBHOOK_URL=chat.url, AUDITRAIL_APPROVALS_URL=base))
    collector.start()
    try:
        monkeypatch.setenv("APV_TEST_TOKEN", token_of(cli("tokens", "create", "--tenant", "*", "--scope", "ingest",
                                                          env=env)))
        audit.module("apv.ops", APP)
        audit.instrument(CONFIG.replace("URL", base))
        import apv.ops

        secret = "AKIA" + "Q" * 16  # an AWS key id that slipped into the reason, a bound value
        with pytest.raises(ApprovalRequired) as caught:
            apv.ops.disable("*", "embed", "ops@vendor.io", reason=f"incident 7, key {secret}")
        refused = caught.value
        records = [r for r in audit.records() if r.log_record.event_name == "approval.requested"]
        assert len(records) == 1
        stored_bound = json.loads(records[0].log_record.attributes["audit.payload"])["bound"]
        assert collector.send(encode_logs(records)) == 200

        posts = wait_until(lambda: [p for p in chat.posts if "approval.requested" in json.dumps(p)], timeout=30,
                           what="the approval card")
        card = card_fields(posts[0])
        assert card["link"] == refused.url == f"{base}/approvals/{refused.approval_id}", card
        assert card["link text"] == "Approve or deny"
        assert card["Approval ID"] == refused.approval_id
        assert card["Action"] == "killswitch.disable" and card["Target"] == "apv.ops:disable"
        assert card["Requester"] == "ops@vendor.io" and card["Actor"] == "ops@vendor.io"
        assert card["Tenant"] == "*"
        lines = card["Bound values"].split("<br>")
        assert [line.split(": ", 1)[0] for line in lines] == sorted(stored_bound), (lines, stored_bound)
        assert "feature: embed" in lines and "tenant_id: *" in lines
        assert secret not in json.dumps(posts[0])  # masked as in the store's copy, or by redaction/outbound
        page = httpx.get(card["link"], timeout=30)  # the button's page exists: the sign-in form leading back to it
        assert page.status_code == 200 and f"/approvals/{refused.approval_id}" in page.text
    finally:
        collector.stop()
        chat.stop()
        stop(service)
