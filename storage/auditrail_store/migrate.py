"""Versioned, idempotent schema migrations from ``migrations/NNNN_name.sql`` (`auditrail migrate`).

Each file is a template with a few placeholders, so one file serves a single node and a cluster:

    ${db}          the database, backquoted             ${on_cluster}  "" or ON CLUSTER `name`
    ${local}       "" or "_local" (storage tables)      ${replicated}  "" or "Replicated" (engine prefix)
    ${cluster}     the cluster name, backquoted (only in statements marked ``-- @cluster-only``)

A statement whose leading comment has a line ``-- @cluster-only`` runs only with a cluster (the Distributed
tables), one with ``-- @single-only`` only without one. ``bootstrap.sql`` (database + ``schema_migrations``) runs first every time; each numbered file runs
once, in order, and is recorded with its SHA-256: re-running applies nothing, and a file changed after it
was applied is an error (write a new migration instead). ``grants.sql`` runs only with ``--grants``.
A migration's statements are all ``IF NOT EXISTS`` / idempotent ALTERs, so one interrupted half-way is
safely re-run as a whole (ClickHouse DDL is not transactional).

A TTL on audit rows is written as the default contract's clause; before the statement runs, the store's
retention contracts are rendered in its place (retention.with_contracts): the engine applies a TTL to the rows
an INSERT writes at once, so a table a migration fills must carry them from the start. ``--print`` shows the
files' default clause.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import string
import sys
from dataclasses import dataclass
from importlib import resources

from .db import DEFAULT_DATABASE, Store, StoreError, check_identifier, quote_identifier

_MIGRATION_FILE = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")
CLUSTER_ONLY = "-- @cluster-only"
SINGLE_ONLY = "-- @single-only"  # a statement for a single node only (its cluster twin is marked @cluster-only)


@dataclass(frozen=True)
class Migration:
    """One numbered SQL file."""

    version: int
    name: str
    text: str

    @property
    def checksum(self) -> str:
        """SHA-256 (hex) of the file as shipped."""
        return hashlib.sha256(self.text.encode()).hexdigest()


def _read(name: str) -> str:
    return resources.files(__package__).joinpath("migrations", name).read_text(encoding="utf-8")


def load_migrations() -> list[Migration]:
    """Every numbered migration shipped with the package, in version order."""
    found: dict[int, Migration] = {}
    for entry in resources.files(__package__).joinpath("migrations").iterdir():
        match = _MIGRATION_FILE.fullmatch(entry.name)
        if not match:
            continue
        version = int(match.group(1))
        if version in found:
            raise StoreError(f"two migrations numbered {version:04d}: {found[version].name} and {match.group(2)}")
        found[version] = Migration(version, match.group(2), entry.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


def split_statements(text: str) -> list[str]:
    """The `;`-separated statements of a SQL text (quotes and `--` comments respected), comments kept."""
    statements, current, quote, i = [], [], "", 0
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                current.append(text[i:i + 2])
                i += 2
                continue
            if ch == quote:
                quote = ""
        elif ch in "'`\"":
            quote = ch
        elif text.startswith("--", i):
            end = text.find("\n", i)
            end = len(text) if end < 0 else end
            current.append(text[i:end])
            i = end
            continue
        elif ch == ";":
            statements.append("".join(current))
            current = []
            i += 1
            continue
        current.append(ch)
        i += 1
    statements.append("".join(current))
    return [s.strip() for s in statements if _strip_comments(s)]


def _strip_comments(sql: str) -> str:
    return "\n".join(line for line in sql.splitlines() if not line.strip().startswith("--")).strip()


def render(text: str, database: str, cluster: str | None = None) -> list[str]:
    """The statements of one template for `database` (and `cluster`), without comment-only lines."""
    values = {
        "db": quote_identifier(database, "database name"),
        "local": "_local" if cluster else "",
        "on_cluster": f"ON CLUSTER {quote_identifier(cluster, 'cluster name')}" if cluster else "",
        "replicated": "Replicated" if cluster else "",
        "cluster": quote_identifier(cluster, "cluster name") if cluster else "",
    }
    out = []
    for statement in split_statements(text):
        if any(line.strip() == (SINGLE_ONLY if cluster else CLUSTER_ONLY) for line in statement.splitlines()):
            continue
        try:
            sql = string.Template(statement).substitute(values)
        except (KeyError, ValueError) as exc:
            raise StoreError(f"bad placeholder in migration SQL: {exc}") from exc
        out.append(re.sub(r"[ \t]+\n", "\n", _strip_comments(sql)))
    return out


def plan(database: str, cluster: str | None = None, grants: bool = False) -> list[tuple[str, list[str]]]:
    """(name, statements) of bootstrap, every migration and optionally the grants: what `--print` shows."""
    steps = [("bootstrap", render(_read("bootstrap.sql"), database, cluster))]
    steps += [(f"{m.version:04d}_{m.name}", render(m.text, database, cluster)) for m in load_migrations()]
    if grants:
        steps.append(("grants", render(_read("grants.sql"), database, cluster)))
    return steps


def applied(store: Store) -> dict[int, tuple[str, str]]:
    """version -> (name, checksum) of the migrations recorded in this database."""
    rows = store.query(f"SELECT version, name, checksum FROM {store.table('schema_migrations')} ORDER BY version")
    return {int(v): (n, c) for v, n, c in rows.result_rows}


def migrate(store: Store, cluster: str | None = None) -> list[str]:
    """Apply what is missing, in order; the names applied now (empty when up to date)."""
    if cluster is not None:
        check_identifier(cluster, "cluster name")
    from .retention import contracts, with_contracts  # retention imports this module

    for sql in render(_read("bootstrap.sql"), store.database, cluster):
        store.command(sql)
    done = applied(store)
    # A statement that sets a TTL on audit rows carries the tenants' contracts, never the default alone (retention.with_contracts).
    kept = contracts(store) if store.query(f"EXISTS TABLE {store.table('retention_contracts')}").result_rows[0][0] else []
    names = []
    for m in load_migrations():
        label = f"{m.version:04d}_{m.name}"
        if m.version in done:
            if done[m.version][1] != m.checksum:
                raise StoreError(f"migration {label} changed after it was applied (checksum {done[m.version][1][:12]}"
                                 f" recorded, {m.checksum[:12]} now); never edit an applied migration, add a new one")
            continue
        for sql in render(m.text, store.database, cluster):
            sql, params = with_contracts(sql, kept)
            try:
                store.command(sql, params or None)
            except Exception as exc:  # the engine's message, with which migration and statement failed
                raise StoreError(f"migration {label} failed: {exc}\n  statement: {sql[:300]}") from exc
        store.command(
            f"INSERT INTO {store.table('schema_migrations')} (version, name, checksum)"
            " VALUES ({version:UInt32}, {name:String}, {checksum:String})",
            {"version": m.version, "name": m.name, "checksum": m.checksum},
        )
        names.append(label)
    if names:
        from .retention import reapply  # a migration that rewrote a TTL left the default contract in it

        reapply(store)
    return names


def installed_cluster(store: Store) -> str | None:
    """The cluster this database was migrated with (its Distributed audit_events), or None on a single node."""
    rows = store.query(
        "SELECT engine_full FROM system.tables WHERE database = {db:String} AND name = 'audit_events'"
        " AND engine = 'Distributed'", {"db": store.database}).result_rows
    if not rows:
        return None
    match = re.match(r"Distributed\('?`?([A-Za-z0-9_]+)", rows[0][0])
    return check_identifier(match.group(1), "cluster name") if match else None


def apply_grants(store: Store, cluster: str | None = None) -> int:
    """Create the roles, grants and row policy of grants.sql on a server; the number of statements run."""
    if store.embedded:
        raise StoreError("--grants needs a ClickHouse server: chDB has no users or roles (docs/storage.md, "
                         "'Append-only and grants', lists the statements)")
    statements = render(_read("grants.sql"), store.database, cluster)
    for sql in statements:
        store.command(sql)
    return len(statements)


def main_migrate(args: argparse.Namespace) -> int:
    """`auditrail migrate [--cluster NAME] [--print] [--grants]`."""
    if args.print_only:
        for name, statements in plan(DEFAULT_DATABASE, args.cluster, args.grants):
            print(f"-- {name}")
            for sql in statements:
                print(f"{sql};\n")
        return 0
    with Store.open(args.url) as store:
        names = migrate(store, args.cluster)
        print("\n".join(f"applied {n}" for n in names) if names else "schema up to date")
        if args.grants:
            print(f"grants: {apply_grants(store, args.cluster)} statements")
    return 0


if __name__ == "__main__":
    from .cli import main

    sys.exit(main(["migrate", *sys.argv[1:]]))
