"""SQLAlchemy: model change history for the listed mapped classes, recorded when the transaction commits.

Seams (SQLAlchemy's public ORM events, listened to on the `Session` class, so every session has them):
- `before_flush` / `after_flush`: the objects a flush inserts, updates and deletes, with each column
  attribute's history (the old value SQLAlchemy kept when the attribute was set); in `after_flush` the
  session still shows its pre-flush state, and new rows have their primary key.
- `do_orm_execute`: ORM-enabled bulk `update()` / `delete()` statements (and legacy `Query.update()` /
  `.delete()`), which load no objects: the affected rows are read before and after, bounded.
- `after_commit` / `after_soft_rollback` / `after_transaction_end`: events wait for the commit; what a
  rollback (or a rolled-back SAVEPOINT) undid is never recorded.

With `models` empty (the default) nothing is listened to: no cost at all.
"""

from __future__ import annotations

import re
from typing import Any

from .. import runtime
from . import Hooks, Integration, Option, OptionError, capture_internal_exceptions, evaluate, expression, positive_int, record
from .django import public

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_PREFIX_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$")
_PENDING = "auditrail.pending"  # session.info: [(savepoint or None, event type, payload, tenant)] until commit
_BEFORE = "auditrail.before"  # session.info: {state: {column: stored value}} read in before_flush


def parse_models(value: Any) -> str | dict[str, str | None]:
    """`all`, a list of mapped class names (`Policy` or `app.models.Policy`), or a mapping of them to prefixes."""
    if value == "all":
        return "all"
    if isinstance(value, list):
        items = [(name, None, (i,)) for i, name in enumerate(value)]
    elif isinstance(value, dict):
        items = [(name, prefix, (name,)) for name, prefix in value.items()]
    else:
        raise OptionError("must be `all`, a list of mapped classes (Policy or app.models.Policy), "
                          "or a mapping {Policy: prefix}")
    out: dict[str, str | None] = {}
    for name, prefix, path in items:
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise OptionError(f"{name!r} is not a mapped class name, e.g. Policy or app.models.Policy", path)
        if prefix is not None and (not isinstance(prefix, str) or not _PREFIX_RE.match(prefix)):
            raise OptionError(f"the event prefix {prefix!r} must be dotted lower-case words, e.g. policy", path)
        out[name] = prefix
    return out


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


class SQLAlchemyIntegration(Integration):
    """SQLAlchemy ORM model history."""

    name = "sqlalchemy"
    library = "sqlalchemy"
    distribution = "SQLAlchemy"
    versions = ">=1.4,<3"
    events = ("<model>.create", "<model>.update", "<model>.delete")
    options = {
        "models": Option({}, "model history: `all`, [Policy, app.models.Policy, ...] or {Policy: prefix}",
                         parse_models),
        "bulk_max_rows": Option(1000, "rows a bulk update()/delete() reads before and after (above: one summary "
                                      "event)", positive_int),
        "tenant": Option(None, "the tenant: an expression over obj (else context.tenant)", expression("obj")),
    }

    def __init__(self, options: Any) -> None:
        super().__init__(options)
        self._prefixes: dict[type, str | None] = {}  # mapped class -> event prefix (None: not tracked)

    def setup(self, hooks: Hooks) -> None:
        """Listen on the Session class once sqlalchemy.orm is imported (only when models are listed)."""
        if self.config["models"]:
            hooks.on_import("sqlalchemy.orm", lambda orm: self._listen(hooks, orm))

    def _listen(self, hooks: Hooks, orm: Any) -> None:
        from sqlalchemy import event

        for name, fn in (("before_flush", self._before_flush), ("after_flush", self._after_flush),
                         ("do_orm_execute", self._orm_execute), ("after_commit", self._after_commit),
                         ("after_soft_rollback", self._after_soft_rollback),
                         ("after_transaction_end", self._after_transaction_end)):
            event.listen(orm.Session, name, fn)
            hooks.on_undo(lambda name=name, fn=fn: event.remove(orm.Session, name, fn))

    # --- which classes ------------------------------------------------------------------------------

    def prefix(self, cls: type) -> str | None:
        """The event prefix of a mapped class (its name in lower case, or as renamed), None if not tracked."""
        try:
            return self._prefixes[cls]
        except KeyError:
            pass
        wanted = self.config["models"]
        prefix: str | None = None
        if wanted == "all":
            prefix = cls.__name__.lower()
        else:
            for name in (f"{cls.__module__}.{cls.__qualname__}", cls.__qualname__, cls.__name__):
                if name in wanted:
                    prefix = wanted[name] or cls.__name__.lower()
                    break
        self._prefixes[cls] = prefix
        return prefix

    # --- flushes ------------------------------------------------------------------------------------

    def _before_flush(self, session: Any, flush_context: Any, instances: Any) -> None:
        """Read the stored value of attributes set while unloaded (expired after a commit): history lacks it."""
        if runtime.recorder is None:
            return
        with capture_internal_exceptions("integration sqlalchemy flush (before)"):
            from sqlalchemy import inspect

            for obj in session.dirty:
                if self.prefix(type(obj)) is None:
                    continue
                state = inspect(obj)
                missing = [attr.key for attr in state.mapper.column_attrs
                           if state.attrs[attr.key].history.added and not state.attrs[attr.key].history.deleted]
                if missing and state.identity is not None:
                    with session.no_autoflush:
                        stored = self._stored(session, state.mapper, [state.identity], missing)
                    row = stored.get(tuple(state.identity))
                    if row is not None:
                        session.info.setdefault(_BEFORE, {})[state] = row
            for obj in session.deleted:  # the whole row while it exists (an expired object loads it now)
                if self.prefix(type(obj)) is not None:
                    with session.no_autoflush:
                        session.info.setdefault(_BEFORE, {})[inspect(obj)] = {
                            key: getattr(obj, key) for key in _keys(inspect(obj))}

    def _after_flush(self, session: Any, flush_context: Any) -> None:
        if runtime.recorder is None:
            return
        with capture_internal_exceptions("integration sqlalchemy flush"):
            from sqlalchemy import inspect

            stored = session.info.pop(_BEFORE, {})
            for obj in session.new:
                prefix = self.prefix(type(obj))
                if prefix is not None:
                    after = _values(inspect(obj))
                    self._pending(session, f"{prefix}.create", {**_describe(obj), "after": public(after)}, obj)
            for obj in session.dirty:
                prefix = self.prefix(type(obj))
                if prefix is not None:
                    self._changed(session, prefix, obj, stored)
            for obj in session.deleted:
                prefix = self.prefix(type(obj))
                if prefix is not None:
                    before = stored.get(inspect(obj)) or _values(inspect(obj))
                    self._pending(session, f"{prefix}.delete", {**_describe(obj), "before": public(before)}, obj)

    def _changed(self, session: Any, prefix: str, obj: Any, stored: dict[Any, dict[str, Any]]) -> None:
        from sqlalchemy import inspect

        state = inspect(obj)
        known = stored.get(state, {})
        before: dict[str, Any] = {}
        after: dict[str, Any] = {}
        for key in _keys(state):
            history = state.attrs[key].history
            if not history.added:
                continue
            old = history.deleted[0] if history.deleted else known.get(key)
            new = history.added[0]
            if old != new:
                before[key], after[key] = old, new
        if after:  # set to the same value: nothing happened to the data
            names = sorted(after)
            self._pending(session, f"{prefix}.update", {**_describe(obj), "before": public(before),
                                                        "after": public(after), "changed": names}, obj)

    # --- bulk statements ----------------------------------------------------------------------------

    def _orm_execute(self, state: Any) -> Any:
        """ORM bulk update()/delete() of a tracked class: rows read before (and after), bounded; else nothing."""
        if not (state.is_update or state.is_delete) or runtime.recorder is None:
            return None
        mapper = state.bind_mapper
        prefix = None if mapper is None else self.prefix(mapper.class_)
        if prefix is None:
            return None
        before: dict[tuple[Any, ...], dict[str, Any]] | None = None
        limit = self.config["bulk_max_rows"]
        params = state.parameters
        with capture_internal_exceptions("integration sqlalchemy bulk (before)"):
            if not isinstance(params, list):  # a list: UPDATE by primary key, one per dict (no WHERE to read by)
                where = state.statement.whereclause
                with state.session.no_autoflush:
                    before = self._stored(state.session, mapper, None, None, where, limit + 1)
        result = state.invoke_statement()
        with capture_internal_exceptions("integration sqlalchemy bulk"):
            self._bulk(state, mapper, prefix, before, result, limit)
        return result

    def _bulk(self, state: Any, mapper: Any, prefix: str, before: dict[tuple[Any, ...], dict[str, Any]] | None,
              result: Any, limit: int) -> None:
        session = state.session
        kind = "update" if state.is_update else "delete"
        model = mapper.class_.__name__.lower()
        rows = getattr(result, "rowcount", None)
        if before is None or len(before) > limit:  # too many (or unknown) to read twice: one summary event
            payload = {"model": model, "bulk": True, "rows": rows, "truncated": True}
            if isinstance(state.parameters, list):
                payload.update(rows=len(state.parameters), truncated=False,
                               changed=sorted({k for p in state.parameters for k in p} - set(_pk_keys(mapper))))
            self._pending(session, f"{prefix}.{kind}", payload, None)
            return
        if kind == "delete":
            for pk, row in before.items():
                self._pending(session, f"{prefix}.delete", {"model": model, "pk": _pk_text(pk), "bulk": True,
                                                           "before": public(row)}, None)
            return
        with session.no_autoflush:
            after = self._stored(session, mapper, list(before), None)
        for pk, old in before.items():
            new = after.get(pk)
            if new is None:
                continue
            names = sorted(k for k in new if old.get(k) != new[k])
            if names:
                self._pending(session, f"{prefix}.update", {
                    "model": model, "pk": _pk_text(pk), "bulk": True, "before": public({k: old[k] for k in names}),
                    "after": public({k: new[k] for k in names}), "changed": names}, None)

    def _stored(self, session: Any, mapper: Any, pks: list[Any] | None, keys: list[str] | None, where: Any = None,
                limit: int | None = None) -> dict[tuple[Any, ...], dict[str, Any]]:
        """Rows as stored, by primary key: those with `pks`, or those matching `where` (up to `limit`)."""
        from sqlalchemy import select, tuple_

        pk_keys = _pk_keys(mapper)
        keys = keys if keys is not None else [attr.key for attr in mapper.column_attrs]
        cls = mapper.class_
        query = select(*(getattr(cls, k) for k in pk_keys), *(getattr(cls, k) for k in keys))
        if pks is not None:
            pk_cols = [getattr(cls, k) for k in pk_keys]
            query = query.where(pk_cols[0].in_([p[0] for p in pks]) if len(pk_cols) == 1 else
                                tuple_(*pk_cols).in_([tuple(p) for p in pks]))
        elif where is not None:
            query = query.where(where)
        if limit is not None:
            query = query.limit(limit)
        out = {}
        n = len(pk_keys)
        for row in session.execute(query):
            out[tuple(row[:n])] = dict(zip(keys, row[n:], strict=True))
        return out

    # --- waiting for the commit ---------------------------------------------------------------------

    def _pending(self, session: Any, event_type: str, payload: dict[str, Any], obj: Any) -> None:
        """Keep an event until the transaction commits (tagged with the SAVEPOINT it was made in)."""
        tenant = None
        expr = self.config["tenant"]
        if expr is not None and (obj is not None or "obj" not in expr.names):
            tenant = evaluate(expr, "sqlalchemy.tenant", {"obj": obj, "request": None})
        session.info.setdefault(_PENDING, []).append(
            (session.get_nested_transaction(), event_type, payload, _text(tenant)))

    def _after_commit(self, session: Any) -> None:
        if session.get_nested_transaction() is not None:
            return  # a SAVEPOINT released: its events wait for the outer commit
        pending = session.info.pop(_PENDING, None)
        for _, event_type, payload, tenant in pending or ():
            record(event_type, tenant=tenant, payload=payload)

    def _after_soft_rollback(self, session: Any, previous: Any) -> None:
        pending = session.info.get(_PENDING)
        if not pending:
            return
        if not previous.nested:
            session.info.pop(_PENDING, None)
            return
        session.info[_PENDING] = [item for item in pending if not _within(item[0], previous)]

    def _after_transaction_end(self, session: Any, transaction: Any) -> None:
        if transaction.parent is None:  # the outermost ended without a commit (closed): nothing happened
            session.info.pop(_PENDING, None)
            session.info.pop(_BEFORE, None)


def _within(savepoint: Any, ancestor: Any) -> bool:
    """Whether `savepoint` is `ancestor` or nested inside it."""
    while savepoint is not None:
        if savepoint is ancestor:
            return True
        savepoint = savepoint.parent
    return False


def _keys(state: Any) -> list[str]:
    return [attr.key for attr in state.mapper.column_attrs]


def _values(state: Any) -> dict[str, Any]:
    """The object's column values as the flush wrote them (primary key included)."""
    return {key: state.dict.get(key) for key in _keys(state)}


def _pk_keys(mapper: Any) -> list[str]:
    return [mapper.get_property_by_column(col).key for col in mapper.primary_key]


def _pk_text(pk: tuple[Any, ...]) -> str | None:
    return _text(pk[0]) if len(pk) == 1 else ",".join(str(p) for p in pk)


def _describe(obj: Any) -> dict[str, Any]:
    from sqlalchemy import inspect

    state = inspect(obj)
    identity = state.identity or state.mapper.primary_key_from_instance(obj)
    return {"model": type(obj).__name__.lower(), "pk": _pk_text(tuple(identity)) if identity else None,
            "object": str(obj)}


INTEGRATION = SQLAlchemyIntegration
