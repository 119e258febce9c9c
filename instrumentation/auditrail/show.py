"""``auditrail show``: audit events from OTLP/JSON-lines files as a table (or as flat JSON lines)."""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timezone
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table
from rich.text import Text

from auditrail import semconv
from auditrail.exporters.otlp_json import read_records

__all__ = ["format_time", "is_audit_event", "main_show", "render_table", "summarize_payload"]

_MAX_VALUE_CHARS = 40
_MISSING = "-"

# Control characters would let a payload drive the terminal (ANSI escapes; Rich passes ESC through) and
# bidi overrides would let it reorder what the reader sees; both are shown escaped instead.
_UNSAFE_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")

_OUTCOME_STYLES = {"failure": "bold red"}
_RISK_STYLES = {"high": "yellow", "critical": "bold red"}


def is_audit_event(record: dict[str, Any]) -> bool:
    """True for records of the ``auditrail`` scope or that carry an ``audit.event_id``."""
    return record.get("scope_name") == semconv.SCOPE_NAME or semconv.EVENT_ID in (record.get("attributes") or {})


def render_table(records: Iterable[dict[str, Any]], console: Console | None = None) -> int:
    """Print audit events (flat records from ``read_records``) as a table; return the number of rows."""
    console = console or Console()
    table = Table(header_style="bold")
    # Only the timestamp refuses to wrap: on a narrow terminal Rich squeezes no_wrap columns last, so more
    # of them would shrink the others to nothing. Every other cell folds onto extra lines instead.
    table.add_column("time", no_wrap=True)
    table.add_column("event", overflow="fold")
    table.add_column("tenant", overflow="fold")
    table.add_column("actor", overflow="fold")
    table.add_column("before -> after", overflow="fold", ratio=1)  # takes what the others leave
    table.add_column("source IP", overflow="fold")
    table.add_column("outcome/risk", overflow="fold")
    rows = 0
    for record in records:
        if not is_audit_event(record):
            continue
        attributes = record.get("attributes") or {}
        table.add_row(
            Text(format_time(record)),
            _text(record.get("event_name")),
            _text(attributes.get(semconv.TENANT)),
            _actor(attributes),
            Text(_safe(summarize_payload(attributes.get(semconv.PAYLOAD)))),
            _text(attributes.get(semconv.SOURCE_IP)),
            _outcome_risk(attributes),
        )
        rows += 1
    if rows:
        console.print(table)
    else:
        console.print(Text("no audit events", style="dim"))
    return rows


def format_time(record: dict[str, Any]) -> str:
    """The record's time (observed time when unset) as ISO-8601 UTC with milliseconds and ``Z``."""
    nanos = record.get("time_unix_nano") or record.get("observed_time_unix_nano") or 0
    if not nanos:
        return _MISSING
    # Integer arithmetic: a float of ns since 1970 has no room left for exact milliseconds.
    seconds, rest = divmod(int(nanos), 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, tz=timezone.utc)
    return f"{stamp:%Y-%m-%dT%H:%M:%S}.{rest // 1_000_000:03d}Z"


def summarize_payload(payload: Any) -> str:
    """``audit.payload`` compactly: ``k=v -> k=v`` for before/after edits, else ``k=v k=v`` of its keys."""
    if payload in (None, ""):
        return ""
    if isinstance(payload, str):
        try:
            payload = json.loads(payload)
        except ValueError:
            return _truncate(payload)  # not JSON: show what is there rather than nothing
    if not isinstance(payload, dict):
        return _compact_value(payload)
    if "before" in payload or "after" in payload:
        return f"{_compact_side(payload.get('before'))} -> {_compact_side(payload.get('after'))}"
    return _compact_pairs(payload)


def _compact_side(side: Any) -> str:
    """One side of a before/after pair; ``-`` when absent (a creation or a deletion)."""
    if side is None:
        return _MISSING
    if isinstance(side, dict):
        return _compact_pairs(side) or "{}"
    return _compact_value(side)


def _compact_pairs(values: dict[str, Any]) -> str:
    """``k=v`` pairs separated by spaces, each value truncated."""
    return " ".join(f"{key}={_compact_value(value)}" for key, value in values.items())


def _compact_value(value: Any) -> str:
    """A payload value as short text: bare strings unless quoting is needed to keep ``k=v`` unambiguous."""
    if isinstance(value, str):
        needs_quotes = value == "" or any(c.isspace() or c in '="' for c in value)
        text = json.dumps(value, ensure_ascii=False) if needs_quotes else value
    else:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    return _truncate(text)


def _truncate(text: str, limit: int = _MAX_VALUE_CHARS) -> str:
    """Cut ``text`` to ``limit`` characters, marking the cut with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _safe(text: str) -> str:
    """Make control and bidi characters visible as escapes so they cannot act on the terminal."""
    return _UNSAFE_CHARS.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def _text(value: Any) -> Text:
    """A plain (never markup-interpreted) cell; ``-`` for a missing value."""
    if value is None or value == "":
        return Text(_MISSING, style="dim")
    return Text(_safe(str(value)))


def _actor(attributes: dict[str, Any]) -> Text:
    """``enduser.id``, with `` (via impersonator)`` while impersonating."""
    cell = _text(attributes.get(semconv.ACTOR))
    impersonator = attributes.get(semconv.IMPERSONATOR)
    if impersonator:
        cell.append(f" (via {_safe(str(impersonator))})", style="magenta")
    return cell


def _outcome_risk(attributes: dict[str, Any]) -> Text:
    """``outcome/risk``, failure in red, high risk in yellow, critical in red."""
    outcome = str(attributes.get(semconv.OUTCOME) or _MISSING)
    risk = str(attributes.get(semconv.RISK) or _MISSING)
    return Text.assemble(
        (_safe(outcome), _OUTCOME_STYLES.get(outcome, "")),
        "/",
        (_safe(risk), _RISK_STYLES.get(risk, "")),
    )


# --------------------------------------------------------------------------------------------------
# Command line


def _matches_type(event_name: str | None, prefixes: Sequence[str]) -> bool:
    """Dotted-segment prefix match: ``billing`` matches ``billing.plan.change``, not ``billingx``."""
    if not prefixes:
        return True
    if not event_name:
        return False
    for prefix in prefixes:
        stem = prefix.rstrip(".")
        if not stem or event_name == stem or event_name.startswith(stem + "."):
            return True
    return False


def _select(
    records: Iterable[dict[str, Any]], types: Sequence[str], tenants: Sequence[str]
) -> Iterator[dict[str, Any]]:
    """Audit events matching every given filter (each filter's values are alternatives)."""
    for record in records:
        if not is_audit_event(record) or not _matches_type(record.get("event_name"), types):
            continue
        if tenants and (record.get("attributes") or {}).get(semconv.TENANT) not in tenants:
            continue
        yield record


def _json_default(value: Any) -> Any:
    """JSON for the one AnyValue kind JSON lacks: bytes, as base64 (as OTLP/JSON spells bytesValue)."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _parser() -> argparse.ArgumentParser:
    """The ``auditrail show`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="auditrail show",
        description="Show audit events from OTLP/JSON-lines files (the collector's file exporter format).",
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="OTLP/JSON-lines file(s), read in the order given")
    parser.add_argument(
        "--type",
        dest="types",
        action="append",
        default=[],
        metavar="PREFIX",
        help="only events named PREFIX or PREFIX.* (e.g. billing, admin.impersonation); repeatable",
    )
    parser.add_argument(
        "--tenant", dest="tenants", action="append", default=[], metavar="T", help="only this tenant; repeatable"
    )
    parser.add_argument("--json", action="store_true", help="print the matching records as JSON lines instead")
    return parser


def main_show(argv: list[str], console: Console | None = None, stderr: TextIO | None = None) -> int:
    """``auditrail show FILE... [--type PREFIX] [--tenant T] [--json]``; returns the exit code."""
    err = stderr or sys.stderr
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit_:  # argparse exits on --help and on usage errors; a CLI helper returns instead
        return exit_.code if isinstance(exit_.code, int) else 2

    problems = [_unreadable(path) for path in args.files]
    problems = [problem for problem in problems if problem]
    if problems:
        for problem in problems:
            print(f"auditrail show: error: {problem}", file=err)
        return 2

    def warn(path: str, lineno: int, message: str) -> None:
        print(f"auditrail show: warning: {path}:{lineno}: {message}", file=err)

    selected = _select(read_records(args.files, on_error=warn), args.types, args.tenants)
    try:
        if args.json:
            out = console.file if console is not None else sys.stdout
            for record in selected:
                out.write(json.dumps(record, ensure_ascii=False, default=_json_default) + "\n")
            out.flush()
        else:
            render_table(selected, console)
    except BrokenPipeError:
        # `auditrail show ... | head`: the reader left; that is not an error, and Python must not
        # complain again when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except OSError as error:  # e.g. a file removed or unreadable while reading
        print(f"auditrail show: error: {error}", file=err)
        return 2
    return 0


def _unreadable(path: str) -> str | None:
    """Why ``path`` cannot be read as a file, or None if it can."""
    if not os.path.exists(path):
        return f"no such file: {path}"
    if os.path.isdir(path):
        return f"is a directory, not a file: {path}"
    if not os.access(path, os.R_OK):
        return f"permission denied: {path}"
    return None
