"""The Stripe integration on stripe-python against localstripe (issue 16), and verified webhooks.

localstripe (a stateful fake of the Stripe API) on 127.0.0.1 (test_redaction_stripe's fixture); the
real stripe-python sends it real HTTP requests; audit.yaml has no `events:`. Webhooks are signed with
the app's endpoint secret and verified by the real `stripe.Webhook.construct_event`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from typing import Any

import pytest

stripe = pytest.importorskip("stripe")

from _support_stripe import localstripe_server  # noqa: E402
from test_redaction_stripe import API_KEY  # noqa: E402

SECRET = "whsec_test_integration_secret"


@pytest.fixture(scope="module")
def localstripe() -> Any:
    """localstripe on a free loopback port, answering with request ids."""
    yield from localstripe_server()


@pytest.fixture
def billing(audit: Any, localstripe: str) -> Any:
    previous = stripe.api_base
    stripe.api_base = localstripe
    audit.instrument("delivery: {mode: best_effort}\nintegrations: {stripe: {tenant: 'obj.metadata[\"tenant\"]'}}\n")
    try:
        yield localstripe
    finally:
        stripe.api_base = previous


def plans() -> tuple[str, str]:
    product = stripe.Product.create(api_key=API_KEY, name="assistant")
    basic = stripe.Plan.create(api_key=API_KEY, id=f"basic-{product.id}", amount=1000, currency="usd", interval="month",
                               product=product.id)
    pro = stripe.Plan.create(api_key=API_KEY, id=f"pro-{product.id}", amount=5000, currency="usd", interval="month",
                             product=product.id)
    return basic.id, pro.id


def subscription(plan: str) -> Any:
    customer = stripe.Customer.create(api_key=API_KEY, email="bob@acme.io")
    return stripe.Subscription.create(api_key=API_KEY, customer=customer.id, items=[{"plan": plan, "quantity": 2}],
                                      metadata={"tenant": "acme", "seats": "5"}, trial_period_days=30)


def text(audit: Any) -> str:
    return json.dumps([e["attrs"] for e in audit.events()])


def test_resource_create_plan_change_metadata_and_cancel(audit: Any, billing: str) -> None:
    basic, pro = plans()
    sub = subscription(basic)
    item = sub["items"]["data"][0]["id"]
    stripe.Subscription.modify(sub.id, api_key=API_KEY, items=[{"id": item, "plan": pro, "quantity": 3}])
    # localstripe keeps a subscription's metadata as created: metadata changes are tested with a webhook below.
    stripe.Subscription.cancel(sub.id, api_key=API_KEY)

    create = audit.one("billing.subscription.create")
    assert create["payload"]["subscription"] == sub.id and create["payload"]["plan"] == basic
    assert create["payload"]["quantity"] == 2 and create["attrs"]["audit.tenant_id"] == "acme"
    change = audit.one("billing.plan.change")
    assert change["payload"]["before"] == {"price": None, "plan": basic, "quantity": 2}
    assert change["payload"]["after"] == {"price": None, "plan": pro, "quantity": 3}
    assert change["payload"]["changed"] == ["plan", "quantity"]
    cancel = audit.one("billing.subscription.cancel")
    assert cancel["payload"]["before"]["plan"] == pro and cancel["payload"]["status"] == "canceled"
    assert API_KEY not in text(audit)


def test_a_refused_change_is_a_failure(audit: Any, billing: str) -> None:
    with pytest.raises(stripe.InvalidRequestError):
        stripe.Subscription.modify("sub_missing", api_key=API_KEY, items=[{"plan": "nope"}])
    failed = audit.one("billing.plan.change")
    assert failed["attrs"]["audit.outcome"] == "failure" and failed["payload"]["subscription"] == "sub_missing"
    assert failed["payload"]["error"]["type"] == "InvalidRequestError"
    assert API_KEY not in text(audit)


def test_stripe_client_services_sync_and_async(audit: Any, billing: str) -> None:
    basic, pro = plans()
    client = stripe.StripeClient(API_KEY, base_addresses={"api": billing})
    customer = client.v1.customers.create(params={"email": "bob@acme.io"})
    sub = client.v1.subscriptions.create(params={"customer": customer.id, "items": [{"plan": basic}],
                                                 "metadata": {"tenant": "acme"}, "trial_period_days": 30})
    item = sub["items"]["data"][0]["id"]
    client.v1.subscriptions.update(sub.id, params={"items": [{"id": item, "plan": pro}]})

    async def cancel() -> None:
        await client.v1.subscriptions.cancel_async(sub.id)

    asyncio.run(cancel())
    assert audit.one("billing.subscription.create")["payload"]["plan"] == basic
    change = audit.one("billing.plan.change")
    assert change["payload"]["before"]["plan"] == basic and change["payload"]["after"]["plan"] == pro
    assert audit.one("billing.subscription.cancel")["payload"]["status"] == "canceled"
    assert API_KEY not in text(audit)


def signed(event: dict[str, Any]) -> tuple[str, str]:
    payload = json.dumps(event)
    stamp = int(time.time())
    signature = hmac.new(SECRET.encode(), f"{stamp}.{payload}".encode(), hashlib.sha256).hexdigest()
    return payload, f"t={stamp},v1={signature}"


def test_a_dashboard_change_from_a_verified_webhook_and_our_own_calls_not_twice(audit: Any, billing: str) -> None:
    sub = {"id": "sub_dash", "object": "subscription", "status": "active", "customer": "cus_1",
           "metadata": {"tenant": "acme", "seats": "10"},
           "items": {"object": "list", "data": [{"id": "si_1", "price": {"id": "price_pro"}, "quantity": 4}]}}
    event = {"id": "evt_1", "object": "event", "type": "customer.subscription.updated", "request": {"id": None},
             "data": {"object": sub, "previous_attributes": {
                 "items": {"object": "list", "data": [{"id": "si_1", "price": {"id": "price_basic"}, "quantity": 1}]},
                 "metadata": {"seats": "5"}}}}
    payload, header = signed(event)
    stripe.Webhook.construct_event(payload, header, SECRET)
    with pytest.raises(stripe.SignatureVerificationError):  # not verified: nothing recorded
        stripe.Webhook.construct_event(payload.replace("price_pro", "price_x"), header, SECRET)

    change = audit.one("billing.plan.change")
    assert change["attrs"]["enduser.id"] == "stripe:dashboard" and change["attrs"]["audit.tenant_id"] == "acme"
    assert change["payload"]["before"] == {"price": "price_basic", "plan": None, "quantity": 1}
    assert change["payload"]["after"] == {"price": "price_pro", "plan": None, "quantity": 4}
    quota = audit.one("billing.quota.change")
    assert quota["payload"]["before"] == {"seats": "5"} and quota["payload"]["after"] == {"seats": "10"}



def test_async_resource_calls_and_a_cancel_at_period_end(audit: Any, billing: str) -> None:
    basic, pro = plans()
    sub = subscription(basic)
    item = sub["items"]["data"][0]["id"]

    async def change() -> None:
        await stripe.Subscription.modify_async(sub.id, api_key=API_KEY, items=[{"id": item, "plan": pro}])
        await stripe.Subscription.modify_async(sub.id, api_key=API_KEY, cancel_at_period_end=True)

    asyncio.run(change())
    change_event = audit.one("billing.plan.change")
    assert change_event["payload"]["before"]["plan"] == basic and change_event["payload"]["after"]["plan"] == pro
    cancel = audit.one("billing.subscription.cancel")
    assert cancel["payload"]["at_period_end"] is True and cancel["payload"]["before"]["plan"] == pro


def test_webhooks_for_our_own_calls_are_not_recorded_twice_and_a_dashboard_cancel_is(audit: Any, billing: str) -> None:
    basic, _ = plans()
    sub = subscription(basic)
    ours = sub.last_response.request_id
    assert ours and ours.startswith("req_")
    created = {"id": "evt_2", "object": "event", "type": "customer.subscription.created", "request": {"id": ours},
               "data": {"object": sub.to_dict()}}
    stripe.Webhook.construct_event(*signed(created), SECRET)
    deleted = {"id": "evt_3", "object": "event", "type": "customer.subscription.deleted", "request": {"id": None},
               "data": {"object": {**sub.to_dict(), "status": "canceled"}}}
    stripe.Webhook.construct_event(*signed(deleted), SECRET)

    assert len(audit.events("billing.subscription.create")) == 1  # the API call's, not the webhook's too
    cancel = audit.one("billing.subscription.cancel")
    assert cancel["attrs"]["enduser.id"] == "stripe:dashboard" and cancel["payload"]["webhook"] == "evt_3"
    assert cancel["payload"]["before"]["plan"] == basic  # the subscription as this process last saw it


def test_stripe_client_construct_event_is_recorded_too(audit: Any, billing: str) -> None:
    client = stripe.StripeClient(API_KEY, base_addresses={"api": billing})
    sub = {"id": "sub_client", "object": "subscription", "status": "active", "metadata": {"tenant": "acme"},
           "cancel_at_period_end": True, "items": {"object": "list", "data": []}}
    event = {"id": "evt_4", "object": "event", "type": "customer.subscription.updated", "request": {"id": None},
             "data": {"object": sub, "previous_attributes": {"cancel_at_period_end": False}}}
    client.construct_event(*signed(event), SECRET)
    cancel = audit.one("billing.subscription.cancel")
    assert cancel["payload"]["at_period_end"] is True and cancel["attrs"]["enduser.id"] == "stripe:dashboard"


def test_a_webhook_delivered_twice_is_recorded_once(audit: Any, billing: str) -> None:
    sub = {"id": "sub_retry", "object": "subscription", "status": "canceled", "metadata": {"tenant": "acme"},
           "items": {"object": "list", "data": []}}
    event = {"id": "evt_5", "object": "event", "type": "customer.subscription.deleted", "request": {"id": None},
             "data": {"object": sub}}
    stripe.Webhook.construct_event(*signed(event), SECRET)
    stripe.Webhook.construct_event(*signed(event), SECRET)  # Stripe retries until it gets a 2xx
    assert len(audit.events("billing.subscription.cancel")) == 1
