"""Hash chains: every emitter (one per spool / process) links each tenant's audit events into a SHA-256 chain.

One chain per tenant and emitter, not one per emitter: a tenant's events then form whole chains of their
own, so the tenant's export (storage) can be verified completely without any other tenant's events, and no
"link stub" of another tenant's event can hide one of this tenant's (the store's security review found
both problems with shared chains). Events without a tenant share one chain; a chain's checkpoints carry its
tenant, so they are part of that tenant's log.

Each event gets four attributes (DESIGN.md's LogRecord mapping):

* ``audit.chain.id``: the chain, a UUIDv7 string fixed for the chain's life;
* ``audit.chain.seq``: 1, 2, 3, ... in the order events were linked (an int attribute);
* ``audit.chain.prev_hash``: the ``audit.chain.hash`` of the event before; for seq 1 it is
  :data:`GENESIS_HASH`, 64 zeros;
* ``audit.chain.hash``: lowercase hex SHA-256 of the RFC 8785 canonical JSON (UTF-8) of the object below.

The hashed object holds exactly the fields that make the event, under these keys (:data:`HASHED_FIELDS`)::

    event_name              the LogRecord EventName (AuditEvent.event_type)
    time_unix_nano          the LogRecord time in ns since the epoch, as a DECIMAL STRING
    audit.event_id          the event id (UUIDv7)
    audit.tenant_id         tenant
    enduser.id              actor
    audit.actor.type        actor type
    audit.payload           the payload, the JSON object TEXT as one string (not re-parsed)
    client.address          source ip
    audit.reason            reason
    audit.outcome           outcome
    audit.risk              risk
    audit.impersonator.id   impersonator
    audit.impersonation.id  impersonation id
    audit.approval.id       approval id
    audit.chain.id          chain id
    audit.chain.seq         seq (a JSON integer)
    audit.chain.prev_hash   the previous event's hash

Rules:

* **Absent values are omitted keys, never nulls.** A field whose value is None is left out of the object,
  exactly as :meth:`AuditEvent.attributes` leaves it out of the LogRecord, so the verifier rebuilds the same
  object from whatever attributes a record carries (:func:`record_fields`). An empty string is a value.
* The time is a decimal string because ns timestamps (~1.7e18) exceed 2**53, the largest integer RFC 8785
  (ECMAScript numbers) can represent exactly; the ``rfc8785`` package refuses them.
* Other attributes (resource, scope, body, severity, trace context, ``extra`` attributes other than the
  chain's) are not hashed: they are derived from the hashed fields or describe transport, not the action.
* The keys are the LogRecord attribute names (plus ``event_name`` / ``time_unix_nano``), all ASCII, so
  RFC 8785's UTF-16 code-unit key order is plain byte order.

Canonical JSON: for flat objects of strings and integers with magnitude below 2**53 (every object hashed
here) ``orjson.dumps(obj, option=OPT_SORT_KEYS | OPT_STRICT_INTEGER)`` gives the RFC 8785 bytes (the tests
compare it with the ``rfc8785`` package on randomized values: control characters, quotes, backslashes,
non-BMP characters, U+2028/9, DEL, empty strings, ints near +-2**53); anything else goes through the
``rfc8785`` package itself.

A checkpoint (:meth:`Chain.checkpoint`, ``signing.py``) is an ``audit.checkpoint`` event whose payload signs
the chain head (seq N and its hash); that event is itself linked into the chain as seq N+1, atomically.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import orjson
import rfc8785

from . import semconv
from .events import AuditEvent, new_event_id

if TYPE_CHECKING:  # pragma: no cover
    from .signing import Signer

__all__ = [
    "CHECKPOINT_EVENT",
    "GENESIS_HASH",
    "HASHED_FIELDS",
    "Chain",
    "canonical_json",
    "event_fields",
    "event_hash",
    "record_fields",
]

GENESIS_HASH = "0" * 64
CHECKPOINT_EVENT = "audit.checkpoint"

EVENT_NAME_KEY = "event_name"
TIME_KEY = "time_unix_nano"

# The hashed attributes, in the order of the module docstring (the hash sorts them anyway).
HASHED_ATTRIBUTES: tuple[str, ...] = (
    semconv.EVENT_ID,
    semconv.TENANT,
    semconv.ACTOR,
    semconv.ACTOR_TYPE,
    semconv.PAYLOAD,
    semconv.SOURCE_IP,
    semconv.REASON,
    semconv.OUTCOME,
    semconv.RISK,
    semconv.IMPERSONATOR,
    semconv.IMPERSONATION,
    semconv.APPROVAL,
    semconv.CHAIN_ID,
    semconv.CHAIN_SEQ,
    semconv.CHAIN_PREV,
)
HASHED_FIELDS: tuple[str, ...] = (EVENT_NAME_KEY, TIME_KEY, *HASHED_ATTRIBUTES)

_SAFE_INT = (1 << 53) - 1  # RFC 8785 integers are IEEE doubles: exact only up to here
_ORJSON_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER
_dumps = orjson.dumps
_sha256 = hashlib.sha256
_str = str
_int = int


def canonical_json(obj: Mapping[str, Any]) -> bytes:
    """RFC 8785 canonical JSON (UTF-8 bytes) of an object.

    Flat objects with ASCII keys and str / int (|n| < 2**53) values take orjson (proved equal by the tests);
    anything else (floats, bools, nesting, non-ASCII keys) takes the ``rfc8785`` package. Raises
    TypeError / ValueError (``rfc8785`` errors) for what RFC 8785 cannot encode, e.g. strings with lone
    surrogates or integers beyond 2**53.
    """
    if not all(type(key) is _str and key.isascii() for key in obj):
        return rfc8785.dumps(obj)
    return _canonical_ascii_keys(obj)


def _canonical_ascii_keys(obj: Mapping[str, Any]) -> bytes:
    """:func:`canonical_json` for an object whose keys are known to be ASCII strings (the hot path)."""
    for value in obj.values():
        kind = type(value)
        if kind is _str:
            continue
        if kind is _int and -_SAFE_INT <= value <= _SAFE_INT:
            continue
        return rfc8785.dumps(obj)
    try:
        return _dumps(obj, option=_ORJSON_OPTIONS)
    except orjson.JSONEncodeError:  # lone surrogates: let rfc8785 raise its own error
        return rfc8785.dumps(obj)


def event_hash(fields: Mapping[str, Any]) -> str:
    """Hex SHA-256 of the canonical JSON of ``fields`` (the hashed fields; None values are dropped).

    Writer and verifier both call this: the writer with :func:`event_fields`, the verifier with
    :func:`record_fields` of a record read back from OTLP JSON.
    """
    if any(value is None for value in fields.values()):
        fields = {key: value for key, value in fields.items() if value is not None}
    return _sha256(canonical_json(fields)).hexdigest()


def event_fields(event: AuditEvent, chain_id: str, seq: int, prev_hash: str) -> dict[str, Any]:
    """The hashed object of an event about to take position ``seq`` of chain ``chain_id``."""
    return _event_fields(event, chain_id, seq, prev_hash)[0]


def _event_fields(event: AuditEvent, chain_id: str, seq: int, prev_hash: str) -> tuple[dict[str, Any], bool]:
    """(hashed object with its keys in canonical order, whether every value is a str) - the hot path.

    Written out by hand (no loop, no comprehension): this runs for every audited call.
    """
    fields: dict[str, Any] = {}
    plain = True
    value = event.actor_type
    if value is not None:
        fields["audit.actor.type"] = value
        plain = plain and type(value) is _str
    value = event.approval_id
    if value is not None:
        fields["audit.approval.id"] = value
        plain = plain and type(value) is _str
    fields["audit.chain.id"] = chain_id
    fields["audit.chain.prev_hash"] = prev_hash
    fields["audit.chain.seq"] = seq
    value = event.event_id
    if value is not None:
        fields["audit.event_id"] = value
        plain = plain and type(value) is _str
    value = event.impersonation_id
    if value is not None:
        fields["audit.impersonation.id"] = value
        plain = plain and type(value) is _str
    value = event.impersonator
    if value is not None:
        fields["audit.impersonator.id"] = value
        plain = plain and type(value) is _str
    value = event.outcome
    if value is not None:
        fields["audit.outcome"] = value
        plain = plain and type(value) is _str
    value = event.payload
    if value is not None:
        fields["audit.payload"] = value
        plain = plain and type(value) is _str
    value = event.reason
    if value is not None:
        fields["audit.reason"] = value
        plain = plain and type(value) is _str
    value = event.risk
    if value is not None:
        fields["audit.risk"] = value
        plain = plain and type(value) is _str
    value = event.tenant
    if value is not None:
        fields["audit.tenant_id"] = value
        plain = plain and type(value) is _str
    value = event.source_ip
    if value is not None:
        fields["client.address"] = value
        plain = plain and type(value) is _str
    value = event.actor
    if value is not None:
        fields["enduser.id"] = value
        plain = plain and type(value) is _str
    value = event.event_type
    if value is not None:
        fields["event_name"] = value
        plain = plain and type(value) is _str
    fields["time_unix_nano"] = _str(event.time_unix_nano)
    return fields, plain and type(chain_id) is _str and type(prev_hash) is _str and type(seq) is _int


# _event_fields inserts keys in this order so that orjson can skip sorting; checked at import.
_CANONICAL_ORDER = tuple(sorted(HASHED_FIELDS))
assert tuple(_event_fields(AuditEvent("a.b", "t", "u", approval_id="x", impersonator="i", impersonation_id="s",
                                      source_ip="ip", reason="r"), "c", 1, GENESIS_HASH)[0]) == _CANONICAL_ORDER


def _hash_presorted(fields: dict[str, Any], plain: bool) -> str:
    """Hash of an object from :func:`_event_fields` (keys already in RFC 8785 order)."""
    if plain and -_SAFE_INT <= fields["audit.chain.seq"] <= _SAFE_INT:
        try:
            return _sha256(_dumps(fields)).hexdigest()
        except orjson.JSONEncodeError:  # lone surrogates: rfc8785 raises its own error below
            pass
    return _sha256(rfc8785.dumps(fields)).hexdigest()


def record_fields(record: Mapping[str, Any]) -> dict[str, Any]:
    """The hashed object of a flat record as ``exporters.otlp_json.read_records`` yields it."""
    attributes = record.get("attributes") or {}
    fields: dict[str, Any] = {}
    if record.get("event_name") is not None:
        fields[EVENT_NAME_KEY] = record["event_name"]
    # The exporter writes timeUnixNano = the event time; an unset time (0) is left out by pdata and read as 0.
    fields[TIME_KEY] = _str(record.get("time_unix_nano") or 0)
    for key in HASHED_ATTRIBUTES:
        value = attributes.get(key)
        if value is not None:
            fields[key] = value
    return fields


class Chain:
    """One hash chain: links events in order, thread-safe, a few microseconds per event.

    ``Chain()`` starts a new chain (fresh UUIDv7 id, seq 0, head :data:`GENESIS_HASH`); pass ``chain_id``,
    ``seq`` and ``head`` to continue one (e.g. a spool adopted after a restart, from its last linked event).
    """

    __slots__ = ("_lock", "_chain_id", "_seq", "_head")

    def __init__(self, chain_id: str | None = None, seq: int = 0, head: str = GENESIS_HASH) -> None:
        """A chain with id ``chain_id`` (new UUIDv7 if None) whose last linked event is ``seq`` with hash ``head``."""
        if seq < 0 or (seq == 0 and head != GENESIS_HASH):
            raise ValueError("a chain at seq 0 has the genesis head")
        if len(head) != 64 or any(c not in "0123456789abcdef" for c in head):
            raise ValueError(f"head must be 64 lowercase hex digits, got {head!r}")
        self._lock = threading.Lock()
        self._chain_id = chain_id or new_event_id()
        self._seq = seq
        self._head = head

    @property
    def chain_id(self) -> str:
        """The chain's id."""
        return self._chain_id

    @property
    def seq(self) -> int:
        """The seq of the last linked event (0 before the first)."""
        return self._seq

    @property
    def head(self) -> str:
        """The hash of the last linked event (:data:`GENESIS_HASH` before the first)."""
        return self._head

    def state(self) -> tuple[str, int, str]:
        """(chain_id, seq, head), read together."""
        with self._lock:
            return self._chain_id, self._seq, self._head

    def rewind(self, seq: int, head: str) -> None:
        """Undo the links after (seq, head): their append to the spool failed, so no seq may be skipped.

        Only valid when nothing else linked meanwhile: the pipeline links and appends under one lock.
        """
        self.set_head(seq, head)

    def set_head(self, seq: int, head: str) -> None:
        """Take the state after events linked elsewhere (the native core's link_events, which reads
        :meth:`state` and links the same way). Only valid where links happen: under the pipeline's lock."""
        with self._lock:
            self._seq, self._head = seq, head

    def link(self, event: AuditEvent) -> tuple[int, str]:
        """Give ``event`` the next seq and its chain attributes (set in ``event.extra``).

        Call it in the order events are appended to the spool (under the same lock, or from the one thread
        that appends), so seq order is append order. The event must not change afterwards. Returns the
        state before it, for :meth:`rewind` should storing the event fail.
        """
        chain_id = self._chain_id
        extra = event.extra
        if extra is None:
            extra = event.extra = {}
        elif not isinstance(extra, dict):  # refused before the chain moves: no seq may be skipped
            raise TypeError(f"event.extra must be a dict, not {type(extra).__name__}")
        fields, plain = _event_fields(event, chain_id, 0, GENESIS_HASH)  # seq and prev are set below
        with self._lock:
            seq = self._seq + 1
            prev = self._head
            fields["audit.chain.seq"] = seq
            fields["audit.chain.prev_hash"] = prev
            digest = _hash_presorted(fields, plain)
            self._seq = seq
            self._head = digest
        extra[semconv.CHAIN_ID] = chain_id
        extra[semconv.CHAIN_SEQ] = seq
        extra[semconv.CHAIN_PREV] = prev
        extra[semconv.CHAIN_HASH] = digest
        return seq - 1, prev

    def checkpoint(
        self,
        signer: Signer,
        *,
        make_event: Callable[[str], AuditEvent] | None = None,
        time_ns: int | None = None,
    ) -> AuditEvent:
        """Sign the current head and link the ``audit.checkpoint`` event carrying it, atomically.

        The checkpoint covers seq N (the last event linked before it) and is itself linked as seq N+1.
        ``make_event(payload_json)`` builds the event (default: :func:`signing.checkpoint_event`); its
        time defaults to now and is also the ``time_unix_nano`` in the signed payload.
        """
        from .signing import checkpoint_event, sign_checkpoint

        now = time.time_ns() if time_ns is None else time_ns
        with self._lock:
            payload = sign_checkpoint(signer, self._chain_id, self._seq, self._head, now)
            text = orjson.dumps(payload).decode()
            event = make_event(text) if make_event is not None else checkpoint_event(text, now)
            digest = _hash_presorted(*_event_fields(event, self._chain_id, self._seq + 1, self._head))
            seq, prev = self._seq + 1, self._head
            self._seq, self._head = seq, digest
        extra = event.extra
        if extra is None:
            extra = event.extra = {}
        extra.update({semconv.CHAIN_ID: self._chain_id, semconv.CHAIN_SEQ: seq, semconv.CHAIN_PREV: prev,
                      semconv.CHAIN_HASH: digest})
        return event
