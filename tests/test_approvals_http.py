"""The HTTP answer to an action that needs approval, with no handler in the app's code: FastAPI under
uvicorn, Flask and Django behind a real WSGI server, all on 127.0.0.1, against a real approval service.

428 with a JSON body holding the approval id and its URL while it waits; once approved, the same request
runs; 503 when the approval service cannot be reached (fail closed).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from _support_web import WebAudit, serve_asgi, serve_wsgi
from test_approvals import service  # noqa: F401 - the approval service fixture
from test_request_capture import _fastapi_app, _flask_app, app_audit, django_site  # noqa: F401 - fixtures
from test_store_service import free_port

YAML = """
    service_name: web-shop
    delivery: {mode: best_effort}
    approvals: {url: "URL", token: "${env:APV_TEST_TOKEN}"}
    events:
      - target: rcshop.biz:set_quota
        event: quota.set
        tenant: tenant_id
        actor: 'request.headers["x-user"]'
        payload: {limit: limit}
        approval: {approvers: 1, ttl: 1h}
      - target: rcdjsite.biz:set_quota
        event: quota.set
        tenant: tenant_id
        actor: 'request.headers["x-user"]'
        payload: {limit: limit}
        approval: {approvers: 1, ttl: 1h}
"""


def _django_app() -> Any:
    from django.core.wsgi import get_wsgi_application

    return get_wsgi_application()


SERVERS: dict[str, tuple[Callable[[], Any], Callable[[Any], Any], str]] = {
    # With its lifespan: the app builds its middleware stack there, before the first request.
    "fastapi": (_fastapi_app, lambda app: serve_asgi(app, lifespan="on"), "/sync/{tenant}"),
    "flask": (_flask_app, serve_wsgi, "/quota/{tenant}"),
    "django": (_django_app, serve_wsgi, "/quota/{tenant}/"),
}


@pytest.fixture(params=sorted(SERVERS))
def web(request: pytest.FixtureRequest, app_audit: WebAudit, monkeypatch: pytest.MonkeyPatch) -> Any:  # noqa: F811
    if request.param == "django":
        request.getfixturevalue("django_site")
    return request.param


def test_the_app_answers_428_with_the_approval_then_runs_once_approved(
        web: str, app_audit: WebAudit, service: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    monkeypatch.setenv("APV_TEST_TOKEN", service["app"])
    app_audit.instrument(YAML.replace("URL", service["base"]))
    factory, serve, route = SERVERS[web]
    base, stop = serve(factory())
    tenant = f"http-{web}"
    method = "GET" if web == "django" else "POST"
    try:
        with httpx.Client(base_url=base, timeout=30) as client:
            first = client.request(method, route.format(tenant=tenant), headers={"X-User": "ops@vendor.io"})
            assert first.status_code == 428, first.text
            body = first.json()
            assert body["error"] == "approval_required" and body["status"] == "pending"
            assert body["approval_url"] == f"{service['base']}/approvals/{body['approval_id']}"
            assert app_audit.events("quota.set") == []  # the target did not run
            granted = httpx.post(f"{service['base']}/v1/approvals/{body['approval_id']}/approve",
                                 json={"reason": "ok"}, headers={"Authorization": f"Bearer {service['alice']}"})
            assert granted.status_code == 200, granted.text
            again = client.request(method, route.format(tenant=tenant), headers={"X-User": "ops@vendor.io"})
            assert again.status_code == 200, again.text
            third = client.request(method, route.format(tenant=tenant), headers={"X-User": "ops@vendor.io"})
            assert third.status_code == 428 and third.json()["approval_id"] != body["approval_id"]
    finally:
        stop()
    assert app_audit.one("quota.set")["attrs"]["audit.approval.id"] == body["approval_id"]


def test_the_app_answers_503_when_the_approval_service_is_down(
        web: str, app_audit: WebAudit, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    monkeypatch.setenv("APV_TEST_TOKEN", "art_0000000000000000_" + "x" * 43)
    app_audit.instrument(YAML.replace("URL", f"http://127.0.0.1:{free_port()}"))
    factory, serve, route = SERVERS[web]
    base, stop = serve(factory())
    try:
        response = httpx.request("GET" if web == "django" else "POST", base + route.format(tenant="down"),
                                 headers={"X-User": "ops@vendor.io"}, timeout=30)
    finally:
        stop()
    assert response.status_code == 503, response.text
    assert response.json()["status"] == "unavailable" and "cannot be reached" in response.json()["message"]
    assert app_audit.events("quota.set") == []


