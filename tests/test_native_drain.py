"""The native core's drain functions equal the Python code they stand in for, byte for byte.

``auditrail_native.link_events`` against ``Chain.link`` (through the provider's linker),
``auditrail_native.journal_payload`` against orjson of the journal entries, and
``auditrail_native.encode_request`` against ``EventEncoder.encode``, over random and adversarial
events: every value kind, lone surrogates, str subclasses, out-of-range ints, empty keys. Events the native
core does not take go to the Python fallback; the tests check it takes the plain ones itself.
"""

from __future__ import annotations

import copy
import enum
import logging
import random
import threading
import zlib

import pytest

from auditrail import semconv
from auditrail.chain import Chain, event_hash, record_fields
from auditrail.disk_spool import records as frames
from auditrail.events import AuditEvent
from auditrail.exporters.otlp_proto import EventEncoder
from auditrail.pipeline import AuditLoggerProvider
from auditrail.spool_file import encode_event

native = pytest.importorskip("auditrail_native", reason="the native core is not built (make install with cargo)")
if not hasattr(native, "link_events"):
    pytest.skip("the native core predates its drain functions: rebuild it (make install)", allow_module_level=True)

from test_chain_verify import _random_string  # noqa: E402
from test_otlp_proto import RESOURCE, SCOPE, random_event  # noqa: E402


class Text(str):
    """A str subclass: the Python encoder takes its generic path for it (same bytes)."""


class Level(enum.IntEnum):
    HIGH = 3


@pytest.fixture(params=[False, True], ids=["objects", "spooled"])
def spooled(request):
    """Whether the events carry their spool records (as a DiskSpool's do): the native core reads those."""
    return request.param


def _spool(events: list[AuditEvent], spooled: bool) -> list[AuditEvent]:
    if spooled:
        for event in events:
            try:
                event.spooled = encode_event(event)
            except TypeError:  # (bytes in extra: the spool refuses such an event)
                pass
    return events


def _never(*args: object) -> bytes:
    raise AssertionError(f"the native core handed a plain event back: {args!r}")


# --- encode_request -----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(20))
def test_records_equal_the_python_encoder(seed, spooled):
    rng = random.Random(seed)
    events = _spool([random_event(rng, i + 1) for i in range(rng.randrange(1, 60))], spooled)
    python = EventEncoder(RESOURCE, SCOPE, native=False)
    assert EventEncoder(RESOURCE, SCOPE).encode(events) == python.encode(events)


def test_plain_events_never_reach_the_fallback(spooled):
    rng = random.Random(5)
    events = []
    for i in range(300):
        event = random_event(rng, i + 1)
        if event.extra:  # plain extras only: str, int, bool, float, bytes, None
            event.extra = {k: v for k, v in event.extra.items() if not isinstance(v, (list, dict))}
            event.extra["x.int"] = rng.choice([0, -1, 2**63 - 1, -(2**63), Level.HIGH, True])
            event.extra["x.text"] = Text(_random_string(rng).encode("utf-16", "surrogatepass").decode("utf-16"))
        event.payload = rng.choice([event.payload, Text("{}")])
        events.append(event)
    _spool(events, spooled)
    python = EventEncoder(RESOURCE, SCOPE, native=False)
    encoder = EventEncoder(RESOURCE, SCOPE)
    encoder._record = _never  # type: ignore[method-assign]
    assert encoder.encode(events) == python.encode(events)


@pytest.mark.parametrize("odd", [
    {"extra": {"": "an empty key"}},
    {"extra": {"": 5}},
    {"extra": {"x.list": [1, "a"]}},
    {"extra": {"x.map": {"k": "v"}}},
    {"extra": {"x.arr": bytearray(b"ab")}},
    {"actor": 12345},
    {"payload": {"not": "text"}},
    {"event_type": None},
    {"outcome": None, "risk": None, "actor_type": None},
    {"time_unix_nano": 0, "trace_flags": 0},
])
def test_values_the_python_encoder_takes_otherwise_come_out_the_same(odd):
    event = AuditEvent("prompt.update", tenant="t", actor="u", extra={"audit.chain.seq": 3})
    for name, value in odd.items():
        setattr(event, name, value)
    python = EventEncoder(RESOURCE, SCOPE, native=False)
    assert EventEncoder(RESOURCE, SCOPE).encode([event]) == python.encode([event])


@pytest.mark.parametrize("odd", [
    {"extra": {"x.big": 2**64}},
    {"tenant": "lone \ud800 surrogate"},
    {"extra": {"x.bad": "\udfff"}},
    {"event_id": None},
    {"time_unix_nano": -1},
    {"extra": {"x.obj": object()}},
    {"extra": {7: "a key that is not a str"}},
])
def test_values_the_python_encoder_refuses_raise_the_same_error(odd):
    event = AuditEvent("prompt.update", tenant="t")
    for name, value in odd.items():
        setattr(event, name, value)
    with pytest.raises(Exception) as python_error:
        EventEncoder(RESOURCE, SCOPE, native=False).encode([event])
    with pytest.raises(type(python_error.value)):
        EventEncoder(RESOURCE, SCOPE).encode([event])


# --- link_events ----------------------------------------------------------------------------------------


def _linker(chains: dict) -> tuple:
    def chain_for(tenant):
        if tenant not in chains:
            chains[tenant] = Chain()
        return chains[tenant]
    return chain_for, AuditLoggerProvider._link_one


def _random_events(rng: random.Random, n: int) -> list[AuditEvent]:
    def text() -> str | None:
        return rng.choice([None, "", _random_string(rng)])

    return [AuditEvent(rng.choice(["prompt.update", "crawl.run", _random_string(rng)]),
                       tenant=rng.choice([None, "t1", "t2", "", _random_string(rng)]), actor=text(),
                       actor_type=rng.choice(["user", None]), payload=rng.choice(['{"a":1}', _random_string(rng)]),
                       source_ip=text(), reason=text(), outcome=rng.choice(["success", None]),
                       risk=rng.choice(["high", "low"]), impersonator=text(), impersonation_id=text(),
                       approval_id=text(), time_unix_nano=rng.choice([0, 1, rng.randrange(2**63)]),
                       extra=rng.choice([None, {}, {"x.other": 1}]))
            for _ in range(n)]


@pytest.mark.parametrize("seed", range(8))
def test_links_equal_chain_link(seed, spooled):
    rng = random.Random(seed)
    events = _spool(_random_events(rng, 400), spooled)
    twins = copy.deepcopy(events)
    chains: dict = {}
    counts = native.link_events(events, *_linker(chains))
    python_chains: dict = {}
    expected: dict = {}
    for event in twins:
        if event.tenant not in python_chains:  # the same chain ids, so the hashes compare
            python_chains[event.tenant] = Chain(chains[event.tenant].chain_id)
        python_chains[event.tenant].link(event)
        expected[event.tenant] = expected.get(event.tenant, 0) + 1
    assert counts == expected
    for event, twin in zip(events, twins, strict=True):
        assert event.extra == twin.extra
        assert list(event.extra) == list(twin.extra)  # the same attribute order: the encoder follows it
        assert event.extra[semconv.CHAIN_HASH] == event_hash(record_fields({
            "event_name": event.event_type, "time_unix_nano": event.time_unix_nano,
            "attributes": event.attributes()}))
    for tenant, chain in chains.items():
        assert chain.state() == python_chains[tenant].state()


def test_linked_events_are_skipped_and_odd_ones_go_to_the_fallback(caplog):
    chains: dict = {}
    done = AuditEvent("a.b", tenant="t", extra={semconv.CHAIN_HASH: "kept"})
    odd = [AuditEvent("a.b", tenant="t", actor=12345),  # rfc8785 hashes the int: linked by the fallback
           AuditEvent("a.b", tenant="t", reason="lone \ud800"),  # refused: logged, left unlinked
           AuditEvent("a.b", tenant="t", extra=["not", "a", "dict"])]  # type: ignore[arg-type]
    plain = [AuditEvent("a.b", tenant="t") for _ in range(3)]
    events = [done, plain[0], *odd, plain[1], plain[2]]
    with caplog.at_level(logging.ERROR, logger="auditrail"):
        counts = native.link_events(events, *_linker(chains))
    assert done.extra == {semconv.CHAIN_HASH: "kept"}
    assert counts == {"t": 4}
    linked = [plain[0], odd[0], plain[1], plain[2]]
    assert [e.extra[semconv.CHAIN_SEQ] for e in linked] == [1, 2, 3, 4]
    for before, after in zip(linked, linked[1:], strict=False):
        assert after.extra[semconv.CHAIN_PREV] == before.extra[semconv.CHAIN_HASH]
    assert odd[1].extra in (None, {}) and odd[2].extra == ["not", "a", "dict"] and "could not link" in caplog.text
    assert chains["t"].state() == (chains["t"].chain_id, 4, plain[2].extra[semconv.CHAIN_HASH])


def test_an_error_midway_leaves_each_chain_at_what_it_linked():
    chains: dict = {}
    chain_for, fallback = _linker(chains)
    events = [AuditEvent("a.b", tenant="t"), AuditEvent("a.b", tenant="u")]

    def refuse(tenant):
        if tenant == "u":
            raise RuntimeError("no chain for u")
        return chain_for(tenant)

    with pytest.raises(RuntimeError):
        native.link_events(events, refuse, fallback)
    linked = events[0].extra and events[0].extra.get(semconv.CHAIN_HASH)  # the chain says what was linked
    assert chains["t"].state() == (chains["t"].chain_id, 1, linked) if linked else chains["t"].seq == 0


# --- journal_payload --------------------------------------------------------------------------------------


def test_journal_payload_reads_back_as_the_orjson_entries():
    import orjson

    from auditrail.disk_spool.records import _journal_entries

    chains: dict = {}
    events = _random_events(random.Random(3), 50) + [AuditEvent("a.b", extra=None), AuditEvent("a.b", extra={})]
    native.link_events(events[:50], *_linker(chains))
    records = [(event, 1, i * 700 + 12, False) for i, event in enumerate(events)]
    payload = native.journal_payload(records)
    assert orjson.loads(payload) == _journal_entries(records)
    odd = AuditEvent("a.b", extra={semconv.CHAIN_SEQ: 1.5})
    assert native.journal_payload([(odd, 1, 1, False)]) is None  # orjson writes what is not a str, int or None


def test_the_spool_record_is_what_the_native_core_reads():
    """An event's fields come from its spool record when it has one (and from the object when that record
    is not one): proved with records of another event."""
    first, other = AuditEvent("a.b", tenant="t", actor="alice"), AuditEvent("c.d", tenant="t", actor="bob")
    python = EventEncoder(RESOURCE, SCOPE, native=False)
    carrier = copy.copy(first)
    carrier.spooled = encode_event(other)
    assert EventEncoder(RESOURCE, SCOPE).encode([carrier]) == python.encode([other])
    carrier.spooled = b"[1, not json"
    assert EventEncoder(RESOURCE, SCOPE).encode([carrier]) == python.encode([first])

    chains: dict = {}
    carrier.spooled = encode_event(other)
    native.link_events([carrier], *_linker(chains))
    twin = copy.copy(other)
    Chain(chains["t"].chain_id).link(twin)
    assert carrier.extra == twin.extra
    broken = copy.copy(first)
    broken.extra, broken.spooled = None, b"garbage"
    native.link_events([broken], *_linker(chains))  # the object's fields, through Chain.link
    assert broken.extra[semconv.CHAIN_SEQ] == 2 and broken.extra[semconv.CHAIN_PREV] == carrier.extra[semconv.CHAIN_HASH]


def test_the_provider_tries_an_event_the_native_core_refused_only_once(monkeypatch, caplog):
    """The provider's linker runs its Python loop only without the native core (or when it failed), so an
    event the fallback refused is not tried, and logged, a second time."""
    from auditrail import pipeline

    monkeypatch.setattr(pipeline, "_native_link", native.link_events)
    provider = AuditLoggerProvider.__new__(AuditLoggerProvider)  # just what _link_events uses
    provider.chains, provider._since_checkpoint = {}, {}
    provider._append_lock = threading.Lock()
    events = [AuditEvent("a.b", tenant="t"), AuditEvent("a.b", tenant="t", reason="lone \ud800")]
    with caplog.at_level(logging.ERROR, logger="auditrail"):
        provider._link_events(events)
    assert caplog.text.count("could not link") == 1
    assert provider._since_checkpoint == {"t": 1} and events[0].extra[semconv.CHAIN_SEQ] == 1


# --- read_frames --------------------------------------------------------------------------------------


def _chunk(events: list[AuditEvent]) -> bytes:
    """The frames DiskSpool.append writes for `events` (header: u32 length, u32 CRC-32; the record)."""
    out = b""
    for event in events:
        record = encode_event(event)
        out += frames._HEADER.pack(len(record), zlib.crc32(record)) + record
    return out


def _both(data: bytes, max_frames: int = 10_000, base: int = 4096) -> tuple:
    calls: list[bytes] = []

    def decode(payload):
        calls.append(bytes(payload))
        return frames.decode_event(payload)

    got = native.read_frames(data, max_frames, base, AuditEvent, decode)
    assert got == frames._read_frames(data, max_frames, base, AuditEvent, frames.decode_event)
    for (event, _), (twin, _) in zip(got[0], frames._read_frames(data, max_frames, base, AuditEvent,
                                                                      frames.decode_event)[0], strict=True):
        assert event.spooled == twin.spooled and event.spooled is not None  # (outside ==)
    return got, calls


@pytest.mark.parametrize("seed", range(10))
def test_read_frames_equals_scan_and_decode_event(seed):
    rng = random.Random(seed)
    events = [random_event(rng, i + 1) for i in range(rng.randrange(1, 80))]
    for event in events:  # what a spool holds: its extra JSON-able (bytes make encode_event refuse)
        if event.extra:
            event.extra = {k: v for k, v in event.extra.items() if not isinstance(v, bytes)}
    data = _chunk(events)
    (records, errors, pos, bad), calls = _both(data + bytes(64))  # a zero-filled tail ends the scan
    assert [event for event, _ in records] == events and not errors and not bad and pos == len(data)
    assert len(calls) == sum(1 for e in events if e.extra is not None)  # the plain ones are read natively
    for cut in (rng.randrange(1, len(data)), len(data) - 1):  # a chunk that ends inside a frame
        _both(data[:cut])
    _both(data, max_frames=rng.randrange(0, len(events) + 1))


def test_read_frames_stops_at_a_bad_frame_and_reports_what_decode_refuses():
    events = [AuditEvent("a.b", tenant="t", actor=f"u{i}", event_id=f"id-{i}") for i in range(4)]
    data = bytearray(_chunk(events))
    first = len(_chunk(events[:1]))
    junk = b'[1,"not a record"]'
    data[first:first] = frames._HEADER.pack(len(junk), zlib.crc32(junk)) + junk
    (records, errors, _, bad), _ = _both(bytes(data), base=100)
    assert [e.event_id for e, _ in records] == ["id-0", "id-1", "id-2", "id-3"] and not bad
    assert errors == [(100 + first, "not an auditrail spool record (format 1)")]
    data[-3] ^= 0xFF  # the last frame's CRC no longer matches
    (records, errors, pos, bad), _ = _both(bytes(data))
    assert [e.event_id for e, _ in records] == ["id-0", "id-1", "id-2"] and bad
    huge = frames._HEADER.pack(frames._MAX_RECORD + 1, 0)
    assert _both(huge + bytes(100))[0][2:] == (0, True)


@pytest.mark.parametrize("odd", [
    {"trace_id": 2**64 + 5}, {"time_unix_nano": -1}, {"time_unix_nano": 2**64 - 1}, {"payload": "\u00e9\t\"\\\x01\U0001f600"},
    {"tenant": "", "actor": None, "reason": "\u2028"},
])
def test_read_frames_takes_the_values_decode_event_takes(odd):
    event = AuditEvent("a.b", **odd)
    (records, _, _, _), calls = _both(_chunk([event]))
    assert records[0][0] == event


# --- Ed25519Signer ------------------------------------------------------------------------------------


def test_native_signatures_are_the_ones_cryptography_makes():
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from auditrail.signing import Signer

    rng = random.Random(7)
    for _ in range(20):
        key = Ed25519PrivateKey.generate()
        signer = Signer(key)
        assert signer._native is not None  # noqa: SLF001 - the native core signs
        assert signer._native.public_key() == key.public_key().public_bytes_raw()  # noqa: SLF001
        for size in (0, 1, 64, rng.randrange(2, 5000)):
            data = rng.randbytes(size)
            assert signer.sign(data) == key.sign(data)
            key.public_key().verify(signer.sign(data), data)
    assert "private" in repr(signer._native) and key.private_bytes_raw().hex() not in repr(signer._native)  # noqa: SLF001
    with pytest.raises(ValueError, match="32 bytes"):
        native.Ed25519Signer(b"short")
