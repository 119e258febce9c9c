"""Crawl runs that index a tenant's site for answers (simulated deterministically: no network)."""

from __future__ import annotations

import asyncio
import hashlib
import re
import uuid
from dataclasses import dataclass

from . import db
from .errors import InvalidInput

TRIGGERS = ("schedule", "manual", "indexnow")

# Domains the crawler must never fetch: reserved names and internal hosts.
BLOCKED_SUFFIXES = (".invalid", ".localhost", ".internal", ".local")

DOMAIN_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,62}$")


@dataclass(frozen=True, slots=True)
class CrawlResult:
    """The outcome of one crawl run."""

    run_id: str
    pages_crawled: int
    pages_failed: int
    status: str  # succeeded | partial


class CrawlError(Exception):
    """A crawl run that could not run at all; the run is recorded as failed."""

    def __init__(self, run_id: str, domain: str, message: str) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.domain = domain


def _site_size(domain: str) -> tuple[int, int]:
    """Deterministic (pages, failures) for a domain, standing in for a real fetch."""
    digest = int(hashlib.sha256(domain.encode("utf-8")).hexdigest(), 16)
    return 12 + digest % 40, (digest >> 8) % 3


async def run_crawl(tenant_id: str, domain: str, trigger: str) -> CrawlResult:
    """Crawl `domain` for `tenant_id`, record the run, and return its page counts."""
    domain = domain.strip().lower()
    if trigger not in TRIGGERS:
        raise InvalidInput(f"trigger must be one of {', '.join(TRIGGERS)}")
    if not DOMAIN_RE.match(domain):
        raise InvalidInput(f"not a domain name: {domain!r}")
    run_id = f"crawl_{uuid.uuid4().hex[:16]}"
    with db.connect() as conn:
        conn.execute(
            "INSERT INTO crawl_runs (run_id, tenant_id, domain, trigger, status, started_at)"
            " VALUES (?, ?, ?, ?, 'running', ?)",
            (run_id, tenant_id, domain, trigger, db.utcnow()),
        )
    if domain.endswith(BLOCKED_SUFFIXES):
        message = f"crawl run {run_id}: domain {domain} is blocked for crawling"
        _finish(run_id, "failed", 0, 0, message)
        raise CrawlError(run_id, domain, message)
    pages, failures = _site_size(domain)
    for _ in range(pages):
        await asyncio.sleep(0)  # one "fetch" per page; yields like real I/O would
    status = "partial" if failures else "succeeded"
    _finish(run_id, status, pages - failures, failures, None)
    return CrawlResult(run_id=run_id, pages_crawled=pages - failures, pages_failed=failures, status=status)


def get_run(run_id: str) -> dict[str, object] | None:
    """A recorded crawl run as a dict, or None."""
    with db.connect() as conn:
        row = conn.execute("SELECT * FROM crawl_runs WHERE run_id = ?", (run_id,)).fetchone()
    return dict(row) if row else None


def _finish(run_id: str, status: str, crawled: int, failed: int, error: str | None) -> None:
    with db.connect() as conn:
        conn.execute(
            "UPDATE crawl_runs SET status = ?, pages_crawled = ?, pages_failed = ?, error = ?, finished_at = ?"
            " WHERE run_id = ?",
            (status, crawled, failed, error, db.utcnow(), run_id),
        )
