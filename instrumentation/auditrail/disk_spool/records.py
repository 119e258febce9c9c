"""The spool's record format: a frame is [u32 length][u32 crc32(payload)][payload], the payload orjson of
`[1, <the AuditEvent's fields in order>]` (trace/span ids above 2**64 as hex); link journals frame the same way."""

from __future__ import annotations

import operator
import struct
import zlib
from collections.abc import Callable
from typing import Any

import orjson

from .. import semconv
from ..events import AuditEvent

_HEADER = struct.Struct("<II")
_HEADER_SIZE = _HEADER.size
_FORMAT = 1
_CHAIN_KEYS = (semconv.CHAIN_ID, semconv.CHAIN_SEQ, semconv.CHAIN_PREV, semconv.CHAIN_HASH)
_MAX_RECORD = 64 * 1024 * 1024  # a length above this is corruption, not a record
_U64 = 1 << 64


def encode_event(e: AuditEvent) -> bytes:
    """The record payload of an event (orjson list, fields in dataclass order)."""
    t, s = e.trace_id, e.span_id
    return orjson.dumps([
        _FORMAT, e.event_type, e.tenant, e.actor, e.actor_type, e.payload, e.source_ip, e.reason, e.outcome,
        e.risk, e.impersonator, e.impersonation_id, e.approval_id, e.event_id, e.time_unix_nano,
        t if t < _U64 else format(t, "x"), s if s < _U64 else format(s, "x"), e.trace_flags, e.extra,
    ])


def decode_event(payload: bytes | memoryview) -> AuditEvent:
    """The event of a record payload; ValueError when it is not one."""
    v = orjson.loads(payload)
    if type(v) is not list or len(v) != 19 or v[0] != _FORMAT:
        raise ValueError("not an auditrail spool record (format 1)")
    t, s = v[15], v[16]
    return AuditEvent(
        v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11], v[12], v[13], v[14],
        int(t, 16) if type(t) is str else t, int(s, 16) if type(s) is str else s, v[17], v[18], bytes(payload),
    )


_ID, _SEQ, _PREV, _HASH = _CHAIN_KEYS
_END, _LINK = operator.itemgetter(0), operator.itemgetter(slice(1, None))  # of a journal entry


def _journal_entries(records: list[tuple[AuditEvent, int, int, bool]]) -> list[list[Any]]:
    """[record end offset, chain id, seq, prev hash, hash] of each linked record (event, segment, end, _)."""
    entries = []
    for record in records:
        event, end = record[0], record[2]
        extra = event.extra or {}
        entries.append([end, extra.get(_ID), extra.get(_SEQ), extra.get(_PREV), extra.get(_HASH)])
    return entries


def _scan(data: bytes | memoryview, start: int, limit: int,
          max_frames: int = _MAX_RECORD) -> tuple[list[tuple[int, int]], int, bool]:
    """Up to `max_frames` frames in data[start:limit]: ([(payload_start, payload_end)], end of the last good
    frame, bad frame seen). Pass a memoryview: the CRC then reads the frames in place, without copies.

    Stops at a zero length (the unwritten, zero-filled tail of a segment: not bad), and at the first frame
    whose header is implausible or whose CRC does not match; a frame cut off by `limit` counts as bad only
    if the caller says the data is complete (it decides from the result).
    """
    frames = []
    pos = start
    unpack = _HEADER.unpack_from
    crc32 = zlib.crc32
    while pos + _HEADER_SIZE <= limit and len(frames) < max_frames:
        length, crc = unpack(data, pos)
        if not length:
            break
        end = pos + _HEADER_SIZE + length
        if length > _MAX_RECORD:
            return frames, pos, True
        if end > limit:
            break
        if crc32(data[pos + _HEADER_SIZE:end]) != crc:
            return frames, pos, True
        frames.append((pos + _HEADER_SIZE, end))
        pos = end
    return frames, pos, False


def _read_frames(data: bytes, max_frames: int, base: int, event_cls: type[AuditEvent],
                 decode: Callable[[memoryview], AuditEvent]) -> tuple[list[tuple[AuditEvent, int]],
                                                                 list[tuple[int, str]], int, bool]:
    """Up to `max_frames` frames of `data`, a chunk read at offset `base` of a segment, decoded: (records
    [(event, base + end of its frame)], errors [(offset of the frame, message)] for the records `decode`
    refused, the end in `data` of the last frame taken, whether a bad frame stopped the scan).

    The native core's read_frames is its twin: it parses plain records itself and builds `event_cls` from
    them, and hands the others to `decode`. Here `decode` reads every record."""
    view = memoryview(data)
    frames, pos, bad = _scan(view, 0, len(view), max_frames)
    records: list[tuple[AuditEvent, int]] = []
    errors: list[tuple[int, str]] = []
    for start, stop in frames:
        try:
            records.append((decode(view[start:stop]), base + stop))
        except ValueError as exc:
            errors.append((base + start - _HEADER_SIZE, str(exc)))
    return records, errors, pos, bad
