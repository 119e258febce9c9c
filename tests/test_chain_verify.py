"""Hash chains, signed checkpoints and `auditrail verify`: real chains written by the real OTLP/JSON exporter,
read back, verified, then tampered with in the file."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import random
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import rfc8785
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from auditrail import semconv, signing
from auditrail.chain import (
    _CANONICAL_ORDER,
    GENESIS_HASH,
    HASHED_FIELDS,
    Chain,
    _event_fields,
    canonical_json,
    event_fields,
    event_hash,
    record_fields,
)
from auditrail.events import AuditEvent
from auditrail.exporters.otlp_json import OTLPJsonLinesExporter, read_records
from auditrail.pipeline import to_log_record
from auditrail.signing import Signer, load_signer, sign_checkpoint
from auditrail.verify import main_verify, verify_records

RESOURCE = Resource.create({})
SCOPE = InstrumentationScope("auditrail")


# --------------------------------------------------------------------------------------------------
# helpers


def make_event(i: int, **overrides) -> AuditEvent:
    fields = dict(
        event_type="prompt.update",
        tenant=f"tenant-{i % 3}",
        actor=f"user-{i}",
        payload=json.dumps({"before": {"prompt_hash": f"h{i}"}, "after": {"prompt_hash": f"h{i + 1}"}}),
        source_ip="10.0.0.1",
        reason=f"reason {i}",
        risk="high",
    )
    fields.update(overrides)
    return AuditEvent(**fields)


def build_chain(signer: Signer, layout: str = "eeeeCeeeeC") -> tuple[Chain, list[AuditEvent]]:
    """Events (e) and checkpoints (C) in order; default: seq 1-4, checkpoint 5 (covers 4), 6-9, checkpoint 10."""
    chain = Chain()
    events: list[AuditEvent] = []
    for i, kind in enumerate(layout):
        if kind == "C":
            events.append(chain.checkpoint(signer))
        else:
            event = make_event(i)
            chain.link(event)
            events.append(event)
    return chain, events


def write(path: Path, events: list[AuditEvent], per_line: int = 1) -> Path:
    exporter = OTLPJsonLinesExporter(path)
    for start in range(0, len(events), per_line):
        batch = [to_log_record(e, RESOURCE, SCOPE) for e in events[start:start + per_line]]
        exporter.export(batch)
    exporter.shutdown()
    return path


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def save(path: Path, requests: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in requests),
                    encoding="utf-8")


def log_record(request: dict) -> dict:
    return request["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]


def attr(request: dict, key: str):
    for kv in log_record(request)["attributes"]:
        if kv["key"] == key:
            return kv["value"]
    raise KeyError(key)


def seq_of(request: dict) -> int:
    return int(attr(request, semconv.CHAIN_SEQ)["intValue"])


def find(requests: list[dict], seq: int) -> dict:
    return next(r for r in requests if seq_of(r) == seq)


def verify_file(*paths: Path, trusted=None):
    return verify_records(read_records(paths), trusted)


def kinds(report) -> set[tuple[str, int | None, int | None]]:
    return {(p.kind, p.seq, p.seq_end) for p in report.all_problems()}


def rehash(request: dict) -> None:
    """Recompute the stored hash of a (tampered) record, as a forger would."""
    flat = next(read_records_from_request(request))
    attr(request, semconv.CHAIN_HASH)["stringValue"] = event_hash(record_fields(flat))


def read_records_from_request(request: dict):
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as tmp:
        tmp.write(json.dumps(request) + "\n")
    try:
        yield from list(read_records([tmp.name]))
    finally:
        os.unlink(tmp.name)


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer(Ed25519PrivateKey.generate(), source="test")


def test_signatures_without_the_native_core_are_the_same(monkeypatch):
    """AUDITRAIL_NATIVE=0 (or no native core): cryptography signs, and the checkpoints are the same bytes."""
    key = Ed25519PrivateKey.generate()
    native = Signer(key)
    monkeypatch.setenv("AUDITRAIL_NATIVE", "0")
    plain = Signer(key)
    assert plain._native is None  # noqa: SLF001
    for data in (b"", b"checkpoint", bytes(range(256)) * 9):
        assert plain.sign(data) == native.sign(data) == key.sign(data)
    assert sign_checkpoint(plain, "c", 7, "ab" * 32, 1) == sign_checkpoint(native, "c", 7, "ab" * 32, 1)


@pytest.fixture
def chain_file(tmp_path: Path, signer: Signer) -> Path:
    _, events = build_chain(signer)
    return write(tmp_path / "audit.jsonl", events)


# --------------------------------------------------------------------------------------------------
# canonical JSON and hashing


def _random_string(rng: random.Random) -> str:
    pools = [
        "abcXYZ 019",
        '"\\/',
        "".join(chr(c) for c in range(0x20)) + "\x7f\x80\x9f",
        "éñü中文\u2028\u2029\ufeff\ufffd\uffff\ue000",
        "😀𝄞\U0010ffff\U00010000",
    ]
    length = rng.choice([0, 0, 1, 2, 5, 20, 80])
    return "".join(rng.choice(rng.choice(pools)) for _ in range(length))


def test_canonical_json_equals_rfc8785_on_random_values():
    rng = random.Random(8785)
    limit = (1 << 53) - 1
    for _ in range(3000):
        obj = {}
        for key in rng.sample(HASHED_FIELDS, rng.randint(0, len(HASHED_FIELDS))):
            if rng.random() < 0.2:
                obj[key] = rng.choice([0, 1, -1, limit, -limit, limit - 1, rng.randint(-limit, limit)])
            else:
                obj[key] = _random_string(rng)
        assert canonical_json(obj) == rfc8785.dumps(obj), obj


def test_canonical_json_falls_back_for_other_values():
    obj = {"b": 1.5e21, "a": True, "c": [1, "x"], "é": {"z": None}, "d": 2 ** 52}
    assert canonical_json(obj) == rfc8785.dumps(obj)
    with pytest.raises((ValueError, TypeError)):
        canonical_json({"big": 2 ** 53})
    with pytest.raises((ValueError, TypeError, UnicodeError)):
        canonical_json({"lone": "\ud800"})


def test_hot_path_fields_are_presorted_and_hash_like_rfc8785():
    assert set(_CANONICAL_ORDER) == set(HASHED_FIELDS) and len(HASHED_FIELDS) == 17
    rng = random.Random(7)
    chain = Chain()
    for i in range(500):
        event = make_event(i, tenant=_random_string(rng), actor=_random_string(rng), reason=rng.choice([None, "", _random_string(rng)]),
                           payload=json.dumps({"x": _random_string(rng)}), source_ip=rng.choice([None, "::1"]),
                           impersonator=rng.choice([None, "admin"]), approval_id=rng.choice([None, "ap-1"]))
        prev = chain.head
        chain.link(event)
        fields = event_fields(event, chain.chain_id, chain.seq, prev)
        assert list(fields) == sorted(fields)
        assert None not in fields.values()  # absent values are omitted keys
        assert fields["time_unix_nano"] == str(event.time_unix_nano)  # ns > 2**53: a string
        assert event.extra[semconv.CHAIN_HASH] == hashlib.sha256(rfc8785.dumps(fields)).hexdigest()
        assert event.extra[semconv.CHAIN_PREV] == prev
    # non-str values (an extractor's int actor) go through rfc8785 and still agree with the verifier's path
    event = make_event(1, actor=12345)
    fields, plain = _event_fields(event, "c", 1, GENESIS_HASH)
    assert not plain
    Chain("c").link(event)
    assert event.extra[semconv.CHAIN_HASH] == hashlib.sha256(rfc8785.dumps(fields)).hexdigest()


def test_first_event_starts_from_genesis_and_seq_counts_from_one():
    chain = Chain()
    first, second = make_event(1), make_event(2)
    chain.link(first)
    chain.link(second)
    assert first.extra[semconv.CHAIN_SEQ] == 1 and first.extra[semconv.CHAIN_PREV] == "0" * 64
    assert second.extra[semconv.CHAIN_SEQ] == 2 and second.extra[semconv.CHAIN_PREV] == first.extra[semconv.CHAIN_HASH]
    assert chain.state() == (chain.chain_id, 2, second.extra[semconv.CHAIN_HASH])
    resumed = Chain(chain.chain_id, 2, chain.head)  # an adopted spool continues its chain
    third = make_event(3)
    resumed.link(third)
    assert third.extra[semconv.CHAIN_SEQ] == 3 and third.extra[semconv.CHAIN_PREV] == chain.head


def test_concurrent_links_give_a_gap_free_valid_chain(signer):
    chain = Chain()
    per_thread, threads = 1500, 8
    linked: list[AuditEvent] = []
    lock = threading.Lock()
    barrier = threading.Barrier(threads)

    def work(t: int) -> None:
        mine = [make_event(t * per_thread + i) for i in range(per_thread)]
        barrier.wait()
        for event in mine:
            chain.link(event)
        with lock:
            linked.extend(mine)

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    linked.append(chain.checkpoint(signer))
    seqs = sorted(e.extra[semconv.CHAIN_SEQ] for e in linked)
    assert seqs == list(range(1, per_thread * threads + 2))
    records = [{"event_name": e.event_type, "time_unix_nano": e.time_unix_nano, "attributes": e.attributes(),
                "scope_name": "auditrail"} for e in linked]
    random.Random(1).shuffle(records)  # file order is not evidence
    report = verify_records(records)
    assert report.ok, report.render()
    (only,) = report.chains.values()
    assert only.events == per_thread * threads + 1 and only.anchored_through == per_thread * threads


# --------------------------------------------------------------------------------------------------
# verify over real files


def test_clean_chain_verifies(chain_file, signer):
    report = verify_file(chain_file)
    assert report.ok, report.render()
    (chain,) = report.chains.values()
    assert (chain.events, chain.first_seq, chain.last_seq, chain.checkpoints, chain.anchored_through) == (10, 1, 10, 2, 9)
    assert chain.key_ids == [signer.key_id]
    assert "verify: OK" in report.render()
    assert verify_file(chain_file, trusted={signer.key_id: signer.public_key}).ok


def test_batched_lines_unicode_and_empty_strings_verify(tmp_path, signer):
    chain = Chain()
    events = [make_event(0, reason="", tenant="tën\u2028ant\x00\b\f\"\\", actor="😀", source_ip=None),
              make_event(1, payload=json.dumps({"k": "v\x1f"}, ensure_ascii=False), impersonator="admin-1",
                         impersonation_id="sess-1", approval_id="ap-9", outcome="failure")]
    for event in events:
        chain.link(event)
    events.append(chain.checkpoint(signer))
    path = write(tmp_path / "batched.jsonl", events, per_line=3)
    report = verify_file(path)
    assert report.ok, report.render()


def test_exact_duplicates_are_counted_not_reported(tmp_path, chain_file):
    requests = lines(chain_file)
    save(chain_file, requests + requests[2:5])  # a replay resends seqs 3-5 unchanged
    report = verify_file(chain_file)
    assert report.ok, report.render()
    assert next(iter(report.chains.values())).duplicates == 3


def test_file_order_does_not_matter(chain_file):
    requests = lines(chain_file)
    requests[1], requests[6] = requests[6], requests[1]
    save(chain_file, requests)
    assert verify_file(chain_file).ok


def test_edited_payload_is_reported_at_its_seq(chain_file):
    text = chain_file.read_text(encoding="utf-8")
    requests = lines(chain_file)
    target = find(requests, 3)
    value = attr(target, semconv.PAYLOAD)
    assert '"h2"' in value["stringValue"]
    value["stringValue"] = value["stringValue"].replace('"h2"', '"hX"')
    save(chain_file, requests)
    assert chain_file.read_text(encoding="utf-8") != text
    report = verify_file(chain_file)
    assert not report.ok
    assert kinds(report) == {("edited", 3, None)}
    problem = report.all_problems()[0]
    assert problem.event_id == attr(target, semconv.EVENT_ID)["stringValue"]


def test_edited_and_rehashed_event_breaks_the_next_link(chain_file):
    requests = lines(chain_file)
    target = find(requests, 7)
    attr(target, semconv.ACTOR)["stringValue"] = "someone-else"
    rehash(target)
    save(chain_file, requests)
    assert kinds(verify_file(chain_file)) == {("broken_link", 8, None)}


def test_edited_time_and_seq_are_detected(chain_file):
    requests = lines(chain_file)
    log_record(find(requests, 2))["timeUnixNano"] = "1"
    save(chain_file, requests)
    assert ("edited", 2, None) in kinds(verify_file(chain_file))


def test_deleted_record_is_a_gap(chain_file):
    requests = [r for r in lines(chain_file) if seq_of(r) != 7]
    save(chain_file, requests)
    report = verify_file(chain_file)
    assert kinds(report) == {("missing", 7, 7)}
    assert "seq 7" in report.render()


def test_deleted_head_is_reported(chain_file):
    save(chain_file, [r for r in lines(chain_file) if seq_of(r) > 2])
    assert ("missing", 1, 2) in kinds(verify_file(chain_file))


def test_swapped_chain_positions_are_reported(chain_file):
    """Two events exchange their chain attributes (position): neither hashes any more."""
    requests = lines(chain_file)
    a, b = find(requests, 6), find(requests, 7)
    keys = (semconv.CHAIN_SEQ, semconv.CHAIN_PREV, semconv.CHAIN_HASH)
    a_chain = {k: dict(attr(a, k)) for k in keys}
    b_chain = {k: dict(attr(b, k)) for k in keys}
    for k in keys:
        attr(a, k).clear()
        attr(a, k).update(b_chain[k])
        attr(b, k).clear()
        attr(b, k).update(a_chain[k])
    save(chain_file, requests)
    assert kinds(verify_file(chain_file)) == {("edited", 6, None), ("edited", 7, None)}


def test_reordered_and_rehashed_events_are_reported(chain_file):
    """A forger swaps seq 6 and 7 and recomputes both hashes so they link; seq 8 no longer does."""
    requests = lines(chain_file)
    six, seven = find(requests, 6), find(requests, 7)
    prev_of_six = attr(six, semconv.CHAIN_PREV)["stringValue"]
    attr(seven, semconv.CHAIN_SEQ)["intValue"] = "6"
    attr(seven, semconv.CHAIN_PREV)["stringValue"] = prev_of_six
    rehash(seven)
    attr(six, semconv.CHAIN_SEQ)["intValue"] = "7"
    attr(six, semconv.CHAIN_PREV)["stringValue"] = attr(seven, semconv.CHAIN_HASH)["stringValue"]
    rehash(six)
    save(chain_file, requests)
    assert kinds(verify_file(chain_file)) == {("broken_link", 8, None)}


def test_inserted_forged_record_is_reported(chain_file):
    requests = lines(chain_file)
    forged = json.loads(json.dumps(find(requests, 7)))
    attr(forged, semconv.EVENT_ID)["stringValue"] = "01900000-0000-7000-8000-000000000000"
    attr(forged, semconv.ACTOR)["stringValue"] = "mallory"
    attr(forged, semconv.CHAIN_PREV)["stringValue"] = "ab" * 32  # wrong prev, hash recomputed
    rehash(forged)
    requests.insert(3, forged)  # even placed before the genuine one in the file
    save(chain_file, requests)
    report = verify_file(chain_file)
    assert kinds(report) == {("conflict", 7, None)}
    assert report.all_problems()[0].event_id == "01900000-0000-7000-8000-000000000000"


def test_inserted_record_with_right_prev_is_still_a_conflict(chain_file):
    requests = lines(chain_file)
    forged = json.loads(json.dumps(find(requests, 7)))
    attr(forged, semconv.EVENT_ID)["stringValue"] = "01900000-0000-7000-8000-000000000001"
    attr(forged, semconv.ACTOR)["stringValue"] = "mallory"
    rehash(forged)
    requests.insert(0, forged)
    save(chain_file, requests)
    report = verify_file(chain_file)
    assert kinds(report) == {("conflict", 7, None)}
    assert report.all_problems()[0].event_id == "01900000-0000-7000-8000-000000000001"


def test_corrupted_signature_is_reported(chain_file):
    requests = lines(chain_file)
    checkpoint = find(requests, 10)
    payload = json.loads(attr(checkpoint, semconv.PAYLOAD)["stringValue"])
    signature = bytearray(base64.b64decode(payload["signature"]))
    signature[0] ^= 1
    payload["signature"] = base64.b64encode(bytes(signature)).decode()
    attr(checkpoint, semconv.PAYLOAD)["stringValue"] = json.dumps(payload, separators=(",", ":"))
    rehash(checkpoint)  # even with a consistent chain hash
    save(chain_file, requests)
    report = verify_file(chain_file)
    assert kinds(report) == {("bad_checkpoint", 10, None), ("unanchored", 6, 10)}
    assert next(p for p in report.all_problems() if p.kind == "unanchored").severity == "warning"


def test_resigned_checkpoint_with_a_foreign_key_fails_against_trusted_keys(chain_file, signer):
    requests = lines(chain_file)
    checkpoint = find(requests, 10)
    payload = json.loads(attr(checkpoint, semconv.PAYLOAD)["stringValue"])
    forger = Signer(Ed25519PrivateKey.generate())
    forged = sign_checkpoint(forger, payload["chain_id"], payload["seq"], payload["head"], int(payload["time_unix_nano"]))
    attr(checkpoint, semconv.PAYLOAD)["stringValue"] = json.dumps(forged)
    rehash(checkpoint)
    save(chain_file, requests)
    assert verify_file(chain_file).ok  # self-consistent with the embedded key ...
    report = verify_file(chain_file, trusted={signer.key_id: signer.public_key})  # ... but not the operator's
    assert ("bad_checkpoint", 10, None) in kinds(report)


def test_checkpoint_whose_head_does_not_match(tmp_path, signer):
    chain = Chain()
    events = [make_event(i) for i in range(3)]
    for event in events:
        chain.link(event)
    wrong = sign_checkpoint(signer, chain.chain_id, 2, "cd" * 32, 1)
    checkpoint = signing.checkpoint_event(json.dumps(wrong), 5)
    chain.link(checkpoint)
    events.append(checkpoint)
    report = verify_file(write(tmp_path / "a.jsonl", events))
    assert ("checkpoint_mismatch", 4, None) in kinds(report)


def test_events_after_the_last_checkpoint_are_an_unanchored_tail(tmp_path, signer):
    _, events = build_chain(signer, "eeeeCeeeeCee")
    report = verify_file(write(tmp_path / "a.jsonl", events))
    assert kinds(report) == {("unanchored", 11, 12)}
    assert not report.ok
    _, events = build_chain(signer, "eee")  # no checkpoint at all: a missing signature
    assert kinds(verify_file(write(tmp_path / "b.jsonl", events))) == {("unanchored", 1, 3)}


def test_dropped_tail_is_truncation_against_a_copy_of_the_checkpoint(chain_file, tmp_path):
    requests = lines(chain_file)
    copy = tmp_path / "cloud-checkpoints.jsonl"  # the checkpoints also went to a cloud logger
    save(copy, [find(requests, 5), find(requests, 10)])
    save(chain_file, [r for r in requests if seq_of(r) <= 5])  # events 6-10 removed
    assert verify_file(chain_file).ok  # alone, a cut right after a checkpoint cannot be seen
    report = verify_file(chain_file, copy)
    assert kinds(report) == {("truncated", 6, 9)}


def test_events_dropped_after_the_last_checkpoint_are_undetectable_but_were_flagged(tmp_path, signer):
    _, events = build_chain(signer, "eeeeCee")
    path = write(tmp_path / "a.jsonl", events)
    assert kinds(verify_file(path)) == {("unanchored", 6, 7)}  # the warning before the cut
    save(path, lines(path)[:5])
    assert verify_file(path).ok


def test_unchained_audit_events_are_reported(tmp_path):
    path = write(tmp_path / "a.jsonl", [make_event(1)])
    report = verify_file(path)
    assert [p.kind for p in report.all_problems()] == ["unchained"]


# --------------------------------------------------------------------------------------------------
# signing keys


def test_key_sources(tmp_path, caplog, monkeypatch):
    key = Ed25519PrivateKey.generate()
    seed = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    expected = Signer(key).key_id
    assert expected == hashlib.sha256(Signer(key).public_key.public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)).hexdigest()[:16]
    pem = tmp_path / "key.pem"
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    raw = tmp_path / "key.raw"
    raw.write_bytes(seed)
    os.chmod(pem, 0o600), os.chmod(raw, 0o600)
    assert load_signer(environ={signing.ENV_KEY_FILE: str(pem)}).key_id == expected
    assert load_signer(environ={signing.ENV_KEY_FILE: str(raw)}).key_id == expected
    assert load_signer(environ={signing.ENV_KEY: base64.b64encode(seed).decode()}).key_id == expected
    assert load_signer(pem, environ={}).key_id == expected
    with pytest.raises(signing.SigningKeyError):
        load_signer(environ={signing.ENV_KEY: "bm90IGEga2V5"})

    monkeypatch.setattr(signing, "_warned_generated", False)
    spool = tmp_path / "spool"
    with caplog.at_level(logging.WARNING, logger="auditrail.signing"):
        first = load_signer(spool_dir=spool, environ={})
        second = load_signer(spool_dir=spool, environ={})
    assert first.generated and first.key_id == second.key_id  # stored and reused
    stored = spool / signing.GENERATED_KEY_NAME
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    warnings = [r for r in caplog.records if "GENERATED KEY" in r.getMessage()]
    assert len(warnings) == 1 and first.key_id in warnings[0].getMessage()


# --------------------------------------------------------------------------------------------------
# the command line


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "auditrail.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=60)


def test_cli_verify_exit_codes(chain_file, tmp_path, signer):
    public = tmp_path / "public.pem"
    public.write_text(signer.public_key_pem())
    clean = _cli("verify", str(chain_file), "--key", str(public))
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "10 events, seq 1-10" in clean.stdout and "verify: OK" in clean.stdout

    other = tmp_path / "other.pem"
    other.write_text(Signer(Ed25519PrivateKey.generate()).public_key_pem())
    assert _cli("verify", str(chain_file), "--key", str(other)).returncode == 1

    save(chain_file, [r for r in lines(chain_file) if seq_of(r) != 3])
    tampered = _cli("verify", str(chain_file), "--json")
    assert tampered.returncode == 1
    report = json.loads(tampered.stdout)
    assert report["ok"] is False
    assert [(p["kind"], p["seq"], p["seq_end"]) for p in report["chains"][0]["problems"]] == [("missing", 3, 3)]

    missing = _cli("verify", str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 2 and "no such file" in missing.stderr and "Traceback" not in missing.stderr
    bad_key = tmp_path / "bad.pem"
    bad_key.write_text("garbage")
    bad = _cli("verify", str(chain_file), "--key", str(bad_key))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert _cli("verify").returncode == 2


def test_cli_verify_counts_unreadable_lines_as_problems(chain_file):
    with open(chain_file, "a", encoding="utf-8") as stream:
        stream.write("{not json}\n")
    out = _cli("verify", str(chain_file))
    assert out.returncode == 1 and "unreadable" in out.stdout


def test_cli_keys_public(tmp_path):
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "k.pem"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    os.chmod(path, 0o600)
    out = _cli("keys", "public", "--key-file", str(path))
    assert out.returncode == 0, out.stderr
    assert "BEGIN PUBLIC KEY" in out.stdout and f"key id: {Signer(key).key_id}" in out.stdout
    env = {signing.ENV_KEY_FILE: "", signing.ENV_KEY: "", "AUDITRAIL_CONFIG": ""}
    none = subprocess.run([sys.executable, "-m", "auditrail.cli", "keys", "public"], capture_output=True, text=True,
                          cwd=tmp_path, env={**os.environ, **env}, timeout=60)
    assert none.returncode == 2 and "no signing key" in none.stderr


def test_main_verify_in_process(chain_file, capsys):
    assert main_verify([str(chain_file)]) == 0
    assert "verify: OK" in capsys.readouterr().out


@pytest.mark.parametrize("mode", ["best_effort", "durable"])
def test_provider_chains_concurrent_submits_with_checkpoints_in_both_linking_modes(tmp_path, signer, mode):
    """best_effort links in the drain worker (memory spool), durable in the audited call: both verify."""
    from auditrail.pipeline import AuditLoggerProvider
    from auditrail.spool import MemorySpool
    from auditrail.spool_file import DiskSpool

    out = tmp_path / "events.jsonl"
    spool = MemorySpool() if mode == "best_effort" else DiskSpool.open(str(tmp_path / "spool"), mode="durable")
    provider = AuditLoggerProvider(OTLPJsonLinesExporter(out), spool=spool, chained=True, signer=signer,
                                   checkpoint_every=97, schedule_delay=0.01)
    assert provider._link_at_drain is (mode == "best_effort")

    def work(t: int) -> None:
        for i in range(400):
            provider.submit(make_event(t * 1000 + i))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    provider.shutdown()
    report = verify_records(read_records([out]))
    assert report.ok, report.render()
    records = list(read_records([out]))
    checkpoints = [r for r in records if r["event_name"] == "audit.checkpoint"]
    assert len(records) == 1600 + len(checkpoints)
    # One chain per tenant (make_event spreads events over tenant-0..2), each anchored by its own checkpoints,
    # which carry the chain's tenant.
    assert len(report.chains) == 3
    tenant_of_chain: dict[str, set[str]] = {}
    for r in records:
        attrs = r["attributes"]
        tenant_of_chain.setdefault(attrs["audit.chain.id"], set()).add(attrs["audit.tenant_id"])
    assert sorted(map(tuple, tenant_of_chain.values())) == [("tenant-0",), ("tenant-1",), ("tenant-2",)]
    assert all(c.checkpoints >= 1 for c in report.chains.values())
