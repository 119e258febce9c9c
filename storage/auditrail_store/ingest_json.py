"""OTLP/JSON requests read by the native core as a stream into OTLP protobuf, so that the service runs one
pipeline for both encodings (the limits' scan with the tenant check, the native encoder, the Python decoder in
slices) and never holds a JSON request's document or rows.

orjson parsing a whole request and decode_json's Python rows peaked at 21.6x the body for the worst request
(100,000 records of ``{}``); the transcoder holds the body, the protobuf of what it read (smaller than the JSON)
and one record's fields, counts records and measures each one (its compact JSON, as decode_json does) as it
reads, and stops at the first one over a limit. Its semantics are decode_json's (native/src/otlp_json.rs; the
equivalence is tests/test_store_ingest_json.py's corpus); decode_json stays the reading where the native core is
not built.
"""

from __future__ import annotations

from .ingest_limits import IngestError, IngestLimits, check_json

try:
    import auditrail_native as _native
except ImportError:  # not built: the service decodes with ingest.decode_json
    _native = None

__all__ = ["json_to_protobuf", "native_json"]


def native_json() -> bool:
    """Whether OTLP/JSON requests are read by the native transcoder (else by ingest.decode_json)."""
    return _native is not None


def json_to_protobuf(data: bytes, limits: IngestLimits | None = None) -> bytes:
    """The protobuf ExportLogsServiceRequest of the OTLP/JSON request `data`; IngestError (400) where
    decode_json refuses it, LimitError (413) at the first record over `limits` (its objects and arrays counted
    first, as decode_json does). The budgets that follow the request's size (messages, map entries) are then
    the JSON body's: pass ``size=len(data)`` to the protobuf checks."""
    if _native is None:
        raise RuntimeError("the native core is not built: use ingest.decode_json")
    bounds: tuple[int, ...] = ()
    if limits is not None:
        check_json(data, limits)
        bounds = (limits.max_records, limits.max_record_bytes)
    verdict, payload, index, size = _native.otlp_logs_json(data, *bounds)
    if verdict == "ok":
        return payload
    if verdict == "invalid":
        raise IngestError(payload)
    assert limits is not None, verdict
    if verdict == "records":
        raise limits.too_many_records()
    raise limits.record_too_large(index, size)
