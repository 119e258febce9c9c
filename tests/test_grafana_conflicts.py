"""Every dashboard query shows the first stored version of an event id, on a live store and a merged one.

A conflict is a later copy of an event id that differs (another timestamp, actor, risk...): audit_events
keeps the first stored (migration 0012), and the dashboards read it through audit_events_unique (FINAL). The
store here has 30 days of history (UUIDv7 ids of their own time, as emitters make them) merged into one part,
then conflicting copies and new events in parts left unmerged (merges stopped), as a store under steady
ingest has them: copies whose first version is in the merged part or in another unmerged part, copies that
move an event into or out of the 24 h range, and ids without UUIDv7 time (a UUIDv4, an id that is no UUID).
Each panel's query must return what it returns over a table holding only the first versions, built apart
from the store's dedup; then again after the merges have run.
"""

from __future__ import annotations

import random
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from grafana.queries import ALL, DASHBOARDS, EVENTS, expand  # noqa: E402

NOW = datetime.now(timezone.utc).replace(microsecond=0)
COLUMNS = ("event_id", "event_type", "timestamp", "tenant_id", "actor", "risk", "outcome", "source_ip", "payload",
           "service_name", "severity_text", "severity_number", "attributes", "inserted_at")
TENANTS = ("acme", "globex", "initech")
ZERO = uuid.UUID(int=0)


def uuid7(at: datetime, rng: random.Random) -> uuid.UUID:
    """A UUIDv7 carrying `at` (ms), as the instrumentation makes them."""
    ms = int(at.timestamp() * 1000)
    return uuid.UUID(int=(ms << 80) | (0x7 << 76) | (rng.getrandbits(12) << 64) | (0b10 << 62) | rng.getrandbits(62))


def row(event_id: uuid.UUID | str, at: datetime, tenant: str, *, event: str = "crawl.run", actor: str = "alice",
        risk: str = "low", outcome: str = "success", ip: str = "10.0.0.1") -> list:
    """One audit_events row; an id that is no UUID goes where the materialized view puts it (attributes)."""
    attributes = {"audit.event_id": event_id} if isinstance(event_id, str) else {}
    return [ZERO if isinstance(event_id, str) else event_id, event, at, tenant, f"{actor}@{tenant}.io", risk, outcome,
            ip, '{"after":{"v":1}}', "assistant", "WARN" if risk in ("high", "critical") else "INFO",
            13 if risk in ("high", "critical") else 9, attributes]


class Story:
    """The rows inserted, insert by insert, and the first version of each id (what every read must show)."""

    def __init__(self) -> None:
        self.rng = random.Random(19)
        self.inserts: list[list[list]] = []
        self.first: dict[tuple[str, str], list] = {}

    def insert(self, rows: list[list]) -> None:
        received = NOW + timedelta(seconds=len(self.inserts))  # each insert's receipt time, stated (ingest lag)
        rows = [r + [received] for r in rows]
        self.inserts.append(rows)
        for r in rows:
            key = (r[3], str(r[12].get("audit.event_id") or r[0]))
            self.first.setdefault(key, r)

    def history(self) -> list[uuid.UUID]:
        """30 days of events of three tenants (several granules per day), one insert; their ids."""
        rows = []
        for n in range(40_000):
            at = NOW - timedelta(days=30) + timedelta(seconds=n * 64.8)
            rows.append(row(uuid7(at, self.rng), at, TENANTS[n % 3], actor=f"user{n % 40}",
                            risk="high" if n % 97 == 0 else "low", outcome="failure" if n % 89 == 0 else "success",
                            ip=f"10.{n % 7}.0.{n % 5}"))
        self.insert(rows)
        return [r[0] for r in rows]


def conflicts(story: Story, history: list[uuid.UUID]) -> None:
    """Inserts after the merge, each its own part: copies that differ from the first version, and new events."""
    old = {r[0]: r for r in story.inserts[0]}
    day_ago = NOW - timedelta(hours=24)
    ten_days_ago = [i for i in history if old[i][2] < NOW - timedelta(days=10)][:20]
    in_range = [i for i in history if old[i][2] > day_ago + timedelta(hours=1)][:20]
    # 1. copies of events 10 days old stamped inside the 24 h range, high risk, failed, another actor and
    #    address: the first version (outside the range) wins, so none of them shows in a 24 h panel
    story.insert([row(i, NOW - timedelta(minutes=30 + k), old[i][3], event="policy.update", actor="mallory",
                      risk="critical", outcome="failure", ip="203.0.113.66") for k, i in enumerate(ten_days_ago)])
    # 2. copies of events inside the range stamped 10 days back: they stay where their first version is
    story.insert([row(i, NOW - timedelta(days=10, minutes=k), old[i][3], event="billing.plan.change",
                      actor="mallory", risk="high") for k, i in enumerate(in_range)])
    # 3. new events in the range (UUIDv7 of now, a UUIDv4, an id that is no UUID), then copies of them
    new = [(uuid7(NOW - timedelta(minutes=5 + k), story.rng), NOW - timedelta(minutes=5 + k)) for k in range(10)]
    new += [(uuid.UUID(int=story.rng.getrandbits(128), version=4), NOW - timedelta(minutes=40)),
            ("order-17", NOW - timedelta(minutes=41)), ("order-18", NOW - timedelta(days=3))]
    new = [(i, at, TENANTS[k % 3]) for k, (i, at) in enumerate(new)]
    story.insert([row(i, at, tenant, event="prompt.update", actor="alice", risk="high", ip="198.51.100.9")
                  for i, at, tenant in new])
    story.insert([row(i, at - timedelta(days=2), tenant, event="killswitch.disable", actor="mallory",
                      risk="critical", outcome="failure", ip="203.0.113.66") for i, at, tenant in new])
    story.insert([row(i, NOW - timedelta(minutes=1), tenant, event="killswitch.disable", actor="mallory",
                      risk="critical") for i, _, tenant in new[-3:]])
    # 4. one more copy of every kind in one part: a copy of a copy changes nothing either
    story.insert([row(i, NOW - timedelta(minutes=2), old[i][3], actor="mallory", risk="critical")
                  for i in ten_days_ago[:3] + in_range[:3]])


def panels():
    """(dashboard, title, sql, values) of every panel reading the events, with the variables they take."""
    for dashboard in DASHBOARDS:
        for values in ({"tenant": ALL, "event_type": ALL, "actor": ALL},
                       {"tenant": "globex", "event_type": ALL, "actor": ALL}):
            if dashboard.uid == "auditrail-tenant" and values["tenant"] == ALL:
                values = dict(values, tenant="acme")
            for p in dashboard.panels:
                if EVENTS in p.sql:
                    yield dashboard.uid, p.title, p.sql, values


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from auditrail_store.db import Store
    from auditrail_store.migrate import migrate

    story = Story()
    with Store.open(f"chdb://{tmp_path_factory.mktemp('conflicts')}/store") as opened:
        migrate(opened)
        history = story.history()
        opened.insert("audit_events", story.inserts[0], COLUMNS)
        opened.command("OPTIMIZE TABLE auditrail.audit_events FINAL")
        opened.command("SYSTEM STOP MERGES auditrail.audit_events")
        conflicts(story, history)
        for rows in story.inserts[1:]:
            opened.insert("audit_events", rows, COLUMNS)
        # what every read must show, apart from the store's dedup: the first version of each id, once
        opened.command("CREATE TABLE auditrail.first_versions AS auditrail.audit_events ENGINE = MergeTree ORDER BY ()")
        opened.insert("first_versions", list(story.first.values()), COLUMNS)
        yield opened, story


def results(store, source: str, window: tuple[datetime, datetime]) -> dict:
    """Each panel's rows (sorted: ties in ORDER BY may come either way) with `source` in place of the view."""
    out = {}
    for uid, title, sql, values in panels():
        expanded = expand(sql.replace(EVENTS, source), *window, values=values)
        out[(uid, title, values["tenant"])] = sorted(map(repr, store.query(expanded).result_rows))
    return out


WINDOWS = {"24h": (NOW - timedelta(hours=24), NOW), "30d": (NOW - timedelta(days=30, hours=1), NOW)}


@pytest.mark.parametrize("window", WINDOWS, ids=str)
def test_every_panel_shows_the_first_stored_versions_on_a_live_store_and_after_the_merge(store, window):
    opened, story = store
    parts = opened.query("SELECT count() FROM system.parts WHERE active AND database = 'auditrail'"
                         " AND table = 'audit_events'").result_rows[0][0]
    assert parts == len(story.inserts)  # the merged history and every later insert as its own part
    expected = results(opened, "auditrail.first_versions", WINDOWS[window])
    assert sum(map(len, expected.values())) > 100  # the panels have rows to compare
    assert results(opened, EVENTS, WINDOWS[window]) == expected
    # without the dedup the copies show: the comparison above can fail
    undeduplicated = results(opened, "auditrail.audit_events", WINDOWS[window])
    assert [k for k in expected if undeduplicated[k] != expected[k]]
    # the mallory copies never win: they are no first version
    assert not opened.query(f"SELECT count() FROM {EVENTS} WHERE actor LIKE 'mallory@%'").result_rows[0][0]


def test_the_merge_keeps_the_first_stored_versions(store):
    opened, story = store
    opened.command("SYSTEM START MERGES auditrail.audit_events")
    opened.command("OPTIMIZE TABLE auditrail.audit_events FINAL")
    assert opened.query("SELECT count() FROM auditrail.audit_events").result_rows[0][0] == len(story.first)
    for window in WINDOWS.values():
        assert results(opened, EVENTS, window) == results(opened, "auditrail.first_versions", window)
