"""TOTP and sent codes: windows, replay, hashing, expiry, attempts and rate limits."""

from __future__ import annotations

from datetime import timedelta

import pyotp
import pytest
from auth_helpers import FakeClock, Recorder

from brokerguard.auth.errors import (
    CodeExpired,
    NotEnrolled,
    RateLimited,
    ReauthRequired,
    TooManyAttempts,
    VerificationFailed,
)
from brokerguard.auth.otp import CodeLimits, OneTimeCodes, Totp
from brokerguard.auth.ratelimit import Limit
from brokerguard.auth.store import MemoryStore
from brokerguard.notify import Contact, MemoryContacts


def enrolled_totp(clock: FakeClock, store=None) -> tuple[Totp, pyotp.TOTP]:
    totp = Totp(store or MemoryStore(), clock=clock, issuer="Example Securities")
    enrolment = totp.begin_enrolment("A1", label="a1@example.jp")
    app = pyotp.TOTP(enrolment.secret)
    totp.confirm_enrolment("A1", app.at(clock.now))
    clock.advance(seconds=60)
    return totp, app


def test_totp_enrolment_gives_a_provisioning_uri_and_needs_a_first_code() -> None:
    clock = FakeClock()
    totp = Totp(MemoryStore(), clock=clock, issuer="Example Securities")
    enrolment = totp.begin_enrolment("A1", label="a1@example.jp")
    assert enrolment.uri.startswith("otpauth://totp/Example%20Securities:a1%40example.jp?")
    assert f"secret={enrolment.secret}" in enrolment.uri
    assert not totp.enrolled("A1")
    with pytest.raises(VerificationFailed):
        totp.confirm_enrolment(
            "A1", "000000" if pyotp.TOTP(enrolment.secret).now() != "000000" else "111111"
        )
    totp.confirm_enrolment("A1", pyotp.TOTP(enrolment.secret).at(clock.now))
    assert totp.enrolled("A1")
    with pytest.raises(NotEnrolled):
        totp.verify("A2", "123456")


def test_totp_accepts_one_step_either_side_and_no_more() -> None:
    clock = FakeClock()
    totp, app = enrolled_totp(clock)
    assert totp.verify("A1", app.at(clock.now - timedelta(seconds=30))).factor == "totp"
    clock.advance(seconds=60)
    assert totp.verify("A1", app.at(clock.now + timedelta(seconds=30)))
    clock.advance(seconds=120)
    with pytest.raises(VerificationFailed, match="wrong"):
        totp.verify("A1", app.at(clock.now - timedelta(seconds=60)))


def test_a_used_totp_code_cannot_be_used_again() -> None:
    clock = FakeClock()
    totp, app = enrolled_totp(clock)
    code = app.at(clock.now)
    totp.verify("A1", code)
    with pytest.raises(VerificationFailed, match="already used"):
        totp.verify("A1", code)
    older = app.at(clock.now - timedelta(seconds=30))
    with pytest.raises(VerificationFailed, match="already used"):  # nor an older step
        totp.verify("A1", older)


def test_totp_attempts_are_rate_limited_with_a_clear_error() -> None:
    clock = FakeClock()
    totp, app = enrolled_totp(clock)
    clock.advance(minutes=5)  # the enrolment's own attempt is out of the window
    wrong = "000000" if app.at(clock.now) != "000000" else "111111"
    for _ in range(5):
        with pytest.raises(VerificationFailed):
            totp.verify("A1", wrong)
    with pytest.raises(RateLimited, match=r"TOTP attempts \(5 per 5 min\)") as info:
        totp.verify("A1", app.at(clock.now))  # even the right code waits
    assert 0 < info.value.retry_after <= 300
    clock.advance(minutes=5)
    assert totp.verify("A1", app.at(clock.now))


def test_removing_totp_needs_a_passkey() -> None:
    clock = FakeClock()
    totp, app = enrolled_totp(clock)
    proof = totp.verify("A1", app.at(clock.now))
    with pytest.raises(ReauthRequired):
        totp.remove("A1", reauth=proof, within=timedelta(minutes=5))
    assert totp.enrolled("A1")


def codes(clock: FakeClock, **kw) -> tuple[OneTimeCodes, Recorder, MemoryStore]:
    store, notices = MemoryStore(), Recorder()
    contacts = MemoryContacts(
        {"A1": Contact(email="a1@example.jp", phone="+819012345678"), "A3": Contact()}
    )
    return OneTimeCodes(store, notices, contacts, clock=clock, **kw), notices, store


def test_a_sent_code_verifies_once_and_is_stored_only_as_a_digest() -> None:
    clock = FakeClock()
    service, notices, store = codes(clock)
    sent = service.send("A1", "sms")
    assert sent.destination == "*********5678"
    assert sent.expires == clock.now + timedelta(minutes=5)
    account, kind, fields, channels = notices.sent[-1]
    assert (account, kind, channels) == ("A1", "one_time_code", ("sms",))
    code = fields["code"]
    assert len(code) == 6 and code.isdigit()
    raw = b"".join(store.get(*k) or b"" for k in [("code", "A1\x1flogin")])
    assert code.encode() not in raw
    proof = service.verify("A1", code)
    assert proof.factor == "sms" and proof.account == "A1"
    with pytest.raises(VerificationFailed, match="no code is pending"):
        service.verify("A1", code)


def test_codes_expire_and_die_after_too_many_wrong_answers() -> None:
    clock = FakeClock()
    service, notices, _ = codes(clock, max_attempts=3)
    service.send("A1", "email")
    code = notices.last_code()
    wrong = "000000" if code != "000000" else "111111"
    with pytest.raises(VerificationFailed, match="2 attempts left"):
        service.verify("A1", wrong)
    with pytest.raises(VerificationFailed, match="1 attempts left"):
        service.verify("A1", wrong)
    with pytest.raises(TooManyAttempts):
        service.verify("A1", wrong)
    with pytest.raises(VerificationFailed, match="no code"):
        service.verify("A1", code)
    service.send("A1", "email")
    clock.advance(minutes=6)
    with pytest.raises(CodeExpired):
        service.verify("A1", notices.last_code())


def test_codes_are_bound_to_their_purpose_and_a_new_one_replaces_the_old() -> None:
    clock = FakeClock()
    service, notices, _ = codes(clock)
    service.send("A1", "sms", purpose="login")
    first = notices.last_code()
    service.send("A1", "sms", purpose="withdrawal")
    with pytest.raises(VerificationFailed):
        service.verify("A1", notices.last_code(), purpose="login")
    service.send("A1", "sms", purpose="login")
    second = notices.last_code()
    if first != second:
        with pytest.raises(VerificationFailed):
            service.verify("A1", first, purpose="login")
    assert service.verify("A1", second, purpose="login")


def test_send_rate_limits_per_account_channel_account_and_channel() -> None:
    clock = FakeClock()
    limits = CodeLimits(
        per_account=Limit(3, timedelta(hours=1)),
        per_account_channel=Limit(2, timedelta(hours=1)),
        per_channel=Limit(4, timedelta(minutes=1)),
    )
    store, notices = MemoryStore(), Recorder()
    contacts = MemoryContacts(
        {f"A{i}": Contact(email=f"a{i}@example.jp", phone=f"+8190000000{i}") for i in range(5)}
    )
    service = OneTimeCodes(store, notices, contacts, clock=clock, limits=limits)
    service.send("A1", "sms")
    service.send("A1", "sms")
    with pytest.raises(RateLimited, match="sms codes for this account"):
        service.send("A1", "sms")
    service.send("A1", "email")
    with pytest.raises(RateLimited, match=r"codes for this account \(3 per 1 h\)"):
        service.send("A1", "email")
    service.send("A2", "sms")
    service.send("A3", "sms")
    with pytest.raises(RateLimited, match=r"too many sms codes \(4 per 1 min\)"):
        service.send("A4", "sms")
    clock.advance(minutes=2)
    service.send("A4", "sms")


def test_no_registered_contact_for_the_channel() -> None:
    service, _, _ = codes(FakeClock())
    with pytest.raises(NotEnrolled, match="no registered sms"):
        service.send("A3", "sms")
    assert service.channels("A1") == ["sms", "email"] and service.channels("nobody") == []
