"""OTLP/JSON read by the native core as a stream into protobuf (ingest_json.py, native/src/otlp_json.rs) gives
decode_json's rows, and refuses what decode_json refuses (the same class: 400, or 413 naming the limit).

The corpus: pdata's AsString vectors, randomized requests (every AnyValue kind, repeated keys, ids, times), each
also mutated once the ways OTLP/JSON senders and attackers vary it (snake_case names, integers as strings or
floats, enum names, duplicate keys, nulls, wrong types, key order, unknown fields, malformed ids and base64,
Python's own integer syntax), and the document-level edge cases (top level, trailing data, UTF-8, surrogates,
nesting at orjson's limit). The transcoded protobuf is read by the Python decoder and by the native encoder
(the same Native block as the original protobuf request's).
"""

from __future__ import annotations

import base64
import json
import math
import random
import re
from typing import Any

import orjson
import pytest

from auditrail.exporters.otlp_json import request_to_collector_json
from auditrail_store.ingest import decode_json, decode_protobuf
from auditrail_store.ingest_json import json_to_protobuf
from auditrail_store.ingest_limits import IngestError, IngestLimits, LimitError, check_protobuf
from test_store_ingest import VECTORS, _random_request

auditrail_native = pytest.importorskip("auditrail_native", reason="the native core is not built (make install)")
LIMITS = IngestLimits()


def _reference(data: bytes, limits: IngestLimits | None) -> Any:
    try:
        return decode_json(data, limits).rows()
    except LimitError:
        return "413"
    except IngestError:
        return "400"


def _native(data: bytes, limits: IngestLimits | None) -> Any:
    try:
        protobuf = json_to_protobuf(data, limits)
        if limits is not None:
            check_protobuf(protobuf, limits, size=len(data))
        return decode_protobuf(protobuf).rows()
    except LimitError:
        return "413"
    except IngestError:
        return "400"


def _same(data: bytes, limits: IngestLimits | None = LIMITS) -> Any:
    expected = _reference(data, limits)
    assert _native(data, limits) == expected, data[:2000]
    return expected


# --- a JSON writer that keeps duplicate keys and any key order -------------------------------------------


class Obj(list):
    """A JSON object as its (key, value) pairs, in order, duplicates kept."""


def _load(text: str | bytes) -> Any:
    return json.loads(text, object_pairs_hook=Obj)


def _dump(value: Any) -> str:
    if isinstance(value, Obj):
        return "{" + ",".join(json.dumps(k) + ":" + _dump(v) for k, v in value) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_dump(v) for v in value) + "]"
    if isinstance(value, Raw):
        return value.text
    return json.dumps(value, ensure_ascii=False)


class Raw:
    """JSON text written as it is (numbers Python would write otherwise: 1e3, -0, 1.0)."""

    def __init__(self, text: str) -> None:
        self.text = text


SNAKE = {"resourceLogs": "resource_logs", "scopeLogs": "scope_logs", "logRecords": "log_records",
         "schemaUrl": "schema_url", "timeUnixNano": "time_unix_nano", "observedTimeUnixNano": "observed_time_unix_nano",
         "traceId": "trace_id", "spanId": "span_id", "severityText": "severity_text",
         "severityNumber": "severity_number", "eventName": "event_name", "stringValue": "string_value",
         "boolValue": "bool_value", "intValue": "int_value", "doubleValue": "double_value",
         "arrayValue": "array_value", "kvlistValue": "kvlist_value", "bytesValue": "bytes_value"}
INTEGERS = ("timeUnixNano", "observedTimeUnixNano", "flags", "intValue", "severityNumber", "doubleValue")
ODD_VALUES: list[Any] = [None, 5, -1, 1.5, True, False, "", "x", [], Obj(), [None], Obj([("a", 1)]), Raw("-0"),
                         Raw("1e3"), Raw("1.0"), Raw("18446744073709551616"), Raw("-9223372036854775809"),
                         " 12 ", "1_000", "\u0663", "+7", "0x10", "NaN", "Infinity", "-Infinity", "1e2", "-0",
                         "SEVERITY_NUMBER_WARN", "SEVERITY_NUMBER_FATAL4", "WARN", "-", "9", "-3", "4294967296",
                         "00" * 16, "AB" * 16, "ab" * 15 + "  ", "zz" * 8, "\u00e9" * 16, "YQ", "YQ==", "YR==",
                         "Y Q==", "a===", "\u00b2"]


def _nodes(value: Any, out: list[Obj]) -> list[Obj]:
    if isinstance(value, Obj):
        out.append(value)
        for _, v in value:
            _nodes(v, out)
    elif isinstance(value, list):
        for v in value:
            _nodes(v, out)
    return out


def _mutate(doc: Any, rng: random.Random) -> None:
    """One change to one object of `doc`, in place."""
    objects = [o for o in _nodes(doc, []) if o]
    if not objects:
        return
    obj = rng.choice(objects)
    i = rng.randrange(len(obj))
    key, value = obj[i]
    kind = rng.randrange(9)
    if kind == 0 and key in SNAKE:  # the snake_case name
        obj[i] = (SNAKE[key], value)
    elif kind == 1:  # the key again, with another value, before or after
        obj.insert(rng.choice([i, i + 1]), (key, rng.choice(ODD_VALUES + [value])))
    elif kind == 2:  # both names
        if key in SNAKE:
            obj.insert(rng.choice([i, i + 1]), (SNAKE[key], rng.choice(ODD_VALUES + [value])))
    elif kind == 3:
        obj[i] = (key, rng.choice(ODD_VALUES))
    elif kind == 4:
        rng.shuffle(obj)
    elif kind == 5:
        obj.insert(rng.randrange(len(obj) + 1), ("unknownField", rng.choice(ODD_VALUES)))
    elif kind == 6 and key in INTEGERS and isinstance(value, (int, str)):  # the number's other spellings
        number = int(value) if not isinstance(value, str) or value.lstrip("-").isdigit() else 0
        obj[i] = (key, rng.choice([number, str(number), Raw(f"{number}.0"), f" {number}", Raw(f"{number}e0")]))
    elif kind == 7:  # a second AnyValue kind beside the first
        obj.append((rng.choice(list(SNAKE.values())[-7:] + list(SNAKE)[-7:]), rng.choice(ODD_VALUES)))
    elif kind == 8:
        obj[i] = (key, None)


def _random_documents(seed: int, count: int) -> list[tuple[bytes, bytes]]:
    """(the protobuf request, its OTLP/JSON) pairs."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        request = _random_request(rng)
        out.append((request.SerializeToString(), request_to_collector_json(request).encode()))
    return out


def test_pdata_vectors_read_alike() -> None:
    rows = _same(VECTORS["request_json"].encode())
    assert isinstance(rows, list) and len(rows) == len(VECTORS["vectors"])


def test_random_requests_read_alike_and_make_the_native_block_of_their_protobuf() -> None:
    for protobuf, data in _random_documents(5, 150):
        rows = _same(data)
        assert isinstance(rows, list), data[:500]
        transcoded = json_to_protobuf(data, LIMITS)
        if re.search(rb'"doubleValue":-0[^.\d]', data):
            continue  # JSON's -0 is the integer 0 to decode_json (see test_store_ingest): not the protobuf's -0.0
        # the all-tenant fast path: the native encoder's block of the transcoded request is the original's
        assert auditrail_native.otlp_logs_native(transcoded) == auditrail_native.otlp_logs_native(protobuf)


def test_mutated_requests_read_alike() -> None:
    rng = random.Random(21)
    verdicts: dict[str, int] = {}
    for _, data in _random_documents(22, 200):
        for _ in range(8):
            doc = _load(data)
            _mutate(doc, rng)
            result = _same(_dump(doc).encode())
            verdict = result if isinstance(result, str) else "ok"
            verdicts[verdict] = verdicts.get(verdict, 0) + 1
    assert verdicts.get("ok", 0) > 400 and verdicts.get("400", 0) > 200, verdicts  # both kinds exercised


def test_byte_mutations_read_alike() -> None:
    """Bodies with bytes replaced, dropped or repeated (syntax errors, truncation, invalid UTF-8, NUL, stray
    escapes): the same rows, or refused alike; never a crash of the native reader."""
    rng = random.Random(7)
    refused = 0
    for _, data in _random_documents(9, 40):
        for _ in range(25):
            body = bytearray(data)
            for _ in range(rng.randint(1, 4)):
                i = rng.randrange(len(body))
                match rng.randrange(3):
                    case 0:
                        body[i] = rng.choice(b'{}[]",:0123456789-+.eE\\ntfu \x00\xff\xc3abcdef')
                    case 1:
                        del body[i:i + rng.randint(1, 20)]
                    case _:
                        body[i:i] = body[rng.randrange(len(body)):][:rng.randint(1, 30)]
            refused += isinstance(_same(bytes(body)), str)
    assert 300 < refused < 1000  # both kinds exercised


RECORD = '{"resourceLogs":[{"scopeLogs":[{"logRecords":[%s]}]}]}'
BODY = '{"timeUnixNano":"1","body":%s}'


@pytest.mark.parametrize("data", [
    b"", b"null", b"[]", b"5", b'"x"', b"{}", b"{} x", b"{}{}", b" {} ", b"{\"resourceLogs\":null}",
    b'{"resourceLogs":[null]}', b'{"resourceLogs":[5]}', b'{"resourceLogs":{}}', b'{"resource_logs":[{}]}',
    b'{"resourceLogs":null,"resource_logs":[{"scopeLogs":[{"logRecords":[{}]}]}]}',
    b'{"resourceLogs":[{"scopeLogs":[{"logRecords":[null,{}]}]}]}',
    b'{"resourceLogs":[{"scopeLogs":[{"logRecords":[{}]}],"resource":{"attributes":[{"key":"service.name","value":'
    b'{"stringValue":"late"}}]}}]}',
    b'{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"a"}}],"logRecords":[]}]}]}',
    b'{"resourceLogs":[{"scopeLogs":[{"logRecords":[{}],"scope":{"name":"n","version":5}}]}]}',
    b'{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"attributes":[null]}]}]}]}',
    b'{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"attributes":[{"key":null,"value":null}]}]}]}]}',
    b'{"resourceLogs":[{"schemaUrl":5}]}', b'{"resourceLogs":[{"resource":[]}]}',
    b'\xff', b'{"a":"\xc3"}', b'{"a":"\\ud800"}', b'{"a":"\\udc00"}', b'{"a":"\\ud83d\\ude00"}',
    b"[" * 1024 + b"]" * 1024, b"[" * 1025 + b"]" * 1025,
    b'{"x":' + b'{"a":' * 1023 + b"1" + b"}" * 1024, b'{"x":' + b'{"a":' * 1024 + b"1" + b"}" * 1025,
    b'{"a":1e400}', b'{"a":NaN}', b'{"a":01}', b'{"a":1,}', b'{"a":"\x01"}',
    *(RECORD % BODY % value for value in [
        "null", "{}", "5", '{"stringValue":null}', '{"intValue":null}', '{"boolValue":null}', '{"doubleValue":-0}',
        '{"doubleValue":-0.0}', '{"doubleValue":1e308}', '{"doubleValue":"NaN"}', '{"bytesValue":null}',
        '{"arrayValue":null}', '{"kvlistValue":{"values":[null,{"key":"a"},{"key":"a","value":{"intValue":2}}]}}',
        '{"arrayValue":{"values":[null,{},{"bytesValue":""},{"doubleValue":"Infinity"}]}}',
        '{"arrayValue":{"values":[5]}}', '{"stringValue":"a","arrayValue":{"values":[5]}}',
        '{"string_value":"s","stringValue":null}', '{"stringValue":null,"string_value":"s"}',
        '{"intValue":"9223372036854775808"}', '{"intValue":"-9223372036854775808"}', '{"intValue":1.5}',
        '{"kvlistValue":{"values":[{"key":"b","value":{"doubleValue":1}},{"key":"a","value":{"stringValue":"\u2028"}}]}}',
    ]),
])
def test_edge_cases_read_alike(data: bytes | str) -> None:
    _same(data.encode() if isinstance(data, str) else data)


def _nested_arrays(n: int) -> str:
    return '{"arrayValue":' + '{"values":[{"arrayValue":' * n + "{}" + "}]}" * n + "}"


def _nested_kvlists(n: int) -> str:
    return '{"kvlistValue":' + '{"values":[{"key":"k","value":{"kvlistValue":' * n + "{}" + "}}]}" * n + "}"


@pytest.mark.parametrize("nested, deepest", [(_nested_arrays, 47), (_nested_kvlists, 31)])
def test_values_nested_deeper_than_protobuf_reads_are_refused(nested: Any, deepest: int) -> None:
    """The one difference from decode_json, which took values nested up to orjson's depth (1024 JSON levels):
    the transcoded request is read as protobuf (upb's limit: 47 arrays in a body), so deeper values get a 400
    naming why, as the same value sent as protobuf does."""
    fits = (RECORD % BODY % nested(deepest)).encode()
    assert isinstance(_same(fits), list)
    deeper = (RECORD % BODY % nested(deepest + 1)).encode()
    assert isinstance(_reference(deeper, LIMITS), list)
    with pytest.raises(IngestError, match=r"logRecords\[0\]\.body: arrays and kvlists nested deeper than protobuf"):
        json_to_protobuf(deeper, LIMITS)


def test_id_digits_with_whitespace_are_refused_not_shortened() -> None:
    """bytes.fromhex skips spaces: decode_json took 30 digits and two spaces as a 15-byte trace id (30 hex
    characters in the row); both readings refuse it now."""
    data = (RECORD % '{"traceId":"%s"}' % ("ab" * 15 + "  ")).encode()
    assert _same(data) == "400"


def test_records_at_the_limit_pass_and_one_more_is_refused_naming_it() -> None:
    exact = (RECORD % ",".join(["{}"] * 100_000)).encode()
    rows = _same(exact)
    assert len(rows) == 100_000
    over = (RECORD % ",".join(["{}"] * 100_001)).encode()
    assert _same(over) == "413"
    with pytest.raises(LimitError, match="more than 100000 log records.*--max-records"):
        json_to_protobuf(over, LIMITS)


def test_a_record_of_exactly_the_size_limit_passes_one_byte_more_is_refused_with_its_index() -> None:
    """The size is the record's compact JSON as orjson writes it (decode_json's measure), whitespace,
    escapes, float spellings and repeated keys included."""
    limits = IngestLimits(max_record_bytes=200)
    for spacing in ("", " \n "):
        for extra in ("", '"d":1e3,', '"d":1e-7,', '"k":"\\u00e9\\n",', '"k":1,"k":22,', '"f":-0.0,'):
            small = '{%s"body":{"stringValue":"%%s"}}' % extra
            base = len(orjson.dumps(orjson.loads(small % "")))
            for fill, verdict in ((200 - base, "ok"), (201 - base, "413")):
                record = (small % ("x" * fill)).replace(":", ":" + spacing)
                data = (RECORD % ",".join(["{}", record])).replace(",", "," + spacing).encode()
                result = _same(data, limits)
                assert (result if isinstance(result, str) else "ok") == verdict, (record, base)
    data = (RECORD % ",".join(["{}", '{"body":{"stringValue":"%s"}}' % ("x" * 300)])).encode()
    with pytest.raises(LimitError, match="log record 1 is 327 bytes, more than the per-record limit of 200") as native:
        json_to_protobuf(data, limits)
    with pytest.raises(LimitError) as reference:
        decode_json(data, limits)
    assert str(native.value) == str(reference.value)


def test_floats_are_measured_as_orjson_writes_them() -> None:
    rng = random.Random(3)
    values = [0.0, -0.0, 1e-5, 1e-6, 1.5e-7, 1e15, 1e16, 9e15, 123.25, 5e-324, 1.7976931348623157e308]
    values += [rng.uniform(-1, 1) * 10 ** rng.randint(-30, 30) for _ in range(300)]
    limits = IngestLimits(max_record_bytes=40)
    for value in values:
        assert math.isfinite(value)
        text = repr(value)
        record = '{"x":%s,"b":"%s"}' % (text, "y" * max(0, 40 - 12 - len(orjson.dumps(value))))
        size = len(orjson.dumps(orjson.loads(record)))
        data = (RECORD % ",".join(["{}", record])).encode()
        assert _same(data, limits) == ("413" if size > 40 else _reference(data, limits)), (text, size)


def test_bytes_values_follow_pythons_base64() -> None:
    for text in ["", "YQ==", "YR==", "YQ", "YQ=", "Y Q==", "a===", "YWJj", "YW\nJj", "____", "-_==", "YQ==YQ=="]:
        data = (RECORD % BODY % json.dumps({"bytesValue": text})).encode()
        _same(data)
    assert base64.b64decode("YR==", validate=True) == b"a"  # the trailing bits are ignored, as here
