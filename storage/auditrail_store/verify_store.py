"""Chain verification over stored events and over exported JSON documents (no store needed for the latter).

Both reuse ``auditrail.verify.verify_records``: stored or exported events become the flat records it
reads (``event_name``, ``time_unix_nano``, ``attributes`` with the LogRecord attribute names; absent
fields left out, as the chain hashes them). The store's ``verify --tenant`` (and the service's verify) reads
what the JSON export would hold and checks it chain by chain as it streams (:func:`verify_stored`), so the
service, the CLI and a customer's auditor run one procedure:

* the tenant's events are hashed and linked;
* *link stubs* (other events of the same chains: seq, prev_hash, hash, no content) are trusted for their
  hash only, so links can be followed across events this tenant may not see (``redacted`` records of
  ``verify_records``); a stub that claims a seq the export also has as a full event is dropped;
* a chain that starts inside the export's window (``from_seq`` > 1) starts from its first event's
  ``prev_hash`` instead of the genesis hash: its earlier events are outside the export by construction;
* the ``payload`` shown as JSON must parse to the same value as ``payload_json``, the exact hashed text,
  else the event is reported edited: a reader of the export sees what was verified;
* checkpoints are verified with the keys given (``--key``), else with the ones the document carries,
  and the report says which;
* an event id the store received in more than one version (other content, another time: evidence of
  tampering or of a bug) is a ``conflict``: the export shows the first version stored, and the document's
  ``conflicts`` (:func:`event_conflicts`, counted from the copies otel_logs keeps) says how many others there were.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from auditrail import semconv
from auditrail.chain import CHECKPOINT_EVENT, event_hash, record_fields
from auditrail.verify import ChainReport, Problem, VerifyReport, verify_records

from .db import Store, StoreError, tenant_scope

__all__ = ["chain_checkpoints", "chain_links", "conflict_problems", "document_records", "event_conflicts",
           "verify_document", "verify_stored"]

# export column -> LogRecord attribute (the hashed ones, chain.HASHED_ATTRIBUTES, and the rest we keep)
_ATTRIBUTES = {
    "event_id": semconv.EVENT_ID, "tenant_id": semconv.TENANT, "actor": semconv.ACTOR,
    "actor_type": semconv.ACTOR_TYPE, "source_ip": semconv.SOURCE_IP, "reason": semconv.REASON,
    "outcome": semconv.OUTCOME, "risk": semconv.RISK, "impersonator_id": semconv.IMPERSONATOR,
    "impersonation_id": semconv.IMPERSONATION, "approval_id": semconv.APPROVAL, "chain_id": semconv.CHAIN_ID,
    "chain_seq": semconv.CHAIN_SEQ, "chain_prev_hash": semconv.CHAIN_PREV, "chain_hash": semconv.CHAIN_HASH,
}


def time_unix_nano(iso: str) -> int:
    """``2026-01-31T12:00:00.123456789Z`` -> ns since the epoch (all nine digits kept)."""
    text = iso.rstrip("Z")
    whole, _, fraction = text.partition(".")
    seconds = datetime.fromisoformat(whole).replace(tzinfo=timezone.utc).timestamp()
    return int(seconds) * 1_000_000_000 + int((fraction + "000000000")[:9])


def event_record(event: Mapping[str, Any]) -> dict[str, Any]:
    """An exported event as the flat record verify_records reads."""
    timestamp = event.get("timestamp")
    return stored_record(event, event.get("payload_json", event.get("payload")),
                         time_unix_nano(timestamp) if isinstance(timestamp, str) else 0)


def stored_record(columns: Mapping[str, Any], payload_text: Any, time_ns: int) -> dict[str, Any]:
    """An event's columns (export names; the payload as `payload_text`, time in ns) as the flat record
    verify_records reads: the attributes it carries and the chain hashed, an empty event type as none."""
    attributes: dict[str, Any] = {}
    for column, key in _ATTRIBUTES.items():
        value = columns.get(column)
        if value is not None:
            attributes[key] = value
    if payload_text is not None:
        attributes[semconv.PAYLOAD] = payload_text if isinstance(payload_text, str) else json.dumps(payload_text)
    return {"event_name": columns.get("event_type") or None, "time_unix_nano": time_ns,
            "attributes": attributes, "scope_name": semconv.SCOPE_NAME}


def stub_record(chain_id: str, stub: Mapping[str, Any]) -> dict[str, Any]:
    """A link stub as a redacted record: its hash is trusted, its content is not shown."""
    return {"redacted": True, "event_name": None, "time_unix_nano": 0, "scope_name": semconv.SCOPE_NAME,
            "attributes": {semconv.CHAIN_ID: chain_id, semconv.CHAIN_SEQ: stub.get("seq"),
                           semconv.CHAIN_PREV: stub.get("prev_hash"), semconv.CHAIN_HASH: stub.get("hash")}}


def document_records(document: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[Problem]]:
    """(flat records, problems found before hashing) of an export document."""
    problems: list[Problem] = []
    records: list[dict[str, Any]] = []
    full: set[tuple[str, int]] = set()
    events = list(document.get("events") or [])
    for chain in document.get("chains") or []:
        events.extend(chain.get("checkpoints") or [])
    seen_ids: set[tuple[Any, Any]] = set()
    for event in events:
        if not isinstance(event, dict):
            problems.append(Problem("unreadable", "an event of the export is not a JSON object"))
            continue
        key = (event.get("event_id"), event.get("chain_seq"))
        if key in seen_ids:
            continue  # a checkpoint that is also among the events
        seen_ids.add(key)
        problems.extend(_payload_problems(event))
        records.append(event_record(event))
        if isinstance(event.get("chain_id"), str) and isinstance(event.get("chain_seq"), int):
            full.add((event["chain_id"], event["chain_seq"]))
    for stub in document.get("links") or []:
        if not isinstance(stub, dict):
            problems.append(Problem("unreadable", "a link stub of the export is not a JSON object"))
            continue
        chain_id = stub.get("chain_id")
        if (chain_id, stub.get("seq")) not in full:
            records.append(stub_record(str(chain_id), stub))
    return records, problems


def _payload_problems(event: Mapping[str, Any]) -> list[Problem]:
    """[edited] when the payload shown differs from ``payload_json``, the exact text the chain hashed."""
    if event.get("payload_json") is None:
        return []
    try:
        same = json.loads(event["payload_json"]) == event.get("payload")
    except ValueError:
        same = event.get("payload") == event["payload_json"]
    if same:
        return []
    return [Problem("edited", "payload differs from payload_json, the text the chain hashed", event.get("chain_id"),
                    event.get("chain_seq"), event_id=event.get("event_id"))]


def verify_document(document: Mapping[str, Any],
                    trusted_keys: Mapping[str, Ed25519PublicKey] | None = None) -> VerifyReport:
    """Verify an ``auditrail.export/v1`` document; see the module docstring."""
    if document.get("format") != "auditrail.export/v1":
        raise StoreError(f"not an auditrail export (format {document.get('format')!r})")
    records, problems = document_records(document)
    starts = {c.get("chain_id"): c.get("from_seq") for c in document.get("chains") or []}
    report = verify_records(records, trusted_keys)
    _trim_windows(report, starts)
    report.problems.extend(problems)
    report.problems.extend(conflict_problems(document.get("conflicts") or []))
    return report


def conflict_problems(conflicts: Iterable[Any]) -> list[Problem]:
    """A ``conflict`` problem per entry of a document's ``conflicts`` (see :func:`event_conflicts`)."""
    problems = []
    for conflict in conflicts:
        if not isinstance(conflict, dict):
            problems.append(Problem("unreadable", "a conflict entry of the export is not a JSON object"))
            continue
        versions = conflict.get("versions")
        later = versions - 1 if isinstance(versions, int) else "?"
        problems.append(Problem(
            "conflict", f"the store received this event id in {versions} different versions ({conflict.get('copies')}"
            f" copies): the first stored is the one shown, {later} later one(s) differ from it (tampering or a bug)",
            event_id=str(conflict.get("event_id"))))
    return problems


def _trim_windows(report: VerifyReport, starts: Mapping[Any, Any]) -> None:
    """Drop what a chain's window (`starts`: chain id -> its first exported seq) leaves out by construction."""
    for chain_id, chain in report.chains.items():
        start = starts.get(chain_id)
        if isinstance(start, int) and start > 1:
            chain.problems[:] = [p for p in chain.problems if not _before_window(p, start)]


def report_from_dict(data: Mapping[str, Any]) -> VerifyReport:
    """A VerifyReport back from its ``to_dict()`` (the service's verify answer)."""
    chains = {c["chain_id"]: ChainReport(**{k: v for k, v in c.items() if k not in ("ok", "problems")},
                                         problems=[Problem(**p) for p in c["problems"]]) for c in data["chains"]}
    return VerifyReport(chains, [Problem(**p) for p in data["problems"]], data["ignored"], data["trusted_keys"])


def _before_window(problem: Problem, start: int) -> bool:
    """The seqs before a window's first event are absent by construction, and its first link is trusted."""
    if problem.kind == "missing" and problem.seq == 1 and problem.seq_end == start - 1:
        return True
    if problem.kind == "broken_link" and problem.seq == start and "genesis" in problem.message:
        return True
    return False


def verify_stored(store: Store, tenant: str, filters: Any = None,
                  trusted_keys: Mapping[str, Ed25519PublicKey] | None = None) -> VerifyReport:
    """Verify one tenant's stored events exactly as its JSON export would be verified offline, streamed.

    With the native core built, verify_scan.verify_scanned does it (the same records for verify_records, the
    events hashed natively and folded into runs of verified links: memory flat in the events, ~8x faster);
    without it, or with AUDITRAIL_NATIVE=0, the Python scan below, the definition the tests hold it to.

    One streamed read, the JSON export's own (export._event_blocks), in the export's order. Each event is
    hashed as it passes; one whose content matches its chain hash is kept only as its links (a stub:
    event id, seq, prev_hash, hash), the rest as the full record verify_records reads. A chain is verified as
    soon as its last event has passed (a count per chain, read first, says when), with its checkpoints and
    link stubs, as in the document, and then dropped: memory holds the links of the chains still being read,
    never the tenant's events. (verify_records holds a whole chain: one chain of a million events takes its
    million stubs.) Events a running emitter appends to a chain after the counts were read (they come last in
    the export's time order) are left to the next verification.
    """
    from auditrail.native import native_function

    from .export import ExportFilters

    chain_scan = native_function("ChainScan")
    if chain_scan is not None:  # the same procedure, the events hashed and folded natively (verify_scan.py)
        from .verify_scan import verify_scanned

        return verify_scanned(store, tenant, filters or ExportFilters(), trusted_keys, chain_scan)
    with Store.open(store.url, store.database) as side:  # the chains' own queries, while the stream is open
        return _verify_streamed(store, side, tenant, filters or ExportFilters(), trusted_keys)


def _verify_streamed(store: Store, side: Store, tenant: str, filters: Any,
                     trusted_keys: Mapping[str, Ed25519PublicKey] | None) -> VerifyReport:
    from .export import _event_blocks, chain_section, stub_exclusion

    expected = _chain_counts(store, tenant, filters)
    checkpoints = chain_checkpoints(store, tenant, expected)
    exclude = stub_exclusion(filters)
    keys: dict[str, str] = {}
    report = VerifyReport(trusted_keys=bool(trusted_keys))
    pending: dict[str | None, list[dict[str, Any]]] = {}  # chain id (None: unchained) -> its events so far
    ranges: dict[str, list[int]] = {}
    finished: set[str] = set()
    problems: list[Problem] = []

    def finish(chain_id: str) -> None:
        records = pending.pop(chain_id)
        finished.add(chain_id)
        first, last = ranges[chain_id]
        if chain_id not in expected:  # a chain that appeared after the counts were read
            checkpoints.update(chain_checkpoints(side, tenant, [chain_id]))
        section = chain_section(chain_id, first, last, checkpoints.get(chain_id, []), keys)
        links = chain_links(side, tenant, [(chain_id, section["from_seq"], section["to_seq"])], exclude)
        _merge(report, _verify_chain(chain_id, records, section, links.get(chain_id, ()), trusted_keys))

    for lines, (chain_ids, seqs) in _event_blocks(store, tenant, filters, keep_text=True,
                                                  extra=("chain_id", "chain_seq")):
        for line, chain_id, seq in zip(lines, chain_ids, seqs, strict=True):
            if chain_id in finished:  # appended after the counts were read: the next verification's
                continue
            event = orjson.loads(line)
            problems.extend(_payload_problems(event))
            records = pending.setdefault(chain_id, [])
            records.append(_held(event_record(event)))
            if chain_id is None:
                continue
            if seq is not None:
                span = ranges.setdefault(chain_id, [seq, seq])
                span[0], span[1] = min(span[0], seq), max(span[1], seq)
            if len(records) == expected.get(chain_id) and chain_id in ranges:
                finish(chain_id)
    for chain_id in [c for c in pending if c is not None and c in ranges]:  # chains grown since the counts
        finish(chain_id)
    _merge(report, verify_records([r for records in pending.values() for r in records], trusted_keys))
    report.problems.extend(problems)
    report.problems.extend(conflict_problems(event_conflicts(side, tenant, filters)))
    report.chains = {c: report.chains[c] for c in [*ranges, *report.chains] if c in report.chains}  # export order
    return report


def _chain_counts(store: Store, tenant: str, filters: Any) -> dict[str, int]:
    """chain id -> how many of the export's events it holds."""
    from .export import exported_ids

    sql, params = exported_ids(store, tenant, filters, columns=("chain_id",))
    rows = store.query(f"SELECT chain_id, count() FROM ({sql}) WHERE chain_id IS NOT NULL GROUP BY chain_id",
                       params).result_rows
    return {chain_id: int(count) for chain_id, count in rows}


def _held(record: dict[str, Any]) -> dict[str, Any]:
    """What verification keeps of an event: its links only (a redacted record, whose hash verify_records
    takes as given) when its content hashes to its stored hash; else all of it, for verify_records to judge
    (edited events, checkpoints, whose signatures it checks, and unchained events)."""
    attributes = record["attributes"]
    if record["event_name"] == CHECKPOINT_EVENT or semconv.CHAIN_ID not in attributes:
        return record
    try:
        intact = event_hash(record_fields(record)) == attributes.get(semconv.CHAIN_HASH)
    except (TypeError, ValueError):
        intact = False
    if not intact:
        return record
    return {"redacted": True, "event_name": record["event_name"], "time_unix_nano": 0,
            "scope_name": semconv.SCOPE_NAME,
            "attributes": {key: attributes.get(key) for key in _LINKS}}


_LINKS = (semconv.EVENT_ID, semconv.CHAIN_ID, semconv.CHAIN_SEQ, semconv.CHAIN_PREV, semconv.CHAIN_HASH)


def _verify_chain(chain_id: str, records: list[dict[str, Any]], section: dict[str, Any],
                  links: Iterable[dict[str, Any]], trusted_keys: Mapping[str, Ed25519PublicKey] | None) -> VerifyReport:
    """One chain's events with what the document adds to them: its anchoring checkpoints and link stubs."""
    seen = {(r["attributes"].get(semconv.EVENT_ID), r["attributes"].get(semconv.CHAIN_SEQ)) for r in records}
    problems: list[Problem] = []
    for checkpoint in section["checkpoints"]:
        if (checkpoint.get("event_id"), checkpoint.get("chain_seq")) not in seen:
            problems.extend(_payload_problems(checkpoint))
            records.append(event_record(checkpoint))
    full = {seq for _, seq in seen} | {c.get("chain_seq") for c in section["checkpoints"]}
    for stub in links:
        if stub["seq"] not in full:
            records.append(stub_record(chain_id, stub))
    report = verify_records(records, trusted_keys)
    _trim_windows(report, {chain_id: section["from_seq"]})
    report.problems.extend(problems)
    return report


def _merge(report: VerifyReport, part: VerifyReport) -> None:
    report.chains.update(part.chains)
    report.problems.extend(part.problems)
    report.ignored += part.ignored


# --------------------------------------------------------------------------------------------------
# What the JSON export adds to a tenant's events (read by export.py)


# What makes a row of otel_logs an audit event and its audit_events key, as audit_events_mv (0003, 0011) and
# audit_events.event_key (0012) compute them: the canonical UUID text of the id, or the id as sent.
_AUDIT_ROW = ("mapContains(LogAttributes, 'audit.event_id')"
              " AND (ScopeName = 'auditrail' OR EventName != '' OR LogAttributes['event.name'] != '')")
_EVENT_KEY = ("if(toUUIDOrZero(LogAttributes['audit.event_id']) != toUUID('00000000-0000-0000-0000-000000000000'),"
              " toString(toUUIDOrZero(LogAttributes['audit.event_id'])), LogAttributes['audit.event_id'])")
# A version: the hash of everything the typed row is made of (the event type as the view picks it, the time,
# every attribute, service, severity, trace and span ids); the attribute pairs sorted, so the same attributes
# written in another order (the collector's exporter, the service) are one version. Receipt time, resource
# and scope are not the event's content: a replay through another collector is no conflict.
# `event.name` is left out when it only repeats the event type, as audit_events.attributes leaves it (0033): the
# collector's ClickHouse pipeline copies EventName there, `auditrail serve` does not, and one event arriving
# both ways (the service's own events with `serve --forward-otlp`) is one version.
_KEPT = "mapFilter((k, v) -> NOT (k = 'event.name' AND (EventName = '' OR v = EventName)), LogAttributes)"
_VERSION = (f"cityHash64(if(EventName != '', EventName, LogAttributes['event.name']), Timestamp,"
            f" arraySort(arrayZip(mapKeys({_KEPT}), mapValues({_KEPT}))),"
            " ServiceName, SeverityText, SeverityNumber, TraceId, SpanId)")


def event_conflicts(store: Store, tenant: str, filters: Any) -> list[dict[str, Any]]:
    """`tenant`'s event ids (of the events an export with `filters` holds) that the store received in more than
    one version, by id: ``{"event_id", "versions", "copies"}`` (copies: every arrival, replays included).

    Computed here, from otel_logs, which keeps every copy as received (migration 0034): nothing is counted
    on the insert path. It reads the tenant's raw rows, every copy, once per verify or JSON export."""
    from .export import ExportFilters, exported_ids

    parameters: dict[str, Any] = {}
    scope = tenant_scope(tenant, parameters)
    # The tenant's conflicting ids first, then those of them the export holds: no set of the export's ids is
    # built (1M events: +270 MB before), only the GROUP BY's.
    arrivals = (f"SELECT LogAttributes['audit.tenant_id'] AS tenant_id, {_EVENT_KEY} AS event_key,"
                f" {_VERSION} AS version FROM {store.table('otel_logs')} WHERE {_AUDIT_ROW} AND {scope}")
    rows = store.query(
        "SELECT event_key, count() AS versions, sum(copies) FROM (SELECT event_key, version, count() AS copies"
        f" FROM ({arrivals}) GROUP BY event_key, version)"
        " GROUP BY event_key HAVING versions > 1 ORDER BY event_key", parameters).result_rows
    if rows and filters is not None and filters != ExportFilters():
        sql, exported = exported_ids(store, tenant, filters, columns=("event_key",))
        inside = {key for (key,) in store.query(f"SELECT event_key FROM ({sql}) WHERE has({{conflicting:Array(String)}},"
                                               " event_key)", dict(exported, conflicting=[r[0] for r in rows])
                                               ).result_rows}
        rows = [row for row in rows if row[0] in inside]
    return [{"event_id": key, "versions": int(versions), "copies": int(copies)} for key, versions, copies in rows]


def chain_checkpoints(store: Store, tenant: str, chain_ids: Iterable[str] | None) -> dict[str, list[dict[str, Any]]]:
    """The signed checkpoint events of these chains of `tenant` (None: of all its chains), oldest first, with
    what each covers.

    Emitters keep one chain per tenant, and a chain's checkpoints carry its tenant: they are the tenant's
    own events, read through the same tenant-scoped query as the rest of its export.
    """
    from .export import CHECKPOINT_EVENT, ExportFilters, _event_blocks

    wanted = None if chain_ids is None else set(chain_ids)
    found: dict[str, list[dict[str, Any]]] = {}
    if wanted is not None and not wanted:
        return found
    blocks = _event_blocks(store, tenant, ExportFilters(event_type=CHECKPOINT_EVENT), keep_text=True)
    for event in (orjson.loads(line) for lines, _ in blocks for line in lines):
        if event.get("chain_id") is None or (wanted is not None and event["chain_id"] not in wanted):
            continue
        try:
            payload = json.loads(event.get("payload_json") or "{}")
        except ValueError:
            payload = {}
        found.setdefault(event["chain_id"], []).append({
            "chain_seq": event.get("chain_seq") or 0, "covers_seq": int(payload.get("seq") or 0),
            "key_id": str(payload.get("key_id") or ""), "public_key": str(payload.get("public_key") or ""),
            "event": event})
    for items in found.values():
        items.sort(key=lambda c: c["chain_seq"])
    return found


def chain_links(store: Store, tenant: str, spans: Sequence[tuple[str, int, int]],
                exclude: tuple[str, dict[str, Any]] | None) -> dict[str, list[dict[str, Any]]]:
    """Link stubs (seq, prev_hash, hash) of `tenant`'s events of each chain in its span (chain id, from_seq,
    to_seq) that are not in the export (those a filter such as `type` or `actor` left out), by chain id, in seq
    order; {} when `exclude` is None (an unfiltered export holds every event).

    `exclude` is export.stub_exclusion's condition: the events meeting it are in the export in full, so they get
    no stub (a deleted one then shows as a gap). One query for every chain, on the rows the export's canonical
    read sees (FINAL), nothing held per exported event. Chains are per tenant, so stubs come from the tenant's
    own rows only: another tenant cannot place stubs in this tenant's chains.
    """
    if exclude is None or not spans:
        return {}
    condition, exclude_params = exclude
    parameters: dict[str, Any] = {"chains": [c for c, _, _ in spans], "firsts": [f for _, f, _ in spans],
                                  "lasts": [t for _, _, t in spans], **exclude_params}
    scope = tenant_scope(tenant, parameters)
    rows = store.query(
        f"SELECT chain_id, chain_seq, chain_prev_hash, chain_hash FROM {store.table('audit_events')} FINAL"
        f" WHERE {scope} AND chain_id IS NOT NULL AND chain_seq IS NOT NULL"
        " AND (indexOf({chains:Array(String)}, assumeNotNull(chain_id)) AS span) > 0"
        " AND chain_seq BETWEEN {firsts:Array(UInt64)}[span] AND {lasts:Array(UInt64)}[span]"
        f" AND NOT ifNull(({condition}), 0) ORDER BY chain_id, chain_seq", parameters).result_rows
    links: dict[str, list[dict[str, Any]]] = {}
    for chain_id, seq, prev_hash, hash_ in rows:
        links.setdefault(chain_id, []).append({"chain_id": chain_id, "seq": int(seq), "prev_hash": prev_hash,
                                               "hash": hash_})
    return links


def main_verify(args: Any) -> int:
    """`auditrail verify EXPORT.json` or `auditrail verify --tenant T`: 0 clean, 1 problems, 2 errors."""
    import sys

    from auditrail.signing import SigningKeyError, load_public_keys

    from .admin import _service_error, open_store_or_service
    from .export import ExportFilters, parse_time

    try:
        trusted = load_public_keys(args.key)
    except SigningKeyError as error:
        raise StoreError(str(error)) from None
    if args.export_file and args.export_file.endswith(".zip"):  # an evidence pack (reviews/pack.py)
        from .reviews.pack import verify_pack

        ok, lines = verify_pack(args.export_file, trusted or None)
        print("\n".join(lines))
        return 0 if ok else 1
    if args.export_file:
        try:
            with open(args.export_file, "rb") as stream:
                document = orjson.loads(stream.read())
        except OSError as error:
            raise StoreError(f"{args.export_file}: {error.strerror or error}") from None
        except orjson.JSONDecodeError as error:
            print(f"auditrail verify: {args.export_file}: not valid JSON ({error}): the file was altered or cut",
                  file=sys.stderr)
            return 1
        if not isinstance(document, dict):
            raise StoreError(f"{args.export_file}: not an auditrail export")
        report = verify_document(document, trusted or None)
    elif args.tenant:
        filters = ExportFilters(parse_time(args.since, "since"), parse_time(args.until, "until"))
        store, service = open_store_or_service(args.url)
        if service is not None:  # the service owns the embedded store: it verifies, streamed, or (pinned keys
            from urllib.parse import quote  # are this machine's) its export is verified here, the same way

            params = {k: v for k, v in {"since": args.since, "until": args.until}.items() if v}
            path = f"/v1/tenants/{quote(args.tenant, safe='')}"
            response = service.request("GET", f"{path}/events" if trusted else f"{path}/verify",
                                       params=dict(params, format="json") if trusted else params,
                                       timeout=None)  # a verify answers once it is done
            if response.status_code != 200:
                raise StoreError(_service_error(response))
            report = (verify_document(orjson.loads(response.content), trusted) if trusted
                      else report_from_dict(response.json()))
        else:
            with store:
                report = verify_stored(store, args.tenant, filters, trusted or None)
    else:
        raise StoreError("give an exported JSON file, or --tenant T to verify stored events")
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False))
    else:
        print(report.render())
    return 0 if report.ok else 1
