"""auditrail_native.drain_segment (DiskSpool batch mode) equals the Python drain over a segment's bytes:
read back (_read_frames + decode_event), journalled links applied as _apply_links does, the others linked in
order with Chain.link, the journal frame of the newly linked (appended to the journal file as LinkJournal.append_frame
appends it), and EventEncoder.encode of the whole chunk."""

from __future__ import annotations

import os
import random
import zlib

import orjson
import pytest

from auditrail import semconv
from auditrail.chain import Chain
from auditrail.disk_spool import records as frames
from auditrail.events import AuditEvent
from auditrail.exporters.otlp_proto import EventEncoder
from auditrail.spool_file import decode_event, encode_event

native = pytest.importorskip("auditrail_native", reason="the native core is not built (make install with cargo)")
if not hasattr(native, "drain_segment"):
    pytest.skip("the native core predates drain_segment: rebuild it (make install)", allow_module_level=True)

from test_otlp_proto import RESOURCE, SCOPE, random_event  # noqa: E402

FIELDS = ("_resource_field", "_resource_schema", "_scope_field", "_scope_schema")


def _chunk(events: list[AuditEvent]) -> tuple[bytes, list[int]]:
    out, ends = b"", []
    for event in events:
        record = encode_event(event)
        out += frames._HEADER.pack(len(record), zlib.crc32(record)) + record
        ends.append(len(out))
    return out, ends


def _python(data: bytes, base: int, journal: dict, chains: dict) -> tuple:
    records, errors, pos, bad = frames._read_frames(data, 10**6, base, AuditEvent, decode_event)
    assert not errors
    new = []
    for event, end in records:
        link = journal.get(end)
        if link is not None:
            if event.extra is None:
                event.extra = {}
            for key, value in zip(frames._CHAIN_KEYS, link, strict=True):
                event.extra[key] = value
        elif not (event.extra and semconv.CHAIN_HASH in event.extra):
            chains.setdefault(event.tenant, Chain(f"c-{event.tenant}")).link(event)
            new.append([end, *(event.extra[k] for k in frames._CHAIN_KEYS)])
    request = EventEncoder(RESOURCE, SCOPE, native=False).encode([event for event, _ in records])
    return request, orjson.dumps(new) if new else None, len(records), pos, bad


def _native(data: bytes, base: int, journal: dict, chains: dict, max_records: int = 10**6, *, tmp_path,
            per_request: int = 10**6):
    """drain_segment over `data` written at `base` of a segment file; the journal file must hold exactly the
    frame of the payload it returns, after a frame that was there before."""
    encoder = EventEncoder(RESOURCE, SCOPE)
    segment, links = tmp_path / "seg", tmp_path / "links"
    with open(segment, "wb") as f:
        f.seek(base)
        f.write(data + bytes(4096))  # a segment's zero-filled tail after the chunk
    before = frames._HEADER.pack(2, zlib.crc32(b"[]")) + b"[]"
    links.write_bytes(before)
    fd = os.open(segment, os.O_RDONLY)
    journal_fd = os.open(links, os.O_WRONLY | os.O_APPEND)
    try:
        got = native.drain_segment(fd, base, len(data) + 4096, max_records, per_request, journal,
                                   lambda t: chains.setdefault(t, Chain(f"c-{t}")),
                                   *(getattr(encoder, f) for f in FIELDS), journal_fd, len(before))
    finally:
        os.close(fd)
        os.close(journal_fd)
    if got is None:
        assert links.read_bytes() == before
        return None
    assert got[6] is None  # no journal error
    payload = got[1]
    assert links.read_bytes() == before + (b"" if payload is None else
                                           frames._HEADER.pack(len(payload), zlib.crc32(payload)) + payload)
    return got[:6]


@pytest.mark.parametrize("seed", range(60))
def test_drain_segment_equals_the_python_drain(seed, tmp_path):
    rng = random.Random(seed)
    events = []
    for i in range(rng.randrange(1, 40)):
        event = random_event(rng, i + 1)
        if event.extra is not None:
            if rng.random() < 0.5:
                event.extra = None
            else:  # flat extras, as a checkpoint's record carries them
                event.extra = {k: v for k, v in event.extra.items() if v is None or isinstance(v, (str, int, float))}
                event.extra["audit.chain.seq"] = 3
                if rng.random() < 0.5:
                    event.extra.pop(semconv.CHAIN_HASH, None)
        events.append(event)
    data, ends = _chunk(events)
    base = rng.choice([0, 4096, 123456])
    journal = {base + end: ["jid", rng.randrange(1, 1000), "ab" * 32, "cd" * 32] for end in ends if rng.random() < 0.2}
    python_chains: dict = {}
    native_chains: dict = {}
    expected = _python(data, base, journal, python_chains)
    got = _native(data, base, journal, native_chains, tmp_path=tmp_path)
    assert got is not None
    [(request, count, end)] = got[0]
    assert (request, *got[1:5]) == expected
    assert (count, end) == (len(events), base + ends[-1])
    assert {t: c.state() for t, c in native_chains.items()} == {t: c.state() for t, c in python_chains.items()}


def test_a_record_outside_the_plain_case_leaves_every_chain_and_the_journal_as_they_were(tmp_path):
    chains: dict = {}
    data, _ = _chunk([AuditEvent("a.b", tenant="t"), AuditEvent("a.b", tenant="t", extra={"x": [1, 2]})])
    assert _native(data, 0, {}, chains, tmp_path=tmp_path) is None
    assert not chains or chains["t"].state()[1] == 0


def test_a_bad_frame_stops_the_chunk(tmp_path):
    data, ends = _chunk([AuditEvent("a.b", tenant="t", event_id=f"id-{i}") for i in range(3)])
    bad = bytearray(data)
    bad[-2] ^= 1
    requests, journal, count, pos, stopped, counts = _native(bytes(bad), 0, {}, {}, tmp_path=tmp_path)
    assert (count, pos, stopped, dict(counts)) == (2, ends[1], True, {"t": 2})


def test_a_journal_that_cannot_be_written_is_reported_and_left_as_it_was(tmp_path):
    """A failed journal write does not stop the batch: the request comes back with the OSError, and the
    journal is cut back to its size (no torn frame before the next ones)."""
    data, _ = _chunk([AuditEvent("a.b", tenant="t", event_id=f"id-{i}") for i in range(3)])
    segment = tmp_path / "seg"
    segment.write_bytes(data)
    encoder = EventEncoder(RESOURCE, SCOPE)
    fd = os.open(segment, os.O_RDONLY)
    readonly = os.open(segment, os.O_RDONLY)  # a journal fd that refuses writes: EBADF
    try:
        got = native.drain_segment(fd, 0, len(data), 100, 100, {}, lambda t: Chain("c"),
                                   *(getattr(encoder, f) for f in FIELDS), readonly, len(data))
    finally:
        os.close(fd)
        os.close(readonly)
    assert got is not None and got[2] == 3 and got[1] is not None
    assert isinstance(got[6], OSError) and got[6].errno == 9
    assert segment.read_bytes() == data


def test_a_failed_read_raises_oserror(tmp_path):
    encoder = EventEncoder(RESOURCE, SCOPE)
    fd = os.open(tmp_path, os.O_RDONLY)  # a directory: read fails with EISDIR
    try:
        with pytest.raises(IsADirectoryError):
            native.drain_segment(fd, 0, 100, 10, 10, {}, lambda t: Chain("c"), *(getattr(encoder, f) for f in FIELDS),
                                 -1, 0)
    finally:
        os.close(fd)


@pytest.mark.parametrize("per_request", [1, 3, 7, 10])
def test_a_take_splits_into_requests_of_per_request_records(tmp_path, per_request):
    """Each request holds the next per_request records (the last one the rest), encoded as EventEncoder
    encodes that slice, with its count and the end offset of its last record (what ack_encoded is given)."""
    rng = random.Random(per_request)
    events = [random_event(rng, i + 1) for i in range(10)]
    for event in events:
        event.extra = None
    data, ends = _chunk(events)
    chains: dict = {}
    linked = [event for event, _ in frames._read_frames(data, 100, 0, AuditEvent, decode_event)[0]]
    for event in linked:
        chains.setdefault(event.tenant, Chain(f"c-{event.tenant}")).link(event)
    got = _native(data, 0, {}, {}, tmp_path=tmp_path, per_request=per_request)
    assert got is not None and got[2] == 10
    slices = [range(i, min(i + per_request, 10)) for i in range(0, 10, per_request)]
    encoder = EventEncoder(RESOURCE, SCOPE, native=False)
    assert got[0] == [(encoder.encode([linked[i] for i in part]), len(part), ends[part[-1]]) for part in slices]
