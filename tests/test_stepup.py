"""Step-up: the decision's factors only, one ChallengeResult per challenge, resume on success."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import msgspec
import pyotp
import pytest
from argon2 import PasswordHasher
from auth_helpers import BROKER, CONFIG, PHISH, FakeClock, Recorder
from servers import smtp_server

from brokerguard.auth.errors import AuthError, NotEnrolled, RateLimited
from brokerguard.auth.otp import OneTimeCodes, Totp
from brokerguard.auth.passkeys import Passkeys
from brokerguard.auth.passwords import Lockout, Passwords
from brokerguard.auth.stepup import StepUp, describe_operation
from brokerguard.auth.store import MemoryStore
from brokerguard.auth.testing import SoftAuthenticator
from brokerguard.engine import BrokerGuard
from brokerguard.events import ChallengeResult, LoginAttempt, Order, Withdrawal, decode_line, encode
from brokerguard.guard import Decision
from brokerguard.guards import load_guard
from brokerguard.notify import Contact, MemoryContacts, Notifier, SmtpChannel, render

T = datetime(2025, 3, 20, 1, 0, tzinfo=UTC)
ORDER = Order(
    id="o-1",
    ts=T,
    account="A1",
    session="s-1",
    order_id="x1",
    symbol="7992",
    market="TSE",
    side="buy",
    quantity=1000,
    price_type="limit",
    limit_price=144.0,
)
LOGIN = LoginAttempt(
    id="l-1",
    ts=T,
    account="A1",
    session="s-1",
    ip="203.0.113.9",
    user_agent="Mozilla/5.0",
    factors=["password"],
    success=True,
)
CHALLENGE = Decision(action="challenge", score=0.7, factors=("passkey", "sms"))


class World:
    """A customer A1 with a phone (passkey), a TOTP app and registered contacts."""

    def __init__(self, *, passkey: bool = True, totp: bool = True, notifier=None) -> None:
        self.clock = FakeClock()
        self.store = MemoryStore()
        self.notices = notifier or Recorder()
        self.contacts = MemoryContacts(
            {"A1": Contact(email="a1@example.jp", phone="+819012345678"), "A9": Contact()}
        )
        self.passkeys = Passkeys(CONFIG, self.store, clock=self.clock)
        self.totp = Totp(self.store, clock=self.clock)
        self.codes = OneTimeCodes(self.store, self.notices, self.contacts, clock=self.clock)
        self.lockout = Lockout(self.store, max_failures=2, clock=self.clock)
        self.passwords = Passwords(
            self.store,
            self.lockout,
            hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1),
            clock=self.clock,
        )
        self.phone = SoftAuthenticator()
        if passkey:
            options = self.passkeys.registration_options("A1", user_name="a1")
            self.passkeys.register("A1", self.phone.create(options, BROKER), "phone")
        if totp:
            secret = self.totp.begin_enrolment("A1", label="a1").secret
            self.app = pyotp.TOTP(secret)
            self.totp.confirm_enrolment("A1", self.app.at(self.clock.now))
            self.clock.advance(minutes=1)
        self.events: list[ChallengeResult] = []
        self.resumed: list[str] = []
        self.stepup = StepUp(
            observe=self.events.append,
            passkeys=self.passkeys,
            totp=self.totp,
            codes=self.codes,
            passwords=self.passwords,
            clock=self.clock,
        )

    def resume(self) -> str:
        self.resumed.append("order placed")
        return "order placed"


def test_a_passkey_step_up_resumes_the_order_and_tells_the_guard() -> None:
    w = World()
    challenge = w.stepup.start(ORDER, CHALLENGE, w.resume)
    assert challenge.factors == ("passkey", "sms")
    prompt = w.stepup.select(challenge.id, "passkey")
    answer = w.phone.get(prompt.passkey_options, BROKER)
    outcome = w.stepup.answer(challenge.id, "passkey", answer)
    assert outcome.status == "passed" and outcome.result == "order placed"
    assert outcome.proof is not None and outcome.proof.factor == "passkey"
    assert w.resumed == ["order placed"]
    (event,) = w.events
    assert (event.ref, event.account, event.session) == ("o-1", "A1", "s-1")
    assert (event.factor, event.outcome) == ("passkey", "passed")
    assert decode_line(encode(event)) == event  # a valid event for any guard or log
    with pytest.raises(AuthError, match="already passed"):
        w.stepup.answer(challenge.id, "passkey", answer)
    assert w.resumed == ["order placed"] and len(w.events) == 1


def test_only_the_decisions_factors_that_the_customer_enrolled_are_offered() -> None:
    w = World(passkey=False)
    decision = Decision(action="challenge", factors=("passkey", "totp"))
    challenge = w.stepup.start(ORDER, decision, w.resume)
    assert challenge.factors == ("totp",)
    with pytest.raises(AuthError, match="'sms' is not offered"):
        w.stepup.select(challenge.id, "sms")
    outcome = w.stepup.answer(challenge.id, "totp", w.app.at(w.clock.now))
    assert outcome.status == "passed" and w.resumed


def test_no_enrolled_factor_is_an_error_not_a_weaker_fallback() -> None:
    w = World(passkey=False, totp=False)
    with pytest.raises(NotEnrolled, match=r"\['passkey'\]"):
        w.stepup.start(ORDER, Decision(action="challenge", factors=("passkey",)), w.resume)
    with pytest.raises(ValueError, match="'allow' decision has no step-up"):
        w.stepup.start(ORDER, Decision(action="allow"), w.resume)
    assert w.events == []


def test_a_wrong_code_can_be_retried_and_too_many_fail_without_resuming() -> None:
    w = World()
    challenge = w.stepup.start(ORDER, CHALLENGE, w.resume)
    prompt = w.stepup.select(challenge.id, "sms")
    assert prompt.sent is not None and prompt.sent.destination.endswith("5678")
    code = w.notices.last_code()
    wrong = "000000" if code != "000000" else "111111"
    first = w.stepup.answer(challenge.id, "sms", wrong)
    assert (first.status, first.attempts_left) == ("retry", 2)
    assert w.stepup.answer(challenge.id, "sms", wrong).status == "retry"
    last = w.stepup.answer(challenge.id, "sms", code.replace(code[0], "x"))
    assert last.status == "failed"
    assert w.resumed == []
    assert [(e.factor, e.outcome) for e in w.events] == [("sms", "failed")]


def test_a_code_answers_only_as_the_factor_it_was_sent_for() -> None:
    """A one-time code (relayable) must not pass as the out-of-band confirmation the guard
    counts as strong, nor the other way round."""
    w = World(passkey=False)
    decision = Decision(action="challenge", factors=("sms", "oob"))
    challenge = w.stepup.start(ORDER, decision, w.resume)
    w.stepup.select(challenge.id, "sms")
    sms = w.notices.last_code()
    assert w.stepup.answer(challenge.id, "oob", sms).status == "retry"
    w.stepup.select(challenge.id, "oob")
    oob = w.notices.last_code()
    assert w.stepup.answer(challenge.id, "sms", oob).status == "retry"
    assert w.resumed == [] and w.events == []
    assert w.stepup.answer(challenge.id, "sms", sms).status == "passed"
    assert [(e.factor, e.outcome) for e in w.events] == [("sms", "passed")]


def test_a_one_time_code_names_the_operation_it_approves() -> None:
    """Told "a code for your sign-in" by a phishing page, the customer reads in the message
    what the code will really approve (the hold confirmation says it too)."""
    w = World(passkey=False)
    challenge = w.stepup.start(ORDER, CHALLENGE, w.resume)
    w.stepup.select(challenge.id, "sms")
    account, kind, fields, channels = w.notices.sent[-1]
    assert (account, kind, channels) == ("A1", "one_time_code", ("sms",))
    assert fields["purpose"] == "BUY 7992 (TSE) x1000 @144"
    text = render(kind, "en", {"when": "now", **fields}).short
    assert "your code for the BUY 7992 (TSE) x1000 @144 is" in text


def test_a_relayed_passkey_fails_the_step_up() -> None:
    w = World()
    challenge = w.stepup.start(ORDER, CHALLENGE, w.resume)
    for _ in range(3):
        options = w.stepup.select(challenge.id, "passkey").passkey_options
        relayed = w.phone.get(options, PHISH, unsafe_rp_id="sbisec.example")
        outcome = w.stepup.answer(challenge.id, "passkey", relayed)
    assert outcome.status == "failed" and w.resumed == []
    assert [(e.factor, e.outcome) for e in w.events] == [("passkey", "failed")]


def test_a_passkey_answer_made_for_one_step_up_does_not_pass_another() -> None:
    w = World()
    small = w.stepup.start(ORDER, CHALLENGE, lambda: "small")
    large = w.stepup.start(
        msgspec.structs.replace(ORDER, id="o-2", quantity=90_000), CHALLENGE, w.resume
    )
    approved_small = w.phone.get(w.stepup.select(small.id, "passkey").passkey_options, BROKER)
    swapped = w.stepup.answer(large.id, "passkey", approved_small)
    assert swapped.status == "retry" and w.resumed == [] and w.events == []
    # ... nor, used up, its own step-up; each passes with an answer made for it.
    assert w.stepup.answer(small.id, "passkey", approved_small).status == "retry"
    own = w.phone.get(w.stepup.select(large.id, "passkey").passkey_options, BROKER)
    assert w.stepup.answer(large.id, "passkey", own).status == "passed"
    assert [e.ref for e in w.events] == ["o-2"] and small.status == "open"
    # A passkey sign-in (or any other ceremony of the customer) is not a step-up answer either.
    signed_in = w.phone.get(w.passkeys.authentication_options("A1"), BROKER)
    assert w.stepup.answer(small.id, "passkey", signed_in).status == "retry"


def test_a_cloned_passkey_fails_at_once() -> None:
    w = World()
    copy = w.phone.clone()
    w.passkeys.authenticate(w.phone.get(w.passkeys.authentication_options("A1"), BROKER), "A1")
    challenge = w.stepup.start(ORDER, CHALLENGE, w.resume)
    options = w.stepup.select(challenge.id, "passkey").passkey_options
    outcome = w.stepup.answer(challenge.id, "passkey", copy.get(options, BROKER))
    assert (outcome.status, outcome.error) == ("failed", "credential_flagged")


def test_a_hold_sends_a_link_free_confirmation_and_resumes_on_the_code() -> None:
    w = World()
    challenge = w.stepup.start(ORDER, Decision(action="hold", score=0.8), w.resume)
    assert challenge.factors == ("oob",)
    account, kind, fields, channels = w.notices.sent[-1]
    assert (account, kind, channels) == ("A1", "hold_confirmation", ("email",))
    assert fields["operation"] == "BUY 7992 (TSE) x1000 @144"
    outcome = w.stepup.answer(challenge.id, "oob", fields["code"])
    assert outcome.status == "passed" and w.resumed == ["order placed"]
    assert [(e.factor, e.outcome) for e in w.events] == [("oob", "passed")]


def test_a_hold_whose_code_cannot_be_sent_leaves_no_open_step_up() -> None:
    w = World()
    for i in range(5):  # the e-mail codes of the hour are used up
        w.codes.send("A1", "email", purpose=f"other-{i}")
    with pytest.raises(RateLimited):
        w.stepup.start(ORDER, Decision(action="hold"), w.resume)
    w.clock.advance(minutes=11)
    assert w.stepup.expire() == 0 and w.events == []  # nothing to report as abandoned


def test_this_was_not_me_rejects_a_hold() -> None:
    w = World()
    challenge = w.stepup.start(ORDER, Decision(action="hold"), w.resume)
    code = w.notices.last_code()
    assert w.stepup.reject(challenge.id).status == "failed"
    with pytest.raises(AuthError, match="already failed"):
        w.stepup.answer(challenge.id, "oob", code)
    assert w.resumed == [] and [e.outcome for e in w.events] == ["failed"]


def test_abandoned_and_expired_step_ups_are_reported_once() -> None:
    w = World()
    left = w.stepup.start(ORDER, CHALLENGE, w.resume)
    w.stepup.abandon(left.id)
    late = w.stepup.start(LOGIN, CHALLENGE, w.resume)
    w.clock.advance(minutes=11)
    assert w.stepup.expire() == 1
    with pytest.raises(AuthError):
        w.stepup.answer(late.id, "sms", "123456")
    assert [(e.ref, e.outcome) for e in w.events] == [("o-1", "abandoned"), ("l-1", "abandoned")]
    assert w.resumed == []


def test_a_password_step_up_counts_towards_the_lock() -> None:
    w = World()
    w.passwords.set("A1", "correct horse battery")
    challenge = w.stepup.start(LOGIN, Decision(action="challenge", factors=("password",)), w.resume)
    assert w.stepup.answer(challenge.id, "password", "guess guess guess").status == "retry"
    outcome = w.stepup.answer(challenge.id, "password", "guess guess guess")
    assert (outcome.status, outcome.error) == ("failed", "account_locked")
    assert w.lockout.is_locked("A1")


def test_with_the_guard_interface_and_the_engine() -> None:
    """A baseline guard names the factor; the engine takes the outcome through observe."""
    w = World(passkey=False, totp=False)
    guard = load_guard("otp-at-login")
    decision = guard.decide(LOGIN)
    assert decision.action == "challenge" and decision.factors in (("sms",), ("email",))
    (factor,) = decision.factors
    engine = BrokerGuard()
    engine.decide(LOGIN)
    w.stepup.observe = lambda e: (guard.observe(e), engine.observe(e), w.events.append(e))
    challenge = w.stepup.start(LOGIN, decision, w.resume)
    w.stepup.select(challenge.id, factor)
    assert w.stepup.answer(challenge.id, factor, w.notices.last_code()).status == "passed"
    assert (w.events[0].ref, w.events[0].outcome) == ("l-1", "passed")


def test_describe_operation() -> None:
    withdrawal = Withdrawal(id="w", ts=T, account="A1", session="s", amount_jpy=500000)
    assert describe_operation(withdrawal) == "withdrawal JPY 500,000"
    assert describe_operation(LOGIN) == "login"


def test_hold_confirmation_mail_end_to_end_on_a_real_smtp_server() -> None:
    """Held order -> mail at the SMTP server -> the customer types the code -> order resumes."""
    with smtp_server() as (inbox, port):
        contacts = MemoryContacts({"A1": Contact(email="a1@example.jp", lang="ja")})
        smtp = SmtpChannel("127.0.0.1", port, sender="notice@broker.example.jp")
        with Notifier(contacts, {"email": smtp}, broker="Example証券") as notifier:
            w = World(passkey=False, totp=False, notifier=notifier)
            w.codes.contacts = contacts
            challenge = w.stepup.start(ORDER, Decision(action="hold"), w.resume)
            assert notifier.wait_idle(30)
        msg = inbox.parsed()
        assert msg["Subject"] == "【Example証券】ご本人確認のお願い（BUY 7992 (TSE) x1000 @144）"
        body = msg.get_content()
        assert not re.search(r"(?i)https?://|www\.", body)
        code = re.search(r"確認コード: (\d{6})", body).group(1)
        assert w.stepup.answer(challenge.id, "oob", code).status == "passed"
        assert w.resumed == ["order placed"]
