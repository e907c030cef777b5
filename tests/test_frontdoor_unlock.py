"""The unlock page and the sign-in tell an unauthenticated client nothing about an account.

Anyone can type any ID at the log-in and unlock pages. Whether the ID exists, is locked (and
why), or has passkeys (and their names) must not show in what the site answers before the
person proved who they are: a criminal holding a list of IDs would otherwise learn which
accounts exist and which are locked (so which victims to call pretending to be the support
desk). Real site, real embedded guard, real SMTP server, software passkeys.
"""

from __future__ import annotations

import re
from datetime import timedelta

from frontdoor_helpers import (
    ORIGIN,
    SiteRig,
    enrol_passkey,
    login,
    post_json,
)

from brokerguard.auth.testing import SoftAuthenticator

PROXY_IP = "13.112.10.20"


def _lock_by_failures(rig: SiteRig, account: str) -> list[str]:
    attacker = rig.client(PROXY_IP)
    places = [login(attacker, account, f"guess-{i}-xxxx") for i in range(5)]
    assert rig.site.lockout.is_locked(account)
    return places


def _seen(rig: SiteRig, account: str, ip: str) -> dict[str, object]:
    """Everything an unauthenticated browser gets from the unlock flow for ``account``, with the
    ID it typed itself replaced (the page echoes it back into the form)."""
    browser = rig.client(ip)

    def blank(text: str) -> str:
        return text.replace(account, "<ID>")

    page = browser.get(f"/unlock?account={account}&lang=en")
    asked = browser.post("/unlock/ask", data={"account": account})
    after = browser.get(asked.headers["location"] + "&lang=en")
    begun = post_json(browser, "/unlock/options", {"account": account})
    options = begun.json().get("options", {})
    verify = post_json(
        browser,
        "/unlock/verify",
        {"account": account, "response": {"id": "x", "rawId": "eA", "type": "public-key"}},
    )
    return {
        "page": (page.status_code, blank(page.text)),
        "asked": (asked.status_code, blank(asked.headers["location"])),
        "after": (after.status_code, blank(after.text)),
        "options": (begun.status_code, sorted(begun.json()), sorted(options)),
        "allow": options.get("allowCredentials"),
        "verify": (verify.status_code, verify.json()),
    }


def test_the_unlock_flow_answers_the_same_for_every_account_id(rig: SiteRig):
    """An account that is not locked, one locked by failed sign-ins (with a passkey named
    "My phone"), one frozen by its owner (no passkey) and an ID that does not exist: the
    page, its wording, the ask, the passkey options and a failed verification are the same."""
    rig.customer("U1")
    rig.customer("U2")
    rig.customer("U3")
    owner, auth = rig.client(), SoftAuthenticator()
    login(owner, "U2")
    enrol_passkey(rig, owner, "U2", auth)
    (passkey,) = rig.site.passkeys.list("U2")
    assert passkey.name == "My phone"
    _lock_by_failures(rig, "U2")
    rig.site.lock("U3", reason="customer", by="customer")

    seen = {
        account: _seen(rig, account, f"198.51.100.{n}")
        for n, account in enumerate(["U1", "U2", "U3", "U404"], start=10)
    }
    first = seen["U1"]
    for account, answers in seen.items():
        for part, value in answers.items():
            assert value == first[part], (account, part, value, first[part])
    page = first["page"][1]
    assert 'id="unlock-passkey"' in page and 'id="unlock-ask"' in page
    assert "not locked" not in page and "repeated failed sign-ins" not in page
    assert first["allow"] == []  # the browser offers its own passkeys: none are listed
    for answers in seen.values():
        assert "My phone" not in repr(answers) and passkey.credential_id not in repr(answers)
    # The real work still happened behind the same answer: U2 and U3 asked for an analyst.
    assert [r.requested_by for r in rig.site.lockout.requests("U3")] == ["customer"]
    assert rig.site.lockout.requests("U2")[-1].status == "open"
    assert rig.site.lockout.requests("U1") == []


def test_the_site_finds_the_open_unlock_request_itself(rig: SiteRig):
    """The browser sends the account and the passkey's answer, nothing else: the open request
    is the server's to find (a request ID the browser sends is ignored), and only a passkey of
    that account completes it."""
    rig.customer("V1")
    rig.customer("V2")
    mine, theirs = SoftAuthenticator(), SoftAuthenticator()
    for account, auth in (("V1", mine), ("V2", theirs)):
        browser = rig.client()
        login(browser, account)
        enrol_passkey(rig, browser, account, auth)
    _lock_by_failures(rig, "V1")

    browser = rig.client()
    begun = post_json(browser, "/unlock/options", {"account": "V1"})
    assert begun.status_code == 200 and "request" not in begun.json()
    # Another customer's passkey answers the ceremony but is not V1's.
    other = post_json(
        browser,
        "/unlock/verify",
        {"account": "V1", "response": theirs.get(begun.json()["options"], ORIGIN)},
    )
    assert other.status_code == 403 and rig.site.lockout.is_locked("V1")

    begun = post_json(browser, "/unlock/options", {"account": "V1"}).json()
    done = post_json(
        browser,
        "/unlock/verify",
        {"account": "V1", "request": "forged", "response": mine.get(begun["options"], ORIGIN)},
    )
    assert done.json() == {"redirect": "/login?unlocked=1"}, done.text
    assert not rig.site.lockout.is_locked("V1")
    (request,) = rig.site.lockout.requests("V1")
    assert request.status == "completed" and request.method.startswith("passkey:")


def test_unlock_asks_are_limited_per_account_and_per_client_alike(rig: SiteRig):
    """Ten asks an hour per account ID (whoever asks) and per client address (whatever ID):
    a locked account and a made-up ID reach the limit the same way, so the limit tells
    nothing either; the windows of made-up IDs are forgotten after the hour."""
    rig.customer("R1")
    rig.site.lock("R1", reason="customer", by="customer")
    for account in ("R1", "R404"):
        answers = []
        for i in range(11):
            browser = rig.client(f"203.0.113.{i + 1}")
            if i % 2:
                asked = browser.post("/unlock/ask", data={"account": account})
                answers.append(asked.headers["location"].rsplit("&", 1)[-1])
            else:
                begun = post_json(browser, "/unlock/options", {"account": account})
                answers.append(begun.status_code)
        assert answers == [200, "asked=yes"] * 5 + [429], (account, answers)

    browser = rig.client("192.0.2.77")
    for i in range(10):
        assert (
            browser.post("/unlock/ask", data={"account": f"M{i}"})
            .headers["location"]
            .endswith("asked=yes")
        )
    refused = browser.post("/unlock/ask", data={"account": "M10"})
    assert refused.headers["location"].endswith("asked=limited")
    assert "Too many requests" in browser.get(refused.headers["location"] + "&lang=en").text

    windows = rig.site.store.keys("ratelimit", "unlock")
    assert any("M3" in key for key in windows)
    later = rig.site.limiter.clock() + timedelta(hours=1, minutes=1)
    rig.site.limiter.clock = lambda: later
    assert rig.client("192.0.2.78").post("/unlock/ask", data={"account": "M99"}).status_code == 303
    left = rig.site.store.keys("ratelimit", "unlock")
    assert not any(re.search(r"\x1f(M\d|R404|R1)$", key) for key in left), left


def test_a_wrong_password_reads_the_same_whether_or_not_the_account_is_locked(rig: SiteRig):
    """Only someone who typed the right password learns that the account is locked."""
    rig.customer("W1")
    rig.customer("W2")
    places = _lock_by_failures(rig, "W1")
    assert places == ["/login?failed=1"] * 5  # the fifth, which locked it, too
    guesser = rig.client(PROXY_IP)
    assert login(guesser, "W1", "another-guess") == "/login?failed=1"  # locked
    assert login(guesser, "W2", "another-guess") == "/login?failed=1"  # not locked
    assert login(guesser, "W404", "another-guess") == "/login?failed=1"  # no such account
    assert login(rig.client(), "W1") == "/unlock?account=W1"  # the password: the way back
    failed = rig.client().get("/login?failed=1&lang=en").text
    assert 'href="/unlock"' in failed  # the way to the unlock page for whoever needs it
    # A wrong password on a locked account neither counts as another failure nor unlocks it.
    assert rig.site.lockout.is_locked("W1")
