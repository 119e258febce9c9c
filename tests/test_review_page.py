"""`/reviews` on a real `auditrail serve` (issue 18): the close ran at start (catch-up), a person signs a month
off with a button, tenants see only their own reviews, forms need their CSRF token."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator

import httpx
import pytest

import review_month
from auditrail_store.db import Store
from auditrail_store.migrate import migrate
from test_store_service import cli, start_service, stop, token_of


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    tmp = tmp_path_factory.mktemp("reviews-page")
    with Store.open(f"chdb://{tmp}/store") as store:
        migrate(store)
        review_month.fill(store)
    os.environ["AUDITRAIL_REVIEW_SCHEDULE"] = "on"  # the close is what this page shows (conftest turns it off)
    try:
        process, base, env = start_service(tmp)
    finally:
        os.environ["AUDITRAIL_REVIEW_SCHEDULE"] = "off"
    try:
        yield base, env
    finally:
        stop(process)


def _signed_in(base: str, token: str) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=30)
    response = client.post("/reviews/signin", data={"token": token})
    assert response.status_code == 303
    return client


def _until(client: httpx.Client, text: str, timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    while True:
        page = client.get("/reviews").text
        if text in page or time.monotonic() > deadline:
            return page
        time.sleep(0.5)


def test_reviews_page_signs_off_a_month_and_keeps_tenants_apart(service: tuple[str, dict[str, str]]) -> None:
    base, env = service
    assert "Sign in to the monthly reviews" in httpx.get(base + "/reviews").text
    rita = token_of(cli("tokens", "create", "--tenant", "acme", "--scope", "approve", "--description",
                        "rita@acme.io", env=env))
    reader = token_of(cli("tokens", "create", "--tenant", "globex", "--scope", "read", env=env))
    client = _signed_in(base, rita)
    page = _until(client, 'id="review-2026-10-acme"')
    assert 'id="review-2026-10-acme"' in page and "globex" not in page  # the close ran at start: a catch-up
    assert "review.due recorded" in page
    assert client.get("/reviews/report/2026-10/acme.pdf").content.startswith(b"%PDF")
    assert client.get("/reviews/report/2026-10/globex.pdf").status_code == 404

    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)
    form = {"month": "2026-10", "tenant": "acme", "reviewer": "rita@acme.io", "notes": "checked imp-1 with ops"}
    assert client.post("/reviews/sign", data={**form, "csrf": "0" * 64}).status_code == 403  # stale form
    refused = client.post("/reviews/sign", data={**form, "tenant": "globex", "csrf": csrf})
    assert "may not sign off tenant" in httpx.QueryParams(refused.headers["location"].split("?", 1)[1])["error"]
    signed = client.post("/reviews/sign", data={**form, "csrf": csrf})
    assert signed.status_code == 303 and "ok=" in signed.headers["location"]
    assert "checked imp-1 with ops" in _until(client, "checked imp-1 with ops")

    other = _signed_in(base, reader)
    page = _until(other, 'id="review-2026-10-globex"')
    assert "acme" not in page and "Sign off" not in page  # a read token sees, and cannot sign


def test_cli_sign_goes_through_the_running_service(service: tuple[str, dict[str, str]]) -> None:
    base, env = service
    deadline = time.monotonic() + 90
    while True:  # the close writes globex's October report at start (a catch-up): wait for it when run alone
        signed = cli("review", "sign", "--month", "2026-10", "--tenant", "globex", "--reviewer", "gus@globex.io",
                     "--notes", "nothing unusual", env=env, check=False)
        if signed.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert "review.completed recorded for tenant 'globex', 2026-10" in signed.stdout
    refused = cli("review", "sign", "--month", "2026-01", "--tenant", "globex", "--reviewer", "gus@globex.io",
                  "--notes", "x", env=env, check=False)
    assert refused.returncode == 2 and "no report for tenant 'globex', 2026-01" in refused.stderr
    # Over the API: a month without a report is a 404, a blank reviewer or an impossible month a 422 (the schema).
    approver = token_of(cli("tokens", "create", "--tenant", "globex", "--scope", "approve", "--description",
                            "gus@globex.io", env=env))
    def api_sign(month: str, reviewer: str) -> int:
        return httpx.post(f"{base}/v1/reviews/globex/{month}/sign", json={"reviewer": reviewer, "notes": "x"},
                          headers={"Authorization": f"Bearer {approver}"}, timeout=30).status_code
    assert [api_sign("2026-01", "gus"), api_sign("2026-10", " \r"), api_sign("2026-13", "gus")] == [404, 422, 422]


def test_sign_out_needs_the_pages_csrf_token(service: tuple[str, dict[str, str]]) -> None:
    base, env = service
    token = token_of(cli("tokens", "create", "--tenant", "acme", "--scope", "read", env=env))
    client = _signed_in(base, token)
    page = client.get("/reviews").text
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)
    # Another page posting the sign-out (no token, or a wrong one) is refused, and the session stays.
    assert client.post("/reviews/signout", data={}).status_code == 403
    assert client.post("/reviews/signout", data={"csrf": "0" * 64}).status_code == 403
    assert "Sign in to the monthly reviews" not in client.get("/reviews").text
    signed_out = client.post("/reviews/signout", data={"csrf": csrf})
    assert signed_out.status_code == 303 and signed_out.headers["location"] == "/reviews"
    assert "Sign in to the monthly reviews" in client.get("/reviews").text
