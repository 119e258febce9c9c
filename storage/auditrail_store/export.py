"""One tenant's events as CSV, NDJSON or a self-verifying JSON document, streamed from the engine.

Every export is one query: :func:`db.select_events` (tenant scope, filters as bound parameters, each event
once) wrapped in a formatting query, streamed block by block. The engine writes every format: CSV leaves
ClickHouse as bytes and is passed through untouched (its text cells starting with ``= + - @``, tab or CR
get a leading ``'`` in the query, OWASP's rule against formula injection; ``csv_escape=False`` turns it off); for NDJSON and JSON it writes each event as one JSON
object (payload embedded as JSON), which Python only joins (:func:`_json_query`). Nothing holds more than
a few blocks, so a million events stream in flat memory.

Columns: ``event_id, event_type, timestamp, tenant_id, actor, source_ip, payload`` (DESIGN.md's seed
fields), then ``actor_type, reason, outcome, risk, impersonator_id, impersonation_id, approval_id`` and the
chain fields, then transport fields (``db.EVENT_COLUMNS``). Times are ISO-8601 UTC with nanoseconds and
``Z``. CSV carries the payload as its JSON text; NDJSON and JSON carry it as a JSON value.

The JSON document (``format: auditrail.export/v1``) is what a customer's auditor checks offline with
``auditrail verify EXPORT.json`` (verify_store.py): besides the events (each with ``payload_json``, the exact
text the chain hashed) it carries, per chain, the signed ``audit.checkpoint`` events that anchor it and
the public keys they name, and *link stubs* (seq, prev_hash, hash: no content) for the chain's events that
are not in this export: other tenants' events, or the tenant's own outside the filters. Chains are per
emitter process and interleave tenants; stubs let the verifier follow the hash links across the events it
may not see, while their content stays private. Last, ``conflicts``: the exported event ids the store received
in more than one version (verify_store.event_conflicts); the export shows the first stored of each, and
``verify`` reports each conflict.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any

import orjson

from .db import EVENT_COLUMNS, Store, StoreError, event_conditions, quote_identifier, select_events

__all__ = ["EXPORT_FORMAT", "FORMATS", "ExportFilters", "iso_time", "parse_time", "stream_export"]

FORMATS = ("csv", "json", "ndjson")
EXPORT_FORMAT = "auditrail.export/v1"
CHECKPOINT_EVENT = "audit.checkpoint"
_CHUNK = 1 << 20  # of CSV per read and HTTP chunk: 64 KiB chunks cost the service ~20% more CPU on 1M events
_ISO = "'%Y-%m-%dT%H:%i:%S.%fZ'"
# What a DateTime64(9, 'UTC') parameter holds (ClickHouse: 1900-01-01 .. 2262-04-11 23:47:16).
_TIME_MIN = datetime(1900, 1, 1, tzinfo=timezone.utc)
_TIME_MAX = datetime(2262, 4, 11, 23, 47, 16, tzinfo=timezone.utc)
# Engine settings of every export query: numbers as numbers, NULL as an empty CSV field. They travel in the
# query's own SETTINGS clause, not as per-call client settings: with those, clickhouse-connect's chDB backend
# cannot stream (it SETs them on the handle, runs the query whole into memory and restores them: ten engine
# calls and the full result in RAM); with the clause the engine streams block by block, on a server too.
_SETTINGS = {"output_format_json_quote_64bit_integers": 0, "format_csv_null_representation": "",
             "output_format_csv_crlf_end_of_line": 0, "formatdatetime_f_prints_scale_number_of_digits": 1}
# JSON and NDJSON (_json_query): '/' unescaped, as orjson writes it; tuple(x AS name) names its elements.
_JSON_SETTINGS = dict(_SETTINGS, output_format_json_escape_forward_slashes=0, enable_named_columns_in_function_tuple=1)


def _settings_clause(settings: dict[str, Any]) -> str:
    """`` SETTINGS name = value, ...`` of our own constants (never a caller's value)."""
    return " SETTINGS " + ", ".join(f"{name} = {value!r}" for name, value in settings.items())


@dataclass(frozen=True, slots=True)
class ExportFilters:
    """The optional filters of an export (since inclusive, until exclusive)."""

    since: datetime | None = None
    until: datetime | None = None
    event_type: str | None = None
    actor: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"since": iso_time(self.since), "until": iso_time(self.until), "type": self.event_type,
                "actor": self.actor}


def parse_time(text: str | None, what: str = "time") -> datetime | None:
    """ISO-8601 (``2026-01-31``, ``2026-01-31T12:00:00Z``, offsets) as an aware UTC datetime; naive is UTC."""
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text.strip().replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        try:
            value = datetime.combine(date.fromisoformat(text.strip()), datetime.min.time())
        except ValueError:
            raise StoreError(f"invalid {what} {text!r}: use ISO-8601, e.g. 2026-01-31 or 2026-01-31T12:00:00Z") from None
    try:
        value = value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
    except OverflowError:  # an offset past year 1 or 9999: far outside what the store holds either way
        return _TIME_MIN if value.year < 1000 else _TIME_MAX
    # A bound outside what a DateTime64(9) holds selects what the nearest one does (the engine would refuse
    # the value itself, after a 200 went out).
    return min(max(value, _TIME_MIN), _TIME_MAX)


def iso_time(value: datetime | None) -> str | None:
    """An aware datetime as ISO-8601 UTC with Z."""
    return None if value is None else value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


# Columns whose CSV cell cannot start with a formula character: typed values (a UUID's hex, ISO times, unsigned
# numbers) and the attributes map (JSON text: '{'). Every other column is text a sender chose.
_NOT_TEXT = frozenset({"event_id", "timestamp", "inserted_at", "chain_seq", "severity_number", "attributes"})
# OWASP "CSV Injection": a cell starting with = + - @, tab or carriage return is a formula to Excel, LibreOffice
# and Google Sheets. Such a cell gets a leading single quote (the spreadsheet's "this is text" mark); the engine's
# CSV already wraps every text cell in double quotes and doubles the quotes inside, OWASP's other two rules.
_FORMULA_START = r"'^[-=+@\\t\\r]'"


def _column_value(column: str, flat: bool, csv_escape: bool = False) -> str:
    """How a column of the canonical read is shown in an export (`flat`: CSV, where maps become JSON text;
    `csv_escape`: text cells that a spreadsheet would take for a formula get a leading ')."""
    name = quote_identifier(column)
    if column == "event_id":
        return f"toString({name})"
    if column in ("timestamp", "inserted_at"):
        return f"formatDateTime({name}, {_ISO}, 'UTC')"
    if column == "attributes" and flat:
        return f"toJSONString({name})"
    if csv_escape and column not in _NOT_TEXT:
        return f"if(match({name}, {_FORMULA_START}), concat('\\'', {name}), {name})"
    return name


def export_query(store: Store, tenant: str, filters: ExportFilters, columns: Sequence[str] = EVENT_COLUMNS,
                 flat: bool = False, csv_escape: bool = True) -> tuple[str, dict[str, Any]]:
    """(sql, parameters) of an export: the canonical read, its columns formatted for people and tools (`flat`:
    for CSV, formula-like text cells escaped unless `csv_escape` is False)."""
    inner, params = select_events(store, tenant, since=filters.since, until=filters.until,
                                  event_type=filters.event_type, actor=filters.actor, columns=columns)
    outer = ", ".join(f"{_column_value(c, flat, flat and csv_escape)} AS {quote_identifier(c)}" for c in columns)
    # No ORDER BY outside: the canonical read's order (the table's sort key, read in order) is kept.
    return f"SELECT {outer} FROM ({inner}){_settings_clause(_SETTINGS)}", params


# Where the engine's JSON and orjson's (which wrote every JSON export before the engine did) differ: in
# strings (the engine escapes U+2028/U+2029 and writes \u000B..\u001F in upper-case hex), and for a map
# holding a key twice (the engine writes both, orjson the last). Such events are finished in Python.
_RESPELL = (r"match(concat(_before, _after, _payload_string), '\\\\u(2028|2029|000[BEF]|001[A-F])')"
            " OR arrayUniq(mapKeys(attributes)) < length(attributes)")


def _json_query(store: Store, tenant: str, filters: ExportFilters, keep_text: bool,
                extra: Sequence[str] = ()) -> tuple[str, dict[str, Any]]:
    """(sql, parameters) of a JSON or NDJSON export: each event as one finished JSON object, by the engine.

    Columns: ``line``, ``respell``, then `extra`. ``line`` holds the event with its payload embedded as
    JSON (the emitted text as is, when valid) and, with `keep_text`, that text again as ``payload_json``.
    Where the engine would write the event differently from orjson (``respell`` = 1, rare: see _RESPELL),
    ``line`` is instead the event with its payload as a string beside ``_payload_valid``, which
    :func:`_reshape` finishes in Python: the export stays byte for byte what orjson wrote.

    The columns before and after ``payload`` are written as two named tuples (``{...}``), joined around
    it: a short expression, because the engine's analysis of a query grows with every function in it
    (chDB 26.9, CPU of a query with an empty result: the canonical read alone 9 ms, wrapped in a
    ``concat`` of one ``toJSONString`` per column 21 ms, in these two tuples 15 ms; a day of a tenant
    costs ~12 ms more to read).
    """
    inner, params = select_events(store, tenant, since=filters.since, until=filters.until,
                                  event_type=filters.event_type, actor=filters.actor)
    cut = EVENT_COLUMNS.index("payload")
    text = "concat(',\"payload_json\":', _payload_string)" if keep_text else "''"
    sql = (f"WITH {_json_object(EVENT_COLUMNS[:cut])} AS _before, {_json_object(EVENT_COLUMNS[cut + 1:])} AS _after,"
           " isValidJSON(ifNull(payload, '')) AS _payload_valid,"
           " ifNull(toJSONString(payload), 'null') AS _payload_string,"
           f" {_RESPELL} AS _respell"
           " SELECT concat("
           "   substring(_before, 1, -1), ',\"payload\":',"  # {...before without its '}', "payload":
           "   if(_payload_valid AND NOT _respell, assumeNotNull(payload), _payload_string),"
           "   ',', substring(_after, 2, -1),"  # , after without its braces
           f"  if(_respell, concat(',\"_payload_valid\":', toString(_payload_valid)), {text}), '}}') AS line,"
           " _respell AS respell" + "".join(f", {quote_identifier(c)}" for c in extra)
           + f" FROM ({inner}){_settings_clause(_JSON_SETTINGS)}")
    return sql, params


def _json_object(columns: Sequence[str]) -> str:
    """SQL of these columns of the canonical read as the text of one JSON object, in this order."""
    members = ", ".join(f"{_column_value(c, False)} AS {quote_identifier(c)}" for c in columns)
    return f"toJSONString(tuple({members}))"


def _event_blocks(store: Store, tenant: str, filters: ExportFilters, keep_text: bool,
                  extra: Sequence[str] = ()) -> Iterator[tuple[Sequence[bytes], list[Sequence[Any]]]]:
    """The export's events as JSON objects (bytes), an engine block at a time (never empty), with the
    `extra` columns beside them."""
    sql, params = _json_query(store, tenant, filters, keep_text, extra)
    with store.client.query_column_block_stream(sql, parameters=params, column_formats={"line": "bytes"}) as blocks:
        for lines, respell, *columns in blocks:
            if not lines:
                continue
            if any(respell):
                lines = [orjson.dumps(_reshape(line, keep_text)) if fix else line
                         for line, fix in zip(lines, respell, strict=True)]
            yield lines, columns


def _chunks(client: Any, sql: str, params: dict[str, Any], fmt: str) -> Iterator[bytes]:
    """The engine's output of one query, as it arrives."""
    stream = client.raw_stream(sql, parameters=params, fmt=fmt)
    try:
        while True:
            chunk = stream.read(_CHUNK)
            if not chunk:
                return
            yield chunk
    finally:
        stream.close()


def _reshape(line: bytes, keep_text: bool) -> dict[str, Any]:
    """An event whose payload is a string (``_payload_valid`` beside it) as an export event: payload
    embedded as JSON, and its exact text as ``payload_json`` if asked."""
    event = orjson.loads(line)
    payload = event.get("payload")
    valid = event.pop("_payload_valid", 0)
    if payload is not None and valid:
        if keep_text:
            event["payload_json"] = payload
        event["payload"] = orjson.Fragment(payload.encode())  # exactly the emitted JSON, not re-serialized
    elif keep_text:
        event["payload_json"] = payload
    return event


def stream_export(store: Store, tenant: str, filters: ExportFilters, fmt: str,
                  counter: list[int] | None = None, csv_escape: bool = True) -> Iterator[bytes]:
    """The export as byte chunks, from one streamed engine query; ``counter[0]`` counts events as they pass.
    CSV escapes text cells a spreadsheet would run as formulas (``_FORMULA_START``) unless `csv_escape` is
    False; JSON and NDJSON always carry the exact values (they are the verifiable formats).

    One query, not pages: streamed (see ``_SETTINGS``), the engine holds a few blocks of the read-in-order
    FINAL merge at a time, whatever the export's size (tests/test_store_export_scale.py measures it).
    """
    if fmt not in FORMATS:
        raise StoreError(f"unknown format {fmt!r}: one of {', '.join(FORMATS)}")
    count = counter if counter is not None else [0]
    if fmt == "csv":
        yield (",".join(EVENT_COLUMNS) + "\n").encode()
        sql, params = export_query(store, tenant, filters, flat=True, csv_escape=csv_escape)
        for chunk in _chunks(store.client, sql, params, "CSV"):
            count[0] += chunk.count(b"\n")  # approximate while streaming: a payload may hold a newline
            yield chunk
        return
    if fmt == "ndjson":
        for lines, _ in _event_blocks(store, tenant, filters, keep_text=False):
            count[0] += len(lines)
            yield b"\n".join(lines) + b"\n"
        return
    yield from _json_document(store, tenant, filters, count)


def _json_document(store: Store, tenant: str, filters: ExportFilters, count: list[int]) -> Iterator[bytes]:
    """The offline-verifiable JSON document, streamed: header, events, then chains, stubs and keys."""
    header = {"format": EXPORT_FORMAT, "tenant": tenant, "exported_at": iso_time(datetime.now(timezone.utc)),
              "filters": filters.to_dict(), "columns": list(EVENT_COLUMNS)}
    head = orjson.dumps(header)
    yield head[:-1] + b',"events":['
    ranges: dict[str, list[int]] = {}  # chain id -> [first seq, last seq] among the exported events
    separator = b""
    for lines, (chain_ids, seqs) in _event_blocks(store, tenant, filters, keep_text=True,
                                                  extra=("chain_id", "chain_seq")):
        for chain_id, seq in zip(chain_ids, seqs, strict=True):
            if chain_id is None or seq is None:
                continue
            span = ranges.get(chain_id)
            if span is None:
                ranges[chain_id] = [seq, seq]
            else:
                span[0] = min(span[0], seq)
                span[1] = max(span[1], seq)
        count[0] += len(lines)
        yield separator + b",".join(lines)
        separator = b","
    yield b"]"
    yield from _chain_sections(store, tenant, filters, ranges)
    yield b"}\n"


def _chain_sections(store: Store, tenant: str, filters: ExportFilters,
                    ranges: dict[str, list[int]]) -> Iterator[bytes]:
    """``chains`` (range and anchoring checkpoints), ``links`` (stubs) and ``public_keys`` of the document."""
    from .verify_store import chain_checkpoints, chain_links, event_conflicts

    checkpoints = chain_checkpoints(store, tenant, list(ranges))
    exclude = stub_exclusion(filters)
    keys: dict[str, str] = {}
    chains = [chain_section(chain_id, first_seq, last_seq, checkpoints.get(chain_id, []), keys)
              for chain_id, (first_seq, last_seq) in ranges.items()]
    yield b',"chains":' + orjson.dumps(chains)
    yield b',"links":['
    links = chain_links(store, tenant, [(c["chain_id"], c["from_seq"], c["to_seq"]) for c in chains], exclude)
    first = True
    for chain in chains:
        for stub in links.get(chain["chain_id"], ()):
            yield (b"" if first else b",") + orjson.dumps(stub)
            first = False
    yield b"]"
    yield b',"public_keys":' + orjson.dumps([{"key_id": k, "public_key": v} for k, v in keys.items()])
    yield b',"conflicts":' + orjson.dumps(event_conflicts(store, tenant, filters))


def exported_ids(store: Store, tenant: str, filters: ExportFilters,
                 columns: Sequence[str] = ("event_id",)) -> tuple[str, dict[str, Any]]:
    """(sql, parameters) of the ids of the events an export holds (chain_links leaves them out), or of
    other `columns` of them."""
    return select_events(store, tenant, since=filters.since, until=filters.until, event_type=filters.event_type,
                         actor=filters.actor, columns=columns)


def stub_exclusion(filters: ExportFilters) -> tuple[str, dict[str, Any]] | None:
    """chain_links' `exclude` for this export: (the condition a stored row of the tenant meets when the export
    holds it, parameters); None when it is unfiltered: it then holds every event of the tenant, and stubs stand
    only for the tenant's own events, so no stub query needs to run."""
    conditions, params = event_conditions(since=filters.since, until=filters.until, event_type=filters.event_type,
                                          actor=filters.actor)
    return (" AND ".join(conditions), params) if conditions else None


def chain_section(chain_id: str, first_seq: int, last_seq: int, checkpoints: list[dict[str, Any]],
                  keys: dict[str, str]) -> dict[str, Any]:
    """A chain of the document: the exported seq range, extended to the first checkpoint covering its last
    event, and the checkpoints (verify_store.chain_checkpoints) anchoring it; their public keys go to `keys`."""
    anchors = []
    through = last_seq
    for checkpoint in checkpoints:
        covered = checkpoint["covers_seq"]
        if checkpoint["chain_seq"] < first_seq:
            continue
        anchors.append(checkpoint["event"])
        if checkpoint["public_key"]:
            keys[checkpoint["key_id"]] = checkpoint["public_key"]
        if covered >= last_seq:  # the first checkpoint that covers the last exported event closes the range
            through = max(through, checkpoint["chain_seq"])
            break
    return {"chain_id": chain_id, "from_seq": first_seq, "to_seq": through, "checkpoints": anchors}


def _format_for(path: str, given: str | None) -> str:
    if given:
        return given
    lowered = path.lower()
    if lowered.endswith(".csv"):
        return "csv"
    if lowered.endswith((".ndjson", ".jsonl")):
        return "ndjson"
    return "json"


def main_export(args: Any) -> int:
    """`auditrail export`: stream to --out (atomically: a temp file renamed at the end), with a progress bar."""
    import os
    import sys
    import tempfile

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .admin import open_store_or_service

    fmt = _format_for(args.out, args.format)
    filters = ExportFilters(parse_time(args.since, "since"), parse_time(args.until, "until"),
                            args.event_type or None, args.actor or None)
    store, service = open_store_or_service(args.url)
    to_stdout = args.out == "-"
    if to_stdout:
        out, tmp = sys.stdout.buffer, None
    else:
        directory = os.path.dirname(os.path.abspath(args.out))
        fd, tmp = tempfile.mkstemp(prefix=".export.", dir=directory)
        out = os.fdopen(fd, "wb")
    counter = [0]
    show = not args.no_progress and not to_stdout
    progress = Progress(TextColumn("exporting {task.fields[tenant]}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("events"), TimeElapsedColumn(), transient=False, disable=not show,
                        console=None if not show else __import__("rich.console").console.Console(stderr=True))
    try:
        with progress:
            if service is not None:
                params = {k: v for k, v in {"since": args.since, "until": args.until, "type": args.event_type,
                                            "actor": args.actor, "format": fmt}.items() if v}
                if fmt == "csv" and args.no_csv_escape:
                    params["csv_escape"] = "false"
                task = progress.add_task("export", total=None, tenant=args.tenant)
                with service.stream(f"/v1/tenants/{_quote(args.tenant)}/events", params, "the export",
                                    f"{args.out} not written") as chunks:
                    for chunk in chunks:
                        out.write(chunk)
                        counter[0] += chunk.count(b"\n") if fmt != "json" else 0
                        progress.update(task, completed=counter[0])
            else:
                with store:
                    total = count_events(store, args.tenant, filters)
                    task = progress.add_task("export", total=total, tenant=args.tenant)
                    for chunk in stream_export(store, args.tenant, filters, fmt, counter,
                                               csv_escape=not args.no_csv_escape):
                        out.write(chunk)
                        progress.update(task, completed=min(counter[0], total))
                    counter[0] = total
        if tmp is not None:
            out.close()
            os.replace(tmp, args.out)
            tmp = None
    finally:
        if tmp is not None:
            out.close()
            os.unlink(tmp)
    if not to_stdout:
        counted = f"{counter[0]} events" if service is None or fmt != "json" else "events"
        print(f"exported {counted} of tenant {args.tenant!r} to {args.out} ({fmt})", file=sys.stderr)
    return 0


def _quote(tenant: str) -> str:
    from urllib.parse import quote

    return quote(tenant, safe="")


def count_events(store: Store, tenant: str, filters: ExportFilters) -> int:
    """How many events an export of these filters holds (each event once)."""
    sql, params = exported_ids(store, tenant, filters)
    return int(store.query(f"SELECT count() FROM ({sql})", params).result_rows[0][0])
