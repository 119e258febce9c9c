"""The /approvals page in a real browser: Debian's chromium driven by chromedriver through selenium, with
JavaScript switched off (the page must work without it). `make test` installs the browser when missing.

A request made by the real gate waits; alice signs in with her approve token, reads what exactly will run
(the bound values, the state before), approves with a reason; ops, who asked, is refused on the same page.
A form without the CSRF token, or from another origin, is refused.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from auditrail import ApprovalRequired
from test_approvals import APP, CONFIG, service  # noqa: F401 - the approval service fixture

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402

CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(os.environ.get("AUDITRAIL_SCREENSHOTS", "/tmp/auditrail-screenshots"))


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (os.path.exists(CHROMEDRIVER) and os.path.exists(CHROMIUM)):
        pytest.skip("chromium and chromium-driver are not installed: `make test` installs them "
                    "(apt-get install -y chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1200,1400"):
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"profile.managed_default_content_settings.javascript": 2})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    driver.implicitly_wait(15)  # after a click the next page may still be loading (a busy machine)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def pending(audit: Any, service: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> tuple[Any, str]:  # noqa: F811
    monkeypatch.setenv("APV_TEST_TOKEN", service["app"])
    audit.module("apv.ops", APP)
    audit.instrument(CONFIG.replace("URL", service["base"]))
    import apv.ops

    with pytest.raises(ApprovalRequired) as caught:
        apv.ops.disable("*", "assistant", "ops@vendor.io", reason="incident 12: runaway costs")
    return apv.ops, str(caught.value.approval_id)


def sign_in(driver: Any, base: str, path: str, token: str) -> None:
    driver.delete_all_cookies()
    driver.get(base + path)
    field = driver.find_element(By.ID, "token")
    field.send_keys(token)
    field.submit()


def test_approving_on_the_page_without_javascript(browser: Any, pending: tuple[Any, str],
                                                  service: dict[str, Any]) -> None:  # noqa: F811
    app, approval_id = pending
    base = service["base"]
    # ops asked for it: signed in on the page, the approval is refused with the rule that refused it.
    sign_in(browser, base, f"/approvals/{approval_id}", service["ops"])
    browser.find_element(By.ID, f"reason-{approval_id}").send_keys("I need this")
    browser.find_element(By.CSS_SELECTOR, "button.approve").click()
    assert "self-approval" in browser.find_element(By.CSS_SELECTOR, ".msg.error").text
    # alice: the request shows what exactly will run.
    sign_in(browser, base, f"/approvals/{approval_id}", service["alice"])
    card = browser.find_element(By.ID, f"approval-{approval_id}").text
    for shown in ("killswitch.disable", "ops@vendor.io", "apv.ops:disable", '"feature": "assistant"',
                  "incident 12: runaway costs", '"state": "on"', "pending"):
        assert shown in card, shown
    browser.find_element(By.ID, f"reason-{approval_id}").send_keys("checked with the on-call lead")
    SHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SHOTS / "approvals-pending.png"))
    browser.find_element(By.CSS_SELECTOR, "button.approve").click()
    assert f"approved {approval_id}: now granted" in browser.find_element(By.CSS_SELECTOR, ".msg.ok").text
    assert "alice@acme.io: checked with the on-call lead" in browser.find_element(By.ID, f"approval-{approval_id}").text
    browser.save_screenshot(str(SHOTS / "approvals-granted.png"))
    # The list of pending requests no longer holds it; the app's retry runs.
    browser.get(base + "/approvals")
    assert approval_id not in browser.page_source
    assert app.disable("*", "assistant", "ops@vendor.io", reason="incident 12: runaway costs") == "off"


def test_a_form_without_the_csrf_token_or_from_another_site_is_refused(pending: tuple[Any, str],
                                                                      service: dict[str, Any]) -> None:  # noqa: F811
    _, approval_id = pending
    base = service["base"]
    with httpx.Client(base_url=base, timeout=30) as client:
        signed = client.post("/approvals/signin", data={"token": service["alice"]})
        assert signed.status_code == 303 and "auditrail_approver" in signed.headers["set-cookie"]
        assert "HttpOnly" in signed.headers["set-cookie"] and "SameSite=strict" in signed.headers["set-cookie"]
        page = client.get(f"/approvals/{approval_id}")
        assert page.status_code == 200 and 'name="csrf"' in page.text
        csrf = page.text.split('name="csrf" value="')[1].split('"')[0]
        missing = client.post(f"/approvals/{approval_id}/decide", data={"decision": "approve", "reason": "x"})
        assert missing.status_code == 403
        forged = client.post(f"/approvals/{approval_id}/decide", data={"decision": "approve", "reason": "x",
                                                                       "csrf": "0" * 64})
        assert forged.status_code == 403
        foreign = client.post(f"/approvals/{approval_id}/decide", headers={"Origin": "https://evil.example"},
                              data={"decision": "approve", "reason": "x", "csrf": csrf})
        assert foreign.status_code == 403
        state = httpx.get(f"{base}/v1/approvals/{approval_id}", headers={"Authorization": f"Bearer {service['alice']}"})
        assert state.json()["state"] == "pending"  # none of them decided anything
        good = client.post(f"/approvals/{approval_id}/decide", data={"decision": "deny", "reason": "not now",
                                                                     "csrf": csrf})
        assert good.status_code == 303 and "denied" in good.headers["location"]
        # Values are shown as text, never as markup.
        hostile = httpx.post(f"{base}/v1/approvals", headers={"Authorization": f"Bearer {service['app']}"}, json={
            "digest": "a" * 64, "event": "prompt.update", "target": "m:f", "tenant": "acme",
            "requester": "<b>eve</b>", "bound": {"text": "<script>alert(1)</script>"}, "reason": "<img src=x>"})
        assert hostile.status_code in (201, 202), hostile.text
        shown = client.get(f"/approvals/{hostile.json()['id']}").text
        assert "<script>alert" not in shown and "<img src=x>" not in shown and "<b>eve" not in shown
        assert "&lt;img src=x&gt;" in shown and "&lt;b&gt;eve&lt;/b&gt;" in shown
