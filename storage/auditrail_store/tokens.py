"""Bearer tokens of the store service: create, list, revoke, authenticate (``auditrail tokens ...``).

A token reads ``art_<token_id>_<secret>``: ``token_id`` (16 hex digits) is public, the lookup key and what
``list``/``revoke`` show; ``secret`` is 256 random bits (base64url). Only ``SHA-256(secret)`` is stored
(table ``api_tokens``, migration 0010): a fast hash is the right one for high-entropy secrets, there is
nothing to brute-force. Checking a presented token looks the row up by id and compares the hashes with
``hmac.compare_digest`` (constant time). Tokens never reach a log: the service logs token ids only.

Scopes: ``read`` (exports, verify), ``ingest`` (``POST /v1/logs``), ``approve`` (decide approval requests;
the token's description names its holder, the approver), ``admin`` (everything, including tokens).
A token acts for one tenant, or for every tenant with ``*`` (ingest tokens usually are).

Tokens live in the store itself, so every replica of a stateless service (ClickHouse server or cluster)
sees the same ones; the service caches lookups for a few seconds (``cache_seconds``), so a revocation
reaches every replica within that time and at once on the replica that revoked it.

Unknown token ids cost no lookup: the service keeps the set of token ids that exist (ids only: public, no
hashes), read again at most once every ``unknown_seconds`` (1 s) and only when an id not in it shows up. A
well-formed token with an unknown id is then refused from memory (a lookup each cost 6.6 ms of CPU, against
1.1 ms for a malformed token), however many ids an attacker tries; a token created on this replica is added
at once, one created on another is refused for at most ``unknown_seconds``.
"""

from __future__ import annotations

import getpass
import hashlib
import hmac
import re
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from .db import Store, StoreError, check_tenant

__all__ = ["ALL_TENANTS", "SCOPES", "TokenInfo", "TokenStore", "hash_secret", "new_token", "parse_token"]

SCOPES = ("read", "ingest", "approve", "admin")
ALL_TENANTS = "*"
PREFIX = "art_"
_TOKEN = re.compile(r"art_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
_COLUMNS = ("token_id", "tenant_id", "scope", "description", "created_at", "created_by", "revoked_at", "revoked_by")


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """What a token may do (never its secret)."""

    token_id: str
    tenant_id: str
    scope: str
    description: str = ""
    created_at: datetime | None = None
    created_by: str = ""
    revoked_at: datetime | None = None
    revoked_by: str = ""

    @property
    def active(self) -> bool:
        """Not revoked."""
        return self.revoked_at is None

    def allows(self, scope: str, tenant: str | None = None) -> bool:
        """True when this token may act with `scope` (admin may do all) for `tenant` (None: any one tenant)."""
        if not self.active or (self.scope != "admin" and self.scope != scope):
            return False
        return tenant is None or self.tenant_id == ALL_TENANTS or self.tenant_id == tenant

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, without secrets (there are none here)."""
        def iso(value: datetime | None) -> str | None:
            return None if value is None else value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")

        return {"token_id": self.token_id, "tenant": self.tenant_id, "scope": self.scope,
                "description": self.description, "created_at": iso(self.created_at), "created_by": self.created_by,
                "revoked_at": iso(self.revoked_at), "revoked_by": self.revoked_by, "active": self.active}


def new_token() -> tuple[str, str, str]:
    """(token_id, secret, token) with fresh randomness from the OS."""
    token_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)  # 32 bytes -> 43 base64url characters
    return token_id, secret, f"{PREFIX}{token_id}_{secret}"


def parse_token(token: str) -> tuple[str, str] | None:
    """(token_id, secret) of a well-formed token, else None."""
    match = _TOKEN.fullmatch(token.strip()) if isinstance(token, str) else None
    return (match.group(1), match.group(2)) if match else None


def hash_secret(secret: str) -> str:
    """hex SHA-256 of a token's secret part: what is stored."""
    return hashlib.sha256(secret.encode()).hexdigest()




def who() -> str:
    """The OS user, for created_by / revoked_by."""
    try:
        return f"os:{getpass.getuser()}"
    except Exception:  # no passwd entry in some containers
        return "os:unknown"


class TokenStore:
    """The api_tokens table behind a small cache."""

    def __init__(self, store: Store, cache_seconds: float = 5.0, cache_size: int = 10_000,
                 unknown_seconds: float = 1.0) -> None:
        self._store = store
        self._table = store.table("api_tokens")
        self._cache_seconds = cache_seconds
        self._cache_size = cache_size
        self._cache: OrderedDict[str, tuple[float, tuple[str, TokenInfo] | None]] = OrderedDict()
        self._lock = threading.Lock()  # the cache and the known ids
        self._db_lock = threading.Lock()  # one statement at a time on the handle (HTTP sessions refuse overlap)
        self._unknown_seconds = unknown_seconds
        self._known: frozenset[str] = frozenset()  # the token ids that exist, as of _known_at
        self._known_at = -float("inf")
        self._refresh_lock = threading.Lock()  # one reading of the ids at a time; the others wait for it
        self._created: set[str] = set()  # ids created here: known even to a reading that started before

    def create(self, tenant: str, scope: str, description: str = "", created_by: str = "") -> tuple[str, TokenInfo]:
        """A new token: (the token, shown once and never again; its info)."""
        if scope not in SCOPES:
            raise StoreError(f"invalid scope {scope!r}: one of {', '.join(SCOPES)}")
        check_tenant(tenant)
        token_id, secret, token = new_token()
        now = datetime.now(timezone.utc)
        self._command(
            f"INSERT INTO {self._table} (token_id, secret_hash, tenant_id, scope, description, created_at, created_by,"
            " version) VALUES ({token_id:String}, {secret_hash:String}, {tenant:String}, {scope:String},"
            " {description:String}, {created_at:DateTime64(3, 'UTC')}, {created_by:String}, 1)",
            {"token_id": token_id, "secret_hash": hash_secret(secret), "tenant": tenant, "scope": scope,
             "description": description[:500], "created_at": now, "created_by": created_by or who()})
        with self._lock:
            self._created.add(token_id)
            self._known = self._known | {token_id}
        return token, TokenInfo(token_id, tenant, scope, description[:500], now, created_by or who())

    def list(self, include_revoked: bool = False) -> list[TokenInfo]:
        """Every token (newest first), without secrets."""
        rows = self._query(
            f"SELECT {', '.join(_COLUMNS)} FROM {self._table} FINAL"
            + ("" if include_revoked else " WHERE revoked_at IS NULL") + " ORDER BY created_at DESC")
        return [TokenInfo(*row) for row in rows]

    def revoke(self, token_id: str, revoked_by: str = "") -> bool:
        """Revoke by id (or by the whole token); False when no active token has that id."""
        parsed = parse_token(token_id)
        token_id = parsed[0] if parsed else token_id.strip()
        row = self._row(token_id)
        if row is None or not row[1].active:
            return False
        self._command(
            f"INSERT INTO {self._table} (token_id, secret_hash, tenant_id, scope, description, created_at, created_by,"
            " revoked_at, revoked_by, version) SELECT token_id, secret_hash, tenant_id, scope, description, created_at,"
            " created_by, now64(3), {revoked_by:String}, version + 1 FROM " + self._table
            + " FINAL WHERE token_id = {token_id:String}",
            {"token_id": token_id, "revoked_by": revoked_by or who()})
        with self._lock:
            self._cache.pop(token_id, None)
        return True

    def authenticate(self, token: str | None) -> TokenInfo | None:
        """The active token's info when `token` is valid, else None (constant-time on the secret)."""
        parsed = parse_token(token or "")
        if parsed is None:
            return None
        token_id, secret = parsed
        row = self._cached_row(token_id)
        if row is None:
            return None
        stored_hash, info = row
        if not hmac.compare_digest(stored_hash, hash_secret(secret)):
            return None
        return info if info.active else None

    def invalidate(self) -> None:
        """Forget cached lookups and the known ids (after a change made elsewhere)."""
        with self._lock:
            self._cache.clear()
            self._known_at = -float("inf")

    def _may_exist(self, token_id: str) -> bool:
        """False when no token has this id: answered from the known ids, read again (once for every waiting
        caller) when they are older than unknown_seconds."""
        with self._lock:
            if token_id in self._known:
                return True
            stale = time.monotonic() - self._known_at >= self._unknown_seconds
        if not stale:
            return False
        with self._refresh_lock:
            with self._lock:
                if time.monotonic() - self._known_at < self._unknown_seconds:  # another caller just read them
                    return token_id in self._known
            started = time.monotonic()
            known = frozenset(row[0] for row in self._query(f"SELECT DISTINCT token_id FROM {self._table}"))
            with self._lock:
                self._known, self._known_at = known | self._created, started
        return token_id in known

    def _cached_row(self, token_id: str) -> tuple[str, TokenInfo] | None:
        if not self._may_exist(token_id):
            return None
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(token_id)
            if hit is not None and now - hit[0] < self._cache_seconds:
                return hit[1]
        row = self._row(token_id)
        with self._lock:
            self._cache[token_id] = (now, row)
            self._cache.move_to_end(token_id)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return row

    def _command(self, sql: str, parameters: dict[str, Any]) -> None:
        with self._db_lock:
            self._store.command(sql, parameters)

    def _query(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        with self._db_lock:
            return self._store.query(sql, parameters).result_rows

    def _row(self, token_id: str) -> tuple[str, TokenInfo] | None:
        rows = self._query(
            f"SELECT secret_hash, {', '.join(_COLUMNS)} FROM {self._table} FINAL WHERE token_id = {{token_id:String}}",
            {"token_id": token_id})
        if not rows:
            return None
        return rows[0][0], TokenInfo(*rows[0][1:])
