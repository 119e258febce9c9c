"""Django: logins, the admin's changes and bulk actions, group and permission grants, model history.

Seams (all public and documented, so they hold across releases):
- `django.contrib.auth` signals `user_logged_in`, `user_logged_out`, `user_login_failed`: Django sends them
  itself, with the request; the failed login's credentials arrive already cleansed, and only the
  username field is read.
- `ModelAdmin.save_model`, `delete_model`, `delete_queryset`, `response_action`: the documented override
  points every admin save, delete and bulk action goes through, with the request and the object in hand.
  `log_addition/log_change` carry no before values, and `log_deletion` became `log_deletions` in 5.1.
- `m2m_changed` on `User.groups`, `User.user_permissions`, `Group.permissions`: grants and revocations from
  anywhere (admin forms, `user.groups.add()`, `group.user_set.remove()`).
- Model history: `pre_save`/`post_save`/`post_delete` connected per listed model, plus `QuerySet.update()`,
  which sends no signal (`bulk_update()` goes through it too).

Identity needs no config: the actor is `request.user` read when the event is recorded, the request being
the one auditrail's request capture keeps for the current code (`BaseHandler.get_response`, no
middleware); the source IP is REMOTE_ADDR, or X-Forwarded-For when REMOTE_ADDR is a `trusted_proxies`
address; the tenant is the `tenant` option, an expression over `obj`, `user`, `request`, else `context.tenant`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from .. import runtime
from ..context import current_actor, current_native_request, current_source_ip, current_tenant
from . import (Hooks, Integration, Option, OptionError, admit, boolean, capture_internal_exceptions, client_ip,
               evaluate, expression, networks, positive_int, record)

# Apps whose models `models: all` leaves out: Django's own bookkeeping, not the app's data.
_BOOKKEEPING_APPS = frozenset({"admin", "contenttypes", "sessions", "migrations"})
_LABEL_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*$")
_PREFIX_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$")
_BEFORE = "auditrail_before"  # where pre_save leaves the row's stored values, on the instance's _state

# Set by the impersonation integrations (django-hijack, django-impersonate): each gives the marker of the
# impersonated session a request belongs to, from the library's own session state, or None.
MARKERS: list[Callable[[Any], str | None]] = []
# Each says whether a login/logout in this request is an impersonation switch (recorded as such, not as auth.*).
SWITCHES: list[Callable[[Any], bool]] = []


def parse_models(value: Any) -> str | dict[str, str | None]:
    """`all`, a list of `app_label.Model`, or a mapping of them to event-type prefixes (null: the default)."""
    if value == "all":
        return "all"
    if isinstance(value, list):  # where an error points: the item's index in a list, its key in a mapping
        items = [(label, None, (i,)) for i, label in enumerate(value)]
    elif isinstance(value, dict):
        items = [(label, prefix, (label,)) for label, prefix in value.items()]
    else:
        raise OptionError("must be `all`, a list of app_label.Model, or a mapping {app_label.Model: prefix}")
    out: dict[str, str | None] = {}
    for label, prefix, path in items:
        if not isinstance(label, str) or not _LABEL_RE.match(label):
            raise OptionError(f"{label!r} is not an app_label.Model name, e.g. catalog.Policy", path)
        if prefix is not None and (not isinstance(prefix, str) or not _PREFIX_RE.match(prefix)):
            raise OptionError(f"the event prefix {prefix!r} must be dotted lower-case words, e.g. policy", path)
        out[label] = prefix
    return out


def _user(request: Any) -> Any:
    """The authenticated user of `request` (read now: hijack and login change it mid-request), or None."""
    from django.core.exceptions import SynchronousOnlyOperation

    try:
        user = getattr(request, "user", None)
        return user if user is not None and getattr(user, "is_authenticated", False) else None
    except SynchronousOnlyOperation:
        return None  # an async view that never loaded request.user: reading it here would need the DB


def _username(user: Any) -> str | None:
    return None if user is None else str(user.get_username())


def marker_for(request: Any) -> str | None:
    """The impersonation marker of `request`, from the first impersonation integration that knows it."""
    for marker in MARKERS:
        value = None
        with capture_internal_exceptions("integration impersonation marker"):  # the event is kept, unlinked
            value = marker(request)
        if value is not None:
            return value
    return None


class DjangoIntegration(Integration):
    """Django's auth, admin and models."""

    name = "django"
    library = "django"
    distribution = "Django"
    versions = ">=4.2,<6"
    events = ("auth.login", "auth.logout", "auth.login.failed", "admin.object.create", "admin.object.update",
              "admin.object.delete", "admin.action", "access.grant", "access.revoke",
              "<app_label>.<model>.create", "<app_label>.<model>.update", "<app_label>.<model>.delete")
    options = {
        "auth": Option(True, "record logins, logouts and failed logins", boolean),
        "admin": Option(True, "record the admin's create, change, delete and bulk actions", boolean),
        "access": Option(True, "record group and permission grants and revocations", boolean),
        "models": Option({}, "model history: `all`, [app_label.Model, ...] or {app_label.Model: prefix}",
                         parse_models),
        "bulk_max_rows": Option(1000, "QuerySet.update() rows read before and after (above: one summary event)",
                                positive_int),
        "trusted_proxies": Option((), "proxies whose X-Forwarded-For is believed, e.g. [10.0.0.0/8]", networks),
        "tenant": Option(None, "the tenant: an expression over obj, user, request (else context.tenant)",
                         expression("obj", "user")),
    }

    def __init__(self, options: Any) -> None:
        super().__init__(options)
        self.tracked: dict[Any, str] = {}  # model class -> event-type prefix
        self._relations: dict[Any, tuple[str, Any, Any, str, str]] | None = None

    # --- setup ----------------------------------------------------------------------------------------

    def setup(self, hooks: Hooks) -> None:
        """Hook auth signals, the admin, m2m grants and model history as their modules are imported."""
        config = self.config
        if config["auth"]:
            hooks.on_import("django.contrib.auth.signals", lambda mod: self._connect_auth(hooks, mod))
        if config["admin"]:
            hooks.on_import("django.contrib.admin.options", lambda mod: self._wrap_admin(hooks, mod))
        if config["access"]:
            # Once auth's models exist (connecting while django.db.models is half-imported would fail).
            hooks.on_import("django.contrib.auth.models",
                            lambda mod: hooks.connect(_signals().m2m_changed, self._m2m_changed))
        if config["models"]:
            hooks.on_import("django", lambda mod: self._after_setup(hooks, mod))
            hooks.on_import("django.db.models.query",
                            lambda mod: hooks.replace(mod.QuerySet, "update", self.update_recorder))
        # Only once the app imports Django: an app without it pays nothing for these fallbacks.
        hooks.on_import("django", lambda mod: runtime_sources(self, hooks))
        hooks.register(ACTIVE, self)

    def _connect_auth(self, hooks: Hooks, signals: Any) -> None:
        hooks.connect(signals.user_logged_in, self._logged_in)
        hooks.connect(signals.user_logged_out, self._logged_out)
        hooks.connect(signals.user_login_failed, self._login_failed)

    def _wrap_admin(self, hooks: Hooks, options: Any) -> None:
        admin = options.ModelAdmin
        hooks.wrap(admin, "save_model", self._save_model)
        hooks.wrap(admin, "delete_model", self._delete_model)
        hooks.wrap(admin, "delete_queryset", self._delete_queryset)
        hooks.wrap(admin, "response_action", self._response_action)

    def _after_setup(self, hooks: Hooks, django: Any) -> None:
        """Model signals need the app registry: connect them once `django.setup()` has populated it."""

        def setup(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            result = wrapped(*args, **kwargs)
            with capture_internal_exceptions("integration django models"):
                self._connect_models(hooks)
            return result

        hooks.wrap(django, "setup", setup)
        from django.apps import apps

        if apps.ready:  # set up after the app's own django.setup()
            self._connect_models(hooks)

    def _connect_models(self, hooks: Hooks) -> None:
        from django.apps import apps
        from django.db.models import signals

        wanted = self.config["models"]
        if wanted == "all":
            models = {m: None for m in apps.get_models() if m._meta.app_label not in _BOOKKEEPING_APPS}
        else:
            models = {}
            for label, prefix in wanted.items():
                try:
                    models[apps.get_model(label)] = prefix
                except (LookupError, ValueError):
                    runtime_log_error(f"integrations.django.models: no model {label!r} in this project; "
                                      "its changes are not recorded")
        for model, prefix in models.items():
            self.tracked[model] = prefix or model._meta.label_lower
            hooks.connect(signals.pre_save, self._pre_save, sender=model)
            hooks.connect(signals.post_save, self._post_save, sender=model)
            hooks.connect(signals.pre_delete, self._pre_delete, sender=model)
            hooks.connect(signals.post_delete, self._post_delete, sender=model)

    # --- emitting -----------------------------------------------------------------------------------

    def emit(self, event_type: str, request: Any, payload: dict[str, Any], *, obj: Any = None,
             outcome: str = "success", risk: str | None = None, user: Any = None, actor: Any = None,
             marker: str | None = None, db: str | None = None) -> None:
        """Record `event_type` with the request's identity: user (read now), source IP, tenant, marker.

        `marker`: given for an impersonation start or end; else the request's own (from the library's session).
        `db`: the database alias the change was written to: a successful change is recorded when its
        transaction commits (at once outside one), and not at all when it is rolled back; the identity is
        still read now.
        """
        if request is None:
            request = current_native_request()
        if user is None:
            user = _user(request)
        if actor is None:
            actor = _username(user)
        tenant = None
        expr = self.config["tenant"]
        if expr is not None and (obj is not None or "obj" not in expr.names):  # no object: context.tenant
            tenant = evaluate(expr, "django.tenant", {"obj": obj, "user": user, "request": request})
        if marker is None and request is not None and MARKERS:
            # Even with no session open here: one started in another worker registers itself on first sight.
            marker = marker_for(request)
        # The audit_context() values too are read now: the commit may come after the block that set them.
        fields = {"actor": actor if actor is not None else current_actor(),
                  "tenant": tenant if tenant is not None else current_tenant(),
                  "source_ip": self.source_ip(request) or current_source_ip(), "payload": payload,
                  "outcome": outcome, "risk": risk, "marker": marker}
        if db is not None and outcome == "success":
            from django.db import transaction

            transaction.on_commit(lambda: record(event_type, **fields), using=db)
        else:
            record(event_type, **fields)

    def source_ip(self, request: Any) -> str | None:
        """REMOTE_ADDR, or the client behind `trusted_proxies` from X-Forwarded-For."""
        meta = getattr(request, "META", None)
        if not meta:
            return None
        return client_ip(meta.get("REMOTE_ADDR"), meta.get("HTTP_X_FORWARDED_FOR"), self.config["trusted_proxies"])

    # --- auth ---------------------------------------------------------------------------------------

    def _switching(self, request: Any) -> bool:
        return request is not None and any(switch(request) for switch in SWITCHES)

    def _logged_in(self, sender: Any, request: Any = None, user: Any = None, **kwargs: Any) -> None:
        with capture_internal_exceptions("integration django auth.login"):
            if not self._switching(request):
                self.emit("auth.login", request, {}, user=user)

    def _logged_out(self, sender: Any, request: Any = None, user: Any = None, **kwargs: Any) -> None:
        with capture_internal_exceptions("integration django auth.logout"):
            if user is not None and not self._switching(request):
                self.emit("auth.logout", request, {}, user=user)

    def _login_failed(self, sender: Any, credentials: Any = None, request: Any = None, **kwargs: Any) -> None:
        with capture_internal_exceptions("integration django auth.login.failed"):
            from django.contrib.auth import get_user_model

            field = get_user_model().USERNAME_FIELD
            creds = credentials if isinstance(credentials, dict) else {}
            attempted = creds.get(field, creds.get("username"))  # nothing else: never a password
            self.emit("auth.login.failed", request, {"username": None if attempted is None else str(attempted)},
                      outcome="failure", actor=None if attempted is None else str(attempted))

    # --- the admin ----------------------------------------------------------------------------------

    def _save_model(self, wrapped: Callable[..., Any], admin: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        request, obj, form, change = _bind(args, kwargs, ("request", "obj", "form", "change"))
        admit()
        before: dict[str, Any] | None = None
        with capture_internal_exceptions("integration django admin save (before)"):
            if change and obj.pk is not None:
                before = stored_values(type(obj), obj.pk, None, _db_for(obj))
        try:
            result = wrapped(*args, **kwargs)
        except Exception:
            self._admin_saved(request, obj, form, change, before, "failure")
            raise
        self._admin_saved(request, obj, form, change, before, "success")
        return result

    def _admin_saved(self, request: Any, obj: Any, form: Any, change: bool, before: dict[str, Any] | None,
                     outcome: str) -> None:
        with capture_internal_exceptions("integration django admin save"):
            after = snapshot(obj)
            payload = describe(obj)
            if change:
                changed = changed_fields(type(obj), before or {}, after)
                m2m_before, m2m_after = form_m2m(obj, form)
                changed += [name for name in m2m_after if name not in changed]
                payload.update(before=public({**(before or {}), **m2m_before}),
                               after=public({**after, **m2m_after}), changed=changed)
            else:
                payload.update(after=public(after), changed=sorted(k for k, v in after.items() if v not in (None, "")))
            self.emit("admin.object.update" if change else "admin.object.create", request, payload, obj=obj,
                      outcome=outcome, db=_db_for(obj))

    def _delete_model(self, wrapped: Callable[..., Any], admin: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        request, obj = _bind(args, kwargs, ("request", "obj"))
        payload: dict[str, Any] = {}
        with capture_internal_exceptions("integration django admin delete (before)"):
            payload = {**describe(obj), "before": public(snapshot(obj))}  # the pk as it was: gone after delete()
        return self._call_then_emit("admin.object.delete", wrapped, args, kwargs, request, payload, obj, "high",
                                    _db_for(obj))

    def _delete_queryset(self, wrapped: Callable[..., Any], admin: Any, args: tuple[Any, ...],
                         kwargs: dict[str, Any]) -> Any:
        """The admin's "delete selected" once confirmed: the objects as they were before deletion."""
        request, queryset = _bind(args, kwargs, ("request", "queryset"))
        payload: dict[str, Any] = {}
        with capture_internal_exceptions("integration django delete_selected (before)"):
            payload = {"action": "delete_selected", "model": queryset.model._meta.label_lower,
                       **self._objects(queryset)}
        return self._call_then_emit("admin.action", wrapped, args, kwargs, request, payload, None, "high",
                                    queryset.db)

    def _response_action(self, wrapped: Callable[..., Any], admin: Any, args: tuple[Any, ...],
                         kwargs: dict[str, Any]) -> Any:
        """A bulk action (delete_selected is recorded by delete_queryset, once confirmed)."""
        request, queryset = _bind(args, kwargs, ("request", "queryset"))
        payload: dict[str, Any] | None = None
        with capture_internal_exceptions("integration django admin action (before)"):
            payload = self._action_payload(request, queryset)
        return self._call_then_emit("admin.action", wrapped, args, kwargs, request, payload, None, None,
                                    getattr(queryset, "db", None))

    def _call_then_emit(self, event: str, wrapped: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                        request: Any, payload: dict[str, Any] | None, obj: Any, risk: str | None,
                        db: str | None) -> Any:
        """The app's call, then `event` with its outcome (none when `payload` could not be read: said already)."""
        if payload:
            admit()
        outcome = "failure"
        try:
            result = wrapped(*args, **kwargs)
            outcome = "success"
            return result
        finally:
            if payload:
                with capture_internal_exceptions(f"integration django {event}"):
                    self.emit(event, request, payload, obj=obj, outcome=outcome, risk=risk, db=db)

    def _action_payload(self, request: Any, queryset: Any) -> dict[str, Any] | None:
        """The chosen action and the selected objects (None: not an action to record here)."""
        from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME

        post = request.POST
        actions = post.getlist("action")
        try:
            action = actions[int(post.get("index", 0))]
        except (IndexError, ValueError):
            return None
        selected = post.getlist(ACTION_CHECKBOX_NAME)
        across = post.get("select_across") in ("1", "True", "true")
        if action == "delete_selected" or not (selected or across):
            return None  # delete_selected: delete_queryset records it once confirmed; nothing selected: no-op
        chosen = queryset if across else queryset.filter(pk__in=selected)
        return {"action": action, "model": queryset.model._meta.label_lower, **self._objects(chosen)}

    def _objects(self, queryset: Any) -> dict[str, Any]:
        """Up to bulk_max_rows objects of `queryset` as {pk, object}; their count; whether cut short."""
        limit = self.config["bulk_max_rows"]
        rows = [{"pk": _text(o.pk), "object": str(o)} for o in queryset[: limit + 1]]
        out: dict[str, Any] = {"objects": rows[:limit], "count": len(rows)}
        if len(rows) > limit:
            out.update(count=queryset.count(), truncated=True)
        return out

    # --- group and permission grants ---------------------------------------------------------------

    def relations(self) -> dict[Any, tuple[str, Any, Any, str, str]]:
        """through model -> (relation name, holder model, item model, holder column, item column)."""
        if self._relations is None:
            from django.contrib.auth import get_user_model
            from django.contrib.auth.models import Group

            out = {}
            for owner, attr, name in ((get_user_model(), "groups", "user.groups"),
                                      (get_user_model(), "user_permissions", "user.user_permissions"),
                                      (Group, "permissions", "group.permissions")):
                field = owner._meta.get_field(attr) if hasattr(owner, attr) else None
                if field is not None and field.many_to_many:
                    out[field.remote_field.through] = (name, owner, field.related_model, field.m2m_field_name(),
                                                       field.m2m_reverse_field_name())
            self._relations = out
        return self._relations

    def _m2m_changed(self, sender: Any, instance: Any = None, action: str = "", reverse: bool = False,
                     model: Any = None, pk_set: Any = None, using: str | None = None, **kwargs: Any) -> None:
        if action not in ("pre_add", "pre_remove", "pre_clear", "post_add", "post_remove", "post_clear"):
            return
        relation = None
        with capture_internal_exceptions("integration django access"):
            relation = self.relations().get(sender)
        if relation is None:
            return
        if action.startswith("pre_"):
            admit()  # before the change: fail_closed refuses a grant whose event could not be recorded
            if action != "pre_clear":
                return
        with capture_internal_exceptions("integration django access"):
            name, holder, item, holder_col, item_col = relation
            if action == "pre_clear":  # clear() names no pks: read them while they exist
                mine, other = (item_col, holder_col) if reverse else (holder_col, item_col)
                instance._state.auditrail_cleared = set(
                    sender._default_manager.filter(**{mine: instance.pk}).values_list(other, flat=True))
                return
            if action == "post_clear":
                pk_set = getattr(instance._state, "auditrail_cleared", None)
            if not pk_set:
                return
            others = list(model._default_manager.filter(pk__in=pk_set))
            holders, items = (others, [instance]) if reverse else ([instance], others)
            payload = {"relation": name, _plural(holder): sorted(_display(o) for o in holders),
                       _plural(item): sorted(_display(o) for o in items)}
            event = "access.grant" if action == "post_add" else "access.revoke"
            self.emit(event, None, payload, risk="high", db=using)

    # --- model history -------------------------------------------------------------------------------

    def _pre_save(self, sender: Any, instance: Any = None, raw: bool = False, update_fields: Any = None,
                  using: str | None = None, **kwargs: Any) -> None:
        if raw or runtime.recorder is None:
            return
        admit()  # the save's event must be recordable (fail_closed), creates included
        if instance._state.adding or instance.pk is None:
            return
        with capture_internal_exceptions("integration django history (before)"):
            # One query per save of a tracked model: the stored row, to diff against.
            setattr(instance._state, _BEFORE, stored_values(sender, instance.pk, update_fields, using))

    def _post_save(self, sender: Any, instance: Any = None, created: bool = False, raw: bool = False,
                   update_fields: Any = None, using: str | None = None, **kwargs: Any) -> None:
        if raw or runtime.recorder is None:
            return
        with capture_internal_exceptions("integration django history"):
            prefix = self.tracked[sender]
            after = snapshot(instance, update_fields)
            payload = describe(instance)
            if created:
                payload.update(after=public(after))
                self.emit(f"{prefix}.create", None, payload, obj=instance, db=using)
                return
            before = getattr(instance._state, _BEFORE, None) or {}
            setattr(instance._state, _BEFORE, None)
            changed = changed_fields(sender, before, after)
            if not changed:
                return  # saved unchanged: nothing happened to the data
            payload.update(before=public(_only(before, changed)), after=public(_only(after, changed)),
                           changed=changed)
            self.emit(f"{prefix}.update", None, payload, obj=instance, db=using)

    def _pre_delete(self, sender: Any, **kwargs: Any) -> None:
        if runtime.recorder is not None:
            admit()

    def _post_delete(self, sender: Any, instance: Any = None, using: str | None = None, **kwargs: Any) -> None:
        # Django sends this for QuerySet.delete() too, row by row, because a receiver listens.
        if runtime.recorder is None:
            return
        with capture_internal_exceptions("integration django history delete"):
            payload = {**describe(instance), "before": public(snapshot(instance))}
            self.emit(f"{self.tracked[sender]}.delete", None, payload, obj=instance, db=using)

    def update_recorder(self, original: Callable[..., Any]) -> Callable[..., Any]:
        """QuerySet.update() recording a tracked model's rows (it sends no signal); others pass straight through."""
        tracked = self.tracked

        def update(queryset: Any, **kwargs: Any) -> Any:
            if queryset.model not in tracked or runtime.recorder is None:
                return original(queryset, **kwargs)
            return self._update(original, queryset, kwargs)

        return update

    def _update(self, original: Callable[..., Any], queryset: Any, kwargs: dict[str, Any]) -> Any:
        """The affected rows read before and after the UPDATE (up to bulk_max_rows), one event per changed row."""
        admit()
        prefix = self.tracked[queryset.model]
        limit = self.config["bulk_max_rows"]
        fields = sorted(kwargs)
        before_rows: list[dict[str, Any]] | None = None
        with capture_internal_exceptions("integration django QuerySet.update (before)"):
            before_rows = list(queryset.values("pk", *fields)[: limit + 1])
        count = original(queryset, **kwargs)
        if before_rows is not None:
            with capture_internal_exceptions("integration django QuerySet.update"):
                self._updated(queryset.model, prefix, fields, before_rows, count, limit, queryset.db)
        return count

    def _updated(self, model: Any, prefix: str, fields: list[str], before_rows: list[dict[str, Any]], count: int,
                 limit: int, db: str) -> None:
        if len(before_rows) > limit:  # too many to read twice: one event naming the change, not each row
            self.emit(f"{prefix}.update", None, {"model": model._meta.label_lower, "bulk": True, "rows": count,
                                                "changed": fields, "truncated": True}, db=db)
            return
        pks = [row["pk"] for row in before_rows]
        after_rows = {row["pk"]: row for row in model._default_manager.using(db).filter(pk__in=pks).values("pk", *fields)}
        for before in before_rows:
            after = after_rows.get(before["pk"])
            if after is None:
                continue
            b = {k: v for k, v in before.items() if k != "pk"}
            a = {k: v for k, v in after.items() if k != "pk"}
            changed = changed_fields(model, b, a)
            if changed:
                payload = {"model": model._meta.label_lower, "pk": _text(before["pk"]), "bulk": True,
                           "before": public(_only(b, changed)), "after": public(_only(a, changed)), "changed": changed}
                self.emit(f"{prefix}.update", None, payload, db=db)


# --- values of model instances ---------------------------------------------------------------------


def _signals() -> Any:
    from django.db.models import signals

    return signals


def _db_for(obj: Any) -> str | None:
    """The database the admin writes `obj` to (its transaction is the one the event waits for)."""
    from django.db import router

    return router.db_for_write(type(obj), instance=obj)


def _concrete(model: Any, only: Any = None) -> list[Any]:
    fields = [f for f in model._meta.concrete_fields if not f.many_to_many]
    if only is not None:
        only = set(only)
        fields = [f for f in fields if f.name in only or f.attname in only]
    return fields


def snapshot(obj: Any, only: Any = None) -> dict[str, Any]:
    """The instance's loaded concrete field values by field name (foreign keys as their id).

    Deferred fields (`.only()`, `.defer()`) are left out: reading one would query the database, and
    after a delete there is no row to read.
    """
    deferred = obj.get_deferred_fields()
    return {f.name: getattr(obj, f.attname) for f in _concrete(type(obj), only) if f.attname not in deferred}


def stored_values(model: Any, pk: Any, only: Any = None, using: str | None = None) -> dict[str, Any] | None:
    """The row as stored now in database `using` (one query), by field name; None when it is not there."""
    fields = _concrete(model, only)
    manager = model._default_manager.using(using) if using else model._default_manager
    row = manager.filter(pk=pk).values_list(*(f.attname for f in fields)).first()
    return None if row is None else {f.name: value for f, value in zip(fields, row, strict=True)}


def changed_fields(model: Any, before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Field names whose value differs, compared as the field's Python value (a form's str vs the DB's int)."""
    out = []
    for name, value in after.items():
        if name not in before:
            continue
        try:
            field = model._meta.get_field(name)
            old, new = field.to_python(before[name]), field.to_python(value)
        except Exception:  # noqa: BLE001 - a value the field cannot parse: compare as stored
            old, new = before[name], value
        if old != new:
            out.append(name)
    return out


def form_m2m(obj: Any, form: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Many-to-many fields the admin form changed: their pks before and after (saved after save_model)."""
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    names = {f.name for f in type(obj)._meta.many_to_many}
    for name in getattr(form, "changed_data", ()):
        if name in names:
            before[name] = sorted(_text(getattr(o, "pk", o)) for o in form.initial.get(name) or ())
            after[name] = sorted(_text(getattr(o, "pk", o)) for o in form.cleaned_data.get(name) or ())
    return before, after


def public(values: dict[str, Any]) -> dict[str, Any]:
    """Values without passwords: a password field (even hashed) never leaves the process, only its name."""
    return {k: v for k, v in values.items() if "password" not in k.lower()}


def describe(obj: Any) -> dict[str, Any]:
    """What an event says about the object: its model, pk and text (None when its __str__ fails, e.g. on a
    deleted row whose __str__ needs a deferred field: the event is kept without it)."""
    try:
        text: str | None = str(obj)
    except Exception:  # noqa: BLE001 - the app's own __str__; the rest of the event stands
        text = None
    return {"model": obj._meta.label_lower, "pk": _text(obj.pk), "object": text}


def _only(values: dict[str, Any], names: list[str]) -> dict[str, Any]:
    return {k: values[k] for k in names if k in values}


def _display(obj: Any) -> str:
    if hasattr(obj, "get_username"):
        return str(obj.get_username())
    if hasattr(obj, "codename") and hasattr(obj, "content_type"):
        return f"{obj.content_type.app_label}.{obj.codename}"
    return str(obj)


def _plural(model: Any) -> str:
    return model._meta.model_name + "s" if model._meta.model_name in ("group", "permission") else "users"


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _bind(args: tuple[Any, ...], kwargs: dict[str, Any], names: tuple[str, ...]) -> tuple[Any, ...]:
    """The documented parameters of a hook, whether passed by position or by name."""
    return tuple(args[i] if i < len(args) else kwargs.get(name) for i, name in enumerate(names))


def runtime_log_error(message: str) -> None:
    """Said once at setup, where the app's log shows it."""
    import logging

    logging.getLogger("auditrail").error("auditrail: %s", message)


class RequestSource:
    """A `context:` fallback read from the current Django request (for audit.yaml's own events)."""

    def __init__(self, source: str, read: Callable[[Any], Any]) -> None:
        self.source = source
        self.names: frozenset[str] = frozenset()
        self._read = read

    def evaluate(self, namespace: dict[str, Any]) -> Any:
        """The value for the current request (None outside one)."""
        request = current_native_request()
        return None if request is None else self._read(request)


def runtime_sources(integration: DjangoIntegration, hooks: Hooks) -> None:
    """Give audit.yaml's events the same identity: actor, source IP and marker after the config's own."""
    hooks.add_fallback("actor", RequestSource("django request.user", lambda r: _username(_user(r))))
    hooks.add_fallback("source_ip", RequestSource("django source IP", integration.source_ip))
    hooks.add_fallback("marker", RequestSource("django impersonation session", marker_for))


ACTIVE: list[DjangoIntegration] = []  # the one set up (a list: Hooks.register undoes it on uninstrument)


def identity() -> DjangoIntegration:
    """The Django integration whose options (trusted_proxies, tenant) the impersonation integrations share."""
    return ACTIVE[-1] if ACTIVE else DjangoIntegration({})


INTEGRATION = DjangoIntegration
