"""auditrail_native.drain_records (DiskSpool batch mode) equals the Python drain over spool bytes:
read back (_read_frames + decode_event), journalled links applied as _apply_links does, the others linked in
order with Chain.link, the journal frame of the newly linked, and EventEncoder.encode of the whole chunk."""

from __future__ import annotations

import random
import zlib

import orjson
import pytest

from auditrail import semconv, spool_file
from auditrail.chain import Chain
from auditrail.events import AuditEvent
from auditrail.exporters.otlp_proto import EventEncoder
from auditrail.spool_file import decode_event, encode_event

native = pytest.importorskip("auditrail_native", reason="the native core is not built (make install with cargo)")
if not hasattr(native, "drain_records"):
    pytest.skip("the native core predates drain_records: rebuild it (make install)", allow_module_level=True)

from test_otlp_proto import RESOURCE, SCOPE, random_event  # noqa: E402

FIELDS = ("_resource_field", "_resource_schema", "_scope_field", "_scope_schema")


def _chunk(events: list[AuditEvent]) -> tuple[bytes, list[int]]:
    out, ends = b"", []
    for event in events:
        record = encode_event(event)
        out += spool_file._HEADER.pack(len(record), zlib.crc32(record)) + record
        ends.append(len(out))
    return out, ends


def _python(data: bytes, base: int, journal: dict, chains: dict) -> tuple:
    records, errors, pos, bad = spool_file._read_frames(data, 10**6, base, AuditEvent, decode_event)
    assert not errors
    new = []
    for event, end in records:
        link = journal.get(end)
        if link is not None:
            if event.extra is None:
                event.extra = {}
            for key, value in zip(spool_file._CHAIN_KEYS, link, strict=True):
                event.extra[key] = value
        elif not (event.extra and semconv.CHAIN_HASH in event.extra):
            chains.setdefault(event.tenant, Chain(f"c-{event.tenant}")).link(event)
            new.append([end, *(event.extra[k] for k in spool_file._CHAIN_KEYS)])
    request = EventEncoder(RESOURCE, SCOPE, native=False).encode([event for event, _ in records])
    return request, orjson.dumps(new) if new else None, len(records), pos, bad


def _native(data: bytes, base: int, journal: dict, chains: dict, max_records: int = 10**6):
    encoder = EventEncoder(RESOURCE, SCOPE)
    return native.drain_records(data, base, max_records, journal,
                                lambda t: chains.setdefault(t, Chain(f"c-{t}")), *(getattr(encoder, f) for f in FIELDS))


@pytest.mark.parametrize("seed", range(60))
def test_drain_records_equals_the_python_drain(seed):
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
    got = _native(data, base, journal, native_chains)
    assert got is not None
    assert got[:5] == expected
    assert {t: c.state() for t, c in native_chains.items()} == {t: c.state() for t, c in python_chains.items()}


def test_a_record_outside_the_plain_case_leaves_every_chain_as_it_was():
    chains: dict = {}
    data, _ = _chunk([AuditEvent("a.b", tenant="t"), AuditEvent("a.b", tenant="t", extra={"x": [1, 2]})])
    assert _native(data, 0, {}, chains) is None
    assert not chains or chains["t"].state()[1] == 0


def test_a_bad_frame_stops_the_chunk():
    data, ends = _chunk([AuditEvent("a.b", tenant="t", event_id=f"id-{i}") for i in range(3)])
    bad = bytearray(data)
    bad[-2] ^= 1
    request, journal, count, pos, stopped, counts = _native(bytes(bad), 0, {}, {})
    assert (count, pos, stopped, dict(counts)) == (2, ends[1], True, {"t": 2})
