"""What one approval may approve, over the site's HTTP endpoints on a real guard: a passkey
assertion or a mailed code answers only the step-up (or re-verification, or unlock) it was
asked for, in the session that asked, once.

The threat: whoever holds a customer's session (a phishing proxy, a stolen cookie, malware in
the browser) gets the customer to approve something innocent and reuses the approval for
something else — a pump buy, a passkey of their own, their own sign-in."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from frontdoor_helpers import (
    ORIGIN,
    SiteRig,
    csrf_of,
    enrol_passkey,
    login,
    passkey_login,
    post_json,
    site_rig,
)
from servers import Inbox
from starlette.testclient import TestClient

from brokerguard.auth.testing import SoftAuthenticator
from brokerguard.engine.policy import default_policy_path
from brokerguard.frontdoor.embedded import EmbeddedGuard, demo_policy_text

pytestmark = pytest.mark.usefixtures("cheap_argon2")  # every hash checked in-process

PROXY_IP = "13.112.10.20"  # an AWS Tokyo address: where phishing proxies run


@pytest.fixture
def guard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedGuard]:
    """A guard of each test's own: a buy that went through moves the price the next is
    judged against."""
    embedded = EmbeddedGuard(tmp_path_factory.mktemp("guard")).start()
    try:
        yield embedded
    finally:
        embedded.stop()


def timeline(rig: SiteRig, account: str, kind: str, n: int = 1) -> list[dict[str, Any]]:
    """The guard's recorded events of a type, once at least ``n`` are there."""
    import httpx

    found: list[dict[str, Any]] = []
    for _ in range(100):
        answer = httpx.get(
            f"{rig.guard.url}/v1/accounts/{account}/timeline",
            headers={"Authorization": f"Bearer {rig.guard.key}"},
        )
        found = [i for i in answer.json()["items"] if i["type"] == kind]
        if len(found) >= n:
            return found
        time.sleep(0.05)
    return found


BUY = {"symbol": "9347", "side": "buy", "limit_price": "180"}


def two_challenged_buys(
    rig: SiteRig, account: str
) -> tuple[TestClient, SoftAuthenticator, str, str, str]:
    """A customer with a passkey sells everything, then two thin small-cap buys wait for their
    step-ups. Returns the browser, its passkey, the CSRF token and the two step-up pages."""
    rig.customer(account, positions={"7203": 300})
    browser, auth = rig.client(), SoftAuthenticator()
    login(browser, account)
    enrol_passkey(rig, browser, account, auth)
    csrf = csrf_of(browser.get("/order").text)
    sold = browser.post(
        "/order", data={"csrf_token": csrf, "symbol": "7203", "side": "sell", "quantity": "300"}
    )
    assert sold.headers["location"] == "/portfolio?done=placed"
    first = browser.post("/order", data={"csrf_token": csrf, **BUY, "quantity": "100"})
    second = browser.post("/order", data={"csrf_token": csrf, **BUY, "quantity": "9000"})
    a, b = first.headers["location"], second.headers["location"]
    assert a.startswith("/stepup/") and b.startswith("/stepup/") and a != b, (a, b)
    return browser, auth, csrf, a, b


def holding(rig: SiteRig, account: str, symbol: str = "9347") -> int:
    return rig.site.book.customer(account).positions.get(symbol, 0)


def test_a_passkey_assertion_for_one_step_up_does_not_pass_another(rig: SiteRig):
    """The customer approves a 100-share buy with the passkey; the assertion, taken on its
    way (malware in the browser, say), is sent to the 9,000-share buy's step-up instead."""
    browser, auth, csrf, small, large = two_challenged_buys(rig, "B1")
    assert "x9000" in browser.get(large).text.replace(" ", "")
    options = post_json(browser, small + "/options", {}, csrf).json()
    approved_small = auth.get(options, ORIGIN)  # what the customer's passkey signed
    swapped = post_json(browser, large + "/answer", {"response": approved_small}, csrf).json()
    assert swapped["redirect"].startswith(large + "?left="), swapped
    assert holding(rig, "B1") == 0  # the large buy did not go through
    # Nor does it pass its own step-up afterwards: a passkey answer is taken once.
    again = post_json(browser, small + "/answer", {"response": approved_small}, csrf).json()
    assert again["redirect"].startswith(small + "?left="), again
    assert holding(rig, "B1") == 0
    # Each step-up passes with an assertion made for it, and only for its own order.
    options = post_json(browser, small + "/options", {}, csrf).json()
    done = post_json(browser, small + "/answer", {"response": auth.get(options, ORIGIN)}, csrf)
    assert done.json() == {"redirect": "/portfolio?done=placed"}
    assert holding(rig, "B1") == 100
    assert browser.get(large).status_code == 200  # still open, still waiting for its own


def test_sign_in_re_verification_unlock_and_step_up_ceremonies_do_not_stand_in_for_each_other(
    rig: SiteRig,
):
    browser, auth, csrf, small, _large = two_challenged_buys(rig, "B2")

    # A re-verification on the security page (the customer means to rename or remove a passkey)
    # does not pass an order's step-up.
    options = post_json(browser, "/settings/reauth/options", {}, csrf).json()
    reverified = auth.get(options, ORIGIN)
    swapped = post_json(browser, small + "/answer", {"response": reverified}, csrf).json()
    assert swapped["redirect"].startswith(small + "?left="), swapped
    assert holding(rig, "B2") == 0

    # A step-up's assertion is no re-verification: no passkey can be removed with it.
    options = post_json(browser, small + "/options", {}, csrf).json()
    stepped = auth.get(options, ORIGIN)
    refused = post_json(browser, "/settings/reauth", stepped, csrf)
    assert refused.status_code == 403, refused.text
    (passkey,) = rig.site.passkeys.list("B2")
    removed = browser.post(
        f"/settings/passkeys/{passkey.credential_id}/remove", data={"csrf_token": csrf}
    )
    assert "error=reauth_required" in removed.headers["location"]
    assert rig.site.passkeys.list("B2")

    # Nor a sign-in: the page signs in with discoverable passkeys, of no account given.
    options = post_json(browser, small + "/options", {}, csrf).json()
    signed_in = post_json(rig.client(), "/login/passkey", auth.get(options, ORIGIN))
    assert signed_in.json() == {"redirect": "/login?failed=1"}

    # A step-up's assertion, made before the account was locked, does not unlock it.
    options = post_json(browser, small + "/options", {}, csrf).json()
    before_the_lock = auth.get(options, ORIGIN)
    rig.site.lock("B2", reason="customer", by="customer")
    owner = rig.client()
    begun = post_json(owner, "/unlock/options", {"account": "B2"}).json()
    unlocked = post_json(
        owner,
        "/unlock/verify",
        {"account": "B2", "response": before_the_lock},
    )
    assert unlocked.status_code == 403, unlocked.text
    assert rig.site.lockout.is_locked("B2")
    # The unlock's own ceremony does.
    begun = post_json(owner, "/unlock/options", {"account": "B2"}).json()
    done = post_json(
        owner,
        "/unlock/verify",
        {"account": "B2", "response": auth.get(begun["options"], ORIGIN)},
    )
    assert done.json() == {"redirect": "/login?unlocked=1"}
    assert passkey_login(owner, auth).json() == {"redirect": "/portfolio"}


def test_a_sign_in_step_up_is_answered_only_by_the_browser_that_signed_in(rig: SiteRig):
    """A phisher signs in from his proxy with the relayed password and meets the passkey step-up.
    He sends the customer — signed in on the real site in her own browser — the step-up's
    address ("please confirm your sign-in"). Her session must not pass his sign-in: the guard
    would learn his proxy as her own, and let his next password sign-in straight in."""
    rig.customer("S1")
    customer, auth = rig.client(), SoftAuthenticator()
    login(customer, "S1")
    csrf = enrol_passkey(rig, customer, "S1", auth)
    phisher = rig.client(PROXY_IP)
    where = login(phisher, "S1")
    assert where.startswith("/stepup/"), where

    assert customer.get(where).status_code == 410  # not hers to answer
    options = post_json(customer, where + "/options", {}, csrf)
    assert options.status_code == 404, options.text
    signed = auth.get(post_json(customer, "/settings/reauth/options", {}, csrf).json(), ORIGIN)
    answer = post_json(customer, where + "/answer", {"response": signed}, csrf)
    assert answer.json() == {"redirect": where}
    assert phisher.get(where).status_code == 200  # still waiting, for the phisher's browser
    assert login(rig.client(PROXY_IP), "S1").startswith("/stepup/")  # and he is still asked


def test_a_step_up_is_answered_only_in_the_session_that_opened_it(rig: SiteRig):
    """Someone in a second session of the account (a proxy the guard found unremarkable, an
    old session's stolen cookie) starts adding a passkey, which the guard steps up. The
    customer, in her own session, is led to that step-up's page: her passkey must not give his
    session the permit to enrol his own."""
    rig.customer("S2")
    customer, auth = rig.client(), SoftAuthenticator()
    login(customer, "S2")
    csrf = enrol_passkey(rig, customer, "S2", auth)
    intruder = rig.client()
    assert login(intruder, "S2") == "/portfolio"
    his_csrf = csrf_of(intruder.get("/settings").text)
    begun = intruder.post("/settings/passkeys/begin", data={"csrf_token": his_csrf})
    where = begun.headers["location"]
    assert where.startswith("/stepup/"), where

    assert customer.get(where).status_code == 410
    assert post_json(customer, where + "/options", {}, csrf).status_code == 404
    signed = auth.get(post_json(customer, "/settings/reauth/options", {}, csrf).json(), ORIGIN)
    answer = post_json(customer, where + "/answer", {"response": signed}, csrf)
    assert answer.json() == {"redirect": where}
    sent = customer.post(where + "/send", data={"csrf_token": csrf, "factor": "oob"})
    assert sent.headers["location"] == where
    assert rig.site.stepup.get(where.removeprefix("/stepup/")).sent is None
    options = post_json(intruder, "/settings/passkeys/options", {}, his_csrf)
    assert (options.status_code, options.json()) == (403, {"error": "reauth_required"})
    assert len(rig.site.passkeys.list("S2")) == 1

    # Another customer's session cannot either; the session that opened it can.
    rig.customer("S3")
    stranger = rig.client()
    login(stranger, "S3")
    assert stranger.get(where).status_code == 410
    assert intruder.get(where).status_code == 200


STRONG_OR_CODE = '{ min_score = 0.5, action = "challenge", factors = ["passkey", "oob"] }'


@pytest.fixture
def email_or_oob_guard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedGuard]:
    """A broker's policy that lets a risky sign-in be stepped up by an e-mail one-time code
    (relayable) or an out-of-band confirmation, whichever the customer picks."""
    head, login_point, rest = demo_policy_text().partition("[login]\n")
    assert STRONG_OR_CODE in rest
    rest = rest.replace(STRONG_OR_CODE, STRONG_OR_CODE.replace('"passkey"', '"email"'), 1)
    embedded = EmbeddedGuard(
        tmp_path_factory.mktemp("guard"), policy_text=head + login_point + rest
    ).start()
    try:
        yield embedded
    finally:
        embedded.stop()


def test_a_one_time_code_is_not_taken_as_an_out_of_band_confirmation(
    tmp_path: Path, smtp: tuple[Inbox, int], email_or_oob_guard: EmbeddedGuard
):
    """The phisher's sign-in may be stepped up by an e-mail code or an out-of-band
    confirmation. He asks for the e-mail code, which his kit relays as the customer types it
    into the phishing page, and answers with it as the out-of-band confirmation: the guard
    would count his sign-in as confirmed by the customer's registered contact, learn his proxy
    as hers and let his next password sign-in in unasked."""
    inbox, port = smtp
    with site_rig(tmp_path, inbox, port, email_or_oob_guard) as rig:
        rig.customer("K1")
        assert login(rig.client(), "K1") == "/portfolio"
        phisher = rig.client(PROXY_IP)
        where = login(phisher, "K1")
        assert where.startswith("/stepup/"), where
        challenge = rig.site.stepup.get(where.removeprefix("/stepup/"))
        assert challenge.factors == ("email", "oob")
        hidden = re.search(r'name="stepup" value="([^"]*)"', phisher.get(where).text).group(1)
        mails = len(rig.mails("K1@example.jp"))
        phisher.post(where + "/send", data={"stepup": hidden, "factor": "email"})
        for _ in range(100):
            if len(rig.mails("K1@example.jp")) > mails:
                break
            time.sleep(0.05)
        relayed = rig.last_code("K1@example.jp")
        mail = rig.mails("K1@example.jp")[-1].get_content()
        assert "ログイン の確認コード" in mail and "stepup" not in mail  # what it approves

        form = {"stepup": hidden, "code": relayed}
        as_oob = phisher.post(where + "/answer", data={**form, "factor": "oob"})
        assert as_oob.headers["location"].startswith(where + "?left="), as_oob.headers
        as_email = phisher.post(where + "/answer", data={**form, "factor": "email"})
        assert as_email.headers["location"] == "/portfolio"  # what it is: an e-mail code
        (result,) = timeline(rig, "K1", "challenge")
        assert (result["event"]["factor"], result["event"]["outcome"]) == ("email", "passed")
        assert login(rig.client(PROXY_IP), "K1").startswith("/stepup/")  # still asked


@pytest.fixture
def hold_guard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedGuard]:
    """A guard on the shipped policy itself: risky orders are held, not challenged."""
    shipped = default_policy_path().read_text(encoding="utf-8")
    embedded = EmbeddedGuard(tmp_path_factory.mktemp("guard"), policy_text=shipped).start()
    try:
        yield embedded
    finally:
        embedded.stop()


def code_for(rig: SiteRig, to: str, operation: str) -> str:
    """The code of the hold confirmation that names ``operation``."""
    for _ in range(100):
        for mail in rig.mails(to):
            body = mail.get_content()
            if operation in body:
                return re.search(r"確認コード: (\d{6})", body).group(1)
        time.sleep(0.05)
    raise AssertionError(f"no confirmation naming {operation!r} mailed to {to}")


def test_a_mailed_confirmation_code_confirms_only_its_own_held_order_and_only_once(
    tmp_path: Path, smtp: tuple[Inbox, int], hold_guard: EmbeddedGuard
):
    """Two orders held at once, each with its code mailed to the customer. The code of the
    small one (which the customer means to confirm) does not release the large one, and a code
    that was used is not taken again. (Each code's purpose is its own step-up: ``stepup:<id>``
    in the HMAC and the key of the stored code.)"""
    inbox, port = smtp
    with site_rig(tmp_path, inbox, port, hold_guard) as rig:
        rig.customer("H1", positions={"7203": 600})
        browser = rig.client()
        login(browser, "H1")
        csrf = csrf_of(browser.get("/order").text)
        sell = {"csrf_token": csrf, "symbol": "7203", "side": "sell", "quantity": "600"}
        assert browser.post("/order", data=sell).headers["location"] == "/portfolio?done=placed"
        small = browser.post("/order", data={"csrf_token": csrf, **BUY, "quantity": "100"})
        large = browser.post("/order", data={"csrf_token": csrf, **BUY, "quantity": "9000"})
        small, large = small.headers["location"], large.headers["location"]
        assert small.startswith("/stepup/") and large.startswith("/stepup/"), (small, large)
        code = code_for(rig, "H1@example.jp", "x100 @180")
        code_for(rig, "H1@example.jp", "x9000 @180")  # both went out

        def confirm(where: str, code: str) -> str:
            form = {"csrf_token": csrf, "factor": "oob", "code": code}
            return browser.post(where + "/answer", data=form).headers["location"]

        assert confirm(large, code).startswith(large + "?left=")
        assert holding(rig, "H1") == 0
        assert confirm(small, code) == "/portfolio?done=placed"
        assert holding(rig, "H1") == 100
        assert confirm(small, code) == small  # answered: the page says it is gone
        assert browser.get(small).status_code == 410
        assert confirm(large, code).startswith(large + "?left=")
        assert holding(rig, "H1") == 100
