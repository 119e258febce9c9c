"""Flask-Admin: a ModelView's create, update, delete and bulk actions, with before/after values.

Seams: `create_model`, `update_model`, `delete_model` (the documented methods every view's save and
delete goes through, with the form and the object; a backend's ModelView overrides the base class's, so
each known backend's is wrapped as its module is imported) and `ActionsMixin.handle_action` (every bulk
action). Flask-Admin catches a failed save itself (flashes, rolls back and returns False): that False is
the event's `failure` outcome. `on_model_change` and friends are hooks for the app to override, often
without `super()`, so they are not relied on.

The same event types as the Django admin: `admin.object.create|update|delete` and `admin.action`. The
actor is the request's Flask-Login user (the flask_login integration), the tenant the `tenant` option.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import runtime
from . import Hooks, Integration, Option, boolean, capture_internal_exceptions, evaluate, expression, positive_int, record
from .django import public
from .flask_login import current_user, source_ip

# Each backend's ModelView overrides create_model/update_model/delete_model without calling the base class's.
_VIEWS = (("flask_admin.model.base", "BaseModelView"), ("flask_admin.contrib.sqla.view", "ModelView"),
          ("flask_admin.contrib.peewee.view", "ModelView"), ("flask_admin.contrib.mongoengine.view", "ModelView"),
          ("flask_admin.contrib.pymongo.view", "ModelView"))


def model_name(view: Any, obj: Any = None) -> str:
    """The model's class name in lower case (the view's model, else the object's class)."""
    model = getattr(view, "model", None) or type(obj)
    return getattr(model, "__name__", str(model)).lower()


def columns(obj: Any) -> list[str] | None:
    """The mapped column attributes of a SQLAlchemy object (None: not one)."""
    try:
        from sqlalchemy import inspect
        from sqlalchemy.exc import NoInspectionAvailable
    except ImportError:
        return None
    try:
        return [attr.key for attr in inspect(obj).mapper.column_attrs]
    except NoInspectionAvailable:
        return None


def snapshot(obj: Any, form: Any = None) -> dict[str, Any]:
    """The object's column values (SQLAlchemy), else the values of the form's fields on it."""
    names = columns(obj)
    if names is None:
        names = [name for name in getattr(form, "data", {}) if hasattr(obj, name)]
    return {name: getattr(obj, name, None) for name in names}


def changed(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Names whose value differs (only names present on both sides)."""
    return [name for name, value in after.items() if name in before and before[name] != value]


def _error_flashes() -> int:
    """How many error messages the request has flashed so far (Flask keeps them in the session)."""
    import flask

    flashes = flask.session.get("_flashes") or ()
    return sum(1 for category, _ in flashes if category == "error")


class FlaskAdminIntegration(Integration):
    """Flask-Admin's model views."""

    name = "flask_admin"
    library = "flask_admin"
    distribution = "Flask-Admin"
    versions = ">=2,<3"
    events = ("admin.object.create", "admin.object.update", "admin.object.delete", "admin.action")
    options = {
        "actions": Option(True, "record bulk actions (the action, the model, the selected ids)", boolean),
        "bulk_max_rows": Option(1000, "ids listed in one admin.action event (above: the count only)", positive_int),
        "tenant": Option(None, "the tenant: an expression over obj, user, request (else context.tenant)",
                         expression("obj", "user")),
    }

    def setup(self, hooks: Hooks) -> None:
        """Wrap each backend's save and delete methods, and bulk actions, as their modules are imported."""
        for module, cls in _VIEWS:
            hooks.on_import(module, lambda mod, cls=cls: self._wrap_view(hooks, getattr(mod, cls)))
        if self.config["actions"]:
            hooks.on_import("flask_admin.actions",
                            lambda mod: hooks.wrap(mod.ActionsMixin, "handle_action", self._handle_action))

    def _wrap_view(self, hooks: Hooks, view: Any) -> None:
        hooks.wrap(view, "create_model", self._create_model)
        hooks.wrap(view, "update_model", self._update_model)
        hooks.wrap(view, "delete_model", self._delete_model)

    def emit(self, event_type: str, payload: dict[str, Any], obj: Any, outcome: str, risk: str | None = None) -> None:
        """Record with the request's source IP and the `tenant` option (the actor: flask_login's fallback)."""
        tenant = None
        expr = self.config["tenant"]
        if expr is not None and (obj is not None or "obj" not in expr.names):
            import flask

            request = flask.request if flask.has_request_context() else None
            tenant = evaluate(expr, "flask_admin.tenant", {"obj": obj, "user": current_user(), "request": request})
        record(event_type, tenant=tenant, source_ip=source_ip(), payload=payload, outcome=outcome, risk=risk)

    def _describe(self, view: Any, obj: Any) -> dict[str, Any]:
        pk = view.get_pk_value(obj)
        return {"model": model_name(view, obj), "pk": None if pk is None else str(pk), "object": str(obj)}

    def _create_model(self, wrapped: Callable[..., Any], view: Any, args: tuple[Any, ...],
                      kwargs: dict[str, Any]) -> Any:
        if runtime.recorder is None:
            return wrapped(*args, **kwargs)
        form = args[0] if args else kwargs.get("form")
        try:
            result = wrapped(*args, **kwargs)
        except Exception:
            self._created(view, form, None)
            raise
        self._created(view, form, result)
        return result

    def _created(self, view: Any, form: Any, obj: Any) -> None:
        with capture_internal_exceptions("integration flask_admin create"):
            if obj is None or obj is False:  # Flask-Admin caught the failure (flashed, rolled back)
                attempted = dict(getattr(form, "data", {}))
                payload = {"model": model_name(view), "attempted": public(attempted)}
                self.emit("admin.object.create", payload, None, "failure")
                return
            after = snapshot(obj, form)
            payload = {**self._describe(view, obj), "after": public(after),
                       "changed": sorted(k for k, v in after.items() if v not in (None, ""))}
            self.emit("admin.object.create", payload, obj, "success")

    def _update_model(self, wrapped: Callable[..., Any], view: Any, args: tuple[Any, ...],
                      kwargs: dict[str, Any]) -> Any:
        if runtime.recorder is None:
            return wrapped(*args, **kwargs)
        form = args[0] if args else kwargs.get("form")
        obj = args[1] if len(args) > 1 else kwargs.get("model")
        before: dict[str, Any] | None = None
        with capture_internal_exceptions("integration flask_admin update (before)"):
            before = snapshot(obj, form)  # the object as loaded for the edit form, before populate_obj
        return _call_then(wrapped, args, kwargs, lambda ok: self._updated(view, form, obj, before or {}, ok))

    def _updated(self, view: Any, form: Any, obj: Any, before: dict[str, Any], ok: bool) -> None:
        with capture_internal_exceptions("integration flask_admin update"):
            payload = self._describe(view, obj)
            if ok:
                after = snapshot(obj, form)  # committed: read back as stored
                names = changed(before, after)
                payload.update(before=public({k: before[k] for k in names}),
                               after=public({k: after[k] for k in names}), changed=names)
            else:  # rolled back: what was tried, beside what is stored
                data = getattr(form, "data", {})
                attempted = {k: v for k, v in data.items() if k in before}
                names = changed(before, attempted)
                payload.update(before=public({k: before[k] for k in names}),
                               attempted=public({k: attempted[k] for k in names}), changed=names)
            self.emit("admin.object.update", payload, obj, "success" if ok else "failure")

    def _delete_model(self, wrapped: Callable[..., Any], view: Any, args: tuple[Any, ...],
                      kwargs: dict[str, Any]) -> Any:
        if runtime.recorder is None:
            return wrapped(*args, **kwargs)
        obj = args[0] if args else kwargs.get("model")
        payload: dict[str, Any] | None = None
        with capture_internal_exceptions("integration flask_admin delete (before)"):
            payload = {**self._describe(view, obj), "before": public(snapshot(obj))}  # the pk: gone after
        return _call_then(wrapped, args, kwargs, lambda ok: self._deleted(payload, obj, ok))

    def _deleted(self, payload: dict[str, Any] | None, obj: Any, ok: bool) -> None:
        if payload is not None:
            with capture_internal_exceptions("integration flask_admin delete"):
                self.emit("admin.object.delete", payload, obj, "success" if ok else "failure", risk="high")

    def _handle_action(self, wrapped: Callable[..., Any], view: Any, args: tuple[Any, ...],
                       kwargs: dict[str, Any]) -> Any:
        if runtime.recorder is None:
            return wrapped(*args, **kwargs)
        payload: dict[str, Any] | None = None
        with capture_internal_exceptions("integration flask_admin action (before)"):
            payload = self._action_payload(view)
        if payload is None:
            return wrapped(*args, **kwargs)
        outcome = "failure"
        errors = _error_flashes()
        try:
            result = wrapped(*args, **kwargs)
            # Flask-Admin's actions catch their failures and flash an error instead (action_delete does).
            outcome = "failure" if _error_flashes() > errors else "success"
            return result
        finally:
            with capture_internal_exceptions("integration flask_admin action"):
                self.emit("admin.action", payload, None, outcome, risk="high" if payload["action"] == "delete" else None)

    def _action_payload(self, view: Any) -> dict[str, Any] | None:
        """The action and the selected ids (None: not a POST naming an allowed action and some rows)."""
        import flask

        if not flask.has_request_context() or flask.request.method != "POST":
            return None
        form = flask.request.form
        action, ids = form.get("action"), form.getlist("rowid")
        if not action or not ids or not view.is_action_allowed(action):
            return None
        limit = self.config["bulk_max_rows"]
        payload: dict[str, Any] = {"action": action, "model": model_name(view), "ids": ids[:limit], "count": len(ids)}
        if len(ids) > limit:
            payload["truncated"] = True
        return payload


INTEGRATION = FlaskAdminIntegration


def _call_then(wrapped: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
               then: Callable[[bool], None]) -> Any:
    """Call Flask-Admin's update/delete_model, then `then(ok)` however it ends: False back (the failure it
    caught, flashed and rolled back) or an exception is not ok."""
    ok = False
    try:
        result = wrapped(*args, **kwargs)
        ok = result is not False
        return result
    finally:
        then(ok)
