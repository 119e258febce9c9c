"""Scrapy's `Crawler.crawl` audited zero-code: its event waits for the crawl the returned Deferred stands for.

A real spider, run by `auditrail-instrument python crawl.py` (CrawlerProcess, Twisted's asyncio reactor),
crawls a real site served by http.server on 127.0.0.1; the events come back through the file exporter.
"""

from __future__ import annotations

import functools
import http.server
import threading
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from test_launcher import AUDITRAIL_INSTRUMENT, events, run

pytest.importorskip("scrapy")

PAGES = {
    "index.html": '<a href="a.html">a</a> <a href="b.html">b</a>',
    "a.html": '<a href="c.html">c</a>',
    "b.html": '<a href="c.html">c</a>',
    "c.html": '<a href="d.html">d</a>',
    "d.html": "the end",
}

AUDIT_YAML = """
delivery: {mode: durable, spool_dir: .auditrail/spool}
events:
  - target: scrapy.crawler:Crawler.crawl
    event: crawl.run
    actor: "'scheduler'"
    actor_type: service
    payload:
      domain: 'self.settings.get("AUDIT_DOMAIN")'
      spider: self.spidercls.name
      pages: 'self.stats.get_value("response_received_count")'
      finish_reason: 'self.stats.get_value("finish_reason")'
      triggered_by: "'manual'"
      result: result
"""

# The head of the crawl.py scripts (here and in test_integration_scrapy): Site follows every link from its
# start_urls (a crawl argument, as Scrapy sets any), Misconfigured fails to start.
SPIDERS = """
import sys

import scrapy
from scrapy.crawler import CrawlerProcess


class Site(scrapy.Spider):
    name = "site"

    def parse(self, response):
        yield from response.follow_all(css="a", callback=self.parse)


class Misconfigured(scrapy.Spider):
    name = "misconfigured"

    def __init__(self, **kwargs):
        raise ValueError("no start url configured")
"""

CRAWL = SPIDERS + """

process = CrawlerProcess(settings={"LOG_LEVEL": "ERROR", "ROBOTSTXT_OBEY": False, "TELNETCONSOLE_ENABLED": False,
                                   "AUDIT_DOMAIN": "127.0.0.1"})
crawl = process.crawl(Site, start_urls=[sys.argv[1]])
print("returned", type(crawl).__name__, flush=True)
failed = process.crawl(Misconfigured)
failed.addErrback(lambda failure: print("misconfigured crawl failed:", failure.value, flush=True))
process.start()
print("done", flush=True)
"""


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def site(tmp_path: Path) -> Iterator[str]:
    """The five pages, served on 127.0.0.1 by http.server in a thread."""
    root = tmp_path / "site"
    root.mkdir()
    for name, body in PAGES.items():
        (root / name).write_text(f"<html><body>{body}</body></html>")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/index.html"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_crawler_crawl_event_waits_for_the_crawl_and_a_failed_crawl_is_a_failure(tmp_path: Path, site: str) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (app / "audit.yaml").write_text(AUDIT_YAML)
    (app / "crawl.py").write_text(textwrap.dedent(CRAWL))
    out = tmp_path / "events.jsonl"
    proc = run([AUDITRAIL_INSTRUMENT, "python", "crawl.py", site], app, AUDITRAIL_EXPORTER=f"file:{out}")
    assert proc.returncode == 0, proc.stderr
    # The app's own view of the Deferreds is unchanged: the same object back, the failure still reaches it.
    assert "returned Deferred" in proc.stdout
    assert "misconfigured crawl failed: no start url configured" in proc.stdout
    by_spider = {e["payload"]["spider"]: e for e in events(out)["crawl.run"]}
    assert set(by_spider) == {"site", "misconfigured"}

    ok = by_spider["site"]
    assert ok["attributes"]["audit.outcome"] == "success"
    # Recorded when the crawl finished: every page fetched, the result the Deferred fired with (None).
    assert ok["payload"]["pages"] == len(PAGES)
    assert ok["payload"]["finish_reason"] == "finished"
    assert ok["payload"]["result"] is None
    assert ok["payload"]["domain"] == "127.0.0.1" and ok["payload"]["triggered_by"] == "manual"
    assert ok["attributes"]["enduser.id"] == "scheduler" and ok["attributes"]["audit.actor.type"] == "service"

    bad = by_spider["misconfigured"]
    assert bad["attributes"]["audit.outcome"] == "failure"
    assert bad["payload"]["error"] == {"type": "ValueError", "message": "no start url configured"}
    assert bad["payload"]["pages"] is None
