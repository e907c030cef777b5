"""Instructions: conclusions that reach back to orders the engine let through earlier.

A session that fails a phishing-resistant step-up is not the customer's; the market sell it
placed an hour before, waiting for New York to open, is not the customer's either. The engine
asks the broker to cancel what is still open of it, and to sign the session out — but only where
the session was doubtful before the failure, so that a customer who fumbles a confirmation keeps
their own orders and their session.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
from engine_helpers import ALIBABA_HK, HINET, OCN, Rig, device, ip_in
from instruction_helpers import (
    HOLDING,
    THIN,
    Recorder,
    cancels,
    doubtful_session_sells_then_buys,
    kinds,
    lenient_orders,
    lenient_orders_text,
    rig_with_customer,
)

from brokerguard.engine import BrokerGuard
from brokerguard.engine.policy import parse_policy
from brokerguard.engine.state import session_key
from brokerguard.events import AnalystAction, LoginAttempt, write_ndjson
from brokerguard.guard import InstructingGuard, Instruction
from brokerguard.replay import replay


def test_the_engine_is_an_instructing_guard():
    assert isinstance(Rig().engine, InstructingGuard)


def test_a_doubtful_session_that_fails_a_strong_step_up_has_its_open_orders_cancelled():
    r = rig_with_customer(lenient_orders())
    session, sell_order, held = doubtful_session_sells_then_buys(r)
    assert r.engine.take_instructions() == []  # nothing yet: the hold waits for its answer
    r.tick(minutes=5)
    r.challenge("A1", held, "oob", "failed", session=session)
    instruction, signed_out = r.engine.take_instructions()
    assert instruction.kind == "cancel_orders"
    assert (instruction.account, instruction.session) == ("A1", session)
    assert instruction.orders == (sell_order,)
    assert instruction.ts == r.now
    (reason,) = instruction.reasons
    assert reason.code == "orders_cancelled" and reason.en and reason.ja
    # ... and the session is signed out: whoever holds it must sign in again
    assert (signed_out.kind, signed_out.session, signed_out.orders) == ("end_session", session, ())
    assert signed_out.cause == instruction.cause and signed_out.ts == r.now
    (reason,) = signed_out.reasons
    assert reason.code == "session_ended" and reason.en and reason.ja
    assert r.engine.take_instructions() == []  # taken once


def test_the_policy_can_leave_signing_out_to_the_broker():
    r = rig_with_customer(lenient_orders(end_sessions=False))
    session, _, held = doubtful_session_sells_then_buys(r)
    r.challenge("A1", held, "oob", "failed", session=session)
    assert kinds(r.engine.take_instructions()) == [("cancel_orders", session)]


def test_an_order_is_named_once_however_many_step_ups_fail():
    r = rig_with_customer(lenient_orders())
    session, _, held = doubtful_session_sells_then_buys(r)
    r.challenge("A1", held, "oob", "failed", session=session)
    r.engine.take_instructions()
    r.tick(minutes=1)
    again, d = r.order("A1", session, THIN, "buy", 50_000, 150.0)
    assert d.action == "hold"
    r.challenge("A1", again, "passkey", "failed", session=session)
    # the held buys never went ahead, and the session was asked to be signed out already
    assert r.engine.take_instructions() == []


def test_giving_up_is_not_failing():
    r = rig_with_customer(lenient_orders())
    session, _, held = doubtful_session_sells_then_buys(r)
    r.challenge("A1", held, "oob", "abandoned", session=session)
    assert r.engine.take_instructions() == []


def test_the_policy_sets_how_doubtful_a_session_must_have_been():
    r = rig_with_customer(lenient_orders(cancel_above=50.0))
    session, _, held = doubtful_session_sells_then_buys(r)
    r.challenge("A1", held, "oob", "failed", session=session)
    assert r.engine.take_instructions() == []


def test_a_familiar_session_keeps_its_orders_when_its_customer_fails_a_confirmation():
    r = rig_with_customer()
    eid, d = r.login("A1", ip_in(OCN, 1), device(1), "ck-A1")
    assert d.action == "allow"
    session = r.session_of(eid)
    r.tick(minutes=2)
    _, d = r.order("A1", session, HOLDING, "sell", 1000)
    assert d.action == "allow"
    r.engine.require_reverify("A1", r.now)  # an analyst asks for a strong re-verification
    r.tick(minutes=1)
    held, d = r.order("A1", session, THIN, "buy", 100, 100.0)
    assert d.action == "hold"
    r.challenge("A1", held, "oob", "failed", session=session)  # the customer fumbles it
    assert r.engine.take_instructions() == []


def test_an_analysts_fraud_confirmation_cancels_the_open_orders_of_that_sign_ins_session():
    r = rig_with_customer(lenient_orders())
    login = r.login_event("A1", ip_in(HINET, 5), device(1), None)
    d = r.engine.decide(login)
    assert d.action == "challenge"
    r.challenge("A1", login.id, "sms", "passed", session=login.session)
    r.tick(minutes=2)
    _, d = r.order("A1", login.session, HOLDING, "sell", 1000)
    assert d.action == "allow"
    r.tick(hours=2)
    r.engine.observe(AnalystAction(id="an-1", ts=r.now, action="confirm_fraud", login=login))
    instruction, signed_out = r.engine.take_instructions()
    assert instruction.session == login.session and instruction.cause == "an-1"
    assert [reason.code for reason in instruction.reasons] == ["orders_cancelled_fraud"]
    assert (signed_out.kind, signed_out.session, signed_out.cause) == (
        "end_session",
        login.session,
        "an-1",
    )
    assert [reason.code for reason in signed_out.reasons] == ["session_ended_fraud"]


def test_replay_writes_the_instructions_the_live_engine_gave(tmp_path: Path) -> None:
    policy = lenient_orders()
    r = Rig(policy)
    recorder = Recorder(r.engine)
    r.engine = recorder  # type: ignore[assignment]
    rig_with_customer(r=r)
    session, _, held = doubtful_session_sells_then_buys(r)
    r.challenge("A1", held, "oob", "failed", session=session)
    live = recorder.engine.take_instructions()
    log = tmp_path / "events.ndjson"
    with log.open("wb") as f:
        write_ndjson(f, recorder.log)
    summary = replay(log, tmp_path / "out", BrokerGuard(policy))
    assert summary.instructions == len(live) == 2
    raw = (tmp_path / "out" / "instructions.ndjson").read_bytes().splitlines()
    assert [msgspec.json.decode(line, type=Instruction) for line in raw] == live


def test_a_stolen_session_names_only_what_was_placed_after_the_thief_took_it():
    r = rig_with_customer(lenient_orders(order_prior=-12.0))
    home, ua = ip_in(OCN, 1), device(1)
    eid, d = r.login("A1", home, ua, "ck-A1")
    assert d.action == "allow"
    session = r.session_of(eid)
    r.tick(minutes=2)
    _, d = r.order("A1", session, HOLDING, "sell", 100, 9000.0, ip=home, ua=ua)  # the customer's
    assert d.action == "allow"
    r.tick(minutes=30)
    thief = ip_in(ALIBABA_HK, 1)  # the session cookie replayed from a cloud abroad
    r.activity("A1", session, thief, ua, "ck-A1", action="portfolio")
    r.tick(minutes=1)
    sell, d = r.order("A1", session, HOLDING, "sell", 900, ip=thief, ua=ua)
    assert d.action == "allow"
    r.tick(minutes=5)
    buy, d = r.order("A1", session, THIN, "buy", 50_000, 150.0, ip=thief, ua=ua)
    assert d.action == "hold"
    r.challenge("A1", buy, "oob", "failed", session=session)
    (instruction,) = cancels(r.engine.take_instructions())
    assert instruction.orders == (f"o-{sell}",)  # the customer's limit sell is not named


def test_a_fraud_confirmation_names_every_order_of_the_session_however_familiar_it_looked():
    r = rig_with_customer()
    login = r.login_event("A1", ip_in(OCN, 1), device(1), "ck-A1")  # a perfect infostealer copy
    assert r.engine.decide(login).action == "allow"
    r.tick(minutes=2)
    sell, d = r.order("A1", login.session, HOLDING, "sell", 1000)
    assert d.action == "allow"
    assert r.engine.take_instructions() == []
    r.engine.observe(AnalystAction(id="an-2", ts=r.now, action="confirm_fraud", login=login))
    (instruction,) = cancels(r.engine.take_instructions())
    assert instruction.orders == (f"o-{sell}",)


def test_a_session_that_ended_before_the_answer_still_has_its_orders_named():
    r = rig_with_customer(lenient_orders())
    session, sell_order, held = doubtful_session_sells_then_buys(r)
    r.activity("A1", session, ip_in(HINET, 5), device(1), None, action="logout")
    r.tick(minutes=30)  # the hold's confirmation is refused after the thief left
    r.challenge("A1", held, "oob", "failed", session=session)
    (instruction,) = r.engine.take_instructions()  # nothing left to sign out
    assert instruction.orders == (sell_order,) and instruction.session == session


def doubtful_session_sold() -> tuple[Rig, LoginAttempt, str]:
    """A sign-in from abroad passes only an SMS step-up (doubtful), then sells; (rig, the
    sign-in, the sell's event id)."""
    r = rig_with_customer(lenient_orders())
    login = r.login_event("A1", ip_in(HINET, 5), device(1), None)
    assert r.engine.decide(login).action == "challenge"
    r.challenge("A1", login.id, "sms", "passed", session=login.session)
    r.tick(minutes=2)
    sell, d = r.order("A1", login.session, HOLDING, "sell", 1000)
    assert d.action == "allow"
    return r, login, sell


def fraud_confirmed_later(**later: float) -> list:
    """A doubtful session sells, logs out or idles; fraud is confirmed ``later``."""
    r, login, sell = doubtful_session_sold()
    r.tick(**later)
    for _ in range(2):  # the first event days on does not sweep by itself (a clock may be off)
        r.order("A1", "another", HOLDING, "sell", 1, 9_000.0, ip=ip_in(OCN, 1), ua=device(1))
        r.tick(minutes=1)
    r.engine.observe(AnalystAction(id="an-3", ts=r.now, action="confirm_fraud", login=login))
    taken = r.engine.take_instructions()
    return [(i.kind, i.session, i.orders) for i in taken], login.session, sell


def test_a_fraud_confirmation_days_later_still_names_the_orders_of_the_swept_session():
    named, session, sell = fraud_confirmed_later(days=3)  # swept after 12 idle hours
    # ... and still asks for the sign-out: the broker's session (a stolen cookie) may outlive
    # the engine's memory of it
    assert named == [
        ("cancel_orders", session, (f"o-{sell}",)),
        ("end_session", session, ()),
    ]


def test_the_orders_of_an_ended_session_are_forgotten_after_a_week():
    named, session, _ = fraud_confirmed_later(days=8)
    assert named == [("end_session", session, ())]


def test_a_session_is_asked_to_be_signed_out_once():
    r = rig_with_customer(lenient_orders())
    session, _, held = doubtful_session_sells_then_buys(r)
    r.challenge("A1", held, "oob", "failed", session=session)
    assert kinds(r.engine.take_instructions()) == [
        ("cancel_orders", session),
        ("end_session", session),
    ]
    login = r.login_event("A1", ip_in(HINET, 5), device(1), None)
    login = msgspec.structs.replace(login, session=session)
    r.engine.confirm_fraud(login, r.now)  # the analyst's conclusion on the same session
    r.engine.confirm_fraud(login, r.now)
    assert r.engine.take_instructions() == []


def confirming_policy(hours: int):
    text = lenient_orders_text().replace(
        "confirm_sign_ins_hours = 0", f"confirm_sign_ins_hours = {hours}"
    )
    return parse_policy(text)


def test_a_broker_can_have_sign_ins_confirmed_for_a_while_after_a_session_failed():
    """With ``confirm_sign_ins_hours``, the sign-ins after such a failure ask for a strong factor,
    however familiar they look, until one passes or the time is up."""
    r = rig_with_customer(confirming_policy(24))
    session, _, held = doubtful_session_sells_then_buys(r)
    r.challenge("A1", held, "oob", "failed", session=session)
    r.engine.take_instructions()
    r.tick(minutes=10)
    eid, d = r.login("A1", ip_in(OCN, 1), device(1), "ck-A1")  # the customer's own home
    assert d.action == "challenge" and set(d.factors) <= {"passkey", "oob"}
    assert "failed_step_up" in {reason.code for reason in d.reasons}
    r.challenge("A1", eid, "oob", "passed", session=r.session_of(eid))  # the customer, after all
    r.tick(minutes=10)
    _, d = r.login("A1", ip_in(OCN, 1), device(1), "ck-A1")
    assert d.action == "allow"


def test_by_default_the_customers_familiar_sign_in_stays_free_after_a_session_failed():
    r = rig_with_customer(lenient_orders())
    session, _, held = doubtful_session_sells_then_buys(r)
    r.challenge("A1", held, "oob", "failed", session=session)
    r.tick(minutes=10)
    _, d = r.login("A1", ip_in(OCN, 1), device(1), "ck-A1")
    assert d.action == "allow"


def profile(r: Rig) -> dict:
    """The account's learned profile (when it last signed in aside: the travel check reads it)."""
    acc = msgspec.to_builtins(r.engine.state.get("account", "A1"))
    return {k: v for k, v in acc.items() if k not in ("last_login", "last_country")}


def new_phone_at_home(r: Rig):
    """A sign-in from a new address of the home ISP with a new cookie: allowed, a little
    doubtful, and learned into the profile."""
    login = r.login_event("A1", ip_in(OCN, 200), device(1), "ck-x")
    d = r.engine.decide(login)
    assert d.action == "allow" and r.session_state("A1", login.session).learned
    return login


def test_a_doubtful_sign_in_learned_as_a_habit_is_taken_back_out_when_its_session_fails():
    """A phisher's sign-in allowed at a low score taught the profile; once his session fails a
    strong step-up, the profile is as it was before him, so his next sign-in is no more familiar
    (as far as the per-account limit of values lets: one his pushed out is not restored)."""
    r = rig_with_customer()
    before = profile(r)
    login = new_phone_at_home(r)
    assert profile(r) != before
    r.tick(minutes=2)
    held, d = r.order(
        "A1", login.session, THIN, "buy", 50_000, 150.0, ip=ip_in(OCN, 200), ua=device(1)
    )
    assert d.action == "hold"
    r.challenge("A1", held, "oob", "failed", session=login.session)
    after = profile(r)
    assert after.pop("challenge_failures") and after.pop("session_failed_at")
    assert after == {k: v for k, v in before.items() if k in after}


def test_a_stolen_cookie_failing_leaves_the_customers_own_sign_in_learned():
    """The session's sign-in was the customer's (a new phone at home); a thief then used the
    session from a cloud abroad and failed. The doubt is the thief's, not the sign-in's."""
    r = rig_with_customer()
    login = new_phone_at_home(r)
    learned = profile(r)
    r.tick(minutes=30)
    thief = ip_in(ALIBABA_HK, 3)
    r.activity("A1", login.session, thief, device(1), "ck-x", action="portfolio")
    r.tick(minutes=1)
    held, d = r.order("A1", login.session, THIN, "buy", 50_000, 150.0, ip=thief, ua=device(1))
    assert d.action == "hold"
    r.challenge("A1", held, "oob", "failed", session=login.session)
    after = profile(r)
    assert after.pop("challenge_failures") and after["session_failed_at"] == 0.0
    assert after == {k: v for k, v in learned.items() if k != "challenge_failures"}


def test_a_fraud_confirmation_takes_the_sign_in_back_out_of_the_profile():
    r = rig_with_customer()
    before = profile(r)
    login = new_phone_at_home(r)
    r.engine.observe(AnalystAction(id="an-4", ts=r.now, action="confirm_fraud", login=login))
    after = profile(r)
    assert after == {k: v for k, v in before.items() if k in after}


def _as_before_session_keys(engine: BrokerGuard, kind: str, account: str, session: str) -> None:
    """Move a record to the key it had before session records were keyed by account."""
    key = session_key(account, session)
    record = engine.state.get(kind, key)
    assert record is not None
    engine.state.delete(kind, key)
    engine.state.put(kind, session, record)


def test_a_session_stored_before_the_account_was_in_its_key_still_has_its_orders_cancelled():
    """State written by an earlier version keys sessions by their id alone: after an upgrade a
    fraud confirmation must still find the session and name its open orders."""
    r, login, sell = doubtful_session_sold()
    _as_before_session_keys(r.engine, "session", "A1", login.session)
    r.engine.observe(AnalystAction(id="an-9", ts=r.now, action="confirm_fraud", login=login))
    named = [(i.kind, i.session, i.orders) for i in r.engine.take_instructions()]
    assert named == [
        ("cancel_orders", login.session, (f"o-{sell}",)),
        ("end_session", login.session, ()),
    ]


def test_an_ended_session_stored_before_the_account_was_in_its_key_still_names_its_orders():
    r, login, sell = doubtful_session_sold()
    r.activity("A1", login.session, ip_in(HINET, 5), device(1), None, action="logout")
    _as_before_session_keys(r.engine, "ended", "A1", login.session)
    r.engine.observe(AnalystAction(id="an-9", ts=r.now, action="confirm_fraud", login=login))
    named = [(i.kind, i.orders) for i in r.engine.take_instructions()]
    assert named[0] == ("cancel_orders", (f"o-{sell}",))


def test_a_session_stored_under_another_account_s_old_key_is_not_taken():
    r, login, _ = doubtful_session_sold()
    _as_before_session_keys(r.engine, "session", "A1", login.session)
    other = msgspec.structs.replace(login, account="A2")
    r.engine.observe(AnalystAction(id="an-9", ts=r.now, action="confirm_fraud", login=other))
    assert [i.kind for i in r.engine.take_instructions()] == ["end_session"]
    assert r.engine.state.get("session", login.session) is not None  # A1's, left alone


def test_an_ended_sessions_orders_are_forgotten_after_a_week_even_before_a_sweep():
    """Ended sessions are swept once a day, not hourly, and the first event after a jump in
    time sweeps nothing: a record still kept past the week must not name its orders."""
    r, login, sell = doubtful_session_sold()
    r.activity("A1", login.session, ip_in(HINET, 5), device(1), None, action="logout")
    r.tick(days=8)
    assert r.engine.state.count("ended") == 1  # not swept yet
    r.engine.observe(AnalystAction(id="an-8", ts=r.now, action="confirm_fraud", login=login))
    named = [(i.kind, i.session, i.orders) for i in r.engine.take_instructions()]
    assert named == [("end_session", login.session, ())]


def test_ended_sessions_are_swept_within_a_day_of_their_week():
    r, login, _ = doubtful_session_sold()
    r.activity("A1", login.session, ip_in(HINET, 5), device(1), None, action="logout")
    assert r.engine.state.count("ended") == 1
    for _ in range(9 * 24):  # nine days of hourly traffic elsewhere
        r.tick(hours=1)
        r.order("A1", "another", HOLDING, "sell", 1, 9_000.0, ip=ip_in(OCN, 1), ua=device(1))
    assert r.engine.state.count("ended") == 0
