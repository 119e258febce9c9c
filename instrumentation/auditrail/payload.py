"""Payload hygiene: redaction at any depth, JSON-safe values, a size cap with a visible marker."""

from __future__ import annotations

import base64
import datetime as _dt
import decimal
import enum
import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import fields, is_dataclass
from typing import Any

import orjson

REDACTED = "[REDACTED]"
TRUNCATED_KEY = "_auditrail_truncated"
DEFAULT_MAX_BYTES = 16 * 1024
_MAX_DEPTH = 16  # deeper structures are cut: protects against cycles and pathological objects

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def _dumps_clean(value: Any) -> str:
    """JSON text of a cleaned value: orjson (~0.6 us here against ~6 us for the stdlib encoder)."""
    try:
        return orjson.dumps(value).decode("utf-8")
    except orjson.JSONEncodeError:  # e.g. an int beyond 64 bits, which the stdlib encoder writes
        return _dumps(value)


# Exact types `_clean` returns unchanged; checked inline to save a call per leaf value.
_PLAIN = frozenset({str, int, bool, type(None)})


class PayloadPolicy:
    """How payloads are cleaned: which keys are redacted and how large the JSON text may be."""

    __slots__ = ("redact_keys", "max_bytes")

    def __init__(self, redact: Iterable[str] = (), max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        # Key matching ignores case and separators, so `apiKey`, `API-KEY` and `api_key` are one key.
        self.redact_keys = frozenset(_norm_key(k) for k in redact)
        self.max_bytes = max_bytes

    def clean(self, value: Any) -> Any:
        """A JSON-safe copy of `value` with redacted keys masked at any depth."""
        return _clean(value, self.redact_keys, 0)

    def to_json(self, payload: Mapping[str, Any]) -> str:
        """The payload as JSON object text, cleaned, capped at max_bytes with a truncation marker."""
        return self.encode(self.clean(payload))

    def encode(self, cleaned: Mapping[str, Any]) -> str:
        """JSON object text of an already cleaned payload, capped at max_bytes with a truncation marker."""
        text = _dumps_clean(cleaned)
        size = len(text.encode("utf-8")) if len(text) * 4 > self.max_bytes else len(text)
        if size <= self.max_bytes:
            return text
        return _truncated(text, size, self.max_bytes)


_norm_cache: dict[str, str] = {}
_NORM_CACHE_MAX = 4096  # payload keys are mostly a config's fixed names; dynamic keys just stop being cached


def _norm_key(key: str) -> str:
    if type(key) is str:
        norm = _norm_cache.get(key)
        if norm is None:
            norm = "".join(ch for ch in key.lower() if ch.isalnum())
            if len(_norm_cache) < _NORM_CACHE_MAX:
                _norm_cache[key] = norm
        return norm
    return "".join(ch for ch in str(key).lower() if ch.isalnum())


def _clean(value: Any, redact: frozenset[str], depth: int) -> Any:
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else str(value)
    if depth >= _MAX_DEPTH:
        return "[depth limit]"
    if type(value) is dict or isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            key = k if isinstance(k, str) else str(k)
            if redact and _norm_key(key) in redact:
                out[key] = REDACTED
            elif type(v) in _PLAIN:
                out[key] = v
            else:
                out[key] = _clean(v, redact, depth + 1)
        return out
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_clean(v, redact, depth + 1) for v in value]
    return _clean_scalar(value, redact, depth)


def _clean_scalar(value: Any, redact: frozenset[str], depth: int) -> Any:
    """Values JSON has no type for become a faithful string (or a dict, for dataclasses)."""
    if isinstance(value, enum.Enum):
        return _clean(value.value, redact, depth + 1)
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, (uuid.UUID, decimal.Decimal)):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "base64:" + base64.b64encode(bytes(value)).decode("ascii")
    if is_dataclass(value) and not isinstance(value, type):
        return _clean({f.name: getattr(value, f.name) for f in fields(value)}, redact, depth + 1)
    try:
        text = str(value)
    except Exception:  # noqa: BLE001 - an app object's __str__ may raise; never let it reach the app
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 1024 else text[:1024] + "..."


def _truncated(text: str, size: int, max_bytes: int) -> str:
    """Replace an oversized payload by a marker plus as much of its text as fits."""
    room = max(0, max_bytes - 160)
    preview = text.encode("utf-8")[:room].decode("utf-8", "ignore")
    return _dumps({TRUNCATED_KEY: True, "original_bytes": size, "preview": preview})
