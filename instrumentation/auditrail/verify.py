"""Verify hash chains and signed checkpoints over audit records (``auditrail verify``; reused by the store).

Input: flat records as ``exporters.otlp_json.read_records`` yields them, in any order and from any number
of files (file order is not evidence: records are grouped by ``audit.chain.id`` and sorted by
``audit.chain.seq``). Per chain the report gives the events, the seq range, the checkpoints, and every
problem, each with the seq (or seq range) and event id where it was found:

=================  ========  =====================================================================
kind               severity  meaning
=================  ========  =====================================================================
``edited``         error     the event's content does not hash to its ``audit.chain.hash``
``missing``        error     seqs absent from the chain (deleted events, or a cut-off head)
``broken_link``    error     ``prev_hash`` is not the previous event's hash: reordered, inserted or
                             re-hashed events
``conflict``       error     two different events claim one seq (the one that links is kept)
``bad_checkpoint`` error     a checkpoint whose signature, key or payload is not valid
``checkpoint_mismatch`` error  a valid checkpoint whose head is not the hash of the event at its seq
``truncated``      error     a checkpoint covers seqs beyond the last event present (tail removed)
``unchained``      error     an audit event without chain attributes: it cannot be verified
``unreadable``     error     (CLI) a line of an input file could not be read
``unanchored``     warning   events after the last valid checkpoint: they could be cut off unnoticed
=================  ========  =====================================================================

Exact duplicates (same seq, event id and hash, as replays produce) are counted, not reported.
A record with ``"redacted": True`` is a link stub (the store's exports show other tenants' events of a chain
as seq, prev_hash and hash only): its hash is taken as given and only its links are checked. A redacted record
with ``"through_seq": M`` (M >= its seq N) is a *run*: events N..M that its producer (the store's verification,
verify_scan.py) hashed and linked one to the next itself; it carries N's prev_hash and event id and M's hash,
counts as M-N+1 events, and is anchored, reported or linked as they would be. Runs must not share a seq with
another record of their chain nor hold a seq a checkpoint covers (but as their last), else
:class:`RunConflict` is raised: the producer then gives those events one by one.
``VerifyReport.ok`` is True only when there is no problem of either severity.

Checkpoints (``audit.checkpoint`` events, see ``signing.py``) are checked with ``trusted_keys`` (key id ->
public key) when given: a checkpoint signed by any other key is bad. Without trusted keys the key embedded
in each checkpoint is used (its key id must match it) and the report notes which key ids that was: this
proves the chain consistent with itself, and the key ids must then be compared with the operator's.

An event is anchored when a valid checkpoint covers its seq; checkpoint events with a valid signature count
as anchored themselves (their content is signed). Events that are neither form the unanchored tail.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from . import semconv
from .exporters.otlp_json import read_records
from .chain import CHECKPOINT_EVENT, GENESIS_HASH, event_hash, record_fields
from .signing import ALGORITHM, SigningKeyError, key_id_of, load_public_key, load_public_keys, verify_checkpoint_signature

__all__ = ["ChainReport", "Problem", "RunConflict", "VerifyReport", "main_verify", "verify_records"]

ERROR = "error"
WARNING = "warning"


@dataclass(slots=True)
class Problem:
    """One finding: its kind, severity, where (chain, seq or seq range, event id) and a sentence."""

    kind: str
    message: str
    chain_id: str | None = None
    seq: int | None = None
    seq_end: int | None = None  # last seq of a range (missing, truncated, unanchored)
    event_id: str | None = None
    severity: str = ERROR

    def where(self) -> str:
        """``seq 5`` / ``seq 5-9`` / ``seq ?``, with the event id if known."""
        if self.seq is None:
            text = "seq ?"
        elif self.seq_end is not None and self.seq_end != self.seq:
            text = f"seq {self.seq}-{self.seq_end}"
        else:
            text = f"seq {self.seq}"
        return f"{text} (event {self.event_id})" if self.event_id else text

    def to_dict(self) -> dict[str, Any]:
        """As a JSON-ready dict."""
        return {"kind": self.kind, "severity": self.severity, "chain_id": self.chain_id, "seq": self.seq,
                "seq_end": self.seq_end, "event_id": self.event_id, "message": self.message}


@dataclass(slots=True)
class ChainReport:
    """What was found about one chain."""

    chain_id: str
    events: int = 0  # distinct events (exact duplicates counted once)
    duplicates: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    checkpoints: int = 0  # valid ones
    anchored_through: int = 0  # highest seq covered by a valid checkpoint
    key_ids: list[str] = field(default_factory=list)  # keys of the valid checkpoints
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No problem in this chain."""
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        """As a JSON-ready dict."""
        return {"chain_id": self.chain_id, "events": self.events, "duplicates": self.duplicates,
                "first_seq": self.first_seq, "last_seq": self.last_seq, "checkpoints": self.checkpoints,
                "anchored_through": self.anchored_through, "key_ids": self.key_ids, "ok": self.ok,
                "problems": [p.to_dict() for p in self.problems]}


@dataclass(slots=True)
class VerifyReport:
    """The result of :func:`verify_records`."""

    chains: dict[str, ChainReport] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)  # not tied to a chain (unchained events)
    ignored: int = 0  # records that are not audit events (other scopes)
    trusted_keys: bool = False  # whether checkpoints were checked against pinned keys

    @property
    def ok(self) -> bool:
        """True only when no chain and no record has a problem (warnings included)."""
        return not self.problems and all(chain.ok for chain in self.chains.values())

    def all_problems(self) -> list[Problem]:
        """Every problem, chain by chain, then the rest."""
        return [p for chain in self.chains.values() for p in chain.problems] + list(self.problems)

    def to_dict(self) -> dict[str, Any]:
        """As a JSON-ready dict."""
        return {"ok": self.ok, "trusted_keys": self.trusted_keys, "ignored": self.ignored,
                "chains": [c.to_dict() for c in self.chains.values()],
                "problems": [p.to_dict() for p in self.problems]}

    def render(self) -> str:
        """A human report: per chain the events, seq range, checkpoints and each problem."""
        lines: list[str] = []
        for chain in self.chains.values():
            span = f"seq {chain.first_seq}-{chain.last_seq}" if chain.first_seq is not None else "no seqs"
            dup = f", {chain.duplicates} exact duplicates ignored" if chain.duplicates else ""
            keys = ", ".join(chain.key_ids) or "-"
            lines.append(f"chain {chain.chain_id}: {chain.events} events, {span}{dup}; "
                         f"{chain.checkpoints} valid checkpoints (keys {keys}), anchored through seq "
                         f"{chain.anchored_through}: {'OK' if chain.ok else 'PROBLEMS'}")
            for problem in chain.problems:
                lines.append(f"  {problem.severity.upper()} {problem.kind} at {problem.where()}: {problem.message}")
        for problem in self.problems:
            lines.append(f"{problem.severity.upper()} {problem.kind} at {problem.where()}: {problem.message}")
        if not self.chains and not self.problems:
            lines.append("no chained audit events found")
        if self.ignored:
            lines.append(f"{self.ignored} records that are not audit events ignored")
        if self.chains and not self.trusted_keys:
            lines.append("note: signatures were checked with the public keys embedded in the checkpoints; "
                         "compare the key ids with the operator's, or pin them with --key")
        total = len(self.all_problems())
        lines.append("verify: OK" if self.ok else f"verify: {total} problem{'s' if total != 1 else ''}")
        return "\n".join(lines)


class RunConflict(ValueError):
    """A run (a redacted record with ``through_seq``) overlaps what verify_records must see event by event."""


@dataclass(slots=True)
class _Entry:
    """One record of a chain, with what was computed about it."""

    seq: int
    event_id: str | None
    stored_hash: Any
    prev_hash: Any
    computed_hash: str | None
    record: Mapping[str, Any]
    order: int
    last: int  # the last seq it stands for: a run's through_seq, else its seq

    @property
    def intact(self) -> bool:
        return self.computed_hash is not None and self.computed_hash == self.stored_hash


def verify_records(
    records: Iterable[Mapping[str, Any]],
    trusted_keys: Mapping[str, Ed25519PublicKey] | None = None,
) -> VerifyReport:
    """Check every chain in ``records`` (flat records from ``read_records``); see the module docstring."""
    report = VerifyReport(trusted_keys=bool(trusted_keys))
    by_chain: dict[str, list[_Entry]] = {}
    for order, record in enumerate(records):
        attributes = record.get("attributes") or {}
        chain_id = attributes.get(semconv.CHAIN_ID)
        event_id = attributes.get(semconv.EVENT_ID)
        if chain_id is None:
            if event_id is not None or record.get("scope_name") == semconv.SCOPE_NAME:
                report.problems.append(Problem("unchained", "audit event without chain attributes: cannot be "
                                               "verified", event_id=_str_or_none(event_id)))
            else:
                report.ignored += 1
            continue
        chain_id = str(chain_id)
        seq = attributes.get(semconv.CHAIN_SEQ)
        if type(seq) is not int or seq < 1:
            report.problems.append(Problem("edited", f"chain attribute audit.chain.seq is {seq!r}, not a seq",
                                           chain_id=chain_id, event_id=_str_or_none(event_id)))
            continue
        last = seq
        if record.get("redacted") is True:
            # A link stub (e.g. another tenant's event in a store export): only its hashes are shown, so its
            # stored hash is taken as given and only its links are checked.
            stored = attributes.get(semconv.CHAIN_HASH)
            computed: str | None = stored if isinstance(stored, str) else None
            through = record.get("through_seq")
            if type(through) is int and through >= seq:
                last = through
        else:
            try:
                computed = event_hash(record_fields(record))
            except (TypeError, ValueError):
                computed = None
        by_chain.setdefault(chain_id, []).append(_Entry(seq, _str_or_none(event_id), attributes.get(semconv.CHAIN_HASH),
                                                        attributes.get(semconv.CHAIN_PREV), computed, record, order,
                                                        last))
    for chain_id, entries in by_chain.items():
        report.chains[chain_id] = _verify_chain(chain_id, entries, trusted_keys)
    return report


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _verify_chain(chain_id: str, entries: list[_Entry], trusted_keys: Mapping[str, Ed25519PublicKey] | None
                  ) -> ChainReport:
    """Walk one chain in seq order."""
    chain = ChainReport(chain_id)
    problems = chain.problems
    entries.sort(key=lambda e: (e.seq, e.order))

    # One entry per seq: drop exact duplicates; among conflicting ones keep the one that links.
    by_seq: dict[int, list[_Entry]] = {}
    for entry in entries:
        by_seq.setdefault(entry.seq, []).append(entry)
    kept: list[_Entry] = []
    prev_hash_kept: str = GENESIS_HASH
    prev_seq = 0
    referenced = {entry.prev_hash for entry in entries if isinstance(entry.prev_hash, str)}  # what some event names as its predecessor
    runs = any(entry.last != entry.seq for entry in entries)
    for seq in sorted(by_seq):
        if runs and len(by_seq[seq]) > 1:  # which one links may depend on the links inside a run
            raise RunConflict(f"chain {chain_id}: seq {seq} is claimed twice beside runs")
        candidates: list[_Entry] = []
        for entry in by_seq[seq]:
            if any(c.event_id == entry.event_id and c.stored_hash == entry.stored_hash
                   and c.computed_hash == entry.computed_hash for c in candidates):
                chain.duplicates += 1
            else:
                candidates.append(entry)
        if len(candidates) > 1:
            linked = seq == prev_seq + 1
            candidates.sort(key=lambda e: (not e.intact, not (linked and e.prev_hash == prev_hash_kept),
                                           not (isinstance(e.stored_hash, str) and e.stored_hash in referenced), e.order))
            for other in candidates[1:]:
                problems.append(Problem("conflict", f"another event also claims seq {seq} (kept event "
                                        f"{candidates[0].event_id}); inserted or forged", chain_id, seq,
                                        event_id=other.event_id))
        entry = candidates[0]
        if kept and seq <= kept[-1].last:
            raise RunConflict(f"chain {chain_id}: seq {seq} lies inside a run")
        kept.append(entry)
        prev_hash_kept = entry.stored_hash if isinstance(entry.stored_hash, str) else ""
        prev_seq = seq

    chain.events = sum(entry.last - entry.seq + 1 for entry in kept)
    chain.first_seq = kept[0].seq
    chain.last_seq = kept[-1].last

    # Checkpoint signatures first: a gap before nothing but signed checkpoints is a truncated tail.
    signed: dict[int, tuple[int, str]] = {}  # checkpoint's own seq -> (seq it covers, head it signs)
    for entry in kept:
        if entry.record.get("event_name") != CHECKPOINT_EVENT:
            continue
        covered, problem = _check_checkpoint(chain_id, entry, trusted_keys)
        if problem is None and covered is not None and covered[0] >= entry.seq:
            problem = Problem("bad_checkpoint", f"checkpoint covers seq {covered[0]}, not before itself",
                              chain_id, entry.seq, event_id=entry.event_id)
        if problem is not None:
            problems.append(problem)
        elif covered is not None:
            signed[entry.seq] = covered
    tail_start = len(kept)  # index from which every kept entry is a checkpoint
    while tail_start > 0 and kept[tail_start - 1].record.get("event_name") == CHECKPOINT_EVENT:
        tail_start -= 1

    hashes: dict[int, Any] = {}
    previous: _Entry | None = None
    for index, entry in enumerate(kept):
        hashes[entry.last] = entry.stored_hash
        if not entry.intact:
            why = ("its content cannot be hashed (values RFC 8785 cannot encode)" if entry.computed_hash is None
                   else "its content does not match its hash")
            problems.append(Problem("edited", f"event edited: {why}", chain_id, entry.seq, event_id=entry.event_id))
        expected_seq = 1 if previous is None else previous.last + 1
        if entry.seq > expected_seq:
            claimed = max((signed[e.seq][0] for e in kept[index:] if e.seq in signed), default=0)
            if index >= tail_start and claimed >= expected_seq:
                last = "nothing" if previous is None else f"seq {previous.last}"
                problems.append(Problem("truncated", f"events stop at {last} but a signed checkpoint covers "
                                        f"through seq {claimed}: the tail was removed", chain_id, expected_seq,
                                        entry.seq - 1))
            else:
                problems.append(Problem("missing", f"{entry.seq - expected_seq} event(s) missing (deleted)",
                                        chain_id, expected_seq, entry.seq - 1))
        elif previous is None:
            if entry.prev_hash != GENESIS_HASH:
                problems.append(Problem("broken_link", "the first event does not start from the genesis hash",
                                        chain_id, entry.seq, event_id=entry.event_id))
        elif entry.prev_hash != previous.stored_hash:
            problems.append(Problem("broken_link", f"prev_hash is not the hash of seq {previous.last}: "
                                    "reordered, inserted or re-hashed event", chain_id, entry.seq,
                                    event_id=entry.event_id))
        previous = entry

    # Anchoring: a signed checkpoint whose head is the hash of the event it names.
    anchored = 0
    for entry in kept:
        if entry.seq not in signed:
            continue
        covered_seq, head = signed[entry.seq]
        if covered_seq == 0:
            matches = head == GENESIS_HASH
        elif covered_seq not in hashes:
            if runs and any(e.seq <= covered_seq < e.last for e in kept):
                raise RunConflict(f"chain {chain_id}: a checkpoint covers seq {covered_seq}, inside a run")
            continue  # already reported as missing or truncated
        else:
            matches = hashes[covered_seq] == head
        if not matches:
            problems.append(Problem("checkpoint_mismatch", f"the signed head of seq {covered_seq} is not that "
                                    "event's hash", chain_id, entry.seq, event_id=entry.event_id))
            continue
        chain.checkpoints += 1
        key_id = str(_payload(entry)["key_id"])
        if key_id not in chain.key_ids:
            chain.key_ids.append(key_id)
        anchored = max(anchored, covered_seq)
    chain.anchored_through = anchored

    if runs and any(e.seq <= anchored < e.last for e in kept):
        raise RunConflict(f"chain {chain_id}: the anchored seq {anchored} lies inside a run")
    tail = [e for e in kept if e.seq > anchored and e.seq not in signed]  # signed checkpoints carry themselves
    if tail:
        first = tail[0]
        count = sum(e.last - e.seq + 1 for e in tail)
        problems.append(Problem("unanchored", f"{count} event(s) after the last valid checkpoint (which "
                                f"covers seq {anchored}): they could be removed without detection", chain_id,
                                first.seq, tail[-1].last, event_id=first.event_id, severity=WARNING))
    problems.sort(key=lambda p: (p.seq if p.seq is not None else 0))
    return chain


def _payload(entry: _Entry) -> dict[str, Any]:
    attributes = entry.record.get("attributes") or {}
    payload = json.loads(attributes.get(semconv.PAYLOAD) or "null")
    if not isinstance(payload, dict):
        raise ValueError("payload is not a JSON object")
    return payload


def _check_checkpoint(chain_id: str, entry: _Entry, trusted_keys: Mapping[str, Ed25519PublicKey] | None
                      ) -> tuple[tuple[int, str] | None, Problem | None]:
    """((covered seq, head), None) for a checkpoint with a valid signature, else (None, problem)."""

    def bad(message: str) -> tuple[None, Problem]:
        return None, Problem("bad_checkpoint", message, chain_id, entry.seq, event_id=entry.event_id)

    try:
        payload = _payload(entry)
    except ValueError as error:
        return bad(f"checkpoint payload unreadable: {error}")
    missing = [k for k in ("alg", "chain_id", "seq", "head", "key_id", "signature") if k not in payload]
    if missing:
        return bad(f"checkpoint lacks {', '.join(missing)}")
    if payload["alg"] != ALGORITHM:
        return bad(f"unknown signature algorithm {payload['alg']!r}")
    if payload["chain_id"] != chain_id:
        return bad(f"checkpoint signs chain {payload['chain_id']!r}, not the chain it is in")
    if type(payload["seq"]) is not int or not isinstance(payload["head"], str):
        return bad("checkpoint seq or head malformed")
    key_id = payload["key_id"]
    if trusted_keys:
        public_key = trusted_keys.get(key_id)
        if public_key is None:
            return bad(f"signed by key {key_id!r}, which is not among the trusted keys")
    else:
        try:
            public_key = load_public_key(str(payload.get("public_key") or ""), "embedded public_key")
        except (SigningKeyError, ValueError) as error:
            return bad(f"no usable embedded public key: {error}")
        if key_id_of(public_key) != key_id:
            return bad(f"key id {key_id!r} does not match the embedded public key")
    if not verify_checkpoint_signature(payload, public_key):
        return bad("signature does not verify")
    return (payload["seq"], payload["head"]), None


# --------------------------------------------------------------------------------------------------
# Command line


def main_verify(argv: list[str], stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """``auditrail verify FILE... [--key PEM_FILE]... [--json]``: 0 clean, 1 problems, 2 usage or I/O error."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    parser = argparse.ArgumentParser(
        prog="auditrail verify",
        description="Verify the hash chains and signed checkpoints in OTLP JSON-lines files.",
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="OTLP JSON lines (AUDITRAIL_EXPORTER=file:...)")
    parser.add_argument("--key", action="append", default=[], metavar="PEM_FILE",
                        help="a trusted public key (PEM, or base64 of the raw 32 bytes); repeatable. Without it "
                             "the keys embedded in the checkpoints are used")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 2

    try:
        trusted = load_public_keys(args.key)
    except SigningKeyError as error:
        print(f"auditrail verify: error: {error}", file=err)
        return 2

    skipped: list[str] = []

    def on_error(path: str, lineno: int, message: str) -> None:
        skipped.append(f"{path}:{lineno}: {message}")
        print(f"auditrail verify: warning: {path}:{lineno}: skipped: {message}", file=err)

    for path in args.files:
        if not os.path.isfile(path):
            print(f"auditrail verify: error: {path}: {'no such file' if not os.path.exists(path) else 'not a file'}",
                  file=err)
            return 2
    try:
        report = verify_records(read_records(args.files, on_error=on_error), trusted or None)
    except OSError as error:
        print(f"auditrail verify: error: {_reason(error)}", file=err)
        return 2
    for line in skipped:  # a line that could not be read may be a tampered record: never clean
        report.problems.append(Problem("unreadable", f"line skipped: {line}"))
    try:
        if args.json:
            out.write(json.dumps(report.to_dict(), ensure_ascii=False) + "\n")
        else:
            out.write(report.render() + "\n")
        out.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return 0 if report.ok else 1


def _reason(error: BaseException) -> str:
    """An error as a short message (OSError without errno noise)."""
    if isinstance(error, OSError) and error.strerror:
        return f"{error.filename}: {error.strerror}" if error.filename else error.strerror
    return str(error)
