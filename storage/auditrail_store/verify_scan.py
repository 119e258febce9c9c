"""`verify_stored` at engine speed: the native scan of a tenant's stored events (native/src/verify.rs).

The procedure is verify_store's (the export's events, checkpoints and link stubs of each chain, judged by
``auditrail.verify.verify_records``); only the events' road to it changes. The engine streams the hashed
columns of the export's canonical read (same rows, same order) as ``RowBinary``; the native ``ChainScan`` hashes
each event with the chain's own definition (the Rust twin of ``chain.event_hash`` that links the SDK's events)
and folds the events that hash to their stored hash and link seq by seq into *runs* (verify_records' redacted
records with ``through_seq``). Python receives a few runs per chain plus, whole, the events verify_records must
judge itself (checkpoints, edited, unchained). Memory holds runs, not events: flat in the month's size.

A chain whose runs overlap another of its records (a seq claimed twice: replays, conflicts, a stub inside the
export's range) or a checkpoint covering a seq inside a run (:class:`auditrail.verify.RunConflict`) is read again
on its own with every event a run of one, in stream order: verify_records then sees it as the export shows it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from auditrail import semconv
from auditrail.verify import RunConflict, VerifyReport, verify_records

from .db import Store, quote_identifier

__all__ = ["scan_query", "verify_scanned"]

# The scan's columns, as native/src/verify.rs reads them: the hashed text fields in its SLOTS order (every one a
# Nullable(String); the event type NULL when empty, as verify_store.stored_record takes it), then the time in ns
# and the chain's four columns.
_TEXT = ("event_type", "tenant_id", "actor", "actor_type", "payload", "source_ip", "reason", "outcome", "risk",
         "impersonator_id", "impersonation_id", "approval_id", "event_id")
_CHAIN = ("chain_id", "chain_seq", "chain_prev_hash", "chain_hash")
_EXPRESSIONS = {"event_type": "nullIf(toString(event_type), '')", "event_id": "toString(event_id)"}


def scan_query(store: Store, tenant: str, filters: Any, chain_id: str | None = None) -> tuple[str, dict[str, Any]]:
    """(sql, parameters) of the scan: the export's canonical read (its rows, its order), the columns above; only
    `chain_id`'s rows if given."""
    from .export import exported_ids

    inner, params = exported_ids(store, tenant, filters, columns=(*dict.fromkeys(("timestamp", *_TEXT, *_CHAIN)),))
    text = ", ".join(f"CAST({_EXPRESSIONS.get(c, quote_identifier(c))} AS Nullable(String))" for c in _TEXT)
    sql = (f"SELECT {text}, toUnixTimestamp64Nano(timestamp), CAST(chain_id AS Nullable(String)), chain_seq,"
           f" CAST(chain_prev_hash AS Nullable(String)), CAST(chain_hash AS Nullable(String)) FROM ({inner})")
    if chain_id is not None:
        sql += " WHERE chain_id = {scan_chain:String}"
        params = dict(params, scan_chain=chain_id)
    return sql, params


def _row_record(item: tuple[Any, ...]) -> dict[str, Any]:
    """A row the scan gave back whole, as verify_store.stored_record makes it."""
    from .verify_store import stored_record

    text, time_ns, chain_id, seq, prev_hash, hash_ = item
    columns = dict(zip(_TEXT, text, strict=True))
    columns.update(chain_id=chain_id, chain_seq=seq, chain_prev_hash=prev_hash, chain_hash=hash_)
    return stored_record(columns, columns.pop("payload"), time_ns)


def _run_record(run: tuple[Any, ...]) -> dict[str, Any]:
    """A run (chain id, first seq, last seq, prev_hash of the first, hash of the last, event id of the first)."""
    chain_id, first, last, prev_hash, hash_, event_id = run
    return {"redacted": True, "event_name": None, "time_unix_nano": 0, "scope_name": semconv.SCOPE_NAME,
            "through_seq": last,
            "attributes": {semconv.EVENT_ID: event_id, semconv.CHAIN_ID: chain_id, semconv.CHAIN_SEQ: first,
                           semconv.CHAIN_PREV: prev_hash, semconv.CHAIN_HASH: hash_}}


def _scan(store: Store, scanner: Any, sql: str, params: dict[str, Any]
          ) -> tuple[dict[str | None, list[dict[str, Any]]], tuple[Any, ...]]:
    """Stream the scan through `scanner`: (records given back whole or as runs of one, by chain id in stream
    order; what ``finish`` returns)."""
    from .export import _chunks

    records: dict[str | None, list[dict[str, Any]]] = {}
    for chunk in _chunks(store.client, sql, params, "RowBinary"):
        for item in scanner.feed(chunk):
            if isinstance(item[0], tuple):
                records.setdefault(item[2], []).append(_row_record(item))
            else:
                records.setdefault(item[0], []).append(_run_record(item))
    return records, scanner.finish()


def verify_scanned(store: Store, tenant: str, filters: Any, trusted_keys: Mapping[str, Ed25519PublicKey] | None,
                   chain_scan: Callable[..., Any]) -> VerifyReport:
    """verify_store.verify_stored with the native scan `chain_scan` (auditrail_native.ChainScan)."""
    from .export import chain_section, stub_exclusion
    from .verify_store import _merge, _verify_chain, chain_checkpoints, chain_links, conflict_problems, event_conflicts

    # Every checkpoint of the tenant (its chains are its own), read before the scan: the seqs they cover end runs.
    # One a running emitter adds meanwhile is still verified (a row of the scan, or none); should it cover a seq
    # inside a run, its chain is read again event by event (RunConflict).
    checkpoints = chain_checkpoints(store, tenant, None)
    cuts = {chain_id: [c["covers_seq"] for c in items] for chain_id, items in checkpoints.items()}
    sql, params = scan_query(store, tenant, filters)
    records, (_, order, ranges, runs) = _scan(store, chain_scan(cuts), sql, params)
    by_chain: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        by_chain.setdefault(run[0], []).append(_run_record(run))
    keys: dict[str, str] = {}
    sections = {chain_id: chain_section(chain_id, *ranges[chain_id], checkpoints.get(chain_id, []), keys)
                for chain_id in order}
    links = chain_links(store, tenant, [(c, s["from_seq"], s["to_seq"]) for c, s in sections.items()],
                        stub_exclusion(filters))
    report = VerifyReport(trusted_keys=bool(trusted_keys))
    for chain_id, section in sections.items():
        chain_records = records.pop(chain_id, []) + by_chain.pop(chain_id, [])
        try:
            part = _verify_chain(chain_id, chain_records, section, links.get(chain_id, ()), trusted_keys)
        except RunConflict:  # event by event, in stream order (see the module docstring)
            sql, params = scan_query(store, tenant, filters, chain_id)
            alone, _ = _scan(store, chain_scan(cuts, runs=False), sql, params)
            part = _verify_chain(chain_id, alone.get(chain_id, []), section, links.get(chain_id, ()), trusted_keys)
        _merge(report, part)
    _merge(report, verify_records(_flat(records.values()), trusted_keys))
    report.problems.extend(conflict_problems(event_conflicts(store, tenant, filters)))
    report.chains = {c: report.chains[c] for c in [*order, *report.chains] if c in report.chains}  # export order
    return report


def _flat(lists: Iterable[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [item for items in lists for item in items]
