"""SQLAlchemy: model change history for the listed mapped classes, recorded when the transaction commits.

Seams (SQLAlchemy's public ORM events):
- `after_insert`, `before_update`, `before_delete` on the listed classes' mappers only (attached as each
  is configured), so a flush of other classes runs none of this code: the row's primary key after the
  INSERT; each column attribute's history (the old value SQLAlchemy kept when it was set; for a column
  set while expired, the stored value, read on the flush's own connection) before the UPDATE; the whole
  row before the DELETE.
- `do_orm_execute` on the `Session` class: ORM-enabled bulk `update()` / `delete()` statements (and legacy
  `Query.update()` / `.delete()`), which load no objects: the affected rows are read before and after, bounded.
- `after_commit` / `after_soft_rollback` / `after_transaction_end` on the `Session` class: events wait for
  the commit; what a rollback (or a rolled-back SAVEPOINT) undid is never recorded.

With `models` empty (the default) nothing is listened to: no cost at all.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from .. import runtime
from . import Hooks, Integration, Option, OptionError, capture_internal_exceptions, evaluate, expression, positive_int, record
from .django import public

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_PREFIX_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$")
_PENDING = "auditrail.pending"  # session.info: [(savepoint, event type, payload, tenant, actor, source_ip)] until commit


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
    versions = ">=2,<3"
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
        """Session-wide: bulk statements and the transaction's end. Per tracked mapper: its rows' changes."""
        from sqlalchemy import event

        def listen(target: Any, name: str, fn: Callable[..., Any], **kw: Any) -> None:
            event.listen(target, name, fn, **kw)
            hooks.on_undo(lambda: event.remove(target, name, fn))

        for name, fn in (("do_orm_execute", self._orm_execute), ("after_commit", self._after_commit),
                         ("after_soft_rollback", self._after_soft_rollback),
                         ("after_transaction_end", self._after_transaction_end)):
            listen(orm.Session, name, fn)
        row_events = (("after_insert", self._inserted), ("before_update", self._updating),
                      ("before_delete", self._deleting))
        if self.config["models"] == "all":
            for name, fn in row_events:
                listen(orm.Mapper, name, fn)
            return
        # Only the listed classes' mappers listen: a flush of anything else runs none of this code.
        attached: set[int] = set()

        def attach(mapper: Any, cls: Any = None) -> None:
            if id(mapper) in attached or self.prefix(mapper.class_) is None:
                return
            attached.add(id(mapper))
            for name, fn in row_events:
                listen(mapper, name, fn, propagate=True)

        listen(orm.Mapper, "mapper_configured", attach)
        from sqlalchemy.orm import mapperlib

        # Mappers configured before auditrail started (an app imported first) fire no mapper_configured again.
        for registry in getattr(mapperlib, "_all_registries", set)():
            for mapper in registry.mappers:
                if mapper.configured:
                    attach(mapper)

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

    # --- rows flushed ------------------------------------------------------------------------------

    def _target_prefix(self, mapper: Any, target: Any) -> str | None:
        """A row's event prefix: its own class's, else the listed base class's (inheritance)."""
        return self.prefix(type(target)) or self.prefix(mapper.class_)

    def _inserted(self, mapper: Any, connection: Any, target: Any) -> None:
        prefix = self._target_prefix(mapper, target)
        if prefix is None or runtime.recorder is None:
            return
        with capture_internal_exceptions("integration sqlalchemy insert"):
            from sqlalchemy import inspect

            state = inspect(target)
            self._pending(state.session, f"{prefix}.create",
                          {**_describe(target), "after": public(_values(state))}, target)

    def _updating(self, mapper: Any, connection: Any, target: Any) -> None:
        """Before the UPDATE: the history's old values (and, for columns set while expired, the stored row)."""
        prefix = self._target_prefix(mapper, target)
        if prefix is None or runtime.recorder is None:
            return
        with capture_internal_exceptions("integration sqlalchemy update"):
            from sqlalchemy import inspect

            state = inspect(target)
            before: dict[str, Any] = {}
            after: dict[str, Any] = {}
            unknown: list[str] = []
            for key in _keys(state):
                history = state.attrs[key].history
                if not history.added:
                    continue
                after[key] = history.added[0]
                if history.deleted:
                    before[key] = history.deleted[0]
                else:  # set while expired (after a commit): SQLAlchemy kept no old value
                    unknown.append(key)
            if unknown and state.identity is not None:
                stored = self._stored(connection, state.mapper, [state.identity], unknown)
                before.update(stored.get(tuple(state.identity), {}))
            names = sorted(k for k in after if before.get(k) != after[k])
            if names:  # set to the same value: nothing happened to the data
                self._pending(state.session, f"{prefix}.update", {
                    **_describe(target), "before": public({k: before.get(k) for k in names}),
                    "after": public({k: after[k] for k in names}), "changed": names}, target)

    def _deleting(self, mapper: Any, connection: Any, target: Any) -> None:
        """Before the DELETE: the whole row (read from the database for columns not loaded)."""
        prefix = self._target_prefix(mapper, target)
        if prefix is None or runtime.recorder is None:
            return
        with capture_internal_exceptions("integration sqlalchemy delete"):
            from sqlalchemy import inspect

            state = inspect(target)
            before = _values(state)
            unloaded = [key for key in _keys(state) if key not in state.dict]
            if unloaded and state.identity is not None:
                before.update(self._stored(connection, state.mapper, [state.identity], unloaded)
                              .get(tuple(state.identity), {}))
            self._pending(state.session, f"{prefix}.delete", {**_describe(target), "before": public(before)}, target)

    # --- bulk statements ----------------------------------------------------------------------------

    def _orm_execute(self, state: Any) -> Any:
        """ORM bulk update()/delete() of a tracked class: rows read before (and after), bounded; else nothing."""
        if not state.statement.is_dml or runtime.recorder is None:  # a class attribute: SELECTs leave here
            return None
        if not (state.is_update or state.is_delete):
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
                with state.session.no_autoflush:  # the statement's own bound values: its WHERE may name them
                    before = self._stored(state.session, mapper, None, None, where, limit + 1, params)
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

    def _stored(self, executor: Any, mapper: Any, pks: list[Any] | None, keys: list[str] | None, where: Any = None,
                limit: int | None = None, params: Any = None) -> dict[tuple[Any, ...], dict[str, Any]]:
        """Rows as stored, by primary key: those with `pks`, or those matching `where` (up to `limit`).

        `executor`: the Session (bulk statements) or, inside a flush, the flush's own Connection."""
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
        for row in executor.execute(query, params or {}):
            out[tuple(row[:n])] = dict(zip(keys, row[n:], strict=True))
        return out

    # --- waiting for the commit ---------------------------------------------------------------------

    def _pending(self, session: Any, event_type: str, payload: dict[str, Any], obj: Any) -> None:
        """Keep an event until the transaction commits (tagged with the SAVEPOINT it was made in)."""
        tenant = None
        expr = self.config["tenant"]
        if expr is not None and (obj is not None or "obj" not in expr.names):
            tenant = evaluate(expr, "sqlalchemy.tenant", {"obj": obj, "request": None})
        # The actor and address are read now, while SQL may run: in after_commit the session refuses it, and
        # reading a user expired by the commit (Flask-Login's current_user) would need it.
        recorder = runtime.recorder
        actor = source_ip = None
        if recorder is not None:
            actor, source_ip = recorder.context_value("actor"), recorder.context_value("source_ip")
        session.info.setdefault(_PENDING, []).append(
            (session.get_nested_transaction(), event_type, payload, _text(tenant), actor, source_ip))

    def _after_commit(self, session: Any) -> None:
        if not session.info.get(_PENDING) or session.get_nested_transaction() is not None:
            return  # nothing pending, or a SAVEPOINT released: its events wait for the outer commit
        pending = session.info.pop(_PENDING)
        for _, event_type, payload, tenant, actor, source_ip in pending:
            record(event_type, tenant=tenant, actor=actor, source_ip=source_ip, payload=payload)

    def _after_soft_rollback(self, session: Any, previous: Any) -> None:
        pending = session.info.get(_PENDING)
        if not pending:
            return
        if not previous.nested:
            session.info.pop(_PENDING, None)
            return
        session.info[_PENDING] = [item for item in pending if not _within(item[0], previous)]

    def _after_transaction_end(self, session: Any, transaction: Any) -> None:
        if transaction.parent is None and session.info.get(_PENDING):  # ended without a commit: nothing happened
            session.info.pop(_PENDING, None)


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
