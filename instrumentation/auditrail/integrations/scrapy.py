"""Scrapy: `crawl.run` when a spider closes, and a failure event for a crawl that never got started.

Seams: `Crawler.crawl` / `Crawler.crawl_async` (public: every CrawlerProcess, CrawlerRunner and
`scrapy crawl` starts a crawl through one of them), wrapped only to connect a receiver to that crawler's
own signal manager (`signals.spider_closed`, public and documented) before the crawl starts, and to
see a crawl that fails before its spider opened (its `spider_closed` never comes). The counts are the
crawler's stats when the spider closes; the finish reason is the one the signal carries.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from .. import runtime
from . import Hooks, Integration, Option, capture_internal_exceptions, record, string

# What a finished crawl's reason may be and still be a success (CloseSpider limits are the app's own stops).
_OK = ("finished",)


def _domain(spider: Any) -> str | None:
    """The spider's first allowed domain, else its first start URL's host."""
    domains = getattr(spider, "allowed_domains", None) or ()
    if domains:
        return str(domains[0])
    urls = getattr(spider, "start_urls", None) or ()
    return urlsplit(str(urls[0])).hostname if urls else None


def _count(stats: Any, *keys: str) -> int:
    return sum(int(stats.get_value(key) or 0) for key in keys)


class ScrapyIntegration(Integration):
    """Scrapy crawl runs."""

    name = "scrapy"
    library = "scrapy"
    distribution = "Scrapy"
    versions = ">=2.13,<3"
    events = ("crawl.run",)
    options = {
        "triggered_by": Option(None, "who or what started the crawls (else $AUDITRAIL_TRIGGERED_BY, else manual)",
                               string),
    }

    def setup(self, hooks: Hooks) -> None:
        """Wrap Crawler.crawl and crawl_async once scrapy.crawler is imported."""

        def wrap(mod: Any) -> None:
            hooks.wrap(mod.Crawler, "crawl", self._crawl)
            if hasattr(mod.Crawler, "crawl_async"):  # Scrapy 2.14+
                hooks.wrap(mod.Crawler, "crawl_async", self._crawl_async)

        hooks.on_import("scrapy.crawler", wrap)

    def triggered_by(self) -> str:
        """The option, else AUDITRAIL_TRIGGERED_BY (read per crawl), else `manual`."""
        return self.config["triggered_by"] or os.environ.get("AUDITRAIL_TRIGGERED_BY") or "manual"

    def _start(self, crawler: Any, kwargs: dict[str, Any]) -> dict[str, Any] | None:
        """Connect this crawl's spider_closed receiver; the run's facts so far (None: auditing is off)."""
        if runtime.recorder is None:
            return None
        run: dict[str, Any] = {"closed": False}
        with capture_internal_exceptions("integration scrapy crawl (start)"):
            from scrapy import signals

            # scrapyd passes its job id as the `_job` spider argument (and SCRAPY_JOB): the run's id.
            run["run_id"] = str(kwargs.get("_job") or os.environ.get("SCRAPY_JOB") or uuid.uuid4().hex)
            run["triggered_by"] = self.triggered_by()

            def closed(spider: Any, reason: str) -> None:
                with capture_internal_exceptions("integration scrapy crawl.run"):
                    run["closed"] = True
                    self._closed(crawler, spider, reason, run)

            # Held strongly (Scrapy's dispatcher holds receivers weakly by default): it lives with the crawler.
            crawler.signals.connect(closed, signal=signals.spider_closed, weak=False)
        return run

    def _closed(self, crawler: Any, spider: Any, reason: str, run: dict[str, Any]) -> None:
        stats = crawler.stats
        payload = {"spider": spider.name, "domain": _domain(spider), "run_id": run["run_id"], "status": reason,
                   "pages_crawled": _count(stats, "response_received_count"),
                   "pages_failed": _count(stats, "downloader/exception_count", "httperror/response_ignored_count"),
                   "items": _count(stats, "item_scraped_count"), "triggered_by": run["triggered_by"]}
        ok = reason in _OK or reason.startswith("closespider_")
        record("crawl.run", payload=payload, outcome="success" if ok else "failure")

    def _failed(self, crawler: Any, run: dict[str, Any] | None, error: BaseException) -> None:
        """A crawl that raised before its spider closed (e.g. the spider's __init__ failed): a failure event."""
        if run is None or run["closed"]:
            return
        with capture_internal_exceptions("integration scrapy crawl.run (failed)"):
            spider = crawler.spider
            payload = {"spider": getattr(crawler.spidercls, "name", None),
                       "domain": _domain(spider) if spider is not None else None, "run_id": run["run_id"],
                       "status": "failed_to_start", "pages_crawled": 0, "pages_failed": 0, "items": 0,
                       "triggered_by": run["triggered_by"],
                       "error": {"type": type(error).__name__, "message": str(error)}}
            record("crawl.run", payload=payload, outcome="failure")

    def _crawl(self, wrapped: Callable[..., Any], crawler: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        run = self._start(crawler, kwargs)
        deferred = wrapped(*args, **kwargs)
        if run is not None:

            def failed(failure: Any) -> Any:
                self._failed(crawler, run, failure.value)
                return failure  # the app's errback still gets it

            deferred.addErrback(failed)
        return deferred

    async def _crawl_async(self, wrapped: Callable[..., Any], crawler: Any, args: tuple[Any, ...],
                           kwargs: dict[str, Any]) -> Any:
        run = self._start(crawler, kwargs)
        try:
            return await wrapped(*args, **kwargs)
        except Exception as exc:
            self._failed(crawler, run, exc)
            raise


INTEGRATION = ScrapyIntegration
