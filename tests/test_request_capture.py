"""Zero-code capture of the current HTTP request, so audit.yaml expressions can read `request`.

Real frameworks only: FastAPI through Starlette's TestClient (the real ASGI stack) and through uvicorn on
127.0.0.1; Flask through werkzeug's test client and through wsgiref on 127.0.0.1; Django through its
test Client, its WSGIHandler behind wsgiref, and its ASGIHandler. The app's code never mentions auditrail:
the business functions are patched from audit.yaml and the request is captured by hooking the framework.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from _support_web import WebAudit, forget_modules, forget_package, serve_asgi, serve_wsgi, write_package  # noqa: F401

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

BIZ = """
    import asyncio

    def set_quota(tenant_id, limit):
        return limit

    def reset_quota(tenant_id):
        return 0

    async def set_quota_async(tenant_id, limit):
        await asyncio.sleep(0.01)  # let concurrent requests interleave before the event is built
        return limit
"""

FASTAPI_APP = """
    from fastapi import FastAPI

    from rcshop.biz import set_quota, set_quota_async  # bound at import time, like any app does

    app = FastAPI()

    @app.post("/sync/{tenant}")
    def sync_quota(tenant: str, limit: int = 10):
        return {"limit": set_quota(tenant, limit)}

    @app.post("/async/{tenant}")
    async def async_quota(tenant: str, limit: int = 20):
        return {"limit": await set_quota_async(tenant, limit)}

    @app.post("/reset/{tenant}")
    def reset(tenant: str):
        import rcshop.biz
        return {"limit": rcshop.biz.reset_quota(tenant)}
"""

FLASK_APP = """
    from flask import Flask, request

    from rcshop.biz import reset_quota, set_quota

    app = Flask(__name__)

    @app.post("/quota/<tenant>")
    def quota(tenant):
        return {"limit": set_quota(tenant, int(request.args.get("limit", 5)))}

    @app.post("/reset/<tenant>")
    def reset(tenant):
        return {"limit": reset_quota(tenant)}
"""

# Request-derived fields given on the event itself (the header expression is quoted: it has brackets).
EVENT_FIELDS_YAML = """
    service_name: web-shop
    delivery: {mode: best_effort}
    events:
      - target: rcshop.biz:set_quota
        event: quota.set
        tenant: tenant_id
        source_ip: request.client.host
        actor: 'request.headers["x-user"]'
        payload:
          limit: limit
          method: request.method
          path: request.path
      - target: rcshop.biz:set_quota_async
        event: quota.set_async
        tenant: tenant_id
        source_ip: request.client.host
        actor: 'request.headers["x-user"]'
        payload: {limit: limit}
      - target: rcshop.biz:reset_quota
        event: quota.reset
        tenant: tenant_id
        source_ip: request.forwarded_for
"""

# Request-derived fields only as `context:` fallbacks, plus one event that names its own source_ip.
CONTEXT_FALLBACK_YAML = """
    service_name: web-shop
    delivery: {mode: best_effort}
    context:
      source_ip: [request.client.host]
      actor: ['request.headers.get("x-user")']
    events:
      - target: rcshop.biz:set_quota
        event: quota.set
        tenant: tenant_id
        payload: {limit: limit}
      - target: rcshop.biz:reset_quota
        event: quota.reset
        tenant: tenant_id
        source_ip: request.forwarded_for
"""


@pytest.fixture
def app_audit(web_audit: WebAudit) -> WebAudit:
    forget_package("rcshop")  # a stale copy from elsewhere must not shadow this test's app
    web_audit.app({"rcshop/biz.py": BIZ, "rcshop/fastapi_app.py": FASTAPI_APP, "rcshop/flask_app.py": FLASK_APP})
    return web_audit


def _fastapi_app():
    from rcshop.fastapi_app import app

    return app


def _flask_app():
    from rcshop.flask_app import app

    return app


# --- (a) FastAPI ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("route", "event", "limit"), [("sync", "quota.set", 10), ("async", "quota.set_async", 20)])
def test_fastapi_endpoint_call_carries_client_host_and_header_actor(app_audit: WebAudit, route: str, event: str,
                                                                    limit: int) -> None:
    from fastapi.testclient import TestClient

    app_audit.instrument(EVENT_FIELDS_YAML)
    with TestClient(_fastapi_app(), client=("203.0.113.7", 40001)) as client:
        response = client.post(f"/{route}/acme", headers={"X-User": "alice@acme.io"})
    assert response.status_code == 200, response.text
    assert response.json() == {"limit": limit}

    attrs = app_audit.one(event)["attrs"]
    assert attrs["client.address"] == "203.0.113.7"
    assert attrs["enduser.id"] == "alice@acme.io"
    assert attrs["audit.tenant_id"] == "acme"
    assert attrs["audit.outcome"] == "success"


def test_fastapi_request_method_and_path_reach_payload_expressions(app_audit: WebAudit) -> None:
    from fastapi.testclient import TestClient

    app_audit.instrument(EVENT_FIELDS_YAML)
    with TestClient(_fastapi_app()) as client:
        client.post("/sync/globex?limit=3", headers={"x-user": "bob"})
    assert app_audit.one("quota.set")["payload"] == {"limit": 3, "method": "POST", "path": "/sync/globex"}


def test_fastapi_under_uvicorn_records_the_real_peer_address_per_concurrent_request(app_audit: WebAudit) -> None:
    app_audit.instrument(EVENT_FIELDS_YAML)
    base, stop = serve_asgi(_fastapi_app())
    try:
        with httpx.Client(base_url=base, timeout=10) as client:
            assert client.post("/sync/acme", headers={"x-user": "carol"}).status_code == 200

        async def burst() -> list[int]:
            async with httpx.AsyncClient(base_url=base, timeout=10) as client:
                responses = await asyncio.gather(*(
                    client.post(f"/async/acme?limit={i}", headers={"X-User": f"user{i}"}) for i in range(12)
                ))
            return [r.status_code for r in responses]

        assert asyncio.run(burst()) == [200] * 12
    finally:
        stop()

    sync_event = app_audit.one("quota.set")["attrs"]
    assert sync_event["client.address"] == "127.0.0.1"
    assert sync_event["enduser.id"] == "carol"
    async_events = app_audit.events("quota.set_async")
    assert len(async_events) == 12
    assert {e["attrs"]["client.address"] for e in async_events} == {"127.0.0.1"}
    # Each event carries its own request's header, never a neighbour's.
    assert {e["payload"]["limit"]: e["attrs"]["enduser.id"] for e in async_events} == {
        i: f"user{i}" for i in range(12)
    }


# --- (b) Flask ------------------------------------------------------------------------------------


def test_flask_test_client_call_carries_remote_addr_and_header_actor(app_audit: WebAudit) -> None:
    app_audit.instrument(EVENT_FIELDS_YAML)
    client = _flask_app().test_client()
    response = client.post("/quota/acme?limit=9", headers={"X-User": "dave"},
                           environ_base={"REMOTE_ADDR": "198.51.100.4"})
    assert response.status_code == 200
    assert response.get_json() == {"limit": 9}

    event = app_audit.one("quota.set")
    assert event["attrs"]["client.address"] == "198.51.100.4"
    assert event["attrs"]["enduser.id"] == "dave"
    assert event["payload"] == {"limit": 9, "method": "POST", "path": "/quota/acme"}


def test_flask_under_wsgiref_records_the_real_peer_address(app_audit: WebAudit) -> None:
    app_audit.instrument(EVENT_FIELDS_YAML)
    base, stop = serve_wsgi(_flask_app())
    try:
        with httpx.Client(base_url=base, timeout=10) as client:
            response = client.post("/quota/initech?limit=4", headers={"x-user": "erin"})
    finally:
        stop()
    assert response.status_code == 200
    attrs = app_audit.one("quota.set")["attrs"]
    assert attrs["client.address"] == "127.0.0.1"
    assert attrs["enduser.id"] == "erin"
    assert attrs["audit.tenant_id"] == "initech"


# --- (c) Django -----------------------------------------------------------------------------------

DJANGO_VIEWS = """
    from django.http import JsonResponse

    from rcdjsite import biz

    def quota(request, tenant):
        return JsonResponse({"limit": biz.set_quota(tenant, 7)})
"""

DJANGO_URLS = """
    from django.urls import path

    from rcdjsite import views

    urlpatterns = [path("quota/<str:tenant>/", views.quota)]
"""

DJANGO_YAML = """
    service_name: web-shop
    delivery: {mode: best_effort}
    events:
      - target: rcdjsite.biz:set_quota
        event: quota.set
        tenant: tenant_id
        source_ip: request.client.host
        actor: 'request.headers["x-user"]'
        payload: {limit: limit}
"""


@pytest.fixture(scope="module")
def django_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A minimal Django project (settings configured here, urlconf and views in a real package)."""
    import django
    from django.conf import settings
    from django.test.utils import override_settings
    from django.urls import clear_url_caches

    root = tmp_path_factory.mktemp("django_site")
    write_package(root, {"rcdjsite/biz.py": BIZ, "rcdjsite/views.py": DJANGO_VIEWS, "rcdjsite/urls.py": DJANGO_URLS})
    sys.path.insert(0, str(root))
    if not settings.configured:
        settings.configure(
            DEBUG=False, SECRET_KEY="not-a-secret", ALLOWED_HOSTS=["*"], ROOT_URLCONF="rcdjsite.urls",
            MIDDLEWARE=[], INSTALLED_APPS=[], DATABASES={}, USE_TZ=True,
        )
        django.setup()
    try:
        with override_settings(ROOT_URLCONF="rcdjsite.urls", ALLOWED_HOSTS=["*"], MIDDLEWARE=[]):
            clear_url_caches()
            yield root
    finally:
        clear_url_caches()
        sys.path.remove(str(root))
        forget_modules(root)


def test_django_test_client_request_reaches_expressions(web_audit: WebAudit, django_site: Path) -> None:
    from django.test import Client

    web_audit.instrument(DJANGO_YAML)
    response = Client().get("/quota/acme/", headers={"X-User": "frank"}, REMOTE_ADDR="192.0.2.10")
    assert response.status_code == 200
    assert response.json() == {"limit": 7}
    attrs = web_audit.one("quota.set")["attrs"]
    assert attrs["client.address"] == "192.0.2.10"
    assert attrs["enduser.id"] == "frank"


def test_django_wsgi_handler_request_reaches_expressions(web_audit: WebAudit, django_site: Path) -> None:
    from django.core.wsgi import get_wsgi_application

    web_audit.instrument(DJANGO_YAML)
    base, stop = serve_wsgi(get_wsgi_application())
    try:
        with httpx.Client(base_url=base, timeout=10) as client:
            response = client.get("/quota/acme/", headers={"X-User": "grace"})
    finally:
        stop()
    assert response.status_code == 200, response.text
    assert response.json() == {"limit": 7}
    attrs = web_audit.one("quota.set")["attrs"]
    assert attrs["client.address"] == "127.0.0.1"  # REMOTE_ADDR as set by the WSGI server
    assert attrs["enduser.id"] == "grace"
    assert attrs["audit.tenant_id"] == "acme"


def test_django_asgi_handler_request_reaches_expressions(web_audit: WebAudit, django_site: Path) -> None:
    from django.core.asgi import get_asgi_application

    web_audit.instrument(DJANGO_YAML)
    app = get_asgi_application()

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=("192.0.2.44", 5151))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return await client.get("/quota/acme/", headers={"X-User": "heidi"})

    response = asyncio.run(call())
    assert response.status_code == 200, response.text
    attrs = web_audit.one("quota.set")["attrs"]
    assert attrs["client.address"] == "192.0.2.44"
    assert attrs["enduser.id"] == "heidi"


# --- (d) context fallbacks ------------------------------------------------------------------------


def test_context_source_ip_fallback_applies_when_the_event_has_none_wsgi(app_audit: WebAudit) -> None:
    app_audit.instrument(CONTEXT_FALLBACK_YAML)
    client = _flask_app().test_client()
    client.post("/quota/acme", headers={"X-User": "ivan"}, environ_base={"REMOTE_ADDR": "198.51.100.23"})
    attrs = app_audit.one("quota.set")["attrs"]
    assert attrs["client.address"] == "198.51.100.23"
    assert attrs["enduser.id"] == "ivan"


def test_context_source_ip_fallback_applies_when_the_event_has_none_asgi(app_audit: WebAudit) -> None:
    from fastapi.testclient import TestClient

    app_audit.instrument(CONTEXT_FALLBACK_YAML)
    with TestClient(_fastapi_app(), client=("203.0.113.99", 1234)) as client:
        client.post("/sync/acme", headers={"X-User": "judy"})
    attrs = app_audit.one("quota.set")["attrs"]
    assert attrs["client.address"] == "203.0.113.99"
    assert attrs["enduser.id"] == "judy"


def test_event_source_ip_wins_over_context_fallback(app_audit: WebAudit) -> None:
    app_audit.instrument(CONTEXT_FALLBACK_YAML)
    client = _flask_app().test_client()
    client.post("/reset/acme", headers={"X-Forwarded-For": "203.0.113.5"},
                environ_base={"REMOTE_ADDR": "10.0.0.2"})
    assert app_audit.one("quota.reset")["attrs"]["client.address"] == "203.0.113.5"


# --- (e) outside any request ----------------------------------------------------------------------


@pytest.mark.parametrize("yaml_text", [EVENT_FIELDS_YAML, CONTEXT_FALLBACK_YAML], ids=["event-fields", "context"])
def test_call_outside_a_request_is_still_audited_without_client_address(app_audit: WebAudit, yaml_text: str) -> None:
    app_audit.instrument(yaml_text)
    import rcshop.biz as biz

    assert biz.set_quota("acme", 3) == 3
    assert asyncio.run(biz.set_quota_async("acme", 4)) == 4

    event = app_audit.one("quota.set")
    assert event["attrs"]["audit.tenant_id"] == "acme"
    assert event["attrs"]["audit.outcome"] == "success"
    assert event["payload"]["limit"] == 3
    assert "client.address" not in event["attrs"]
    assert "enduser.id" not in event["attrs"]
    assert event["attrs"]["audit.actor.type"] == "system"


def test_request_does_not_leak_into_calls_after_it(app_audit: WebAudit) -> None:
    from fastapi.testclient import TestClient

    app_audit.instrument(EVENT_FIELDS_YAML)
    _flask_app().test_client().post("/quota/acme", headers={"X-User": "kim"},
                                    environ_base={"REMOTE_ADDR": "198.51.100.1"})
    with TestClient(_fastapi_app(), client=("203.0.113.1", 1)) as client:
        client.post("/sync/acme", headers={"X-User": "lee"})
    import rcshop.biz as biz

    biz.set_quota("after", 1)
    by_tenant = {e["attrs"]["audit.tenant_id"]: e["attrs"] for e in app_audit.events("quota.set")}
    assert by_tenant["acme"]["client.address"] in ("198.51.100.1", "203.0.113.1")
    assert "client.address" not in by_tenant["after"]
    assert "enduser.id" not in by_tenant["after"]


# --- (f) X-Forwarded-For --------------------------------------------------------------------------


def test_forwarded_for_is_the_first_address_of_x_forwarded_for_asgi(app_audit: WebAudit) -> None:
    from fastapi.testclient import TestClient

    app_audit.instrument(EVENT_FIELDS_YAML)
    with TestClient(_fastapi_app(), client=("10.1.2.3", 1)) as client:
        client.post("/reset/acme", headers={"X-Forwarded-For": "203.0.113.50, 10.0.0.1"})
    assert app_audit.one("quota.reset")["attrs"]["client.address"] == "203.0.113.50"


def test_forwarded_for_is_the_first_address_of_x_forwarded_for_wsgi(app_audit: WebAudit) -> None:
    app_audit.instrument(EVENT_FIELDS_YAML)
    _flask_app().test_client().post("/reset/acme", headers={"X-Forwarded-For": " 198.51.100.77 ,10.0.0.9"},
                                    environ_base={"REMOTE_ADDR": "10.0.0.9"})
    assert app_audit.one("quota.reset")["attrs"]["client.address"] == "198.51.100.77"


def test_forwarded_for_without_the_header_leaves_client_address_absent(app_audit: WebAudit) -> None:
    app_audit.instrument(EVENT_FIELDS_YAML)
    response = _flask_app().test_client().post("/reset/acme", environ_base={"REMOTE_ADDR": "10.0.0.9"})
    assert response.status_code == 200
    event = app_audit.one("quota.reset")
    assert "client.address" not in event["attrs"]
    assert event["attrs"]["audit.outcome"] == "success"
