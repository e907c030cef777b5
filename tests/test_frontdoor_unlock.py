"""The unlock page and the sign-in tell an unauthenticated client nothing about an account.

Anyone can type any ID at the log-in and unlock pages. Whether the ID exists, is locked (and
why), or has passkeys (and their names) must not show in what the site answers before the
person proved who they are: a criminal holding a list of IDs would otherwise learn which
accounts exist and which are locked (so which victims to call pretending to be the support
desk). Real site, real embedded guard, real SMTP server, software passkeys.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from frontdoor_helpers import (
    ORIGIN,
    SiteRig,
    enrol_passkey,
    login,
    post_json,
)
from starlette.testclient import TestClient

from brokerguard.auth.testing import SoftAuthenticator
from brokerguard.frontdoor.app import create_site
from brokerguard.frontdoor.guardclient import GuardClient
from brokerguard.frontdoor.site import UNLOCK_PER_ACCOUNT, UNLOCK_PER_ADDRESS, SiteConfig

pytestmark = pytest.mark.usefixtures("cheap_argon2")  # every hash checked in-process

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
    """Ten asks an hour per account ID (whoever asks) and sixty per client address (whatever
    ID): a locked account and a made-up ID reach the limit the same way, so the limit tells
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
    for i in range(60):
        assert (
            browser.post("/unlock/ask", data={"account": f"M{i}"})
            .headers["location"]
            .endswith("asked=yes")
        )
    refused = browser.post("/unlock/ask", data={"account": "M60"})
    assert refused.headers["location"].endswith("asked=limited")
    assert "Too many requests" in browser.get(refused.headers["location"] + "&lang=en").text

    windows = rig.site.store.keys("ratelimit", "unlock")
    assert any("M3" in key for key in windows)
    later = rig.site.limiter.clock() + timedelta(hours=1, minutes=1)
    rig.site.limiter.clock = lambda: later
    assert rig.client("192.0.2.78").post("/unlock/ask", data={"account": "Z1"}).status_code == 303
    left = rig.site.store.keys("ratelimit", "unlock")
    assert not any(re.search(r"\x1f(M\d+|R404|R1)$", key) for key in left), left


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


def _bare_site(tmp_path: Path, **config: Any) -> Any:
    """The site alone (no lifespan, no guard: an ask for an ID that is not locked needs none);
    the rate limits' clock stands still."""
    site = SiteConfig(origin=ORIGIN, rp_id="localhost", store_path=tmp_path / "s.db", **config)
    app = create_site(site, GuardClient("http://127.0.0.1:9", "bgk_test"))
    app.state.site.limiter.clock = lambda: datetime(2026, 11, 29, 9, tzinfo=UTC)
    return app


def _asks(app: Any, ip: str, accounts: list[str]) -> list[str]:
    """What ``/unlock/ask`` answered to each of ``accounts`` asked for from ``ip``."""
    client = TestClient(app, base_url=ORIGIN, follow_redirects=False, client=(ip, 40000))
    answers = []
    for account in accounts:
        asked = client.post("/unlock/ask", data={"account": account})
        answers.append(asked.headers["location"].rsplit("&", 1)[-1])
    return answers


def test_customers_behind_one_carrier_nat_address_are_not_held_up_by_each_other(
    tmp_path: Path,
) -> None:
    """A mobile carrier puts many customers behind one address (carrier-grade NAT): with ten
    asks an hour per address, the eleventh customer there was refused for an hour. The
    per-address limit is now 60 by default and configurable (``unlock_per_address``,
    ``demo-site --unlock-per-address``); per ID it stays 10 — what holds a criminal who probes
    one ID — and a made-up ID is counted like a real one."""
    app = _bare_site(tmp_path)
    cgnat = [f"C{n}" for n in range(30) for _ in range(2)]  # 30 customers, two asks each
    assert _asks(app, "100.64.0.1", cgnat) == ["asked=yes"] * 60
    assert _asks(app, "100.64.0.1", ["C99"]) == ["asked=limited"]  # the 61st from there
    assert _asks(app, "100.64.0.2", ["C99"]) == ["asked=yes"]  # another address
    answers = [_asks(app, f"198.51.100.{i}", ["X404"])[0] for i in range(11)]
    assert answers == ["asked=yes"] * 10 + ["asked=limited"]  # per ID, whoever asks
    app.state.site.close()

    (tmp_path / "tight").mkdir()
    tight = _bare_site(tmp_path / "tight", unlock_per_address=3)
    assert _asks(tight, "100.64.0.1", ["T1", "T2", "T3", "T4"]) == ["asked=yes"] * 3 + [
        "asked=limited"
    ]
    tight.state.site.close()

    for bad in (0, -5, 2.5, True, "60", 100_001):
        with pytest.raises(ValueError, match=r"unlock_per_address: .* from 1 to 100000, not"):
            SiteConfig(origin=ORIGIN, rp_id="localhost", store_path="x", unlock_per_address=bad)


def test_demo_site_takes_the_per_address_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn
    from typer.testing import CliRunner

    from brokerguard.cli import app as cli

    served: list[Any] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **_kw: served.append(app))
    args = ["demo-site", "--guard-url", "http://127.0.0.1:9", "--guard-key", "bgk_test"]
    args += ["--no-seed", "--store", str(tmp_path / "site.db")]
    runner = CliRunner()
    for extra, expected in (([], UNLOCK_PER_ADDRESS), (["--unlock-per-address", "500"], 500)):
        result = runner.invoke(cli, [*args, *extra])
        assert result.exit_code == 0, result.output
        site = served[-1].state.site
        assert site.config.unlock_per_address == expected
        assert [limit.count for limit in site.unlock_limits] == [UNLOCK_PER_ACCOUNT, expected]
        site.close()
    refused = runner.invoke(cli, [*args, "--unlock-per-address", "0"])
    assert refused.exit_code == 2 and "--unlock-per-address" in refused.output


def test_the_passkey_unlock_does_the_same_work_for_every_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The answers were the same for every ID, but not the work behind them, so their timing
    told (bench/unlock_timing.py): /unlock/verify read the unlock requests of a locked account
    only, and checked a passkey's signature only for a locked account's ceremony — for any
    other ID the ceremony, bound to a throwaway purpose, was refused before the signature, so
    a criminal answering with a passkey of his own learnt which IDs are locked (about 0.6 ms).
    Now the lock state and the requests are read for every ID and every answer's signature is
    checked. No timing here: the store operations and the signature checks are compared."""
    import brokerguard.auth.passkeys as passkeys_module

    app = _bare_site(tmp_path)
    site = app.state.site
    for account in ("E1", "L1", "A1"):
        site.add_customer(account, "correct-horse-battery", name=account, email=f"{account}@x.jp")
    site.lockout.lock("L1", reason="customer", by="customer")
    own = SoftAuthenticator()  # a passkey of the asker's own account
    site.passkeys.register(
        "A1", own.create(site.passkeys.registration_options("A1", "A1"), ORIGIN), "mine"
    )
    client = TestClient(app, base_url=ORIGIN)
    post_json(client, "/unlock/options", {"account": "L1"})  # L1's request is open from now on

    work: list[tuple[str, str]] = []
    for op in ("get", "put", "delete", "keys", "values"):
        real = getattr(site.store, op, None)
        if real is None:
            continue

        def recorded(kind: str, *args: Any, _op: str = op, _real: Any = real) -> Any:
            work.append((_op, kind))
            return _real(kind, *args)

        monkeypatch.setattr(site.store, op, recorded)
    verify = passkeys_module.verify_authentication_response

    def signature(**kwargs: Any) -> Any:
        work.append(("signature", ""))
        return verify(**kwargs)

    monkeypatch.setattr(passkeys_module, "verify_authentication_response", signature)

    def done(account: str, answer: str) -> dict[str, list[tuple[str, str]]]:
        """The work of /unlock/options, then of /unlock/verify with ``answer``."""
        seen = {}
        work.clear()
        begun = post_json(client, "/unlock/options", {"account": account})
        assert begun.status_code == 200
        seen["options"] = list(work)
        response = (
            own.get(begun.json()["options"], ORIGIN)
            if answer == "own"
            else {"id": "eA", "rawId": "eA", "type": "public-key", "response": {}}
        )
        work.clear()
        verified = post_json(client, "/unlock/verify", {"account": account, "response": response})
        assert verified.status_code == 403
        seen["verify"] = list(work)
        return seen

    for answer in ("bogus", "own"):
        missing = done("N404", answer)
        assert done("E1", answer) == missing, answer
        assert done("L1", answer) == missing, answer
        assert (("signature", "") in missing["verify"]) is (answer == "own")
    site.close()
