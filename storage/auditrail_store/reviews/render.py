"""The review as a person reads it: charts (matplotlib), HTML (Jinja2) and PDF (fpdf2).

Both documents come from one outline (:func:`outline`: sections of sentences and tables), so HTML and PDF
say the same things. PDF: fpdf2, pure Python with no system libraries (weasyprint needs pango and
cairo); its text is real text (extractable, searchable), in DejaVu Sans, the font matplotlib ships, so
any Unicode in an event prints. Charts are PNGs, embedded in both.
"""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

__all__ = ["charts", "outline", "write_html", "write_pdf"]

_templates = Environment(loader=FileSystemLoader(Path(__file__).with_name("templates")),
                         autoescape=select_autoescape(default=True, default_for_string=True))


@dataclass
class Table:
    """A table of the report: headers and rows of text."""

    headers: list[str]
    rows: list[list[str]]
    widths: list[float] | None = None  # relative column widths in the PDF
    caption: str = ""  # a sentence printed just above the table


@dataclass
class Section:
    """A titled part of the report: sentences, then tables."""

    title: str
    lines: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    charts: list[str] = field(default_factory=list)  # names of charts()


def _short(value: Any, size: int = 80) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= size else text[: size - 1] + "…"


def _when(text: str | None) -> str:
    return (text or "")[:19].replace("T", " ")


def _duration(seconds: int | None) -> str:
    if seconds is None:
        return "?"
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours}h {rest // 60:02d}m" if hours else f"{rest // 60}m {rest % 60:02d}s"


def _more(total: int, shown: int) -> list[str]:
    return [f"Showing the first {shown} of {total}: the month's export has them all."] if total > shown else []


def _event_rows(events: list[dict[str, Any]]) -> list[list[str]]:
    return [[_when(e["timestamp"]), e["event_type"], e["actor"] or "", e["risk"] or "", e["outcome"] or "",
             _short(e["reason"], 60), _short(e["payload"], 90)] for e in events]


EVENT_HEADERS = ["time (UTC)", "event", "actor", "risk", "outcome", "reason", "payload"]
EVENT_WIDTHS = [14, 14, 13, 7, 7, 18, 27]


def outline(review: dict[str, Any]) -> list[Section]:
    """The report's sections, in reading order."""
    volume, high, imp = review["volume"], review["high_risk"], review["impersonation"]
    appr, anom, integ = review["approvals"], review["anomalies"], review["integrity"]
    sections = []

    change = volume["total"] - volume["previous_total"]
    s = Section("1. Volume", [f"{volume['total']} events this month, {volume['previous_total']} the month before "
                             f"({'+' if change >= 0 else ''}{change})."], charts=["per_day", "per_type"])
    s.tables.append(Table(["event type", "this month", "previous month", "failures"],
                          [[t["event_type"], str(t["count"]), str(t["previous"]), str(t["failures"])]
                           for t in volume["per_type"]], [46, 18, 18, 18]))
    sections.append(s)

    s = Section("2. High and critical actions",
                [f"{high['total']} high or critical actions."] + _more(high["total"], len(high["events"])))
    s.tables.append(Table(EVENT_HEADERS, _event_rows(high["events"]), EVENT_WIDTHS))
    if high["kill_switches"]:
        s.tables.append(Table(["feature", "scope", "disabled (UTC)", "by", "reason", "re-enabled", "disabled for"],
                              [[k["feature"] or "", k["scope"] or "", _when(k["disabled_at"]), k["by"] or "",
                                _short(k["reason"], 50),
                                _when(k["enabled_at"]) if k["enabled_at"] else "still disabled at month end",
                                _duration(k["disabled_seconds"])] for k in high["kill_switches"]],
                              [12, 8, 15, 14, 21, 16, 14], "Kill switches, and how long each stayed disabled:"))
    sections.append(s)

    s = Section("3. Impersonation", [f"{len(imp['sessions'])} sessions, {imp['total']} events in or about them."])
    for item in imp["sessions"]:
        caption = (f"Session {item['session']}: {item['impersonator'] or '?'} as {item['impersonated'] or '?'}, "
                       f"from {_when(item['started_at']) or 'before the month'} to "
                       f"{_when(item['ended_at']) or 'not ended in the month'} ({_duration(item['seconds'])}), "
                   f"{len(item['actions'])} actions inside.")
        s.tables.append(Table(EVENT_HEADERS, _event_rows(item["actions"]), EVENT_WIDTHS, caption))
    sections.append(s)

    by_state = appr["by_state"]
    s = Section("4. Approvals", [f"{len(appr['items'])} requested: {by_state['granted'] + by_state['used']} granted "
                                 f"({by_state['used']} used), {by_state['denied']} denied, {by_state['expired']} "
                                 f"expired, {by_state['pending']} pending."])
    if appr["items"]:
        s.tables.append(Table(["requested (UTC)", "action", "target", "requester", "state", "decided by", "reason"],
                              [[_when(a["created_at"]), a["action"], _short(a["target"], 40), a["requester"],
                                a["state"], a["decided_by"] or ", ".join(a["approved_by"] or []),
                                _short(a["reason"], 50)] for a in appr["items"]], [14, 14, 16, 14, 9, 14, 19]))
    if not appr["required"]:
        s.lines.append("No audit.yaml was given (--config), so actions that ran without a required approval "
                       "were not checked.")
    else:
        conditional = [r for r in appr["required"] if r["when"]]
        s.lines.append("Actions the configuration puts behind an approval: "
                       + ", ".join(r["event"] + (f" (when {r['when']})" if r["when"] else "") for r in appr["required"])
                       + ".")
        missing = appr["without_approval"]
        if missing["total"] == 0:
            s.lines.append("Actions that ran without a required approval: none.")
        else:
            s.lines.append(f"{missing['total']} actions of those types ran without an approval id"
                           + (" (a conditional rule applies: check each against its condition)" if conditional else "")
                           + ":")
            s.tables.append(Table(EVENT_HEADERS, _event_rows(missing["events"]), EVENT_WIDTHS))
    sections.append(s)

    s = Section("5. Anomalies worth a look")
    hours, options = anom["outside_hours"], review["options"]
    if not hours["checked"]:
        caption = (f"Outside usual hours: not checked (the 90 days before the month hold {hours['baseline_events']} "
                   "events; too few to say what is usual).")
    else:
        caption = (f"Outside usual hours: {hours['total']} actions by people at an hour (UTC) that held under "
                   f"{options['usual_hour_share']:.0%} of the previous 90 days' events (usual hours: "
                   f"{', '.join(f'{h:02d}' for h in hours['usual_hours'])}).")
    s.tables.append(Table(EVENT_HEADERS, _event_rows(hours["events"]), EVENT_WIDTHS, caption))
    s.tables.append(Table(["actor", "first seen (UTC)", "events this month"],
                          [[a["actor"], _when(a["first_seen"]), str(a["events"])] for a in anom["new_actors"]],
                          [50, 30, 20], f"Actors never seen before this month: {len(anom['new_actors'])}."))
    s.tables.append(Table(["actor", "minute (UTC)", "events", "types"],
                          [[b["actor"], _when(b["minute"]), str(b["events"]), b["types"]] for b in anom["bursts"]],
                          [30, 20, 10, 40], f"Bursts (one actor, {options['burst_per_minute']}+ events in one "
                                            f"minute): {len(anom['bursts'])}."))
    s.tables.append(Table(["actor", "event", "failures", "first (UTC)", "last (UTC)"],
                          [[f["actor"], f["event_type"], str(f["failures"]), _when(f["first"]), _when(f["last"])]
                           for f in anom["repeated_failures"]], [25, 25, 10, 20, 20],
                          f"Repeated failures ({options['failures_per_hour']}+ failures of one action by one actor "
                          f"in an hour): {len(anom['repeated_failures'])}."))
    cfg = anom["config_changes"]
    s.tables.append(Table(EVENT_HEADERS, _event_rows(cfg["events"]), EVENT_WIDTHS,
                          f"Changes to the audit configuration: {cfg['total']} events, {len(cfg['retention'])} "
                          f"retention changes, {len(cfg['tokens'])} API tokens created or revoked."))
    s.tables.append(Table(["changed (UTC)", "days", "legal hold", "by"],
                          [[_when(r["changed_at"]), str(r["days"]), "on" if r["hold"] else "off", r["by"]]
                           for r in cfg["retention"]], [30, 15, 15, 40]))
    s.tables.append(Table(["token", "scope", "created (UTC)", "by", "revoked (UTC)", "by"],
                          [[t["token_id"], t["scope"], _when(t["created_at"]), t["created_by"],
                            _when(t["revoked_at"]), t["revoked_by"]] for t in cfg["tokens"]],
                          [18, 10, 18, 18, 18, 18]))
    sections.append(s)

    chains = integ.get("chains", [])
    if integ.get("mode") == "quick":
        summary = (f"Chain shape of the month's events (quick: seq gaps, repeats and checkpoint cover counted in the "
                   f"engine; no hash recomputed, no signature checked: `auditrail verify --tenant` or the evidence "
                   f"pack does): {'OK' if integ.get('ok') else 'PROBLEMS'} ({len(chains)} chains).")
    else:
        summary = (f"Chain verification of the month's events: {'OK' if integ.get('ok') else 'PROBLEMS'} "
                   f"({len(chains)} chains; hashes recomputed; checkpoint signatures checked with "
                   f"{'pinned keys' if integ.get('trusted_keys') else 'the keys the checkpoints carry'}).")
    s = Section("6. Integrity", [summary])
    s.tables.append(Table(["chain", "events", "seq", "anchored through", "unanchored tail", "key ids", "result"],
                          [[c["chain_id"], str(c["events"]), f"{c['first_seq']}-{c['last_seq']}",
                            str(c["anchored_through"]),
                            str(max(0, (c["last_seq"] or 0) - c["anchored_through"])),
                            ", ".join(c["key_ids"]), "OK" if c["ok"] else f"{len(c['problems'])} problems"]
                           for c in chains], [24, 9, 13, 12, 12, 18, 12]))
    problems: dict[tuple[str, str, str, str], list[str]] = {}  # alike problems on one row, with where they are
    for p in [p for c in chains for p in c["problems"]] + integ.get("problems", []):
        key = (p["kind"], p["severity"], p["chain_id"] or "", p["message"])
        problems.setdefault(key, []).append(str(p["seq"]) if p["seq"] is not None else "?")
    if problems:
        s.tables.append(Table(["kind", "severity", "chain", "count", "where (seq)", "message"],
                              [[k, sev, chain, str(len(where)), _short(", ".join(where), 60), _short(message, 120)]
                               for (k, sev, chain, message), where in problems.items()], [12, 8, 18, 6, 16, 40]))
    else:
        s.lines.append("No gaps, edits, reorderings or truncations found.")
    sections.append(s)

    ret = review["retention"]
    s = Section("7. Retention and legal hold",
                [f"Retention: {ret['days']} days{' (set below the default with --force)' if ret['forced'] else ''}; "
                 f"legal hold {'ON: nothing of this tenant expires' if ret['legal_hold'] else 'off'}"
                 + (f"; last changed {_when(ret['changed_at'])} by {ret['changed_by']}." if ret["changed_at"]
                    else " (the default contract).")])
    sections.append(s)

    s = Section("8. Sign-off")
    if review["signoffs"]:
        for e in review["signoffs"]:
            p = e["payload"] if isinstance(e["payload"], dict) else {}
            s.lines.append(f"Signed {_when(e['timestamp'])} by {e['actor']}: report SHA-256 "
                           f"{p.get('report_sha256', '?')}; notes: {p.get('notes', '')}")
    else:
        s.lines.append("Not signed yet: `auditrail review sign --month {m} --tenant {t} --reviewer NAME --notes TEXT`, "
                       "or the /reviews page.".format(m=review["month"], t=review["tenant"]))
    sections.append(s)
    return sections


def charts(review: dict[str, Any]) -> dict[str, bytes]:
    """PNG charts: events per day (this month over the previous one) and per type (both months)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    volume = review["volume"]
    out: dict[str, bytes] = {}
    fig, ax = plt.subplots(figsize=(8, 2.8), dpi=120)
    this = [(date.fromisoformat(d["day"]).day, d["count"]) for d in volume["per_day"]]
    before = [(date.fromisoformat(d["day"]).day, d["count"]) for d in volume["previous_per_day"]]
    if before:
        ax.plot([d for d, _ in before], [c for _, c in before], color="#9aa5b1", marker=".", label="previous month")
    ax.bar([d for d, _ in this], [c for _, c in this], color="#2f6fb0", label=review["month"])
    ax.set_xlabel("day of month (UTC)")
    ax.set_ylabel("events")
    ax.set_title(f"Events per day, {review['tenant']}, {review['month']}")
    ax.set_xlim(0.3, 31.7)
    ax.legend(loc="upper right", fontsize=8)
    out["per_day"] = _png(fig)
    types = volume["per_type"][:12]
    fig, ax = plt.subplots(figsize=(8, max(2.2, 0.8 + 0.32 * len(types))), dpi=120)
    names = [t["event_type"] for t in types][::-1]
    positions = range(len(names))
    ax.barh([p + 0.2 for p in positions], [t["count"] for t in types][::-1], height=0.4, color="#2f6fb0",
            label=review["month"])
    ax.barh([p - 0.2 for p in positions], [t["previous"] for t in types][::-1], height=0.4, color="#9aa5b1",
            label="previous month")
    ax.set_yticks(list(positions), names, fontsize=8)
    ax.set_xlabel("events")
    ax.set_title("Events per type" + (" (the 12 busiest)" if len(volume["per_type"]) > 12 else ""))
    ax.legend(loc="lower right", fontsize=8)
    out["per_type"] = _png(fig)
    return out


def _png(fig: Any) -> bytes:
    from matplotlib import pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def _title(review: dict[str, Any]) -> str:
    who = "global (*) actions" if review["tenant"] == "*" else f"tenant {review['tenant']}"
    return f"Monthly audit log review: {who}, {review['month']}"


def write_html(review: dict[str, Any], sections: list[Section], images: dict[str, bytes], path: Path) -> None:
    """The HTML report, self-contained (charts inline as data: URLs)."""
    inline = {name: base64.b64encode(png).decode() for name, png in images.items()}
    html = _templates.get_template("report.html").render(title=_title(review), review=review, sections=sections,
                                                          images=inline)
    path.write_text(html, encoding="utf-8")


def write_pdf(review: dict[str, Any], sections: list[Section], images: dict[str, bytes], path: Path) -> None:
    """The PDF report: A4 landscape, a title, the sections with their tables, page numbers."""
    from fpdf import FPDF
    from fpdf.fonts import FontFace
    from matplotlib import get_data_path

    fonts = Path(get_data_path()) / "fonts" / "ttf"
    title = _title(review)

    class Report(FPDF):
        def footer(self) -> None:
            self.set_y(-10)
            self.set_font("dejavu", size=7)
            self.set_text_color(110)
            self.cell(0, 5, f"{title} · generated {_when(review['generated_at'])} UTC · page {self.page_no()}"
                            f"/{{nb}}", align="C")

    pdf = Report(orientation="landscape", format="A4")
    pdf.set_creator("auditrail review")
    pdf.set_title(title)
    pdf.add_font("dejavu", "", str(fonts / "DejaVuSans.ttf"))
    pdf.add_font("dejavu", "B", str(fonts / "DejaVuSans-Bold.ttf"))
    pdf.set_auto_page_break(True, margin=14)
    pdf.add_page()
    pdf.set_font("dejavu", "B", 16)
    pdf.multi_cell(0, 9, new_x="LMARGIN", new_y="NEXT", text=title)
    pdf.set_font("dejavu", size=9)
    pdf.multi_cell(0, 5, new_x="LMARGIN", new_y="NEXT", text=f"Period {review['period']['start']} to {review['period']['end']} (exclusive). "
                         f"Generated {review['generated_at']}.")
    head = FontFace(emphasis="BOLD", fill_color=(225, 232, 240))
    for section in sections:
        if pdf.get_y() > pdf.h - 50:
            pdf.add_page()
        pdf.ln(3)
        pdf.set_font("dejavu", "B", 12)
        pdf.multi_cell(0, 7, new_x="LMARGIN", new_y="NEXT", text=section.title)
        pdf.set_font("dejavu", size=9)
        for line in section.lines:
            pdf.multi_cell(0, 5, new_x="LMARGIN", new_y="NEXT", text=line)
        for name in section.charts:
            if pdf.get_y() > pdf.h - 90:
                pdf.add_page()
            pdf.image(io.BytesIO(images[name]), w=200)
        for table in section.tables:
            if table.caption:
                pdf.multi_cell(0, 5, new_x="LMARGIN", new_y="NEXT", text=table.caption)
            if not table.rows:
                continue
            pdf.ln(1)
            pdf.set_font("dejavu", size=7)
            with pdf.table(col_widths=table.widths, headings_style=head, line_height=4,
                           text_align="LEFT", first_row_as_headings=True) as grid:
                grid.row(table.headers)
                for row in table.rows:
                    grid.row([str(cell) for cell in row])
            pdf.set_font("dejavu", size=9)
    pdf.output(str(path))
