"""Passkeys verified for real (py_webauthn) against a software authenticator."""

from __future__ import annotations

import json
from pathlib import Path

import pyotp
import pytest
from auth_helpers import BROKER, CONFIG, PHISH, FakeClock, Recorder

from brokerguard.auth.errors import (
    CodeExpired,
    CredentialFlagged,
    NotFound,
    ReauthRequired,
    VerificationFailed,
)
from brokerguard.auth.otp import Totp
from brokerguard.auth.passkeys import PasskeyConfig, Passkeys
from brokerguard.auth.store import MemoryStore, SqliteStore
from brokerguard.auth.testing import BrowserRefused, SoftAuthenticator


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path):
    if request.param == "memory":
        return MemoryStore()
    return SqliteStore(tmp_path / "auth.db")


def enrol(passkeys: Passkeys, device: SoftAuthenticator, account: str = "A1", name: str = "phone"):
    options = passkeys.registration_options(account, user_name=f"{account.lower()}@example.jp")
    return passkeys.register(account, device.create(options, BROKER), name)


def sign_in(passkeys: Passkeys, device: SoftAuthenticator, account: str | None = "A1", **kw):
    options = passkeys.authentication_options(account)
    return passkeys.authenticate(device.get(options, BROKER, **kw), account)


def test_register_and_sign_in(store) -> None:
    clock, notices = FakeClock(), Recorder()
    passkeys = Passkeys(CONFIG, store, notifier=notices, clock=clock)
    device = SoftAuthenticator()
    passkey = enrol(passkeys, device)
    assert passkey.account == "A1" and passkey.name == "phone" and passkey.sign_count == 0
    assert passkeys.has_passkey("A1") and not passkeys.has_passkey("A2")
    proof = sign_in(passkeys, device)
    assert proof.account == "A1" and proof.factor == "passkey" and proof.at == clock.now
    assert passkeys.get("A1", passkey.credential_id).sign_count == 1
    assert notices.kinds() == ["passkey_registered"]


def test_discoverable_sign_in_finds_the_account(store) -> None:
    passkeys = Passkeys(CONFIG, store)
    device = SoftAuthenticator()
    enrol(passkeys, device, "A7")
    assert sign_in(passkeys, device, account=None).account == "A7"


def test_options_are_what_a_browser_expects() -> None:
    passkeys = Passkeys(CONFIG, MemoryStore())
    options = json.loads(passkeys.registration_options("A1", user_name="a1@example.jp"))
    assert options["rp"] == {"name": "Example Securities", "id": "sbisec.example"}
    assert options["authenticatorSelection"]["residentKey"] == "required"
    assert options["authenticatorSelection"]["userVerification"] == "required"
    assert options["user"]["id"] != "A1"  # a random handle, not the account number


def test_a_sign_count_that_goes_back_refuses_and_flags_the_passkey(store) -> None:
    passkeys = Passkeys(CONFIG, store)
    device = SoftAuthenticator()
    passkey = enrol(passkeys, device)
    copy = device.clone()  # the key is copied when the counter stands at 0
    sign_in(passkeys, device)
    sign_in(passkeys, device)
    with pytest.raises(CredentialFlagged, match="from 2 to 1"):
        sign_in(passkeys, copy)
    assert "cloned" in (passkeys.get("A1", passkey.credential_id).flagged or "")
    assert not passkeys.has_passkey("A1")
    with pytest.raises(CredentialFlagged):  # the original is refused too, until re-registered
        passkeys.authenticate(device.get(passkeys.authentication_options(), BROKER))


def test_authenticators_that_always_report_zero_stay_valid(store) -> None:
    passkeys = Passkeys(CONFIG, store)
    synced = SoftAuthenticator(counter_step=0)
    enrol(passkeys, synced)
    for _ in range(3):
        assert sign_in(passkeys, synced).account == "A1"


def test_wrong_rp_id_is_refused(store) -> None:
    passkeys = Passkeys(CONFIG, store)
    device = SoftAuthenticator()
    enrol(passkeys, device)
    with pytest.raises(VerificationFailed, match="RP ID"):
        sign_in(passkeys, device, unsafe_rp_id="other.example")


def test_a_relayed_passkey_assertion_fails_while_a_relayed_otp_succeeds() -> None:
    """The adversary-in-the-middle kit: the phishing page relays whatever the broker asks.

    The victim's TOTP code typed into the phishing page is replayed by the proxy within its
    window and verifies. The passkey does not: a browser on the phishing origin refuses the
    broker's RP ID, and even an authenticator that signed anyway writes the phishing origin
    (and, asked for its own RP ID, the phishing RP ID hash) into what it signs.
    """
    clock = FakeClock()
    store = MemoryStore()
    totp = Totp(store, clock=clock)
    enrolment = totp.begin_enrolment("A1", label="a1@example.jp")
    victim_app = pyotp.TOTP(enrolment.secret)
    totp.confirm_enrolment("A1", victim_app.at(clock.now))
    clock.advance(minutes=5)

    typed_on_phishing_page = victim_app.at(clock.now)
    clock.advance(seconds=20)  # the proxy forwards it to the real site
    assert totp.verify("A1", typed_on_phishing_page).factor == "totp"

    passkeys = Passkeys(CONFIG, store, clock=clock)
    victim_phone = SoftAuthenticator()
    enrol(passkeys, victim_phone)
    relayed_options = passkeys.authentication_options("A1")  # the proxy fetches the broker's
    with pytest.raises(BrowserRefused):  # the victim's browser, on the phishing origin
        victim_phone.get(relayed_options, PHISH)
    for forged in (
        victim_phone.get(relayed_options, PHISH, unsafe_rp_id="sbisec.example"),
        victim_phone.get(relayed_options, PHISH, unsafe_rp_id="sbisec.example-phish.top"),
    ):
        options = passkeys.authentication_options("A1")
        forged["response"]["clientDataJSON"] = _rechallenge(forged, options)
        with pytest.raises(VerificationFailed, match="origin"):
            passkeys.authenticate(forged, "A1")
    # and the same phone on the broker's own page still works
    assert sign_in(passkeys, victim_phone).account == "A1"


def _rechallenge(response: dict, options: str) -> str:
    """Point a response at a pending ceremony (each relay attempt needs its own challenge)."""
    from webauthn.helpers import base64url_to_bytes, bytes_to_base64url

    client = json.loads(base64url_to_bytes(response["response"]["clientDataJSON"]))
    client["challenge"] = json.loads(options)["challenge"]
    return bytes_to_base64url(json.dumps(client).encode())


def test_the_relayed_origin_alone_is_enough_to_refuse() -> None:
    passkeys = Passkeys(CONFIG, MemoryStore())
    device = SoftAuthenticator()
    enrol(passkeys, device)
    options = passkeys.authentication_options("A1")
    relayed = device.get(options, PHISH, unsafe_rp_id="sbisec.example")
    with pytest.raises(VerificationFailed, match="origin"):
        passkeys.authenticate(relayed, "A1")


def test_challenges_are_single_use_bound_to_the_account_and_expire() -> None:
    clock = FakeClock()
    passkeys = Passkeys(CONFIG, MemoryStore(), clock=clock)
    device = SoftAuthenticator()
    enrol(passkeys, device)
    options = passkeys.authentication_options("A1")
    answer = device.get(options, BROKER)
    passkeys.authenticate(answer, "A1")
    with pytest.raises(VerificationFailed, match="no pending ceremony"):
        passkeys.authenticate(answer, "A1")  # replayed
    other = passkeys.authentication_options("A2")
    with pytest.raises(VerificationFailed):
        passkeys.authenticate(device.get(other, BROKER), "A1")
    late = passkeys.authentication_options("A1")
    clock.advance(minutes=6)
    with pytest.raises(CodeExpired):
        passkeys.authenticate(device.get(late, BROKER), "A1")


def test_an_assertion_approves_only_what_its_ceremony_was_begun_for() -> None:
    passkeys = Passkeys(CONFIG, MemoryStore())
    device = SoftAuthenticator()
    enrol(passkeys, device)
    for_a = device.get(passkeys.authentication_options("A1", purpose="stepup:a"), BROKER)
    with pytest.raises(VerificationFailed, match="no pending ceremony"):
        passkeys.authenticate(for_a, "A1", purpose="stepup:b")
    with pytest.raises(VerificationFailed, match="no pending ceremony"):
        passkeys.authenticate(for_a, "A1", purpose="stepup:a")  # used up by the wrong try
    signed_in = device.get(passkeys.authentication_options("A1"), BROKER)
    with pytest.raises(VerificationFailed):
        passkeys.authenticate(signed_in, "A1", purpose="stepup:a")  # a sign-in's is no step-up
    for_a = device.get(passkeys.authentication_options("A1", purpose="stepup:a"), BROKER)
    with pytest.raises(VerificationFailed):
        passkeys.authenticate(for_a, "A1")  # nor a step-up's a sign-in
    for_a = device.get(passkeys.authentication_options("A1", purpose="stepup:a"), BROKER)
    assert passkeys.authenticate(for_a, "A1", purpose="stepup:a").account == "A1"


def test_a_garbage_response_is_a_verification_failure() -> None:
    passkeys = Passkeys(CONFIG, MemoryStore())
    for junk in ("{}", "not json", {"response": {"clientDataJSON": "!!"}}):
        with pytest.raises(VerificationFailed):
            passkeys.authenticate(junk, "A1")


def test_user_verification_is_required() -> None:
    passkeys = Passkeys(CONFIG, MemoryStore())
    lazy = SoftAuthenticator(user_verified=False)
    options = passkeys.registration_options("A1", user_name="a1")
    with pytest.raises(VerificationFailed, match="verif"):
        passkeys.register("A1", lazy.create(options, BROKER), "key")


def test_several_passkeys_rename_and_removal_needs_a_fresh_passkey(store) -> None:
    clock, notices = FakeClock(), Recorder()
    passkeys = Passkeys(CONFIG, store, notifier=notices, clock=clock)
    phone, laptop = SoftAuthenticator(), SoftAuthenticator()
    first = enrol(passkeys, phone, name="phone")
    clock.advance(seconds=1)
    second = enrol(passkeys, laptop, name="laptop")
    assert [p.name for p in passkeys.list("A1")] == ["phone", "laptop"]
    assert passkeys.rename("A1", first.credential_id, "  old\nphone ").name == "old phone"
    with pytest.raises(ValueError, match="1 to 64"):
        passkeys.rename("A1", first.credential_id, "\n")
    with pytest.raises(ReauthRequired):
        passkeys.remove("A1", first.credential_id, reauth=None)
    proof = sign_in(passkeys, laptop)
    clock.advance(minutes=6)
    with pytest.raises(ReauthRequired, match="last 5 minutes"):
        passkeys.remove("A1", first.credential_id, reauth=proof)
    proof = sign_in(passkeys, laptop)
    other_account = proof.__class__(account="A2", factor="passkey", at=clock.now)
    with pytest.raises(ReauthRequired, match="another account"):
        passkeys.remove("A1", first.credential_id, reauth=other_account)
    passkeys.remove("A1", first.credential_id, reauth=proof)
    assert [p.credential_id for p in passkeys.list("A1")] == [second.credential_id]
    with pytest.raises(NotFound):
        passkeys.get("A1", first.credential_id)
    with pytest.raises(BrowserRefused):  # the page no longer asks for it
        sign_in(passkeys, phone)
    with pytest.raises(VerificationFailed, match="unknown passkey"):  # nor is it accepted
        sign_in(passkeys, phone, account=None)
    assert notices.kinds() == ["passkey_registered", "passkey_registered", "passkey_removed"]


def test_an_otp_is_not_enough_to_remove_a_passkey() -> None:
    clock = FakeClock()
    store = MemoryStore()
    passkeys = Passkeys(CONFIG, store, clock=clock)
    passkey = enrol(passkeys, SoftAuthenticator())
    totp = Totp(store, clock=clock)
    secret = totp.begin_enrolment("A1", label="a1").secret
    proof = totp.confirm_enrolment("A1", pyotp.TOTP(secret).at(clock.now))
    with pytest.raises(ReauthRequired, match="got a totp"):
        passkeys.remove("A1", passkey.credential_id, reauth=proof)


def test_the_same_authenticator_cannot_register_twice() -> None:
    passkeys = Passkeys(CONFIG, MemoryStore())
    device = SoftAuthenticator()
    enrol(passkeys, device)
    with pytest.raises(BrowserRefused):  # excludeCredentials tells the browser
        enrol(passkeys, device)


def test_config_refuses_origins_the_browser_would_never_allow() -> None:
    with pytest.raises(ValueError, match="not on the RP ID"):
        PasskeyConfig(rp_id="sbisec.example", rp_name="x", origins=(PHISH,))
    with pytest.raises(ValueError, match="https"):
        PasskeyConfig(rp_id="sbisec.example", rp_name="x", origins=("http://www.sbisec.example",))
    PasskeyConfig(rp_id="localhost", rp_name="dev", origins=("http://localhost:8000",))


def test_records_survive_a_restart(tmp_path: Path) -> None:
    device = SoftAuthenticator()
    first = Passkeys(CONFIG, SqliteStore(tmp_path / "auth.db"))
    enrol(first, device)
    sign_in(first, device)
    again = Passkeys(CONFIG, SqliteStore(tmp_path / "auth.db"))
    assert sign_in(again, device).account == "A1"
    assert again.list("A1")[0].sign_count == 2
