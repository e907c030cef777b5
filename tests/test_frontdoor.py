"""The reference site end to end over HTTP, on a real guard, a real SMTP server and software
passkeys verified by py_webauthn: sign-in, the security page, step-up, freeze, lockout and
unlock, notification settings and the clone canary."""

from __future__ import annotations

import io
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import ALIBABA_HK, SOFTBANK_HIKARI, ip_in
from frontdoor_helpers import (
    HOME_IP,
    ORIGIN,
    PASSWORD,
    SiteRig,
    canary_body,
    csrf_of,
    enrol_passkey,
    login,
    passkey_login,
    post_json,
    site_rig,
    stepup_with_code,
)
from servers import Hooks, Inbox
from starlette.testclient import TestClient

from brokerguard.auth.testing import SoftAuthenticator
from brokerguard.engine.policy import default_policy_path
from brokerguard.events import ChallengeResult, Order, Withdrawal
from brokerguard.frontdoor.app import create_site
from brokerguard.frontdoor.canary import report
from brokerguard.frontdoor.embedded import EmbeddedGuard
from brokerguard.frontdoor.guardclient import GuardClient
from brokerguard.frontdoor.site import SiteConfig
from brokerguard.frontdoor.terminal import TerminalChannel
from brokerguard.frontdoor.texts import MESSAGES
from brokerguard.notify import SIGNATURE_HEADER, SmtpChannel, WebhookChannel, render
from brokerguard.service.db import make_engine, write_transaction
from brokerguard.service.keys import create_key

pytestmark = pytest.mark.usefixtures("cheap_argon2")  # every hash checked in-process

PROXY_IP = "13.112.10.20"  # an AWS Tokyo address: where phishing proxies run
RESIDENTIAL_PROXY = ip_in(SOFTBANK_HIKARI, 77)  # a home line rented out as a proxy
OTHER_HOME = ip_in(SOFTBANK_HIKARI, 78)
PHISH = "https://sbisec.example-phish.top"


def withdrawal_action(rig: SiteRig, account: str) -> str:
    """What the guard answers now to a small withdrawal of ``account`` (lock while frozen)."""
    now = datetime.now(UTC)
    event = Withdrawal(
        id=f"w-{account}-{now.timestamp()}", ts=now, account=account, session="x", amount_jpy=1000
    )
    return rig.api.decide(event).action


def timeline(rig: SiteRig, account: str, kind: str) -> list[dict[str, Any]]:
    """The guard's recorded events of a type (written a moment after the answer)."""
    import httpx

    for _ in range(100):
        answer = httpx.get(
            f"{rig.guard.url}/v1/accounts/{account}/timeline",
            headers={"Authorization": f"Bearer {rig.guard.key}"},
        )
        found = [i for i in answer.json()["items"] if i["type"] == kind]
        if found:
            return found
        time.sleep(0.05)
    return []


def test_password_sign_in_is_decided_by_the_guard_notified_and_shown_on_the_security_page(
    rig: SiteRig,
):
    rig.customer("C100")
    browser = rig.client()
    page = browser.get("/login")
    assert "canary.js" in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]  # no framing
    assert login(browser, "C100") == "/portfolio"
    assert browser.get("/portfolio").status_code == 200
    page = browser.get("/settings?lang=en").text
    assert "Recent sign-ins" in page and "Emergency freeze" in page
    row = re.search(r'<tr class="login-allowed">(.*?)</tr>', page, re.S).group(1)
    assert "JP" in row and HOME_IP in row  # place from netinfo; device from the user agent
    assert 'id="session-' in page and "this device" in page
    mail = rig.wait_mail("C100@example.jp", "新しい端末")  # the first sign-in from this browser
    body = mail.get_content()
    assert "http" not in body and "ブックマーク" in body  # no link in any notice
    browser.post("/logout", data={"csrf_token": csrf_of(browser.get("/portfolio").text)})
    assert login(browser, "C100") == "/portfolio"
    mail = rig.wait_mail("C100@example.jp", "ログインのお知らせ")  # the same browser again
    assert "日本" in mail.get_content()  # the place, in the customer's language

    assert login(rig.client(), "C100", "wrong-password!") == "/login?failed=1"
    page = browser.get("/settings").text
    assert 'class="login-wrong_password"' in page


def test_sessions_are_listed_and_one_can_be_signed_out_from_another(rig: SiteRig):
    rig.customer("C101")
    first, second = rig.client(), rig.client("153.156.10.21")
    login(first, "C101")
    login(second, "C101")
    page = first.get("/settings").text
    ids = re.findall(r'id="session-([^"]+)"', page)
    assert len(ids) == 2
    mine = re.search(r'id="session-([^"]+)"><td>[^<]*<strong>', page).group(1)
    other = next(i for i in ids if i != mine)
    csrf = csrf_of(page)
    assert first.post(f"/settings/sessions/{other}/signout", data={}).status_code == 403
    signed = first.post(f"/settings/sessions/{other}/signout", data={"csrf_token": csrf})
    assert signed.headers["location"] == "/settings"
    assert second.get("/portfolio").headers["location"] == "/login"
    assert first.get("/portfolio").status_code == 200
    ended = timeline(rig, "C101", "session")
    assert ended and ended[0]["event"]["action"] == "logout"
    assert ended[0]["event"]["ip"] == "153.156.10.21"  # the signed-out session's own address


def test_a_blank_passkey_name_is_refused_and_the_step_up_still_holds(rig: SiteRig):
    """A blank name was stored as "passkey" without a word. It is refused now, before the
    step-up's permit is spent: the same permit then adds the passkey under a real name."""
    rig.customer("C105")
    browser, auth = rig.client(), SoftAuthenticator()
    login(browser, "C105")
    csrf = csrf_of(browser.get("/settings").text)
    begun = browser.post("/settings/passkeys/begin", data={"csrf_token": csrf})
    where = begun.headers["location"]
    if where.startswith("/stepup/"):
        where = stepup_with_code(rig, browser, where, "C105@example.jp")
    assert where.startswith("/settings?add=1"), where
    page = browser.get("/settings").text
    assert 'id="passkey-name-error"' in page and MESSAGES["passkey_name_blank"][0] in page
    for blank in ("", "   ", "\u3000", None):
        options = post_json(browser, "/settings/passkeys/options", {}, csrf).json()
        created = auth.create(options, ORIGIN)
        body = {"response": created} if blank is None else {"name": blank, "response": created}
        refused = post_json(browser, "/settings/passkeys", body, csrf)
        assert refused.status_code == 400 and refused.json() == {"error": "name_invalid"}
        assert rig.site.passkeys.list("C105") == []
    options = post_json(browser, "/settings/passkeys/options", {}, csrf).json()
    body = {"name": "Home PC", "response": auth.create(options, ORIGIN)}
    done = post_json(browser, "/settings/passkeys", body, csrf)
    assert done.status_code == 200, done.text
    assert [k.name for k in rig.site.passkeys.list("C105")] == ["Home PC"]


def test_adding_a_passkey_is_stepped_up_and_removing_needs_a_fresh_passkey(rig: SiteRig):
    rig.customer("C102")
    browser, auth = rig.client(), SoftAuthenticator()
    login(browser, "C102")
    csrf = csrf_of(browser.get("/settings").text)
    # Without the guard's step-up the site hands out no registration options.
    assert post_json(browser, "/settings/passkeys/options", {}, csrf).status_code == 403
    enrol_passkey(rig, browser, "C102", auth)
    assert rig.wait_mail("C102@example.jp", "パスキー")  # passkey_registered notice
    (passkey,) = rig.site.passkeys.list("C102")
    assert passkey.name == "My phone"

    renamed = browser.post(
        f"/settings/passkeys/{passkey.credential_id}/rename",
        data={"csrf_token": csrf, "name": "Work laptop"},
    )
    assert renamed.status_code == 303
    assert rig.site.passkeys.list("C102")[0].name == "Work laptop"

    remove = f"/settings/passkeys/{passkey.credential_id}/remove"
    refused = browser.post(remove, data={"csrf_token": csrf})
    assert "error=reauth_required" in refused.headers["location"]
    assert rig.site.passkeys.list("C102")
    options = post_json(browser, "/settings/reauth/options", {}, csrf).json()
    assert (
        post_json(browser, "/settings/reauth", auth.get(options, ORIGIN), csrf).status_code == 200
    )
    assert (
        browser.post(remove, data={"csrf_token": csrf})
        .headers["location"]
        .endswith("saved=1#passkeys")
    )
    assert rig.site.passkeys.list("C102") == []


def test_a_risky_order_is_challenged_and_resumes_only_after_the_passkey(rig: SiteRig):
    rig.customer("C103", positions={"7203": 300})
    browser, auth = rig.client(), SoftAuthenticator()
    login(browser, "C103")
    enrol_passkey(rig, browser, "C103", auth)
    browser.cookies.clear()
    answer = passkey_login(browser, auth)
    assert answer.json() == {"redirect": "/portfolio"}
    csrf = csrf_of(browser.get("/order").text)
    sold = browser.post(
        "/order",
        data={"csrf_token": csrf, "symbol": "7203", "side": "sell", "quantity": "300"},
    )
    assert sold.headers["location"] == "/portfolio?done=placed"
    bought = browser.post(
        "/order",
        data={
            "csrf_token": csrf,
            "symbol": "9347",
            "side": "buy",
            "quantity": "5000",
            "limit_price": "180",
        },
    )
    where = bought.headers["location"]
    assert where.startswith("/stepup/"), "a sell-off then a thin small cap far above its price"
    page = browser.get(where).text
    assert 'id="stepup-passkey"' in page and "9347" in page
    assert "9347" not in rig.site.book.customer("C103").positions

    # A passkey assertion made on a phishing page does not verify: nothing resumes.
    options = post_json(browser, where + "/options", {}, csrf).json()
    phished = auth.get(options, "https://localhost.example-phish.top", unsafe_rp_id="localhost")
    retry = post_json(browser, where + "/answer", {"response": phished}, csrf).json()
    assert retry["redirect"].startswith(where + "?left=")
    assert "9347" not in rig.site.book.customer("C103").positions

    options = post_json(browser, where + "/options", {}, csrf).json()
    done = post_json(browser, where + "/answer", {"response": auth.get(options, ORIGIN)}, csrf)
    assert done.json() == {"redirect": "/portfolio?done=placed"}
    assert rig.site.book.customer("C103").positions["9347"] == 5000
    mail = rig.wait_mail("C103@example.jp", "普段と異なるご注文")
    assert "9347" in mail.get_content() and "http" not in mail.get_content()
    results = timeline(rig, "C103", "challenge")
    assert results and results[0]["event"]["outcome"] == "passed"
    assert results[0]["event"]["factor"] == "passkey"


def test_the_freeze_button_locks_trading_and_withdrawals_at_the_guard_at_once(rig: SiteRig):
    rig.customer("C104", positions={"7203": 100})
    browser = rig.client()
    login(browser, "C104")
    assert withdrawal_action(rig, "C104") != "lock"
    page = browser.get("/settings").text
    csrf = csrf_of(page)
    unconfirmed = browser.post("/settings/freeze", data={"csrf_token": csrf})
    assert "error=confirm" in unconfirmed.headers["location"]
    assert withdrawal_action(rig, "C104") != "lock"

    frozen = browser.post("/settings/freeze", data={"csrf_token": csrf, "confirm": "on"})
    assert frozen.headers["location"] == "/unlock?account=C104"
    assert withdrawal_action(rig, "C104") == "lock"
    now = datetime.now(UTC)
    order = Order(
        id=f"o-{now.timestamp()}",
        ts=now,
        account="C104",
        session="x",
        order_id="x1",
        symbol="7203",
        market="TSE",
        side="sell",
        quantity=100,
        price_type="market",
    )
    assert rig.api.decide(order).action == "lock"
    frozen_answer = rig.api.decide(order)
    assert frozen_answer.action == "lock"
    assert [r.code for r in frozen_answer.decision.reasons] == ["account_frozen"]  # their own
    assert browser.get("/portfolio").headers["location"] == "/login"  # every session ended
    assert login(rig.client(), "C104") == "/unlock?account=C104"  # the password alone: no
    page = rig.client().get("/unlock?account=C104&lang=en").text
    assert 'id="unlock-passkey"' in page and 'id="unlock-ask"' in page
    assert rig.wait_mail("C104@example.jp", "ロック")


def test_lockout_after_failures_then_unlock_with_a_passkey_reopens_site_and_guard(rig: SiteRig):
    rig.customer("C105")
    browser, auth = rig.client(), SoftAuthenticator()
    login(browser, "C105")
    enrol_passkey(rig, browser, "C105", auth)
    attacker = rig.client(PROXY_IP)
    places = [login(attacker, "C105", f"guess-{i}-xxxx") for i in range(5)]
    assert places == ["/login?failed=1"] * 5  # the one that locked it reads the same
    assert withdrawal_action(rig, "C105") == "lock"
    assert login(rig.client(), "C105") == "/unlock?account=C105"  # the right password: no
    assert browser.get("/portfolio").headers["location"] == "/login"

    page = rig.client().get("/unlock?account=C105&lang=en").text
    assert 'id="unlock-passkey"' in page
    owner = rig.client()
    begun = post_json(owner, "/unlock/options", {"account": "C105"}).json()
    # A passkey made on a phishing page does not reopen it.
    phished = auth.get(begun["options"], PHISH, unsafe_rp_id="localhost")
    refused = post_json(owner, "/unlock/verify", {"account": "C105", "response": phished})
    assert refused.status_code == 403
    assert rig.site.lockout.is_locked("C105")
    begun = post_json(owner, "/unlock/options", {"account": "C105"}).json()
    proof = auth.get(begun["options"], ORIGIN)
    done = post_json(owner, "/unlock/verify", {"account": "C105", "response": proof})
    assert done.json() == {"redirect": "/login?unlocked=1"}
    assert not rig.site.lockout.is_locked("C105")
    assert withdrawal_action(rig, "C105") != "lock"
    requests = rig.site.lockout.requests("C105")
    assert len(requests) == 1  # the second try reused the open request
    assert requests[-1].status == "completed" and requests[-1].method.startswith("passkey:")
    assert passkey_login(owner, auth).json() == {"redirect": "/portfolio"}


def test_notification_settings_silence_sign_in_notices_but_never_security_notices(
    rig: SiteRig,
):
    rig.customer("C106")
    browser = rig.client()
    login(browser, "C106")
    rig.wait_mail("C106@example.jp", "新しい端末")
    csrf = csrf_of(browser.get("/settings").text)
    nothing = browser.post("/settings/notifications", data={"csrf_token": csrf})
    assert "error=channels" in nothing.headers["location"]
    saved = browser.post(
        "/settings/notifications", data={"csrf_token": csrf, "channel_email": "on"}
    )
    assert saved.headers["location"].startswith("/settings?saved=1")
    prefs = rig.site.prefs.get("C106")
    assert prefs.channels == ["email"] and not prefs.wants("new_login")
    assert prefs.wants("account_locked")
    before = len(rig.mails("C106@example.jp"))
    login(rig.client(), "C106")
    assert len(rig.mails("C106@example.jp")) == before  # no sign-in notice now
    rig.site.lock("C106", reason="customer", by="customer")
    assert rig.wait_mail("C106@example.jp", "ロック")  # a lock is always told


def test_a_canary_hit_makes_later_password_sign_ins_from_that_address_high_risk(rig: SiteRig):
    rig.customer("C107")
    rig.customer("C108")
    proxy = rig.client(RESIDENTIAL_PROXY)
    own = proxy.post("/canary", content=canary_body(ORIGIN))
    assert own.status_code == 204  # the broker's own origin is no hit
    assert login(rig.client(RESIDENTIAL_PROXY), "C107").startswith("/portfolio")

    hit = proxy.post("/canary", content=canary_body(PHISH), headers={"origin": PHISH})
    assert hit.status_code == 204
    where = login(rig.client(RESIDENTIAL_PROXY), "C108")
    assert where.startswith("/stepup/"), "a password sign-in relayed by the proxy is challenged"
    decisions = timeline(rig, "C108", "login")
    assert decisions[0]["decision"]["action"] == "challenge"
    assert decisions[0]["decision"]["reasons"][0]["code"] == "canary_proxy"
    assert decisions[0]["decision"]["score"] > 0.9
    assert login(rig.client(HOME_IP), "C108") == "/portfolio"  # the customer at home is not


def test_the_style_beacon_reports_a_foreign_referer_and_reports_are_limited(rig: SiteRig):
    rig.customer("C109")
    rig.customer("C111")
    css = rig.client(OTHER_HOME).get("/canary/style.css", headers={"referer": ORIGIN + "/login"})
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert login(rig.client(OTHER_HOME), "C109") == "/portfolio"
    rig.client(OTHER_HOME).get("/canary/style.css", headers={"referer": PHISH + "/login"})
    assert login(rig.client(OTHER_HOME), "C111").startswith("/stepup/")

    flooder = "198.51.100.9"
    sent = [report(rig.site, PHISH, flooder, "x") for _ in range(12)]
    assert sent == [True] * 10 + [False] * 2  # 10 per address per 10 minutes reach the guard
    assert rig.site.limiter.purge("canary", timedelta(0)) == 2  # OTHER_HOME's and the flood's
    assert rig.site.limiter.purge("canary", timedelta(0)) == 0


def test_every_customer_text_exists_in_japanese_and_english(rig: SiteRig):
    for key, (ja, en) in MESSAGES.items():
        assert ja and en and ja != en or key == "site", key
    rig.customer("C110")
    browser = rig.client()
    assert "口座番号" in browser.get("/login").text
    assert "Account number" in browser.get("/login?lang=en").text
    login(browser, "C110")
    assert "Security settings" in browser.get("/settings").text  # the cookie remembers
    assert "セキュリティ設定" in browser.get("/settings?lang=ja").text
    for page in ("/portfolio", "/order", "/settings"):
        html = browser.get(page).text
        assert "http://" not in html.replace(ORIGIN, "") and "https://" not in html, page


@pytest.fixture
def own_rig(tmp_path: Path, smtp: tuple[Inbox, int]) -> Iterator[SiteRig]:
    """A site with a guard of its own: what other tests' fills taught the shared guard (the
    small cap's last price) does not decide whether this test's orders are stepped up."""
    inbox, port = smtp
    embedded = EmbeddedGuard(tmp_path / "guard").start()
    try:
        with site_rig(tmp_path, inbox, port, embedded) as made:
            yield made
    finally:
        embedded.stop()


def test_orders_waiting_at_step_up_are_checked_against_the_cash_when_they_resume(
    own_rig: SiteRig,
):
    """Each order was checked against the cash when placed, not when it resumed after its
    step-up: two purchases waiting at step-up, each within the cash, were both filled and the
    cash went negative. The second is refused when it resumes now, with the form again and
    the same text as a purchase beyond the cash refused at once."""
    rig = own_rig
    rig.customer("C107", cash=1_000_000.0, positions={"7203": 300})
    browser, auth = rig.client(), SoftAuthenticator()
    login(browser, "C107")
    enrol_passkey(rig, browser, "C107", auth)
    browser.cookies.clear()
    assert passkey_login(browser, auth).json() == {"redirect": "/portfolio"}
    csrf = csrf_of(browser.get("/order").text)
    sold = browser.post(
        "/order", data={"csrf_token": csrf, "symbol": "7203", "side": "sell", "quantity": "300"}
    )
    assert sold.headers["location"] == "/portfolio?done=placed"
    cash = rig.site.book.customer("C107").cash  # 1,840,000
    buy = {"csrf_token": csrf, "symbol": "9347", "side": "buy", "limit_price": "180"}
    buy["quantity"] = str(int(cash // 180 // 2 + 100))  # each within the cash, not both
    waiting = []
    for _ in range(2):
        answer = browser.post("/order", data=buy)
        assert answer.headers["location"].startswith("/stepup/"), answer.status_code
        waiting.append(answer.headers["location"])
    outcomes = []
    for where in waiting:
        options = post_json(browser, where + "/options", {}, csrf).json()
        done = post_json(browser, where + "/answer", {"response": auth.get(options, ORIGIN)}, csrf)
        outcomes.append(done.json()["redirect"])
    assert outcomes[0] == "/portfolio?done=placed"
    assert outcomes[1].startswith("/order?refused=order_no_cash&"), outcomes[1]
    customer = rig.site.book.customer("C107")
    assert customer.positions["9347"] == int(buy["quantity"])  # the first only
    assert customer.cash == cash - int(buy["quantity"]) * 180 >= 0
    assert sorted(o.status for o in rig.site.book.orders("C107")) == [
        "placed",
        "placed",
        "refused",
    ]
    for lang, index in (("ja", 0), ("en", 1)):
        page = browser.get(outcomes[1] + f"&lang={lang}").text
        assert MESSAGES["order_no_cash"][index] in page  # the text of a refusal at once
        assert f'value="{buy["quantity"]}"' in page and 'value="180"' in page
    at_once = browser.post("/order?lang=en", data=buy)  # the same order now: refused at once
    assert at_once.status_code == 400 and MESSAGES["order_no_cash"][1] in at_once.text


def test_a_failed_step_up_never_resumes_the_order_and_the_guard_hears_it(rig: SiteRig):
    rig.customer("C112", positions={"7203": 300})
    browser, auth = rig.client(), SoftAuthenticator()
    login(browser, "C112")
    enrol_passkey(rig, browser, "C112", auth)
    csrf = csrf_of(browser.get("/order").text)
    browser.post(
        "/order", data={"csrf_token": csrf, "symbol": "7203", "side": "sell", "quantity": "300"}
    )
    where = browser.post(
        "/order",
        data={
            "csrf_token": csrf,
            "symbol": "9347",
            "side": "buy",
            "quantity": "5000",
            "limit_price": "400",  # far above any fill so far,
        },
    ).headers["location"]
    assert where.startswith("/stepup/"), where
    page = browser.get(where + "?lang=en").text
    assert 'class="reason-liquidation_then_buy"' in page, page[page.find("<main") :][
        :1500
    ]  # the guard's reasons, in English
    for attempt in range(3):
        options = post_json(browser, where + "/options", {}, csrf).json()
        wrong = auth.get(options, "https://localhost.example-phish.top", unsafe_rp_id="localhost")
        answer = post_json(browser, where + "/answer", {"response": wrong}, csrf).json()
        assert answer["redirect"].startswith(where if attempt < 2 else "/stepup-failed")
    assert "9347" not in rig.site.book.customer("C112").positions
    assert rig.site.book.orders("C112")[0].status == "refused"
    results = timeline(rig, "C112", "challenge")
    assert results and results[0]["event"]["outcome"] == "failed"
    assert browser.get(where).status_code == 410  # answered for good


def test_a_stolen_session_that_fails_the_passkey_is_signed_out_and_the_customers_other_stays(
    rig: SiteRig,
):
    """An infostealer replays the customer's session cookie from a cloud server; at its order
    the guard asks for the passkey, which the thief cannot give. The guard then asks the site to
    sign that session out, and the site does; the customer's other session stays open."""
    import httpx

    rig.customer("T1", positions={"7203": 300})
    customer, auth = rig.client(), SoftAuthenticator()
    login(customer, "T1")
    enrol_passkey(rig, customer, "T1", auth)
    other = rig.client()  # the customer's second browser
    assert passkey_login(other, auth).json() == {"redirect": "/portfolio"}

    thief = rig.client(ip_in(ALIBABA_HK, 31))
    thief.cookies.update(customer.cookies)  # the stolen session cookie
    csrf = csrf_of(thief.get("/order").text)
    order = {"csrf_token": csrf, "symbol": "7203", "side": "sell", "quantity": "300"}
    where = thief.post("/order", data=order).headers["location"]
    if where == "/portfolio?done=placed":  # the sell went through; the pump buy will not
        buy = {**order, "symbol": "9347", "side": "buy", "quantity": "5000", "limit_price": "400"}
        where = thief.post("/order", data=buy).headers["location"]
    assert where.startswith("/stepup/"), where
    for attempt in range(3):
        options = post_json(thief, where + "/options", {}, csrf).json()
        wrong = auth.get(options, "https://localhost.example-phish.top", unsafe_rp_id="localhost")
        answer = post_json(thief, where + "/answer", {"response": wrong}, csrf).json()
        assert answer["redirect"].startswith(where if attempt < 2 else "/stepup-failed")

    gone = thief.get("/portfolio")
    assert gone.status_code == 303 and gone.headers["location"].startswith("/login")
    assert customer.get("/portfolio").status_code == 303  # the same session, signed out
    assert other.get("/portfolio").status_code == 200
    assert len(rig.site.sessions.of("T1")) == 1
    feed = httpx.get(
        f"{rig.guard.url}/v1/instructions?account=T1",
        headers={"Authorization": f"Bearer {rig.guard.key}"},
    ).json()
    assert [i["kind"] for i in feed if i["kind"] == "end_session"] == ["end_session"]


def thief_waits_for_a_step_up(rig: SiteRig, account: str, n: int) -> tuple[TestClient, dict]:
    """A stolen session cookie used from a cloud server; its order waits for a step-up.
    Returns the thief's browser and the waiting order's event as the guard recorded it."""
    rig.customer(account, positions={"7203": 300})
    customer, auth = rig.client(), SoftAuthenticator()
    login(customer, account)
    enrol_passkey(rig, customer, account, auth)
    thief = rig.client(ip_in(ALIBABA_HK, n))
    thief.cookies.update(customer.cookies)
    csrf = csrf_of(thief.get("/order").text)
    order = {"csrf_token": csrf, "symbol": "7203", "side": "sell", "quantity": "300"}
    where = thief.post("/order", data=order).headers["location"]
    if where == "/portfolio?done=placed":
        buy = {**order, "symbol": "9347", "side": "buy", "quantity": "5000", "limit_price": "400"}
        where = thief.post("/order", data=buy).headers["location"]
    assert where.startswith("/stepup/"), where
    waiting = [o for o in timeline(rig, account, "order") if o["decision"]["action"] != "allow"]
    return thief, waiting[0]["event"]


def refused_by_the_call_centre(rig: SiteRig, order_event: dict) -> dict:
    """Another of the broker's systems reports that the customer refused the order."""
    call_centre = GuardClient(rig.guard.url, rig.guard.key)
    refused = ChallengeResult(
        id=f"callcentre-{order_event['id']}",
        ts=datetime.now(UTC),
        account=order_event["account"],
        session=order_event["session"],
        ref=order_event["id"],
        factor="oob",
        outcome="failed",
    )
    try:
        return call_centre.send([refused])
    finally:
        call_centre.close()


def test_a_sign_out_another_system_asks_for_reaches_the_site_through_the_feed(rig: SiteRig):
    """The thief's order waits for its step-up; the customer tells the broker's call centre that
    it was not them, and that system reports the refusal to the guard. The site did not send
    that report, so it learns of the sign-out from the guard's feed."""
    thief, order_event = thief_waits_for_a_step_up(rig, "T2", 32)
    answer = refused_by_the_call_centre(rig, order_event)
    assert "end_session" in {i["kind"] for i in answer["instructions"]}
    assert thief.get("/portfolio").status_code == 200  # the site has not heard yet
    assert rig.site.follow_instructions() == 1
    gone = thief.get("/portfolio")
    assert gone.status_code == 303 and gone.headers["location"].startswith("/login")
    assert rig.site.follow_instructions() == 0  # read again: nothing more to do


def test_the_site_reads_the_feed_on_its_own(
    tmp_path: Path, smtp: tuple[Inbox, int], guard: EmbeddedGuard
):
    inbox, port = smtp
    with site_rig(tmp_path, inbox, port, guard, poll=0.2) as rig:
        thief, order_event = thief_waits_for_a_step_up(rig, "T3", 33)
        refused_by_the_call_centre(rig, order_event)
        for _ in range(100):
            if not rig.site.sessions.of("T3"):
                break
            time.sleep(0.1)
        assert rig.site.sessions.of("T3") == []
        assert thief.get("/portfolio").status_code == 303


@pytest.fixture(scope="module")
def hold_guard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedGuard]:
    """A guard on the shipped policy itself: risky orders are held, not challenged."""
    shipped = default_policy_path().read_text(encoding="utf-8")
    embedded = EmbeddedGuard(tmp_path_factory.mktemp("hold-guard"), policy_text=shipped).start()
    try:
        yield embedded
    finally:
        embedded.stop()


def test_a_held_order_is_confirmed_by_the_mailed_code_or_rejected_as_not_mine(
    tmp_path: Path, smtp: tuple[Inbox, int], hold_guard: EmbeddedGuard
):
    inbox, port = smtp
    with site_rig(tmp_path, inbox, port, hold_guard) as rig:
        rig.customer("H1", positions={"7203": 600})
        browser = rig.client()
        login(browser, "H1")
        csrf = csrf_of(browser.get("/order").text)
        form = {"csrf_token": csrf, "symbol": "7203", "side": "sell", "quantity": "600"}
        assert browser.post("/order", data=form).headers["location"] == "/portfolio?done=placed"
        buy = {
            "csrf_token": csrf,
            "symbol": "9347",
            "side": "buy",
            "quantity": "5000",
            "limit_price": "180",
        }
        # "This was not me": the held order is refused and never placed.
        where = browser.post("/order", data=buy).headers["location"]
        assert where.startswith("/stepup/")
        page = browser.get(where).text
        assert 'id="code-form"' in page and 'id="reject-form"' in page  # the code went already
        mail = rig.wait_mail("H1@example.jp", "ご本人確認のお願い")
        body = mail.get_content()
        assert "9347" in body and "http" not in body
        assert rig.wait_mail("H1@example.jp", "保留")  # order_held notice
        rejected = browser.post(where + "/reject", data={"csrf_token": csrf})
        assert rejected.headers["location"] == "/portfolio?done=rejected"
        assert "9347" not in rig.site.book.customer("H1").positions
        assert rig.site.book.orders("H1")[0].status == "refused"

        # Held again (the session failed its confirmation); this time the mailed code lets it go.
        before = len(rig.mails("H1@example.jp"))
        where = browser.post("/order", data={**buy, "quantity": "4000"}).headers["location"]
        assert where.startswith("/stepup/")
        for _ in range(100):
            if len(rig.mails("H1@example.jp")) > before:
                break
            time.sleep(0.05)
        code = rig.last_code("H1@example.jp")
        done = browser.post(
            where + "/answer", data={"csrf_token": csrf, "factor": "oob", "code": code}
        )
        assert done.headers["location"] == "/portfolio?done=placed"
        assert rig.site.book.customer("H1").positions["9347"] == 4000
        results = timeline(rig, "H1", "challenge")
        for _ in range(100):
            if len(results) >= 2:
                break
            time.sleep(0.05)
            results = timeline(rig, "H1", "challenge")
        assert [r["event"]["outcome"] for r in results[:2]] == ["passed", "failed"]


def test_not_mine_from_a_doubtful_session_cancels_the_order_and_signs_it_out(
    tmp_path: Path, smtp: tuple[Inbox, int], hold_guard: EmbeddedGuard
):
    """A first sign-in that never loaded the page (no device cookie: a script posting the form)
    is doubtful; when the held order it placed is "not mine", the guard has it signed out and
    the sign-in page says the order was cancelled."""
    inbox, port = smtp
    with site_rig(tmp_path, inbox, port, hold_guard) as rig:
        rig.customer("H3", positions={"7203": 600})
        browser = rig.client()
        answer = browser.post("/login", data={"account": "H3", "password": PASSWORD})
        assert answer.status_code == 303  # signed in without a device cookie
        csrf = csrf_of(browser.get("/order").text)
        form = {"csrf_token": csrf, "symbol": "7203", "side": "sell", "quantity": "600"}
        assert browser.post("/order", data=form).headers["location"] == "/portfolio?done=placed"
        buy = {**form, "symbol": "9347", "side": "buy", "quantity": "5000", "limit_price": "180"}
        where = browser.post("/order", data=buy).headers["location"]
        assert where.startswith("/stepup/")
        rejected = browser.post(where + "/reject", data={"csrf_token": csrf})
        assert rejected.headers["location"] == "/login?rejected=1"
        assert rig.site.book.orders("H3")[0].status == "refused"
        assert rig.site.sessions.of("H3") == []
        assert browser.get("/portfolio").headers["location"].startswith("/login")
        page = browser.get("/login?rejected=1&lang=en").text
        assert 'id="login-rejected"' in page and "signed out" in page


def test_a_held_order_whose_code_cannot_be_sent_is_refused_not_left_waiting(
    tmp_path: Path, smtp: tuple[Inbox, int], hold_guard: EmbeddedGuard
):
    inbox, port = smtp
    with site_rig(tmp_path, inbox, port, hold_guard) as rig:
        rig.customer("H2", positions={"7203": 600})
        browser = rig.client()
        login(browser, "H2")
        csrf = csrf_of(browser.get("/order").text)
        form = {"csrf_token": csrf, "symbol": "7203", "side": "sell", "quantity": "600"}
        assert browser.post("/order", data=form).headers["location"] == "/portfolio?done=placed"
        for i in range(5):  # the e-mail codes of the hour are used up
            rig.site.codes.send("H2", "email", purpose=f"other-{i}")
        buy = {**form, "symbol": "9347", "side": "buy", "quantity": "5000", "limit_price": "180"}
        answer = browser.post("/order", data=buy)
        # the form again, with what was typed and why (not the portfolio, the order gone)
        assert answer.status_code == 200 and 'id="order-problem"' in answer.text
        assert 'value="5000"' in answer.text and 'value="180"' in answer.text
        assert rig.site.book.orders("H2")[0].status == "refused"
        assert "9347" not in rig.site.book.customer("H2").positions


def test_notices_go_to_the_sms_webhook_when_the_customer_chooses_it(
    tmp_path: Path, smtp: tuple[Inbox, int], guard: EmbeddedGuard
):
    hooks = Hooks()
    inbox, port = smtp
    try:
        config = SiteConfig(origin=ORIGIN, rp_id="localhost", store_path=tmp_path / "site.db")
        channels = {
            "email": SmtpChannel("127.0.0.1", port, sender="notice@demo.example", timeout=5),
            "sms": WebhookChannel(hooks.url, b"secret"),
        }
        app = create_site(config, GuardClient(guard.url, guard.key), channels)
        with TestClient(app, base_url=ORIGIN, client=(HOME_IP, 4000), follow_redirects=False) as c:
            site = app.state.site
            site.add_customer("W1", PASSWORD, name="W", email="W1@example.jp")
            customer = site.book.customer("W1")
            customer.phone = "+819012345678"
            site.book.add(customer)
            login(c, "W1")
            site.outbox.wait_idle(30)
            assert len(hooks.requests) == 1  # both channels by default
            csrf = csrf_of(c.get("/settings").text)
            c.post(
                "/settings/notifications",
                data={
                    "csrf_token": csrf,
                    "channel_sms": "on",
                    "kind_new_login": "on",
                    "kind_new_device": "on",
                },
            )
            mails = len([m for m in inbox.messages if "W1@example.jp" in m[1]])
            login(
                TestClient(app, base_url=ORIGIN, client=(HOME_IP, 4001), follow_redirects=False),
                "W1",
            )
            site.outbox.wait_idle(30)
            assert len(hooks.requests) == 2
            assert len([m for m in inbox.messages if "W1@example.jp" in m[1]]) == mails
            headers, _body = hooks.requests[-1]
            assert SIGNATURE_HEADER.lower() in {k.lower() for k in headers}
            assert hooks.payload()["to"] == "+819012345678"
    finally:
        hooks.close()


def test_an_analyst_unlock_at_the_guard_with_the_identity_check_noted_reopens_the_site(
    rig: SiteRig,
):
    rig.customer("C113")
    browser = rig.client()
    login(browser, "C113")
    csrf = csrf_of(browser.get("/settings").text)
    browser.post("/settings/freeze", data={"csrf_token": csrf, "confirm": "on"})
    engine = make_engine(f"sqlite:///{rig.guard.directory / 'guard.db'}")
    with write_transaction(engine) as conn:
        _info, analyst_key = create_key(conn, ("admin",), name="security team")
    engine.dispose()
    analyst = GuardClient(rig.guard.url, analyst_key)
    try:
        analyst.unfreeze("C113", "")  # no note: how was the identity checked?
        assert login(rig.client(), "C113") == "/unlock?account=C113"
        analyst.freeze("C113", "again")
        analyst.unfreeze("C113", "called back on the registered phone; identity confirmed")
    finally:
        analyst.close()
    assert login(rig.client(), "C113") == "/portfolio"
    done = rig.site.lockout.requests("C113")[-1]
    assert done.status == "completed" and done.completed_by == f"analyst:key:{analyst_key[:12]}"
    assert done.method == "called back on the registered phone; identity confirmed"


def test_without_a_mail_relay_the_demo_prints_notices_with_their_codes():
    stream = io.StringIO()
    notice = render("one_time_code", "en", {"code": "123456", "minutes": "5", "purpose": "login"})
    TerminalChannel(stream).send("taro@example.jp", notice)
    printed = stream.getvalue()
    assert "mail to taro@example.jp: [BrokerGuard] Your confirmation code" in printed
    assert "Code: 123456" in printed


def test_a_log_in_posted_from_a_phishing_host_carries_its_referrer_to_the_guard(rig: SiteRig):
    rig.customer("C120")
    assert login(rig.client(HOME_IP), "C120") == "/portfolio"
    relayed = rig.client(HOME_IP).post(
        "/login",
        data={"account": "C120", "password": PASSWORD},
        headers={"referer": "https://sbisec.co.jp.example-phish.top/login/?lang=ja"},
    )
    assert relayed.status_code == 303
    decisions = timeline(rig, "C120", "login")
    last = decisions[0]
    assert last["event"]["referrer"] == "https://sbisec.co.jp.example-phish.top/login/?lang=ja"
    assert "phishing_referrer" in {r["code"] for r in last["decision"]["reasons"]}
    odd = rig.client(HOME_IP).post(
        "/login", data={"account": "C120", "password": PASSWORD}, headers={"referer": "x y"}
    )
    assert odd.status_code == 303  # a Referer the event model refuses is dropped, not an error


def test_a_customer_without_a_passkey_asks_and_the_console_lists_and_unlocks_it(rig: SiteRig):
    """The analyst path end to end: freeze at the site, "ask the support desk" on the unlock
    page, the request in the guard's console list (real HTTP to the embedded guard), the
    supervisor's unlock with a note there, and the site reopened by that note."""
    import httpx
    from console_helpers import PASSWORD as CONSOLE_PASSWORD
    from console_helpers import login as console_login

    from brokerguard.service.users import create_user

    rig.customer("C120")
    browser = rig.client()
    login(browser, "C120")
    csrf = csrf_of(browser.get("/settings").text)
    browser.post("/settings/freeze", data={"csrf_token": csrf, "confirm": "on"})
    unlock = rig.client().get("/unlock?account=C120&lang=en").text
    assert 'id="unlock-ask"' in unlock
    asked = rig.client().post("/unlock/ask", data={"account": "C120"})
    assert asked.headers["location"] == "/unlock?account=C120&asked=yes"
    assert "We have your request" in rig.client().get(asked.headers["location"] + "&lang=en").text
    open_request = rig.site.lockout.requests("C120")[-1]
    assert open_request.status == "open" and open_request.requested_by == "customer"
    not_locked = rig.client().post("/unlock/ask", data={"account": "C999"})
    assert not_locked.headers["location"] == "/unlock?account=C999&asked=yes"  # the same answer
    assert rig.site.lockout.requests("C999") == []  # but nothing asked of anyone

    engine = make_engine(f"sqlite:///{rig.guard.directory / 'guard.db'}")
    with write_transaction(engine) as conn:
        create_user(conn, "desk", CONSOLE_PASSWORD, "supervisor")
    engine.dispose()
    with httpx.Client(base_url=rig.guard.url) as console:
        token = console_login(console, "desk")
        listed = console.get("/console/unlocks?requested=1&lang=en").text
        row = re.search(r'<tr id="unlock-C120"[^>]*>(.*?)</tr>', listed, re.S)
        assert row and "Requested" in row.group(1) and open_request.id in row.group(1)
        assert "customer: locked by" in row.group(1)  # the site's freeze note
        note = "called back on the registered phone; identity confirmed"
        done = console.post(
            "/console/accounts/C120/actions",
            data={
                "csrf_token": token,
                "action": "unlock",
                "note": note,
                "back": "/console/unlocks",
            },
            follow_redirects=False,
        )
        assert done.status_code == 303 and done.headers["location"] == "/console/unlocks"
        assert 'id="unlock-C120"' not in console.get("/console/unlocks").text
    assert login(rig.client(), "C120") == "/portfolio"
    completed = rig.site.lockout.requests("C120")[-1]
    assert completed.id == open_request.id and completed.status == "completed"
    assert completed.completed_by == "analyst:user:desk" and completed.method == note


def test_a_body_that_is_not_a_json_object_is_a_400_not_a_server_error(rig: SiteRig):
    rig.customer("C121")
    browser = rig.client()
    login(browser, "C121")
    csrf = csrf_of(browser.get("/settings").text)
    paths = [
        "/login/passkey/options",
        "/login/passkey",
        "/unlock/options",
        "/unlock/verify",
        "/settings/reauth/options",
        "/settings/reauth",
        "/settings/passkeys/options",
        "/settings/passkeys",
    ]
    for path in paths:
        for body, kind in ((b"{not json", "application/json"), (b"[1]", "application/json")):
            answer = browser.post(
                path, content=body, headers={"content-type": kind, "x-csrf-token": csrf}
            )
            assert answer.status_code == 400, (path, body, answer.status_code)
        form = browser.post(path, data={"csrf_token": csrf})
        assert form.status_code == 400, (path, "form", form.status_code)


def test_a_malformed_canary_origin_or_referer_is_ignored_not_a_server_error(rig: SiteRig):
    browser = rig.client("198.51.100.23")
    beacon = browser.post("/canary", content=canary_body("http://[::1"))
    assert beacon.status_code == 204
    assert (
        browser.post("/canary", content=b"{}", headers={"origin": "https://[x"}).status_code == 204
    )
    css = browser.get("/canary/style.css", headers={"referer": "http://[bad/login"})
    assert css.status_code == 200


def test_a_csrf_token_with_non_ascii_characters_is_denied_not_a_server_error(rig: SiteRig):
    rig.customer("C122")
    browser = rig.client()
    login(browser, "C122")
    form = browser.post("/settings/freeze", data={"csrf_token": "é", "confirm": "on"})
    assert form.status_code == 403
    header = browser.post("/logout", headers={"x-csrf-token": "\xe9".encode("latin-1")})
    assert header.status_code == 403
    assert not rig.site.lockout.is_locked("C122")
    assert browser.get("/portfolio").status_code == 200  # still signed in


def test_a_sign_in_step_up_passed_after_the_account_was_frozen_opens_no_session(rig: SiteRig):
    """The criminal's password sign-in waits for its step-up; meanwhile the customer freezes
    the account. Passing the step-up afterwards must not sign anyone in to the frozen account."""
    rig.customer("C123")
    relay = ip_in(SOFTBANK_HIKARI, 79)
    proxy = rig.client(relay)
    proxy.post("/canary", content=canary_body(PHISH), headers={"origin": PHISH})
    where = login(proxy, "C123")
    assert where.startswith("/stepup/"), where
    rig.site.lock("C123", reason="customer", by="customer")
    after = stepup_with_code(rig, proxy, where, "C123@example.jp")
    assert after == "/unlock?account=C123"
    assert rig.site.sessions.of("C123") == []
    assert proxy.get("/portfolio").headers["location"] == "/login"


def test_an_account_typed_at_the_sign_in_stays_in_the_guards_account_path():
    """The site freezes at the guard whatever ID failed its passwords, and that ID is typed by
    anyone: its dots and slashes must not lead the site's key to another endpoint."""
    import httpx

    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.raw_path.decode())
        return httpx.Response(200, json={})

    client = GuardClient("http://guard.test", "bgk_x", transport=httpx.MockTransport(answer))
    client.freeze("X/../../cases?", "failures")
    client.actions("A 1#2")
    assert seen == [
        "/v1/accounts/X%2F..%2F..%2Fcases%3F/actions",
        "/v1/accounts/A%201%232/actions",
    ]


def test_an_id_locked_by_failures_goes_to_its_own_unlock_page_whatever_it_holds(rig: SiteRig):
    """The unlock page's address carries the ID quoted whole: an ``&`` in it must not add a
    parameter (a broker's IDs may hold any character the login form accepts)."""
    rig.customer("Z9&asked=yes")
    attacker = rig.client(PROXY_IP)
    for i in range(5):
        login(attacker, "Z9&asked=yes", f"guess-{i}-xxxx")
    where = login(rig.client(), "Z9&asked=yes")  # the owner, with the right password
    assert where == "/unlock?account=Z9%26asked%3Dyes"
    page = rig.client().get(where + "&lang=en")
    assert page.status_code == 200 and "Z9&amp;asked=yes" in page.text


def test_one_step_up_adds_one_passkey(rig: SiteRig):
    """The permit a step-up gives is used up by the passkey it lets in: a second key needs a
    second step-up (whoever passed the first, with a relayed code say, cannot add a spare)."""
    rig.customer("C130")
    browser = rig.client()
    login(browser, "C130")
    csrf = enrol_passkey(rig, browser, "C130", SoftAuthenticator())
    again = post_json(browser, "/settings/passkeys/options", {}, csrf)
    assert (again.status_code, again.json()) == (403, {"error": "reauth_required"})


def test_a_wrong_password_keeps_the_account_number_in_the_form(rig: SiteRig) -> None:
    """After a wrong password the form came back empty: the customer typed the account number
    again every time. It comes back filled in (the password field stays empty)."""
    rig.customer("C177")
    client = rig.client()
    client.get("/login")
    answer = client.post(
        "/login", data={"account": "C177", "password": "wrong"}, follow_redirects=False
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/login?failed=1"
    page = client.get("/login?failed=1").text
    assert 'id="login-failed"' in page
    assert re.search(r'<input name="account"[^>]*value="C177"', page), "account kept"
    assert not re.search(r'type="password"[^>]*value="[^"]', page)
    fresh = client.get("/login").text
    assert not re.search(r'<input name="account"[^>]*value="C177"', fresh)
