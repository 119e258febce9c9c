"""Stripe (stripe-python): subscription create, plan or price change, cancel and metadata changes.

Seams, all public API of stripe-python: the `Subscription` resource's `create`, `modify`, `cancel` (and
their `_async` twins; `cancel` both as `Subscription.cancel(id)` and `sub.cancel()`), the same on
`StripeClient`'s `SubscriptionService` (`client.v1.subscriptions.create/update/cancel`, sync and async),
and `stripe.Webhook.construct_event` / `StripeClient.construct_event` for changes made elsewhere (the
Dashboard, another service): a verified `customer.subscription.*` event carries the old values in
`data.previous_attributes`.

Before values without an extra API call: the subscription as this process last saw it (a create's or
update's response, or a webhook), kept in a bounded cache; a subscription not seen yet has `before: null`.
Only ids, quantities, statuses and metadata are recorded, never the call's parameters (so never `api_key`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from .. import runtime
from . import (Hooks, Integration, Option, boolean, capture_internal_exceptions, evaluate, expression, positive_int,
               record)

PLAN_CHANGE, CREATE, CANCEL, QUOTA = ("billing.plan.change", "billing.subscription.create",
                                      "billing.subscription.cancel", "billing.quota.change")
_PLAN_PARAMS = ("items", "plan", "price", "quantity")
DASHBOARD = "stripe:dashboard"


def _get(obj: Any, key: str) -> Any:
    """obj[key] of a dict or StripeObject (whose `id` is an attribute, not an item), else None."""
    if obj is None or isinstance(obj, str):
        return None
    try:
        value = obj[key]
    except (KeyError, TypeError, IndexError, AttributeError):
        value = None
    return getattr(obj, key, None) if value is None and key == "id" else value


def _plain(mapping: Any) -> dict[str, Any]:
    """A dict or StripeObject of metadata as a plain dict ({} for none)."""
    if not mapping:
        return {}
    return mapping.to_dict() if hasattr(type(mapping), "to_dict") else dict(mapping)


def _one(values: list[Any]) -> Any:
    return values[0] if len(values) == 1 else values or None


def plan_state(sub: Any) -> dict[str, Any]:
    """The price ids, plan ids and quantities of a subscription's items (a scalar each for one item)."""
    items = _get(_get(sub, "items"), "data") or []
    prices = [_get(_get(item, "price"), "id") for item in items if _get(item, "price")]
    plans = [_get(_get(item, "plan"), "id") for item in items if _get(item, "plan")]
    quantities = [_get(item, "quantity") for item in items]
    if not items and _get(sub, "plan"):  # the legacy single-plan shape
        plans, quantities = [_get(_get(sub, "plan"), "id")], [_get(sub, "quantity")]
    return {"price": _one(prices), "plan": _one(plans), "quantity": _one(quantities)}


def snapshot(sub: Any) -> dict[str, Any]:
    """What the events compare: plan state, metadata, status, cancel_at_period_end."""
    return {**plan_state(sub), "metadata": _plain(_get(sub, "metadata")), "status": _get(sub, "status"),
            "cancel_at_period_end": bool(_get(sub, "cancel_at_period_end"))}


class _Seen:
    """The last known snapshot of each subscription id; the API request ids this process made and the
    webhook event ids it recorded (all bounded, oldest forgotten first)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._subs: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._ids: dict[str, OrderedDict[str, None]] = {"request": OrderedDict(), "event": OrderedDict()}

    def swap(self, sub_id: str, state: dict[str, Any] | None) -> dict[str, Any] | None:
        """Remember `state` for `sub_id` (None: forget it); returns the one known before."""
        with self._lock:
            before = self._subs.pop(sub_id, None)
            if state is not None:
                self._subs[sub_id] = state
                while len(self._subs) > self.size:
                    self._subs.popitem(last=False)
            return before

    def add(self, kind: str, key: str | None) -> bool:
        """Remember a `request` or `event` id; whether it is new (None: never remembered, always new)."""
        if not key:
            return True
        with self._lock:
            ids = self._ids[kind]
            if key in ids:
                return False
            ids[key] = None
            while len(ids) > self.size:
                ids.popitem(last=False)
            return True

    def has(self, kind: str, key: str | None) -> bool:
        """Whether a `request` or `event` id was remembered."""
        with self._lock:
            return bool(key) and key in self._ids[kind]


class StripeIntegration(Integration):
    """stripe-python's subscriptions and webhooks."""

    name = "stripe"
    library = "stripe"
    distribution = "stripe"
    versions = ">=12,<17"
    events = (CREATE, PLAN_CHANGE, CANCEL, QUOTA)
    options = {
        "webhooks": Option(True, "record subscription changes made elsewhere from verified webhooks "
                                 "(construct_event)", boolean),
        "cache_size": Option(10000, "subscriptions remembered for before values", positive_int),
        "tenant": Option(None, "the tenant: an expression over obj, the subscription (else context.tenant)",
                         expression("obj")),
    }

    def __init__(self, options: Any) -> None:
        super().__init__(options)
        self.seen = _Seen(self.config["cache_size"])

    def setup(self, hooks: Hooks) -> None:
        """Wrap the Subscription resource, the SubscriptionService and construct_event as they are imported."""

        def resource(mod: Any) -> None:
            cls = mod.Subscription
            for name, kind, id_at in (("create", CREATE, None), ("modify", PLAN_CHANGE, 0), ("cancel", CANCEL, 0)):
                hooks.wrap(cls, name, self._sync(kind, id_at, False))
                hooks.wrap(cls, f"{name}_async", self._async(kind, id_at, False))

        def service(mod: Any) -> None:
            cls = mod.SubscriptionService
            for name, kind, id_at in (("create", CREATE, None), ("update", PLAN_CHANGE, 0), ("cancel", CANCEL, 0)):
                hooks.wrap(cls, name, self._sync(kind, id_at, True))
                hooks.wrap(cls, f"{name}_async", self._async(kind, id_at, True))

        hooks.on_import("stripe._subscription", resource)
        hooks.on_import("stripe._subscription_service", service)
        if self.config["webhooks"]:
            hooks.on_import("stripe._webhook", lambda mod: hooks.wrap(mod.Webhook, "construct_event", self._webhook))
            hooks.on_import("stripe._stripe_client",
                            lambda mod: hooks.wrap(mod.StripeClient, "construct_event", self._webhook))

    # --- API calls ----------------------------------------------------------------------------------

    def _sync(self, kind: str, id_at: int | None, service: bool) -> Callable[..., Any]:
        def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            if runtime.recorder is None:
                return wrapped(*args, **kwargs)
            try:
                result = wrapped(*args, **kwargs)
            except Exception as exc:
                self._called(kind, id_at, service, instance, args, kwargs, None, exc)
                raise
            self._called(kind, id_at, service, instance, args, kwargs, result, None)
            return result

        return wrapper

    def _async(self, kind: str, id_at: int | None, service: bool) -> Callable[..., Any]:
        async def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...],
                          kwargs: dict[str, Any]) -> Any:
            if runtime.recorder is None:
                return await wrapped(*args, **kwargs)
            try:
                result = await wrapped(*args, **kwargs)
            except Exception as exc:
                self._called(kind, id_at, service, instance, args, kwargs, None, exc)
                raise
            self._called(kind, id_at, service, instance, args, kwargs, result, None)
            return result

        return wrapper

    def _called(self, kind: str, id_at: int | None, service: bool, instance: Any, args: tuple[Any, ...],
                kwargs: dict[str, Any], result: Any, error: BaseException | None) -> None:
        with capture_internal_exceptions(f"integration stripe {kind}"):
            if service:  # create(params, options); update(id, params, options); cancel(id, params, options)
                at = 0 if id_at is None else 1
                params = args[at] if len(args) > at else kwargs.get("params")
            else:  # create(**params); modify(id, **params); cancel(id, **params) or sub.cancel(**params)
                params = kwargs
            sub_id = _get(result, "id")
            if sub_id is None and id_at is not None:
                sub_id = args[id_at] if len(args) > id_at else _get(instance, "id")
            params = params if isinstance(params, dict) else {}
            if error is not None:
                self._failed(kind, sub_id, params, error)
                return
            response = getattr(result, "last_response", None)
            self.seen.add("request", getattr(response, "request_id", None))
            after = snapshot(result)
            before = self.seen.swap(str(sub_id), after) if sub_id else None
            if kind == CREATE:
                self._emit(CREATE, result, _created(sub_id, result, after))
            elif kind == CANCEL:
                self._emit(CANCEL, result, _cancelled(sub_id, before, after, at_period_end=False))
            else:
                self._changes(sub_id, result, before, after, params, None)

    def _failed(self, kind: str, sub_id: Any, params: dict[str, Any], error: BaseException) -> None:
        """A refused call: the event it would have been, outcome failure, with Stripe's error."""
        payload: dict[str, Any] = {"subscription": sub_id,
                                   "error": {"type": type(error).__name__,
                                             "code": getattr(error, "code", None),
                                             "message": getattr(error, "user_message", None) or str(error)}}
        kinds = [kind]
        if kind == PLAN_CHANGE:
            kinds = [k for k, keys in ((PLAN_CHANGE, _PLAN_PARAMS), (QUOTA, ("metadata",)),
                                       (CANCEL, ("cancel_at_period_end",))) if any(p in params for p in keys)]
        for event_type in kinds or [PLAN_CHANGE]:
            self._emit(event_type, None, payload, outcome="failure")

    def _changes(self, sub_id: Any, obj: Any, before: dict[str, Any] | None, after: dict[str, Any],
                 params: dict[str, Any] | None, actor: str | None) -> None:
        """The events a change from `before` (None: not known here) to `after` makes."""
        keys = ("price", "plan", "quantity")
        plan_before = None if before is None else {k: before[k] for k in keys}
        plan_after = {k: after[k] for k in keys}
        asked = params is not None and any(p in params for p in _PLAN_PARAMS)
        if plan_before != plan_after and (plan_before is not None or asked):
            self._emit(PLAN_CHANGE, obj, {"subscription": sub_id, "before": plan_before, "after": plan_after,
                                          "changed": [k for k in keys if plan_before is None
                                                      or plan_before[k] != plan_after[k]]}, actor=actor)
        old_meta = None if before is None else before["metadata"]
        new_meta = after["metadata"]
        if params is not None and "metadata" in params and old_meta is None:
            names = sorted(params["metadata"] or {})
        else:
            names = sorted(k for k in {*(old_meta or {}), *new_meta} if (old_meta or {}).get(k) != new_meta.get(k))
        if names:
            self._emit(QUOTA, obj, {"subscription": sub_id, "changed": names,
                                    "before": None if old_meta is None else {k: old_meta.get(k) for k in names},
                                    "after": {k: new_meta.get(k) for k in names}}, actor=actor)
        if after["cancel_at_period_end"] and not (before or {}).get("cancel_at_period_end"):
            self._emit(CANCEL, obj, _cancelled(sub_id, before, after, at_period_end=True), actor=actor)

    def _emit(self, event_type: str, obj: Any, payload: dict[str, Any], outcome: str = "success",
              actor: str | None = None) -> None:
        tenant = None
        expr = self.config["tenant"]
        if expr is not None and (obj is not None or "obj" not in expr.names):
            tenant = evaluate(expr, "stripe.tenant", {"obj": obj, "request": None})
        record(event_type, actor=actor, tenant=None if tenant is None else str(tenant), payload=payload,
               outcome=outcome)

    # --- webhooks -----------------------------------------------------------------------------------

    def _webhook(self, wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...],
                 kwargs: dict[str, Any]) -> Any:
        event = wrapped(*args, **kwargs)  # raises for a bad signature: nothing to record then
        if runtime.recorder is not None:
            with capture_internal_exceptions("integration stripe webhook"):
                self._event(event)
        return event

    def _event(self, event: Any) -> None:
        """A verified customer.subscription.* event: the change it reports, unless this process made it."""
        kind = str(_get(event, "type") or "")
        if not kind.startswith("customer.subscription."):
            return
        if not self.seen.add("event", _get(event, "id")):
            return  # delivered again (Stripe retries; StripeClient.construct_event calls Webhook's): recorded once
        data = _get(event, "data")
        obj = _get(data, "object")
        sub_id = _get(obj, "id")
        after = snapshot(obj)
        known = self.seen.swap(str(sub_id), None if kind.endswith(".deleted") else after)
        request = _get(event, "request")
        request_id = request if isinstance(request, str) else _get(request, "id")
        if self.seen.has("request", request_id):
            return  # this process's own API call: recorded when it was made
        actor = DASHBOARD if request_id is None else None  # an API call from elsewhere: the context's actor
        previous = _get(data, "previous_attributes")
        payload_source = {"webhook": _get(event, "id"), "request": request_id}
        if kind.endswith(".created"):
            self._emit(CREATE, obj, {**_created(sub_id, obj, after), **payload_source}, actor=actor)
        elif kind.endswith(".deleted"):
            self._emit(CANCEL, obj, {**_cancelled(sub_id, known, after, at_period_end=False), **payload_source},
                       actor=actor)
        elif kind.endswith(".updated") and previous:
            before = snapshot({**_plain(obj), **_plain(previous)})  # previous_attributes: the changed keys' old values
            if "metadata" in previous:
                before["metadata"] = {**after["metadata"], **_plain(previous["metadata"])}
                before["metadata"] = {k: v for k, v in before["metadata"].items() if v not in (None, "")}
            self._changes(sub_id, obj, before, after, None, actor)


def _created(sub_id: Any, obj: Any, after: dict[str, Any]) -> dict[str, Any]:
    return {"subscription": sub_id, "customer": _text_id(_get(obj, "customer")), "status": after["status"],
            "price": after["price"], "plan": after["plan"], "quantity": after["quantity"],
            "metadata": after["metadata"]}


def _cancelled(sub_id: Any, before: dict[str, Any] | None, after: dict[str, Any], *, at_period_end: bool) -> dict[str, Any]:
    return {"subscription": sub_id, "at_period_end": at_period_end, "status": after["status"],
            "before": None if before is None else {"status": before["status"], "price": before["price"],
                                                   "plan": before["plan"], "quantity": before["quantity"]}}


def _text_id(value: Any) -> str | None:
    if value is None:
        return None
    return str(value) if isinstance(value, str) else _get(value, "id")


INTEGRATION = StripeIntegration
