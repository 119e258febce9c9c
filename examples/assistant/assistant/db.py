"""SQLite state: where the database lives, its schema, the seed data, and short-lived connections."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

DEFAULT_PATH = ".auditrail/assistant.db"

SCHEMA = """
CREATE TABLE IF NOT EXISTS tenants (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    plan            TEXT NOT NULL,
    quota_override  INTEGER,
    grace_until     TEXT,
    billing_updated_by TEXT,
    billing_updated_at TEXT
);
CREATE TABLE IF NOT EXISTS users (
    id              TEXT PRIMARY KEY,
    display_name    TEXT NOT NULL,
    kind            TEXT NOT NULL DEFAULT 'user',   -- user | service
    global_role     TEXT,                           -- 'support' for vendor staff
    token_sha256    TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS memberships (
    user_id         TEXT NOT NULL REFERENCES users(id),
    tenant_id       TEXT NOT NULL REFERENCES tenants(id),
    role            TEXT NOT NULL,                  -- viewer | editor | admin
    PRIMARY KEY (user_id, tenant_id)
);
CREATE TABLE IF NOT EXISTS prompt_versions (
    tenant_id       TEXT NOT NULL REFERENCES tenants(id),
    version         INTEGER NOT NULL,
    text            TEXT NOT NULL,
    editor          TEXT NOT NULL,
    reason          TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    PRIMARY KEY (tenant_id, version)
);
CREATE TABLE IF NOT EXISTS policies (
    tenant_id       TEXT NOT NULL REFERENCES tenants(id),
    key             TEXT NOT NULL,
    value           TEXT NOT NULL,                  -- JSON
    updated_by      TEXT NOT NULL,
    justification   TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    PRIMARY KEY (tenant_id, key)
);
CREATE TABLE IF NOT EXISTS crawl_runs (
    run_id          TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL REFERENCES tenants(id),
    domain          TEXT NOT NULL,
    trigger         TEXT NOT NULL,
    status          TEXT NOT NULL,                  -- running | succeeded | partial | failed
    pages_crawled   INTEGER NOT NULL DEFAULT 0,
    pages_failed    INTEGER NOT NULL DEFAULT 0,
    error           TEXT,
    started_at      TEXT NOT NULL,
    finished_at     TEXT
);
CREATE TABLE IF NOT EXISTS impersonations (
    session_id      TEXT PRIMARY KEY,
    impersonator    TEXT NOT NULL REFERENCES users(id),
    user_id         TEXT NOT NULL REFERENCES users(id),
    tenant_id       TEXT NOT NULL REFERENCES tenants(id),
    reason          TEXT NOT NULL,
    started_at      TEXT NOT NULL,
    ended_at        TEXT
);
CREATE TABLE IF NOT EXISTS kill_switches (
    feature         TEXT NOT NULL,
    scope           TEXT NOT NULL,                  -- tenant id, or '*' for every tenant
    disabled        INTEGER NOT NULL,
    reason          TEXT NOT NULL,
    actor           TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    PRIMARY KEY (feature, scope)
);
"""

# (id, name, plan)
SEED_TENANTS = [("acme", "Acme Corp", "starter"), ("globex", "Globex Corporation", "pro")]

# (id, display name, kind, global role, bearer token). Demo tokens: a real deployment issues random ones.
SEED_USERS = [
    ("alice@acme.io", "Alice Admin", "user", None, "tok-alice"),
    ("bob@acme.io", "Bob Editor", "user", None, "tok-bob"),
    ("carol@globex.com", "Carol Owner", "user", None, "tok-carol"),
    ("ops@vendor.io", "Vendor Support", "user", "support", "tok-ops"),
    ("scheduler@assistant.internal", "Crawl scheduler", "service", None, "tok-scheduler"),
]

# (user, tenant, role). Bob is an agency editor invited into both tenants.
SEED_MEMBERSHIPS = [
    ("alice@acme.io", "acme", "admin"),
    ("bob@acme.io", "acme", "editor"),
    ("bob@acme.io", "globex", "editor"),
    ("carol@globex.com", "globex", "admin"),
    ("scheduler@assistant.internal", "acme", "editor"),
    ("scheduler@assistant.internal", "globex", "editor"),
]

SEED_PROMPTS = {
    "acme": "You are Acme's product assistant. Answer from the indexed docs only.",
    "globex": "You are Globex's support assistant. Be concise and cite your sources.",
}

_path: Path | None = None


def utcnow() -> str:
    """The current UTC time as ISO-8601 with a Z suffix."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def hash_token(token: str) -> str:
    """The stored form of a bearer token (tokens themselves are never stored)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def database_path() -> Path:
    """The database file: `ASSISTANT_DB`, else .auditrail/assistant.db under the working directory."""
    return Path(os.environ.get("ASSISTANT_DB") or DEFAULT_PATH).resolve()


def init_db(path: Path | None = None) -> Path:
    """Create the database file, its schema and seed rows (idempotent); later connections use it."""
    global _path
    target = path or database_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    _path = target
    with connect() as conn:
        conn.execute("PRAGMA journal_mode = WAL")  # readers never wait for the writer
        conn.executescript(SCHEMA)
        conn.executemany("INSERT OR IGNORE INTO tenants (id, name, plan) VALUES (?, ?, ?)", SEED_TENANTS)
        conn.executemany(
            "INSERT OR IGNORE INTO users (id, display_name, kind, global_role, token_sha256) VALUES (?, ?, ?, ?, ?)",
            [(uid, name, kind, role, hash_token(tok)) for uid, name, kind, role, tok in SEED_USERS],
        )
        conn.executemany(
            "INSERT OR IGNORE INTO memberships (user_id, tenant_id, role) VALUES (?, ?, ?)", SEED_MEMBERSHIPS
        )
        now = utcnow()
        conn.executemany(
            "INSERT OR IGNORE INTO prompt_versions (tenant_id, version, text, editor, reason, created_at)"
            " VALUES (?, 1, ?, 'system', 'initial prompt', ?)",
            [(tenant, text, now) for tenant, text in SEED_PROMPTS.items()],
        )
    return target


@contextmanager
def connect() -> Iterator[sqlite3.Connection]:
    """A connection in one transaction: committed on success, rolled back on error, then closed."""
    if _path is None:
        init_db()
    conn = sqlite3.connect(_path, timeout=10)  # type: ignore[arg-type]
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA foreign_keys = ON")
    try:
        with conn:
            yield conn
    finally:
        conn.close()


def tenant_exists(tenant_id: str) -> bool:
    """Whether a tenant with this id exists."""
    with connect() as conn:
        return conn.execute("SELECT 1 FROM tenants WHERE id = ?", (tenant_id,)).fetchone() is not None
