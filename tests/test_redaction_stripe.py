"""stripe-python against localstripe, audited with the call's own kwargs in the payload: the API key never shows.

localstripe (a stateful fake of the Stripe API) runs as a subprocess on 127.0.0.1; the real stripe-python
sends it real HTTP requests. `Customer.create` / `Customer.modify` take `api_key=` among their kwargs, which
the audit.yaml below records whole (`payload: params`), as an ops engineer auditing billing would.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import stripe

from _support_stripe import localstripe_server

API_KEY = "sk_test_51RedactionTestKey0123456789abcdef"  # the test key a real app would hold

YAML = """
    delivery: {mode: best_effort}
    redact: [email]
    redact_allow: [password_policy]
    events:
      - target: stripe:Customer.create
        event: billing.customer.create
        tenant: 'params["metadata"]["tenant"]'
        payload: {params: params, customer: result}
      - target: stripe:Customer.modify
        event: billing.plan.change
        tenant: 'params["metadata"]["tenant"]'
        before: {customer: id}
        after: {params: params}
"""


@pytest.fixture(scope="module")
def localstripe() -> Iterator[str]:
    """localstripe on a free loopback port (tests/_support_stripe.py)."""
    yield from localstripe_server()


@pytest.fixture
def billing(audit: Any, localstripe: str) -> Iterator[Any]:
    previous = stripe.api_base
    stripe.api_base = localstripe
    audit.instrument(YAML)
    try:
        yield audit
    finally:
        stripe.api_base = previous


def all_text(audit: Any) -> str:
    return json.dumps([e["attrs"] for e in audit.events()], ensure_ascii=False)


def test_customer_create_with_api_key_kwarg_never_records_the_key(billing: Any) -> None:
    customer = stripe.Customer.create(api_key=API_KEY, email="bob@acme.io", description="pro plan",
                                      metadata={"tenant": "acme", "password_policy": "strict", "api_token": "t0k3n-9"})
    assert customer.id.startswith("cus_")
    event = billing.one("billing.customer.create")
    params = event["payload"]["params"]
    assert params["api_key"] == "[REDACTED]"  # by the built-in list, not by `redact:`
    assert params["email"] == "[REDACTED]"  # `redact:` adds to the built-in list
    assert params["metadata"] == {"tenant": "acme", "password_policy": "strict", "api_token": "[REDACTED]"}
    # A StripeObject is recorded as its str(), which is JSON text: cleaned as JSON.
    shown = event["payload"]["customer"]
    assert customer.id in shown and '"email": "[REDACTED]"' in shown.replace('":"', '": "')
    text = all_text(billing)
    assert API_KEY not in text and "t0k3n-9" not in text and "bob@acme.io" not in text


def test_customer_modify_success_and_failure_never_record_the_key(billing: Any) -> None:
    customer = stripe.Customer.create(api_key=API_KEY, metadata={"tenant": "acme"})
    stripe.Customer.modify(customer.id, api_key=API_KEY, metadata={"tenant": "acme", "plan": "pro"})
    with pytest.raises(stripe.InvalidRequestError):
        stripe.Customer.modify("cus_missing", api_key=API_KEY, metadata={"tenant": "acme", "plan": "pro"})
    ok, failed = billing.events("billing.plan.change")
    assert ok["payload"]["after"]["params"] == {"api_key": "[REDACTED]", "metadata": {"tenant": "acme", "plan": "pro"}}
    assert ok["payload"]["before"] == {"customer": customer.id}
    assert failed["attrs"]["audit.outcome"] == "failure"
    assert failed["payload"]["error"]["type"] == "InvalidRequestError"
    assert API_KEY not in all_text(billing)
