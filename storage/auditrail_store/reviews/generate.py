"""`auditrail review generate`: write a tenant-month's review as HTML, PDF and the JSON it was made from."""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ..archive import month_range
from ..db import Store
from .queries import month_tenants
from .render import charts, outline, write_html, write_pdf
from .report import ReviewOptions, collect

__all__ = ["Generated", "generate", "report_paths", "reports_dir", "sha256_file"]

DIR_ENV = "AUDITRAIL_REVIEWS_DIR"


@dataclass(frozen=True)
class Generated:
    """One written review."""

    tenant: str
    month: str
    html: Path
    pdf: Path
    data: Path
    pdf_sha256: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"tenant": self.tenant, "month": self.month, "html": str(self.html), "pdf": str(self.pdf),
                "json": str(self.data), "pdf_sha256": self.pdf_sha256}


def reports_dir(url: str) -> Path:
    """Where reviews are written: $AUDITRAIL_REVIEWS_DIR, else beside an embedded store (`<store>.reviews`),
    else ./.auditrail/reviews."""
    configured = os.environ.get(DIR_ENV)
    if configured:
        return Path(configured)
    parsed = urlparse(url)
    if parsed.scheme == "chdb" and parsed.path:
        return Path(os.path.abspath(parsed.path.rstrip("/")) + ".reviews")
    return Path(os.path.abspath(os.path.join(".auditrail", "reviews")))


def _slug(tenant: str) -> str:
    """A file-name-safe tenant: `*` is `global`; other characters outside [A-Za-z0-9._-] become `_` plus a
    short hash, so two tenants never share a file."""
    if tenant == "*":
        return "global"
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", tenant)[:64]
    if safe != tenant:
        safe += "-" + hashlib.sha256(tenant.encode()).hexdigest()[:8]
    return safe


def report_paths(directory: Path, tenant: str, month: str) -> tuple[Path, Path, Path]:
    """(html, pdf, json) of a tenant-month's review in `directory`."""
    base = directory / month / f"review-{_slug(tenant)}-{month}"
    return base.with_suffix(".html"), base.with_suffix(".pdf"), base.with_suffix(".json")


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def generate(store: Store, tenant: str, month: str, directory: Path,
             options: ReviewOptions | None = None) -> Generated:
    """Collect, render and write one review; files are written whole (a temp name, then renamed)."""
    review = collect(store, tenant, month, options)
    html, pdf, data = report_paths(directory, tenant, month)
    pdf.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    sections, images = outline(review), charts(review)
    for path, write in ((html, lambda p: write_html(review, sections, images, p)),
                        (pdf, lambda p: write_pdf(review, sections, images, p)),
                        (data, lambda p: p.write_text(json.dumps(review, indent=1, ensure_ascii=False)))):
        tmp = path.with_name("." + path.name + ".tmp")
        write(tmp)
        os.replace(tmp, path)
    return Generated(tenant, month, html, pdf, data, sha256_file(pdf))


def tenants_of(store: Store, month: str) -> list[str]:
    """Every tenant with events in the month, and `*` (global actions) always."""
    start, end = month_range(month)
    tenants = month_tenants(store, start, end)
    return ["*", *[t for t in tenants if t != "*"]]
