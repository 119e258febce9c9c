"""The evidence pack (issue 18, point 3): built from a store of real chained, signed events; `auditrail verify
FILE.zip` checks it offline, and a pack altered anywhere fails."""

from __future__ import annotations

import hashlib
import json
import subprocess
import zipfile
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from auditrail_store.db import Store
from auditrail_store.migrate import migrate
from auditrail_store.reviews.generate import generate
from auditrail_store.reviews.report import ReviewOptions
from auditrail_store.reviews.signoff import ReviewEvents, sign
from test_storage_schema import AUDITRAIL

TENANT = "initech"
QUICK: dict[str, dict] = {}
MONTH = datetime.now(timezone.utc).strftime("%Y-%m")


@pytest.fixture(scope="module")
def pack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A month of chained events (the real recorder, spool, chain and signer), reviewed, signed, packed."""
    from auditrail_store.reviews.pack import build_pack

    root = tmp_path_factory.mktemp("pack")
    store = Store.open(f"chdb://{root}/store")
    migrate(store)
    events = ReviewEvents(store)
    for n in range(5):
        events.record_event("prompt.update", TENANT, "alice@initech.io", {"before": {"v": n}, "after": {"v": n + 1}},
                            reason=f"edit {n}")
    events.close()
    generate(store, TENANT, MONTH, root / "reports")
    QUICK["review"] = json.loads(generate(store, TENANT, MONTH, root / "quick",
                                          ReviewOptions(integrity="quick")).data.read_text())
    sign(store, TENANT, MONTH, "rita@initech.io", "all edits expected", root / "reports")
    path = build_pack(store, TENANT, MONTH, root / "pack.zip", root / "reports")
    store.close()
    yield path


def _verify(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([AUDITRAIL, "verify", str(path)], capture_output=True, text=True, timeout=120)


def test_the_pack_holds_every_piece_and_verifies_offline(pack: Path) -> None:
    with zipfile.ZipFile(pack) as zf:
        assert set(zf.namelist()) == {"report.pdf", "report.html", "report.json", "events.csv", "events.json",
                                      "verification.json", "signoff.json", "public_keys.json", "manifest.json"}
        manifest = json.loads(zf.read("manifest.json"))
        assert manifest["files"]["report.pdf"] == hashlib.sha256(zf.read("report.pdf")).hexdigest()
        assert zf.read("events.csv").count(b"prompt.update") == 5
    result = _verify(pack)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "signed off by rita@initech.io" in result.stdout and "verify: OK" in result.stdout


def _tampered(pack: Path, out: Path, name: str, edit, rehash: bool) -> Path:
    """A copy of the pack with `name` edited; with `rehash` the manifest is updated too (a careful forger)."""
    with zipfile.ZipFile(pack) as src, zipfile.ZipFile(out, "w") as dst:
        manifest = json.loads(src.read("manifest.json"))
        for item in src.namelist():
            if item == "manifest.json":
                continue
            data = src.read(item)
            if item == name:
                data = edit(data)
                if rehash:
                    manifest["files"][item] = hashlib.sha256(data).hexdigest()
            dst.writestr(item, data)
        dst.writestr("manifest.json", json.dumps(manifest))
    return out


def test_an_edited_report_fails(pack: Path, tmp_path: Path) -> None:
    result = _verify(_tampered(pack, tmp_path / "a.zip", "report.pdf", lambda b: b + b"%x", rehash=False))
    assert result.returncode == 1 and "report.pdf: SHA-256 differs" in result.stdout
    # Re-hashed in the manifest, the report no longer matches what the reviewer signed.
    result = _verify(_tampered(pack, tmp_path / "b.zip", "report.pdf", lambda b: b + b"%x", rehash=True))
    assert result.returncode == 1 and "another report's SHA-256" in result.stdout


def test_an_edited_event_fails_even_with_the_manifest_rehashed(pack: Path, tmp_path: Path) -> None:
    result = _verify(_tampered(pack, tmp_path / "c.zip", "events.json",
                               lambda b: b.replace(b"edit 3", b"edit 9"), rehash=True))
    assert result.returncode == 1 and "events.json:" in result.stdout and "chain problems" in result.stdout


def test_quick_integrity_in_the_engine_agrees_with_full_verification(pack: Path) -> None:
    with zipfile.ZipFile(pack) as zf:
        full = json.loads(zf.read("report.json"))["integrity"]
    quick = QUICK["review"]["integrity"]
    assert quick["mode"] == "quick" and quick["ok"] == full["ok"]
    fields = ("chain_id", "events", "first_seq", "last_seq", "anchored_through", "key_ids", "ok")
    assert [{f: c[f] for f in fields} for c in quick["chains"]] == [{f: c[f] for f in fields} for c in full["chains"]]
