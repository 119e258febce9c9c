"""The evidence pack of a tenant-month, and its offline check (`auditrail verify FILE.zip`).

A zip holding::

    report.pdf, report.html, report.json   the review as generated (review generate)
    events.csv, events.json                the month's exports (events.json: the offline-verifiable document)
    verification.json                      the store's chain verification of the month
    signoff.json                           the tenant's review.completed events as an export document
                                           (with their link stubs and signed checkpoints)
    public_keys.json                       the checkpoint public keys both documents carry
    manifest.json                          tenant, month, and each file's SHA-256

`verify_pack` needs no store: every file's hash against the manifest (and nothing extra or missing), both
documents' chains and checkpoint signatures (with keys given by the auditor, else the pack's own, and it
says which), and a sign-off of the month whose report_sha256 is the packed PDF's.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

from ..archive import month_range
from ..db import Store, StoreError
from ..export import ExportFilters, stream_export
from ..verify_store import verify_document, verify_stored
from .generate import generate, report_paths

__all__ = ["build_pack", "verify_pack"]

FORMAT = "auditrail-evidence-pack/1"


def build_pack(store: Store, tenant: str, month: str, path: Path, reports: Path) -> Path:
    """Write the pack of `tenant`/`month` to `path` (the report is generated first if it is missing)."""
    html, pdf, data = report_paths(reports, tenant, month)
    if not pdf.exists():
        generate(store, tenant, month, reports)
    start, end = month_range(month)
    month_filter = ExportFilters(start, end)
    hashes: dict[str, str] = {}
    tmp = path.with_name("." + path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        def put(name: str, chunks: Any) -> None:
            digest = hashlib.sha256()
            with zf.open(name, "w", force_zip64=True) as out:
                for chunk in chunks:
                    digest.update(chunk)
                    out.write(chunk)
            hashes[name] = digest.hexdigest()

        for name, source in (("report.pdf", pdf), ("report.html", html), ("report.json", data)):
            put(name, [source.read_bytes()])
        put("events.csv", stream_export(store, tenant, month_filter, "csv"))
        put("events.json", stream_export(store, tenant, month_filter, "json"))
        put("verification.json", [orjson.dumps(verify_stored(store, tenant, month_filter).to_dict(),
                                               option=orjson.OPT_INDENT_2)])
        signoff = b"".join(stream_export(store, tenant, ExportFilters(event_type="review.completed"), "json"))
        put("signoff.json", [signoff])
        keys = {k["key_id"]: k["public_key"] for k in orjson.loads(signoff).get("public_keys", [])}
        with zf.open("events.json") as stream:  # the month's keys sit at the end of its document
            keys.update({k["key_id"]: k["public_key"] for k in orjson.loads(stream.read()).get("public_keys", [])})
        put("public_keys.json", [orjson.dumps([{"key_id": k, "public_key": v} for k, v in sorted(keys.items())],
                                              option=orjson.OPT_INDENT_2)])
        manifest = {"format": FORMAT, "tenant": tenant, "month": month,
                    "created_at": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
                    "files": dict(sorted(hashes.items()))}
        zf.writestr("manifest.json", json.dumps(manifest, indent=1))
    tmp.replace(path)
    return path


def verify_pack(path: str, trusted: dict[str, Any] | None = None) -> tuple[bool, list[str]]:
    """Check a pack offline: (ok, report lines)."""
    from auditrail.signing import load_public_key

    lines: list[str] = []
    problems = 0

    def bad(text: str) -> None:
        nonlocal problems
        problems += 1
        lines.append(f"PROBLEM {text}")

    try:
        zf = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as error:
        raise StoreError(f"{path}: not a readable zip ({error})") from None
    with zf:
        try:
            manifest = json.loads(zf.read("manifest.json"))
        except (KeyError, ValueError):
            return False, ["PROBLEM no readable manifest.json: not an evidence pack, or altered"]
        if manifest.get("format") != FORMAT:
            return False, [f"PROBLEM manifest format {manifest.get('format')!r}, expected {FORMAT}"]
        files: dict[str, str] = manifest.get("files") or {}
        names = set(zf.namelist()) - {"manifest.json"}
        for name in sorted(names - set(files)):
            bad(f"{name}: in the pack but not in the manifest")
        content: dict[str, bytes] = {}
        for name, expected in sorted(files.items()):
            if name not in names:
                bad(f"{name}: in the manifest but missing")
                continue
            content[name] = zf.read(name)
            if hashlib.sha256(content[name]).hexdigest() != expected:
                bad(f"{name}: SHA-256 differs from the manifest (altered)")
    lines.insert(0, f"evidence pack of tenant {manifest.get('tenant')!r}, {manifest.get('month')}: "
                    f"{len(files)} files")
    keys = trusted
    if not keys:
        try:
            keys = {k["key_id"]: load_public_key(k["public_key"])
                    for k in json.loads(content.get("public_keys.json", b"[]"))}
        except (ValueError, KeyError, TypeError):
            bad("public_keys.json unreadable")
            keys = {}
        lines.append("checkpoint signatures checked with the pack's public_keys.json (pin your own with --key)")
    for name in ("events.json", "signoff.json"):
        if name not in content:
            continue
        try:
            report = verify_document(orjson.loads(content[name]), keys or None)
        except (orjson.JSONDecodeError, StoreError) as error:
            bad(f"{name}: not a verifiable export ({error})")
            continue
        if report.ok:
            lines.append(f"{name}: chains OK ({len(report.chains)} chains)")
        else:
            bad(f"{name}: {len(report.all_problems())} chain problems: "
                + "; ".join(f"{p.kind} {p.where()}" for p in report.all_problems()[:5]))
    if "signoff.json" in content and "report.pdf" in content:
        pdf_hash = hashlib.sha256(content["report.pdf"]).hexdigest()
        events = orjson.loads(content["signoff.json"]).get("events", [])
        signed = [e for e in events if e.get("event_type") == "review.completed"
                  and isinstance(e.get("payload"), dict) and e["payload"].get("month") == manifest.get("month")]
        matching = [e for e in signed if e["payload"].get("report_sha256") == pdf_hash]
        if matching:
            e = matching[-1]
            lines.append(f"signed off by {e.get('actor')} at {e.get('timestamp')}: the report's SHA-256 matches")
        elif signed:
            bad("the sign-off names another report's SHA-256 than report.pdf's")
        else:
            lines.append("not signed off: no review.completed for this month")
    lines.append("verify: OK" if not problems else f"verify: {problems} problem{'s' if problems != 1 else ''}")
    return problems == 0, lines
