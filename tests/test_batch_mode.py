"""Batch mode: the drain reads its batches from the disk spool's segments and links, journals and encodes
each in one native call (DiskSpool.take_encoded, auditrail_native.drain_segment). What comes out verifies and
holds every event once, also when a record is one the native core leaves to the Python path, when exports
fail and are retried, with checkpoints due meanwhile, and in a forked child."""

from __future__ import annotations

import os
import threading

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf.json_format import MessageToJson
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from auditrail.disk_spool.batches import NATIVE_DRAIN
from auditrail.events import AuditEvent
from auditrail.exporters.otlp_json import read_records
from auditrail.exporters.otlp_proto import EventEncoder
from auditrail.pipeline import AuditLoggerProvider
from auditrail.signing import Signer
from auditrail.spool_file import DiskSpool
from auditrail.verify import verify_records

if not NATIVE_DRAIN:
    pytest.skip("the native core is not built (make install with cargo), or predates drain_segment",
                allow_module_level=True)


class Collector:
    """An exporter of ours: takes events and encoded requests; its first `fail` sends fail."""

    def __init__(self, fail: int = 0) -> None:
        self.requests: list[bytes] = []
        self.encoded = 0
        self.fail = fail
        self.lock = threading.Lock()

    def _take(self, request: bytes) -> bool:
        with self.lock:
            if self.fail:
                self.fail -= 1
                return False
            self.requests.append(request)
            return True

    def export_events(self, events, resource, scope) -> bool:
        return self._take(EventEncoder(resource, scope).encode(events))

    def export_encoded(self, request: bytes, count: int) -> bool:
        ok = self._take(request)
        self.encoded += ok
        return ok

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True

    def shutdown(self) -> None:
        pass


def _received(collector: Collector, tmp_path) -> tuple[list, object]:
    out = tmp_path / "received.jsonl"
    out.write_text("".join(MessageToJson(ExportLogsServiceRequest.FromString(r), indent=None) + "\n"
                           for r in collector.requests if r))
    records = list(read_records([out]))
    return records, verify_records(read_records([out]))


@pytest.mark.parametrize("fail", [0, 3])
def test_batches_from_the_segments_verify_and_hold_every_event_once(tmp_path, fail):
    collector = Collector(fail=fail)
    spool = DiskSpool.open(str(tmp_path / "spool"), mode="durable")
    provider = AuditLoggerProvider(collector, spool=spool, chained=True, signer=Signer(Ed25519PrivateKey.generate()),
                                   checkpoint_every=97, schedule_delay=0.01, max_backoff=0.2)
    assert provider._batch and spool._batch

    def work(t: int) -> None:
        for i in range(700):
            odd = i == 350 and t == 1  # a record the native core leaves to the Python path (nested extra)
            provider.submit(AuditEvent("a.b", tenant=f"tenant-{i % 3}", actor=f"u{t}", event_id=f"{t}-{i}",
                                       extra={"x.list": [1, 2]} if odd else None))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    provider.shutdown()
    records, report = _received(collector, tmp_path)
    assert report.ok, report.render()
    ids = [r["attributes"]["audit.event_id"] for r in records if r["event_name"] == "a.b"]
    assert sorted(ids) == sorted(f"{t}-{i}" for t in range(3) for i in range(700))  # each once
    for t in range(3):  # in each thread's order
        assert [i for i in ids if i.startswith(f"{t}-")] == [f"{t}-{i}" for i in range(700)]
    assert collector.encoded and len(collector.requests) > collector.encoded  # both paths ran
    assert provider.checkpoints >= 3  # (one per chain at least: the shutdown's)


def test_a_forked_child_stays_in_batch_mode(tmp_path):
    spool = DiskSpool.open(str(tmp_path / "spool"), mode="durable")
    spool.set_linker(lambda events: None)
    assert spool.batch_mode()
    pid = os.fork()
    if pid == 0:  # the child
        spool.after_fork_in_child()
        os._exit(0 if spool._batch and not spool._queue_on and not spool._live_on else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    spool.close()


def test_a_periodic_checkpoint_signs_the_linked_head_and_the_backlog_follows_it(tmp_path):
    """The drain's checkpoints in batch mode do not link its backlog first: they sign the heads it linked, and
    the events spooled before the checkpoint but linked after it take the seqs after the checkpoint's."""
    collector = Collector()
    inside, gate = threading.Event(), threading.Event()
    take = collector._take

    def held(request: bytes) -> bool:
        inside.set()
        gate.wait(10)
        return take(request)

    collector._take = held  # type: ignore[method-assign]
    spool = DiskSpool.open(str(tmp_path / "spool"), mode="durable")
    provider = AuditLoggerProvider(collector, spool=spool, chained=True, signer=Signer(Ed25519PrivateKey.generate()),
                                   checkpoint_every=10_000, schedule_delay=0.01)
    assert provider._batch

    def submit(i: int) -> None:
        provider.submit(AuditEvent("a.b", tenant="t", actor="u", event_id=f"e{i}"))

    submit(0)
    assert inside.wait(10)  # the drain linked e0 (alone: nothing else was spooled) and is sending it
    for i in range(1, 30):
        submit(i)
    [checkpoint] = provider.checkpoint(link_all=False)
    assert checkpoint.extra["audit.chain.seq"] == 2  # after e0, the one linked; before the 29 spooled earlier
    gate.set()
    provider.shutdown()
    records, report = _received(collector, tmp_path)
    assert report.ok, report.render()
    seqs = {r["attributes"].get("audit.event_id", r["event_name"] + str(i)): r["attributes"]["audit.chain.seq"]
            for i, r in enumerate(records)}
    assert [seqs[f"e{i}"] for i in range(30)] == [1, *range(3, 32)]
    assert sorted(seqs.values()) == list(range(1, 33))  # the shutdown's checkpoint: 32


def test_force_flush_sends_the_last_short_batch_without_waiting_for_it_to_fill(tmp_path):
    collector = Collector()
    gate = threading.Event()
    take = collector._take
    collector._take = lambda request: gate.wait(10) and take(request)  # type: ignore[method-assign]
    spool = DiskSpool.open(str(tmp_path / "spool"), mode="durable")
    provider = AuditLoggerProvider(collector, spool=spool, chained=True, max_batch=10, schedule_delay=30)
    for i in range(25):
        provider.submit(AuditEvent("a.b", tenant="t", actor="u", event_id=f"e{i}"))
    gate.set()
    assert provider.force_flush(5_000)  # 10, 10, then the 5 left: not after the 30 s schedule delay
    provider.shutdown()
    assert len(_received(collector, tmp_path)[0]) == 25


@pytest.mark.parametrize("how", ["open", "write"])
def test_a_journal_that_cannot_be_written_is_logged_and_delivery_goes_on(tmp_path, caplog, how):
    """Batch mode writes the journal inside the native call: a journal that cannot be opened, or refuses the
    write, is logged and counted as LinkJournal.append_frame does it, and every event still arrives, linked."""
    def unwritable(src, seg):
        if how == "open":
            raise PermissionError(13, "Permission denied")
        fd = os.open(src.seg_path(seg), os.O_RDONLY)  # writes fail: EBADF
        spool._journal.fds[src.links_path(seg)] = fd  # (closed with the spool)
        return fd

    collector = Collector()
    spool = DiskSpool.open(str(tmp_path / "spool"), mode="durable")
    spool._journal.fd = unwritable  # type: ignore[method-assign]
    provider = AuditLoggerProvider(collector, spool=spool, chained=True, signer=Signer(Ed25519PrivateKey.generate()),
                                   schedule_delay=0.01)
    assert provider._batch
    for i in range(50):
        provider.submit(AuditEvent("a.b", tenant="t", actor="u", event_id=f"e{i}"))
    provider.shutdown()
    records, report = _received(collector, tmp_path)
    assert report.ok, report.render()
    assert sorted(r["attributes"]["audit.event_id"] for r in records if r["event_name"] == "a.b") == sorted(
        f"e{i}" for i in range(50))
    assert spool.link_errors >= 1
    expected = "Permission denied" if how == "open" else "Bad file descriptor"
    assert any("cannot write the chain links" in r.message and expected in r.message for r in caplog.records)


def test_a_take_of_several_requests_acknowledges_those_sent_and_resends_from_the_one_that_failed(tmp_path):
    collector = Collector()
    inside, gate = threading.Event(), threading.Event()
    take, calls = collector._take, []

    def flaky(request: bytes) -> bool:
        calls.append(request)
        inside.set()
        gate.wait(10)
        return len(calls) != 3 and take(request)  # the 3rd request (2nd of a take of 4) fails once

    collector._take = flaky  # type: ignore[method-assign]
    spool = DiskSpool.open(str(tmp_path / "spool"), mode="durable")
    provider = AuditLoggerProvider(collector, spool=spool, chained=True, signer=Signer(Ed25519PrivateKey.generate()),
                                   checkpoint_every=10_000, max_batch=10, schedule_delay=0.01, max_backoff=0.1)
    provider.submit(AuditEvent("a.b", tenant="t", actor="u", event_id="e0"))
    assert inside.wait(10)  # the drain sends e0 alone, and waits
    for i in range(1, 60):
        provider.submit(AuditEvent("a.b", tenant="t", actor="u", event_id=f"e{i}"))
    gate.set()
    assert provider.force_flush(10_000)
    provider.shutdown()
    assert [len(ExportLogsServiceRequest.FromString(r).resource_logs[0].scope_logs[0].log_records)
            for r in calls[:4]] == [1, 10, 10, 10]  # one take: 4 requests of max_batch
    records, report = _received(collector, tmp_path)
    assert report.ok, report.render()
    assert [r["attributes"]["audit.event_id"] for r in records if r["event_name"] == "a.b"] == [
        f"e{i}" for i in range(60)]  # each once, in order
    assert calls[3] == calls[2]  # the failed request was sent again as it was (same links)


def test_a_checkpoint_on_another_thread_while_the_drain_reads_back_does_not_deadlock(tmp_path):
    """The Python path's read-back runs the linker (the append lock) inside the spool's read lock, and a
    checkpoint from another thread (shutdown's) links the spool (the read lock) inside the append lock: the
    drain must take the append lock first, or each waits for the other. The test holds each thread at the
    step where the other one then takes its first lock."""
    collector = Collector()
    spool = DiskSpool.open(str(tmp_path / "spool"), mode="durable")
    checkpointing, go, reading, release = (threading.Event() for _ in range(4))
    link_pending, apply_links = spool.link_pending, spool._apply_links

    def checkpoint_pauses() -> None:  # the checkpoint: after link_pending, before it takes the append lock
        link_pending()
        if threading.current_thread().name != "auditrail-drain":
            checkpointing.set()
            go.wait(10)

    def drain_pauses(src, seg, records):  # the drain, reading back: inside the spool's read lock
        reading.set()
        release.wait(10)
        return apply_links(src, seg, records)

    spool.link_pending = checkpoint_pauses  # type: ignore[method-assign]
    spool._apply_links = drain_pauses  # type: ignore[method-assign]
    provider = AuditLoggerProvider(collector, spool=spool, chained=True, signer=Signer(Ed25519PrivateKey.generate()),
                                   checkpoint_every=10_000, schedule_delay=0.01)
    assert provider._batch
    done = threading.Event()
    threading.Thread(target=lambda: (provider.checkpoint(), done.set()), daemon=True).start()
    assert checkpointing.wait(10)
    provider.submit(AuditEvent("a.b", tenant="t", event_id="odd", extra={"x.list": [1, 2]}))  # the Python path
    assert reading.wait(10)
    go.set()
    done.wait(0.2)  # the checkpoint is waiting for a lock the drain holds now
    release.set()
    if not done.wait(10):
        pytest.fail("deadlock: the checkpoint and the drain each wait for the other's lock")
    provider.shutdown()
    records, report = _received(collector, tmp_path)
    assert report.ok, report.render()
    assert [r["attributes"]["audit.event_id"] for r in records if r["event_name"] == "a.b"] == ["odd"]
