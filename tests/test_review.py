"""The monthly review report (issue 18): its content against a known month, and the PDF a reviewer opens."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import review_month
from auditrail.events import AuditEvent
from auditrail_store.db import Store
from auditrail_store.migrate import migrate
from auditrail_store.reviews.generate import Generated, generate
from auditrail_store.reviews.report import ReviewOptions
from pypdf import PdfReader
from test_storage_schema import AUDITRAIL, audit_row, insert_rows


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    s = Store.open("chdb://" + str(tmp_path_factory.mktemp("review") / "store"))
    migrate(s)
    review_month.fill(s)
    yield s
    s.close()


@pytest.fixture(scope="module")
def generated(store: Store, tmp_path_factory: pytest.TempPathFactory) -> Generated:
    config = tmp_path_factory.mktemp("cfg") / "audit.yaml"
    config.write_text(review_month.CONFIG)
    return generate(store, review_month.TENANT, review_month.MONTH, tmp_path_factory.mktemp("reports"),
                    ReviewOptions(config=str(config)))


def _review(generated: Generated) -> dict:
    return json.loads(generated.data.read_text())


def test_volume_counts_this_month_against_the_previous_one(generated: Generated) -> None:
    review = _review(generated)
    # October: 20 routine crawls, 11 single events, a burst of 35, 6 failures; September: 56 baseline crawls.
    assert review["volume"]["total"] == 20 + 11 + 35 + 6
    assert review["volume"]["previous_total"] == 56
    types = {t["event_type"]: t for t in review["volume"]["per_type"]}
    assert types["crawl.run"]["count"] == 20 + 1 + 35 and types["crawl.run"]["previous"] == 56
    assert types["policy.update"]["failures"] == 6
    assert {d["day"]: d["count"] for d in review["volume"]["per_day"]}["2026-10-10"] == 1 + 35


def test_high_risk_actions_and_how_long_the_kill_switch_stayed_off(generated: Generated) -> None:
    review = _review(generated)
    high = review["high_risk"]
    assert high["total"] == 9
    assert {e["reason"] for e in high["events"]} >= {"tone down pricing claims", "raise the refusal threshold"}
    [switch] = high["kill_switches"]
    assert (switch["feature"], switch["disabled_seconds"], switch["still_disabled"]) == ("embed", 5400, False)


def test_impersonation_session_lists_every_action_inside_and_no_other_tenant(generated: Generated) -> None:
    [session] = _review(generated)["impersonation"]["sessions"]
    assert (session["session"], session["impersonator"], session["impersonated"]) == (
        "imp-1", "ops@vendor.io", "carol@acme.io")
    assert session["seconds"] == 20 * 60
    assert [a["event_type"] for a in session["actions"]] == ["prompt.update", "billing.plan.change"]
    assert "imp-g" not in generated.html.read_text()  # globex's session is globex's


def test_anomalies_flagged_and_not_flagged(generated: Generated) -> None:
    anomalies = _review(generated)["anomalies"]
    hours = anomalies["outside_hours"]
    assert hours["checked"] and [(e["actor"], e["timestamp"]) for e in hours["events"]] == [
        ("alice@acme.io", "2026-10-08T03:00:00Z")]  # alice's 10:00 crawls are her usual hours
    new = {a["actor"] for a in anomalies["new_actors"]}
    assert "mallory@evil.example" in new and "dave@acme.io" in new
    assert not new & {"alice@acme.io", "bob@acme.io"}  # seen in the baseline
    assert [(b["actor"], b["events"]) for b in anomalies["bursts"]] == [("dave@acme.io", 35)]
    assert [(f["actor"], f["failures"]) for f in anomalies["repeated_failures"]] == [("bob@acme.io", 4)]  # not erin's 2
    assert [e["event_type"] for e in anomalies["config_changes"]["events"]] == ["audit.config.update"]


def test_approvals_and_no_action_without_a_required_one(generated: Generated) -> None:
    approvals = _review(generated)["approvals"]
    assert approvals["by_state"] == {"pending": 0, "granted": 0, "denied": 1, "expired": 0, "used": 1}
    assert approvals["without_approval"]["total"] == 0
    assert "Actions that ran without a required approval: none." in generated.html.read_text()


def test_an_action_that_ran_without_its_approval_is_listed(store: Store, tmp_path: Path) -> None:
    config = tmp_path / "audit.yaml"
    config.write_text(review_month.CONFIG.replace("killswitch.disable", "policy.update"))
    done = generate(store, review_month.TENANT, review_month.MONTH, tmp_path, ReviewOptions(config=str(config)))
    missing = _review(done)["approvals"]["without_approval"]
    assert missing["total"] == 1 and missing["events"][0]["reason"] == "raise the refusal threshold"


def test_the_pdf_renders_with_extractable_text(generated: Generated, tmp_path: Path) -> None:
    reader = PdfReader(generated.pdf)
    assert len(reader.pages) >= 2
    text = "\n".join(page.extract_text() for page in reader.pages)
    for expected in ("Monthly audit log review: tenant acme, 2026-10", "Impersonation", "imp-1", "1h 30m",
                     "dave@acme.io", "Retention: 365 days"):
        assert expected in text
    # And it rasterises (what a reviewer's viewer does): poppler's pdftoppm, when installed.
    try:
        subprocess.run(["pdftoppm", "-r", "30", "-png", "-f", "1", "-l", "1", str(generated.pdf),
                        str(tmp_path / "page")], check=True, capture_output=True)
    except FileNotFoundError:
        return
    assert (tmp_path / "page-1.png").stat().st_size > 1000


def test_cli_generates_every_tenant_and_the_global_document(store: Store, tmp_path: Path) -> None:
    url = store.url
    store.close()  # chDB: one process per directory; the CLI is another process
    try:
        out = subprocess.run([AUDITRAIL, "review", "generate", "--month", review_month.MONTH, "--url", url,
                              "--out", str(tmp_path)], check=True, capture_output=True, text=True, timeout=300)
    finally:
        store.client = Store.open(url).client
    tenants = [json.loads(line)["tenant"] for line in out.stdout.splitlines()]
    assert tenants == ["*", "acme", "globex"]
    assert (tmp_path / "2026-10" / "review-global-2026-10.pdf").exists()


def test_sign_off_is_a_signed_chained_event_that_verifies(generated: Generated, store: Store) -> None:
    from auditrail_store.export import ExportFilters
    from auditrail_store.reviews.signoff import sign, signoffs
    from auditrail_store.verify_store import verify_stored

    payload = sign(store, review_month.TENANT, review_month.MONTH, "rita@acme.io", "looked at imp-1: agreed",
                   generated.pdf.parent.parent)
    assert payload["report_sha256"] == generated.pdf_sha256
    [row] = signoffs(store, review_month.TENANT, review_month.MONTH)
    assert row[1] == "review.completed" and row[2] == "rita@acme.io"
    assert json.loads(row[6])["report_sha256"] == generated.pdf_sha256
    report = verify_stored(store, review_month.TENANT, ExportFilters(event_type="review.completed"))
    [chain] = report.chains.values()
    # seq 1 the sign-off, seq 2 the checkpoint that anchors it (signed right after, checkpoint_every=1)
    assert chain.ok and chain.checkpoints >= 1 and chain.anchored_through >= 1 and chain.key_ids


def test_quick_integrity_finds_a_missing_seq_and_an_unanchored_tail(store: Store, tmp_path: Path) -> None:
    from auditrail import semconv

    def chained(seq: int) -> AuditEvent:
        e = review_month.event("crawl.run", review_month.at(2, 10, seq), "alice@gappy.io", tenant="gappy")
        e.extra = {semconv.CHAIN_ID: "c-gappy", semconv.CHAIN_SEQ: seq, semconv.CHAIN_PREV: "a" * 64,
                   semconv.CHAIN_HASH: f"{seq:064x}"}
        return e


    insert_rows(store, [audit_row(chained(seq)) for seq in (1, 2, 4, 5)])  # seq 3 deleted
    done = generate(store, "gappy", review_month.MONTH, tmp_path, ReviewOptions(integrity="quick"))
    [chain] = _review(done)["integrity"]["chains"]
    assert (chain["events"], chain["first_seq"], chain["last_seq"], chain["ok"]) == (4, 1, 5, False)
    assert {p["kind"]: p["message"] for p in chain["problems"]} == {
        "missing": "1 seqs missing in 1-5", "unanchored": "no checkpoint covers these yet"}
    assert "no hash recomputed" in done.html.read_text()
