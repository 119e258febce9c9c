"""Google Chat alerts through the real collector: a burst becomes one card plus an exact summary, and the
rate limit per rule and tenant holds, with the rules of collector-config/rules.yaml (windows shortened)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from collector import AuditEvent, Collector, audit_request, collector_env, require_binary, wait_until
from destinations import WebhookRecorder


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
