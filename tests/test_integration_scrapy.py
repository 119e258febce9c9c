"""The Scrapy integration on the real library (issue 16): `crawl.run` when a spider closes.

A real spider run by `auditrail-instrument python crawl.py` (CrawlerProcess) against the local site of
test_scrapy_capture; audit.yaml has no `events:`. A misconfigured spider fails to start: a failure event.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from test_launcher import AUDITRAIL_INSTRUMENT, events, run
from test_scrapy_capture import PAGES, SPIDERS, site  # noqa: F401 - the local site, a fixture

pytest.importorskip("scrapy")

CRAWL = SPIDERS + """

SETTINGS = {"LOG_LEVEL": "ERROR", "ROBOTSTXT_OBEY": False, "TELNETCONSOLE_ENABLED": False}
SITE = {"start_urls": [sys.argv[1], sys.argv[1].replace("index.html", "missing.html")],
        "allowed_domains": ["127.0.0.1"]}
if sys.argv[2] == "deferred":  # CrawlerProcess: Crawler.crawl, a Deferred
    process = CrawlerProcess(settings=SETTINGS)
    process.crawl(Site, **SITE, _job="job-42")
    failed = process.crawl(Misconfigured)
    failed.addErrback(lambda failure: print("misconfigured crawl failed:", failure.value, flush=True))
    process.start()
else:  # AsyncCrawlerProcess: Crawler.crawl_async, a coroutine
    from scrapy.crawler import AsyncCrawlerProcess

    process = AsyncCrawlerProcess(settings=SETTINGS)
    process.crawl(Site, **SITE, _job="job-42")
    failed = process.crawl(Misconfigured)
    failed.add_done_callback(lambda task: print("misconfigured crawl failed:", task.exception(), flush=True))
    process.start()
"""


def crawl(tmp_path: Path, url: str, yaml: str, api: str = "deferred", **env: str) -> dict[str, dict]:
    app = tmp_path / "app"
    app.mkdir(parents=True)
    (app / "audit.yaml").write_text(yaml)
    (app / "crawl.py").write_text(textwrap.dedent(CRAWL))
    out = app / "events.jsonl"
    proc = run([AUDITRAIL_INSTRUMENT, "python", "crawl.py", url, api], app, AUDITRAIL_EXPORTER=f"file:{out}", **env)
    assert proc.returncode == 0, proc.stderr
    assert "misconfigured crawl failed: no start url configured" in proc.stdout  # the app's errback still runs
    assert "could not capture" not in proc.stderr, proc.stderr
    return {e["payload"]["spider"]: e for e in events(out)["crawl.run"]}


@pytest.mark.parametrize("api", ["deferred", "async"])
def test_crawl_run_when_the_spider_closes_and_a_failure_for_one_that_never_started(tmp_path: Path, site: str,  # noqa: F811
                                                                                   api: str) -> None:
    by_spider = crawl(tmp_path, site, "delivery: {mode: durable, spool_dir: .auditrail/spool}\n", api,
                      AUDITRAIL_TRIGGERED_BY="cron:nightly")
    assert set(by_spider) == {"site", "misconfigured"}
    ok = by_spider["site"]
    assert ok["attributes"]["audit.outcome"] == "success"
    assert ok["payload"] == {"spider": "site", "domain": "127.0.0.1", "run_id": "job-42", "status": "finished",
                             "pages_crawled": len(PAGES) + 1, "pages_failed": 1, "items": 0,
                             "triggered_by": "cron:nightly"}
    bad = by_spider["misconfigured"]
    assert bad["attributes"]["audit.outcome"] == "failure"
    assert bad["payload"]["status"] == "failed_to_start" and bad["payload"]["pages_crawled"] == 0
    assert bad["payload"]["error"] == {"type": "ValueError", "message": "no start url configured"}
    assert bad["payload"]["triggered_by"] == "cron:nightly" and len(bad["payload"]["run_id"]) == 32


def test_triggered_by_option_wins_over_the_environment(tmp_path: Path, site: str) -> None:  # noqa: F811
    by_spider = crawl(tmp_path, site, "delivery: {mode: durable, spool_dir: .auditrail/spool}\n"
                                      "integrations: {scrapy: {triggered_by: 'api:reindex'}}\n",
                      AUDITRAIL_TRIGGERED_BY="cron:nightly")
    assert {e["payload"]["triggered_by"] for e in by_spider.values()} == {"api:reindex"}
    default = crawl(tmp_path / "default", site, "delivery: {mode: durable, spool_dir: .auditrail/spool}\n")
    assert {e["payload"]["triggered_by"] for e in default.values()} == {"manual"}
