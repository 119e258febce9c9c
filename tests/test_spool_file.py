"""DiskSpool: the durable on-disk spool (real files, real subprocesses, a real fork)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from auditrail.chain import Chain
from auditrail.disk_spool import journal as journal_module
from auditrail.disk_spool import reader as reader_module
from auditrail.disk_spool import segments as segments_module
from auditrail.events import AuditEvent
from auditrail.spool_file import DiskSpool, SpoolFullError, SpoolWriteError, decode_event, encode_event

SRC = str(Path(__file__).resolve().parents[1] / "instrumentation")


def make_event(i: int, **kw: object) -> AuditEvent:
    return AuditEvent("prompt.update", tenant=f"t{i % 3}", actor=f"user{i}", payload='{"i": %d}' % i, **kw)


def dirs(spool_dir: Path) -> list[Path]:
    return sorted(p for p in spool_dir.iterdir() if p.is_dir())


def segments(d: Path) -> list[Path]:
    return sorted(d.glob("*.seg"))


def drain(spool: DiskSpool, batch: int = 100) -> list[AuditEvent]:
    out: list[AuditEvent] = []
    while True:
        got = spool.peek(batch)
        if not got:
            return out
        out.extend(got)
        spool.ack(len(got))


def run_child(code: str, *args: str, **kw: object) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], stdout=subprocess.PIPE,
                            stdin=subprocess.PIPE, text=True, env=env, **kw)  # type: ignore[call-overload]


def native_or_twin(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, module: ModuleType,
                   name: str) -> str:
    """Run with `module`'s native function `name` (when built: else skip) or, for "python", its Python twin."""
    if request.param == "python":
        monkeypatch.setattr(module, name, None)
    elif getattr(module, name) is None:
        pytest.skip("the native core is not built")
    return request.param


@pytest.fixture(params=["native", "python"])
def reader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Records read back by the native core (when built) and by _scan + decode_event: the same events come back."""
    return native_or_twin(request, monkeypatch, reader_module, "_native_read")


# --- encoding -------------------------------------------------------------------------------------


def test_round_trip_every_field(tmp_path: Path) -> None:
    full = AuditEvent(
        "admin.impersonation.start", tenant="acme", actor="alice", actor_type="admin",
        payload='{"impersonated": "bob", "n": [1, 2]}', source_ip="10.0.0.1", reason="ticket 42",
        outcome="failure", risk="critical", impersonator="root", impersonation_id="imp-1", approval_id="ap-9",
        trace_id=(1 << 128) - 1, span_id=(1 << 64) - 1, trace_flags=1,
        extra={"audit.chain.id": "c1", "audit.chain.seq": 7, "nested": {"a": [1, "x", None, True, 1.5]}},
    )
    minimal = AuditEvent("crawl.run")
    assert decode_event(encode_event(full)) == full
    with DiskSpool.open(tmp_path) as spool:
        spool.append(full)
        spool.append(minimal)
        assert spool.peek(10) == [full, minimal]
    with DiskSpool.open(tmp_path) as spool:  # read back from the file (adopted), not from memory
        assert spool.peek(10) == [full, minimal]


def test_pwrite_segments_where_mapping_is_unsafe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(segments_module, "_MAPPABLE_FS", frozenset())  # as on btrfs or ZFS
    events = [make_event(i) for i in range(300)]
    with DiskSpool.open(tmp_path, segment_bytes=4096) as spool:
        assert not spool._writer.mapped  # noqa: SLF001
        for ev in events:
            spool.append(ev)
        assert len(segments(Path(spool.path))) >= 5
        assert drain(spool, 64) == events
        for ev in events:
            spool.append(ev)
    with DiskSpool.open(tmp_path) as spool:  # adopted: read back from the files
        assert drain(spool) == events


def test_unencodable_extra_raises(tmp_path: Path) -> None:
    with DiskSpool.open(tmp_path) as spool:
        with pytest.raises(SpoolWriteError, match="cannot encode"):
            spool.append(AuditEvent("x.y", extra={"obj": object()}))
        assert len(spool) == 0


# --- peek / ack -----------------------------------------------------------------------------------


def test_peek_ack_like_memory_spool(tmp_path: Path) -> None:
    events = [make_event(i) for i in range(10)]
    with DiskSpool.open(tmp_path) as spool:
        for n, ev in enumerate(events, 1):
            assert spool.append(ev) == n
        assert spool.peek(3) == events[:3]
        assert spool.peek(3) == events[:3]  # peek does not remove
        spool.ack(2)
        assert len(spool) == 8
        assert spool.peek(100) == events[2:]
        spool.ack(100)
        assert len(spool) == 0 and spool.peek(5) == []


def test_ack_persists_across_reopen(tmp_path: Path) -> None:
    events = [make_event(i) for i in range(50)]
    spool = DiskSpool.open(tmp_path)
    for ev in events:
        spool.append(ev)
    spool.peek(20)
    spool.ack(20)
    spool.close()
    spool = DiskSpool.open(tmp_path)
    assert len(spool) == 30
    assert drain(spool, 7) == events[20:]
    spool.close()
    assert dirs(tmp_path) == []  # everything acknowledged: nothing left behind
    with DiskSpool.open(tmp_path) as spool:
        assert len(spool) == 0


def test_read_back_from_disk_beyond_memory_window(tmp_path: Path, reader: str) -> None:
    events = [make_event(i) for i in range(20_000)]  # more than the in-memory window
    with DiskSpool.open(tmp_path, segment_bytes=64 * 1024) as spool:
        for ev in events[:15_000]:
            spool.append(ev)
        got = spool.peek(1000)
        spool.ack(1000)
        for ev in events[15_000:]:
            spool.append(ev)
        got = drain(spool, 512)
        assert [e.event_id for e in got] == [e.event_id for e in events[1000:]]
        assert len(spool) == 0


def test_appends_from_threads_while_the_write_lock_is_busy(tmp_path: Path) -> None:
    """An audited call that finds the write lock busy polls it (no blocked wait: that is a lock convoy, measured
    by benchmarks/delivery.py): it goes on once the holder let go, and every append lands once, in order."""
    with DiskSpool.open(tmp_path, segment_bytes=64 * 1024) as spool:
        spool._lock.acquire()  # noqa: SLF001 - as the drain or the sync pass holds it
        done = threading.Event()
        first = threading.Thread(target=lambda: (spool.append(make_event(0)), done.set()))
        first.start()
        assert not done.wait(0.2)  # waits for the lock ...
        assert len(spool) == 0
        spool._lock.release()  # noqa: SLF001
        assert done.wait(10)  # ... and takes it once free
        first.join()

        def burst(t: int) -> None:
            for i in range(1, 1001):
                spool.append(make_event(i, reason=f"{t}:{i}"))

        def holder() -> None:
            for _ in range(200):
                with spool._lock:  # noqa: SLF001
                    pass
        threads = [threading.Thread(target=burst, args=(t,)) for t in range(4)] + [threading.Thread(target=holder)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        got = [e.reason for e in drain(spool, 333)]
    assert got[0] is None and len(got) == 4001
    for t in range(4):
        assert [r for r in got[1:] if r.startswith(f"{t}:")] == [f"{t}:{i}" for i in range(1, 1001)]


# --- segments ---------------------------------------------------------------------------------------


def test_segments_rotate_and_are_deleted_when_acknowledged(tmp_path: Path) -> None:
    events = [make_event(i) for i in range(300)]
    with DiskSpool.open(tmp_path, segment_bytes=4096) as spool:
        own = Path(spool.path)
        for ev in events:
            spool.append(ev)
        segs = segments(own)
        assert len(segs) >= 5
        assert all(s.stat().st_size <= 4096 for s in segs)
        spool.peek(150)
        spool.ack(150)
        left = segments(own)
        assert segs[0] not in left and len(left) < len(segs)
        # finished segments are cut to their records; the one being written is preallocated whole
        in_current = spool.disk_bytes - sum(s.stat().st_size for s in left[:-1])
        assert 0 < in_current <= left[-1].stat().st_size == 4096
        assert drain(spool) == events[150:]
        assert len(segments(own)) == 1


# --- crash safety -----------------------------------------------------------------------------------

CHILD_BURST = """
import sys
from auditrail.events import AuditEvent
from auditrail.spool_file import DiskSpool
spool = DiskSpool.open(sys.argv[1], mode=sys.argv[2], segment_bytes=int(sys.argv[3]))
i = 0
while True:
    ev = AuditEvent("prompt.update", tenant="t", actor="a", payload='{"i": %d, "pad": "%s"}' % (i, "x" * 200))
    spool.append(ev)
    print(ev.event_id, flush=True)
    i += 1
"""


@pytest.mark.parametrize("mode", ["durable", "fail_closed"])
def test_kill_9_mid_burst_loses_nothing_returned(tmp_path: Path, mode: str) -> None:
    child = run_child(CHILD_BURST, str(tmp_path), mode, "65536")
    returned = []
    assert child.stdout is not None
    for line in child.stdout:
        returned.append(line.strip())
        if len(returned) == (3000 if mode == "durable" else 300):
            break
    child.send_signal(signal.SIGKILL)
    rest = child.stdout.read()  # lines printed before the kill landed: their append() had returned too
    child.wait()
    returned += [ln.strip() for ln in rest.splitlines() if ln.strip()]
    returned = [r for r in returned if len(r) == 36]  # a line cut by the kill is not a whole id
    with DiskSpool.open(tmp_path) as spool:
        got = [e.event_id for e in drain(spool, 500)]
    assert len(got) == len(set(got))  # exactly once
    missing = set(returned) - set(got)
    assert not missing
    assert len(got) - len(returned) <= 1  # at most the one appended but not yet printed


def test_torn_tail_is_cut_off(tmp_path: Path, reader: str, caplog: pytest.LogCaptureFixture) -> None:
    events = [make_event(i) for i in range(100)]
    child = run_child("""
        import sys, os
        from auditrail.events import AuditEvent
        from auditrail.spool_file import DiskSpool
        spool = DiskSpool.open(sys.argv[1])
        for i in range(100):
            spool.append(AuditEvent("prompt.update", tenant="t%d" % (i % 3), actor="user%d" % i,
                                    payload='{"i": %d}' % i, event_id="id-%d" % i, time_unix_nano=i))
        print(spool.path, flush=True)
        sys.stdin.read()
    """, str(tmp_path))
    assert child.stdout is not None
    path = Path(child.stdout.readline().strip())
    child.kill()
    child.wait()
    seg = segments(path)[-1]
    data = bytearray(seg.read_bytes())
    written = len(data.rstrip(b"\0"))  # the segment is preallocated: zeros after the records
    data[written - 5:written] = bytes(5)  # the last record loses its tail, as if the machine died mid-write
    seg.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="auditrail"):
        spool = DiskSpool.open(tmp_path)
    assert "torn record" in caplog.text
    assert spool.truncated_bytes > 0
    got = drain(spool)
    assert [e.event_id for e in got] == [f"id-{i}" for i in range(99)]
    assert got[5].actor == events[5].actor
    spool.close()


def test_corrupt_record_in_earlier_segment_is_reported_and_skipped(tmp_path: Path, reader: str,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    spool = DiskSpool(tmp_path, segment_bytes=4096)
    ids = []
    for i in range(200):
        ev = make_event(i)
        ids.append(ev.event_id)
        spool.append(ev)
    path = Path(spool.path)
    spool._sync.stop_flusher()  # noqa: SLF001 - simulate death without cleanup (nor a sync after it)
    os.close(spool._own.lock_fd)  # noqa: SLF001
    spool._own = None  # noqa: SLF001
    segs = segments(path)
    assert len(segs) >= 3
    data = bytearray(segs[1].read_bytes())
    data[200] ^= 0xFF  # flip a byte inside a record in the middle of the second segment
    segs[1].write_bytes(bytes(data))
    with caplog.at_level(logging.ERROR, logger="auditrail"):
        reopened = DiskSpool.open(tmp_path, segment_bytes=4096)
    assert "corrupt record" in caplog.text and "skipped" in caplog.text
    assert reopened.corrupt_regions == 1
    got = [e.event_id for e in drain(reopened)]
    assert len(got) == len(set(got)) < 200
    assert got[0] == ids[0] and got[-1] == ids[-1]  # the third segment onwards is still delivered
    assert len(reopened) == 0
    reopened.close()


# --- fail_closed ------------------------------------------------------------------------------------


class CountingSpool(DiskSpool):
    """Counts real fdatasync calls (the hook every sync goes through)."""

    def _fsync(self, fd: int) -> None:
        self.fsync_calls = getattr(self, "fsync_calls", 0) + 1
        super()._fsync(fd)


def test_fail_closed_really_fsyncs_with_group_commit(tmp_path: Path) -> None:
    spool = CountingSpool.open(tmp_path, mode="fail_closed")
    spool.append(make_event(0))
    assert spool.fsync_calls == 1  # returned only after its own fsync
    threads = [threading.Thread(target=lambda: [spool.append(make_event(i)) for i in range(100)])
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(spool) == 801
    assert spool._sync.synced == spool._writer.written == 801  # noqa: SLF001 - every append was covered by an fsync
    assert spool.fsync_calls < 801  # concurrent appenders shared fsyncs
    spool.close()


def test_durable_flusher_syncs_within_50ms(tmp_path: Path) -> None:
    spool = CountingSpool.open(tmp_path, mode="durable")
    spool.append(make_event(0))
    assert getattr(spool, "fsync_calls", 0) == 0  # not on the hot path
    deadline = threading.Event()
    deadline.wait(0.3)
    assert spool.fsync_calls >= 1 and spool._sync.synced == 1  # noqa: SLF001
    spool.close()


def test_fail_closed_unwritable_dir_raises(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(SpoolWriteError) as info:
        DiskSpool.open(blocker / "spool", mode="fail_closed")
    assert str(blocker) in str(info.value) and "Not a directory" in str(info.value)


def test_fail_closed_full_file_raises(tmp_path: Path) -> None:
    # RLIMIT_FSIZE makes allocating a file past 64 KiB fail with EFBIG: a full disk, for this process only.
    # Segments are allocated whole when created (16 KiB here), so the append that needs a new segment, one
    # for a 100 KB record, fails, loudly, and leaves the spool as it was.
    child = run_child("""
        import resource, signal, sys
        from auditrail.events import AuditEvent
        from auditrail.spool_file import DiskSpool, SpoolWriteError
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))
        for mode in ("fail_closed", "durable"):
            spool = DiskSpool.open(sys.argv[1] + "/" + mode, mode=mode, segment_bytes=16384)
            for i in range(20):
                spool.append(AuditEvent("prompt.update", payload='"%s"' % ("x" * 500)))
            try:
                spool.append(AuditEvent("prompt.update", payload='"%s"' % ("x" * 100_000)))
                print("no error")
            except SpoolWriteError as exc:
                print(mode, len(spool), exc, flush=True)
            # the failed record left nothing behind: everything before it reads back, and the spool goes on
            assert len(spool.peek(100)) == 20, "lost"
            spool.append(AuditEvent("prompt.update"))
            assert len(spool.peek(100)) == 21
            spool.close()
    """, str(tmp_path), stderr=subprocess.PIPE)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("fail_closed 20 ") and "File too large" in lines[0] and ".seg" in lines[0]
    assert lines[1].startswith("durable 20 ") and "File too large" in lines[1]
    assert "cannot create spool segment" in err  # loud in the log too


def test_fail_closed_sync_error_refuses(tmp_path: Path) -> None:
    class FailingSync(DiskSpool):
        def _fsync(self, fd: int) -> None:
            raise OSError(5, "Input/output error")

    spool = FailingSync.open(tmp_path, mode="fail_closed")
    with pytest.raises(SpoolWriteError, match="Input/output error") as info:
        spool.append(make_event(0))
    assert spool.path in str(info.value)
    with pytest.raises(SpoolWriteError, match="refused"):
        spool.append(make_event(1))
    spool._fsync = lambda fd: None  # type: ignore[method-assign]  # noqa: SLF001 - let close() finish
    spool.close()


# --- adoption ---------------------------------------------------------------------------------------


def test_live_spool_not_adopted_dead_one_adopted(tmp_path: Path) -> None:
    child = run_child("""
        import sys
        from auditrail.events import AuditEvent
        from auditrail.spool_file import DiskSpool
        spool = DiskSpool.open(sys.argv[1])
        for i in range(25):
            spool.append(AuditEvent("crawl.run", event_id="child-%d" % i))
        print(spool.path, flush=True)
        sys.stdin.read()
    """, str(tmp_path))
    assert child.stdout is not None
    child_dir = Path(child.stdout.readline().strip())
    with DiskSpool.open(tmp_path) as mine:
        assert len(mine) == 0 and mine.adopted_records == 0  # the child is alive: its lock is held
        mine.append(make_event(0))
    assert child_dir.exists()
    segment = segments(child_dir)[0]
    assert segment.stat().st_size == 16 * 1024 * 1024  # allocated whole: zeros after the records
    child.kill()
    child.wait()
    with DiskSpool.open(tmp_path) as spool:
        assert spool.adopted_records == 25 + 1
        assert spool.truncated_bytes == spool.corrupt_regions == 0  # the zeros end the records: nothing torn
        got = drain(spool)
        assert [e.event_id for e in got if e.event_id.startswith("child-")] == [f"child-{i}" for i in range(25)]
        assert not child_dir.exists()  # acknowledged: the adopted directory is gone
    assert dirs(tmp_path) == []


def test_adopted_events_come_first(tmp_path: Path) -> None:
    old = DiskSpool.open(tmp_path)
    old_events = [make_event(i) for i in range(5)]
    for ev in old_events:
        old.append(ev)
    old.close()
    with DiskSpool.open(tmp_path) as spool:
        new = make_event(99)
        spool.append(new)
        assert len(spool) == 6
        assert spool.peek(10) == [*old_events, new]
        spool.ack(3)
        spool.close()
    with DiskSpool.open(tmp_path) as spool:
        assert spool.peek(10) == [*old_events[3:], new]


# --- disk cap ---------------------------------------------------------------------------------------


def test_disk_cap_warns_then_refuses(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="auditrail"):
        spool = DiskSpool.open(tmp_path, max_bytes=64 * 1024, segment_bytes=8192)
        n = 0
        with pytest.raises(SpoolFullError) as info:
            while True:
                spool.append(make_event(n))
                n += 1
    assert "full" in str(info.value) and str(tmp_path) in str(info.value)
    assert spool.space_warnings == 1 and caplog.text.count("% full") == 1
    assert spool.disk_bytes <= 64 * 1024 and len(spool) == n
    # wait_for_space blocks until acknowledgements free a segment
    assert spool.wait_for_space(0.05) is False
    result = []
    waiter = threading.Thread(target=lambda: result.append(spool.wait_for_space(5)))
    waiter.start()
    spool.peek(n // 2)
    spool.ack(n // 2)
    waiter.join()
    assert result == [True]
    spool.append(make_event(-1))
    drain(spool)
    spool.append(make_event(-2))  # a later crossing warns again
    assert spool.space_warnings == 1
    for i in range(n - 5):
        spool.append(make_event(i))
    assert spool.space_warnings == 2
    spool.close()


# --- fork -------------------------------------------------------------------------------------------


def test_after_fork_in_child_gets_own_spool(tmp_path: Path) -> None:
    spool = DiskSpool.open(tmp_path)
    parent_events = [make_event(i) for i in range(10)]
    for ev in parent_events:
        spool.append(ev)
    parent_dir = spool.path
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        code = 1
        try:
            os.close(r)
            spool.after_fork_in_child()
            ok = spool.path != parent_dir and len(spool) == 0
            for i in range(7):
                spool.append(AuditEvent("crawl.run", event_id=f"fork-{i}"))
            ok = ok and [e.event_id for e in spool.peek(100)] == [f"fork-{i}" for i in range(7)]
            os.write(w, spool.path.encode())
            spool.close()  # unacknowledged: the directory stays for adoption
            code = 0 if ok else 2
        finally:
            os._exit(code)
    os.close(w)
    child_dir = os.read(r, 4096).decode()
    os.close(r)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert child_dir and child_dir != parent_dir and os.path.isdir(child_dir)
    # The parent keeps its lock (the child closed only its copy) and its events.
    spool.append(make_event(10))
    assert spool.peek(100)[:10] == parent_events and len(spool) == 11
    with DiskSpool.open(tmp_path) as other:  # adopts the exited child's spool, not the live parent's
        assert [e.event_id for e in drain(other)] == [f"fork-{i}" for i in range(7)]
    assert os.path.isdir(parent_dir)
    drain(spool)
    spool.close()


# --- hash chains linked by the drain (set_linker) ------------------------------------------------------


@pytest.fixture(params=["native", "python"])
def journal(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The journal frames written by the native core (when built) and by orjson: the same links come back."""
    return native_or_twin(request, monkeypatch, journal_module, "_native_journal")


def chain_linker(chain: Chain) -> Callable[[list[AuditEvent]], None]:
    def link(events: list[AuditEvent]) -> None:
        for event in events:
            if not (event.extra and "audit.chain.hash" in event.extra):
                chain.link(event)
    return link


def links(event: AuditEvent) -> tuple[object, ...]:
    extra = event.extra or {}
    return tuple(extra.get(key) for key in ("audit.chain.id", "audit.chain.seq", "audit.chain.prev_hash",
                                            "audit.chain.hash"))


def test_records_reach_the_reader_only_once_linked_and_journalled(tmp_path: Path, journal: str) -> None:
    chain = Chain()
    with DiskSpool.open(tmp_path, segment_bytes=8192) as spool:
        spool.set_linker(chain_linker(chain))
        events = [make_event(i) for i in range(60)]  # several segments
        for ev in events:
            spool.append(ev)
        assert len(spool) == 60 and spool.peek(100) == []  # stored, not linked yet: the reader waits
        spool.link_pending()
        got = drain(spool, 7)
        assert [e.event_id for e in got] == [e.event_id for e in events]
        assert [links(e)[1] for e in got] == list(range(1, 61))
        assert all(links(e)[0] == chain.chain_id for e in got)
        assert not list(Path(spool.path).glob("*.links"))[1:]  # acknowledged segments took their journals along


def test_read_back_beyond_memory_window_carries_the_journalled_links(tmp_path: Path, journal: str,
                                                                     reader: str) -> None:
    chain = Chain()
    with DiskSpool.open(tmp_path, segment_bytes=256 * 1024) as spool:
        spool.set_linker(chain_linker(chain))
        for i in range(20_000):  # more than the in-memory window: most are read back from the segments
            spool.append(make_event(i))
        spool.link_pending()
        for i in range(20_000, 20_100):
            spool.append(make_event(i))
        first = drain(spool, 512)
        spool.link_pending()
        rest = drain(spool, 512)
        got = first + rest
        assert [links(e)[1] for e in got] == list(range(1, 20_101))
        assert [e.actor for e in got] == [f"user{i}" for i in range(20_100)]
        # each link is the chain's: prev of one is the hash of the one before
        assert all(links(got[i])[2] == links(got[i - 1])[3] for i in range(1, len(got)))


CHILD_LINKED = """
import json, sys
from auditrail.chain import Chain
from auditrail.disk_spool import journal as journal_module
from auditrail.disk_spool import reader as reader_module
from auditrail.disk_spool import segments as segments_module
from auditrail.events import AuditEvent
from auditrail.spool_file import DiskSpool
chain = Chain()
spool = DiskSpool.open(sys.argv[1], segment_bytes=8192)
spool.set_linker(lambda events: [chain.link(e) for e in events])
for i in range(70):
    if i == 50:
        spool.link_pending()  # the first 50 are linked (and could have been exported), the last 20 not
    spool.append(AuditEvent("prompt.update", tenant="t", actor="user%d" % i, payload='{"i": %d}' % i))
for ev in spool.peek(100):
    print(json.dumps([ev.event_id, ev.extra["audit.chain.id"], ev.extra["audit.chain.seq"],
                      ev.extra["audit.chain.prev_hash"], ev.extra["audit.chain.hash"]]), flush=True)
print(spool.path, flush=True)
sys.stdin.read()
"""


def crashed_linked_spool(tmp_path: Path) -> tuple[list[list[object]], Path]:
    """A process that linked 50 of 70 stored events, killed with SIGKILL: (the 50 events' links, its dir)."""
    child = run_child(CHILD_LINKED, str(tmp_path))
    assert child.stdout is not None
    linked = [json.loads(child.stdout.readline()) for _ in range(50)]
    path = Path(child.stdout.readline().strip())
    child.kill()
    child.wait()
    return linked, path


def test_links_survive_a_crash_and_the_adopter_links_the_rest(tmp_path: Path, journal: str) -> None:
    linked, _ = crashed_linked_spool(tmp_path)
    chain = Chain()
    with DiskSpool.open(tmp_path) as spool:
        spool.set_linker(chain_linker(chain))
        got = drain(spool)
    assert [e.actor for e in got] == [f"user{i}" for i in range(70)]
    # a replay resends the linked events exactly as they were linked (and perhaps exported) before the crash
    assert [[e.event_id, *links(e)] for e in got[:50]] == linked
    # the rest were never linked: the adopter links them into its own chain
    assert [links(e)[:2] for e in got[50:]] == [(chain.chain_id, seq) for seq in range(1, 21)]


def test_torn_journal_tail_is_cut_and_its_record_linked_anew(tmp_path: Path, journal: str) -> None:
    linked, path = crashed_linked_spool(tmp_path)
    journal = sorted(path.glob("*.links"))[-1]
    journal.write_bytes(journal.read_bytes()[:-3])  # the last link frame is torn, as by a power loss
    first = Chain()
    spool = DiskSpool.open(tmp_path)
    spool.set_linker(chain_linker(first))
    got = spool.peek(100)
    spool.close()  # nothing acknowledged: the next start adopts it all again
    # the torn frame held the links of the last segment's records: those are linked anew (they cannot have
    # been exported: a journal write is synced before the reader sees its records), the rest keep theirs
    kept = [e for e in got[:50] if links(e)[0] != first.chain_id]
    assert 0 < len(kept) < 50
    assert [[e.event_id, *links(e)] for e in kept] == linked[:len(kept)]
    assert [links(e)[:2] for e in got[len(kept):]] == [(first.chain_id, seq) for seq in range(1, 71 - len(kept))]
    with DiskSpool.open(tmp_path) as spool:
        spool.set_linker(chain_linker(Chain()))
        again = drain(spool)
    assert [links(e) for e in again] == [links(e) for e in got]  # the new links were kept on disk
