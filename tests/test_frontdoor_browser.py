"""The reference site in a real browser: Debian's Chromium driven by Playwright, with the
browser's own virtual authenticator (DevTools ``WebAuthn.addVirtualAuthenticator``), against
``brokerguard demo-site`` started by the test on a free port with its embedded guard, sending
mail to a real SMTP server (aiosmtpd).

Register a passkey (the guard steps the change up: a code by mail first), log in with it, sell
the holdings and buy a thin small cap far above its price, get challenged, pass the challenge
with the passkey, and see the notice arrive; freeze the account and reopen it on the unlock
page with the passkey. Then the clone canary: the same log-in page opened
under another origin reports itself, and the next password sign-in from that address is
challenged. Like the console's browser test, a missing ``/usr/bin/chromium`` fails, never skips.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest
from browser_helpers import chromium_browser
from servers import Inbox, free_port, smtp_server

ACCOUNT, PASSWORD, EMAIL = "demo01", "demo-password-1", "taro@example.jp"
CODE = re.compile(r"(?:確認コード|Code): (\d{6})")


class DemoSite:
    def __init__(self, base: str, inbox: Inbox, port: int) -> None:
        self.base, self.inbox, self.port = base, inbox, port

    def mails(self) -> list[Any]:
        return [message_from_bytes(m[2], policy=policy.default) for m in self.inbox.messages]

    def wait_mail(self, subject_part: str, after: int = 0, timeout: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for mail in self.mails()[after:]:
                if subject_part in str(mail["subject"]):
                    return mail
            time.sleep(0.1)
        raise AssertionError(
            f"no mail with {subject_part!r}: {[m['subject'] for m in self.mails()]}"
        )


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoSite]:
    tmp = tmp_path_factory.mktemp("demo-site")
    with smtp_server() as (inbox, smtp_port):
        port = free_port()
        base = f"http://localhost:{port}"
        bg = Path(sys.executable).with_name("brokerguard")
        log = (tmp / "site.log").open("wb")
        process = subprocess.Popen(
            [
                str(bg),
                "demo-site",
                "--port",
                str(port),
                "--store",
                str(tmp / "site.db"),
                "--smtp-host",
                "127.0.0.1",
                "--smtp-port",
                str(smtp_port),
                "--customer-email",
                EMAIL,
            ],
            env={**os.environ, "TMPDIR": str(tmp)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            for _ in range(600):
                try:
                    with urllib.request.urlopen(base + "/login", timeout=2) as answer:
                        if answer.status == 200:
                            break
                except OSError:
                    pass
                if process.poll() is not None:
                    pytest.fail(f"demo-site exited: {(tmp / 'site.log').read_text()}")
                time.sleep(0.1)
            yield DemoSite(base, inbox, port)
        finally:
            process.terminate()
            process.wait(30)
            log.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium_browser() as chromium:
        yield chromium


def virtual_authenticator(context: Any, page: Any) -> tuple[Any, str]:
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    made = cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
            }
        },
    )
    return cdp, made["authenticatorId"]


def test_passkey_registration_login_challenged_order_and_its_notice(demo: DemoSite, browser: Any):
    context = browser.new_context(locale="ja-JP")
    page = context.new_page()
    page.set_default_timeout(30_000)
    cdp, authenticator = virtual_authenticator(context, page)
    try:
        page.goto(f"{demo.base}/login")
        page.fill("input[name=account]", ACCOUNT)
        page.fill("input[name=password]", PASSWORD)
        page.click("#password-login button[type=submit]")
        page.wait_for_url("**/portfolio")

        # Adding a passkey is a settings change the guard always steps up.
        page.click("#nav-settings")
        page.wait_for_url("**/settings")
        assert page.locator("#no-passkeys").count() == 1
        page.click("#add-passkey button")
        page.wait_for_url("**/stepup/*")
        before = len(demo.inbox.messages)
        page.click("#send-form button")
        page.wait_for_selector("#code-form")
        mail = demo.wait_mail("確認", after=before)
        page.fill("input[name=code]", CODE.search(mail.get_content()).group(1))
        page.click("#code-form button[type=submit]")
        page.wait_for_url("**/settings?add=1*")
        page.click("#create-passkey")
        page.wait_for_selector(".passkey-row")
        credentials = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})
        assert len(credentials["credentials"]) == 1
        assert credentials["credentials"][0]["isResidentCredential"]

        # Log out and back in with the passkey alone.
        page.click("header form button")
        page.wait_for_url("**/login")
        page.click("#passkey-login")
        page.wait_for_url("**/portfolio")

        page.goto(f"{demo.base}/order")
        page.select_option("select[name=symbol]", "7203")
        page.select_option("select[name=side]", "sell")
        page.fill("input[name=quantity]", "300")
        page.click("#order-form button[type=submit]")
        page.wait_for_url("**/portfolio?done=placed")

        # Right after selling everything: a thin small cap, 50% above its price.
        page.goto(f"{demo.base}/order")
        page.select_option("select[name=symbol]", "9347")
        page.select_option("select[name=side]", "buy")
        page.fill("input[name=quantity]", "5000")
        page.fill("input[name=limit_price]", "180")
        page.click("#order-form button[type=submit]")
        page.wait_for_url("**/stepup/*")
        assert "9347" in page.locator("#operation").inner_text()
        assert page.locator("#stepup-passkey").count() == 1
        before = len(demo.inbox.messages)
        page.click("#stepup-passkey")
        page.wait_for_url("**/portfolio?done=placed")
        assert "9347" in page.locator("#positions").inner_text()

        mail = demo.wait_mail("普段と異なるご注文", after=before)
        body = mail.get_content()
        assert "9347" in body and "http" not in body
        assert EMAIL in str(mail["To"])

        # The freeze button, then the unlock page's passkey button: the page's script sends
        # the account typed in its form, the site finds the open unlock request itself.
        page.goto(f"{demo.base}/settings")
        page.check("#freeze-form input[name=confirm]")
        page.click("#freeze-form button[type=submit]")
        page.wait_for_url("**/unlock?account=*")
        assert page.input_value("#unlock-account") == ACCOUNT
        page.click("#unlock-passkey")
        page.wait_for_url("**/login?unlocked=1")
        page.click("#passkey-login")
        page.wait_for_url("**/portfolio")
    finally:
        context.close()


def test_the_login_page_under_a_foreign_origin_reports_itself_and_the_next_login_is_challenged(
    demo: DemoSite, browser: Any
):
    """127.0.0.1 is not the site's origin (localhost): a stand-in for a proxy's domain."""
    context = browser.new_context(locale="en-US")
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        foreign = f"http://127.0.0.1:{demo.port}"
        with page.expect_request(lambda r: r.url.endswith("/canary") and r.method == "POST"):
            page.goto(f"{foreign}/login")
        time.sleep(1.0)  # the guard hears of the hit through the site
        page.fill("input[name=account]", "demo02")  # no history: nothing vouches for it
        page.fill("input[name=password]", PASSWORD)
        page.click("#password-login button[type=submit]")
        page.wait_for_url("**/stepup/*")
        assert page.locator("#send-form").count() == 1  # no passkey: a code to the contact
    finally:
        context.close()


def answer_with_code(page: Any, demo: DemoSite) -> None:
    """Answer the step-up page open in ``page`` with the code mailed for it."""
    before = len(demo.inbox.messages)
    page.click("#send-form button")
    page.wait_for_selector("#code-form")
    deadline = time.monotonic() + 30
    while not any(codes := [CODE.search(m.get_content()) for m in demo.mails()[before:]]):
        assert time.monotonic() < deadline, "no mail with a code"
        time.sleep(0.1)
    page.fill("input[name=code]", next(c for c in codes if c).group(1))
    page.click("#code-form button[type=submit]")


def test_a_blank_passkey_name_is_refused_in_the_form_before_the_browser_asks(
    demo: DemoSite, browser: Any, tmp_path: Path
):
    """A cleared name field added the passkey as "passkey" without a word. The form now says
    a name is needed, next to the field (kept as typed, focused), before the browser's passkey
    prompt: nothing is created; with a name typed the passkey is added under that name."""
    context = browser.new_context(locale="en-US")
    page = context.new_page()
    page.set_default_timeout(30_000)
    cdp, authenticator = virtual_authenticator(context, page)
    try:
        page.goto(f"{demo.base}/login?lang=en")
        page.fill("input[name=account]", "demo02")
        page.fill("input[name=password]", PASSWORD)
        page.click("#password-login button[type=submit]")
        page.wait_for_url(re.compile(r".*/(portfolio|stepup/.*)$"))
        if "/stepup/" in page.url:  # the canary test's address: challenged, by a code
            answer_with_code(page, demo)
            page.wait_for_url("**/portfolio")
        page.goto(f"{demo.base}/settings")
        page.click("#add-passkey button")
        page.wait_for_url("**/stepup/*")
        answer_with_code(page, demo)
        page.wait_for_url("**/settings?add=1*")
        assert not page.is_visible("#passkey-name-error")
        page.fill("#passkey-name", "   ")
        page.click("#create-passkey")
        page.wait_for_selector("#passkey-name-error", state="visible")
        said = page.inner_text("#passkey-name-error")
        assert "Please give the passkey a name" in said
        assert page.input_value("#passkey-name") == "   "  # what was typed stays
        assert page.evaluate("document.activeElement.id") == "passkey-name"
        assert page.get_attribute("#passkey-name", "aria-invalid") == "true"
        assert not page.is_visible("#passkey-error")  # not "could not be verified"
        page.screenshot(path=str(tmp_path / "passkey-blank-name.png"))
        credentials = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})
        assert credentials["credentials"] == []  # the browser was never asked
        assert page.locator(".passkey-row").count() == 0

        page.fill("#passkey-name", "Home PC")
        page.click("#create-passkey")
        page.wait_for_selector(".passkey-row")
        assert [n.strip() for n in page.locator(".pk-name").all_inner_texts()] == ["Home PC"]
    finally:
        context.close()
