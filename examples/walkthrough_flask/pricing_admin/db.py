"""The SQLite file (PRICING_DB, default pricing.db), its schema and seed data."""

from __future__ import annotations

import os
import sqlite3

from werkzeug.security import generate_password_hash

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, password_hash TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS plans (
    tenant_id TEXT NOT NULL, plan_id TEXT NOT NULL, price_cents INTEGER NOT NULL, PRIMARY KEY (tenant_id, plan_id));
CREATE TABLE IF NOT EXISTS prompts (tenant_id TEXT PRIMARY KEY, text TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS settings (tenant_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (tenant_id, key));
"""

# The seeded people: a user per tenant (the passwords are the walk-through's, not secrets).
USERS = {"alice@acme.io": ("acme", "alice-pw-1"), "bob@globex.com": ("globex", "bob-pw-2")}


def path() -> str:
    """Where the database lives."""
    return os.environ.get("PRICING_DB", "pricing.db")


def connect() -> sqlite3.Connection:
    """A connection with rows as mappings; the schema and seed data are made on first use."""
    conn = sqlite3.connect(path())
    conn.row_factory = sqlite3.Row
    if conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'users'").fetchone()[0] == 0:
        conn.executescript(SCHEMA)
        for user, (tenant, password) in USERS.items():
            conn.execute("INSERT INTO users VALUES (?, ?, ?)", (user, tenant, generate_password_hash(password)))
            conn.execute("INSERT INTO prompts VALUES (?, ?)", (tenant, f"You are {tenant}'s helpful assistant."))
            for plan, price in (("starter", 900), ("pro", 2900), ("team", 9900)):
                conn.execute("INSERT INTO plans VALUES (?, ?, ?)", (tenant, plan, price))
        conn.commit()
    return conn
