"""Analyst conclusions as events: heard through ``observe`` exactly as through the guard's calls.

The service turns what analysts conclude into ``analyst`` events so that the workers of the
scale-out mode and any replay hear them in stream order; these tests hold the event path to the
direct one, action by action, and check that bad analyst events are refused by name.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from engine_helpers import ALIBABA_HK, OCN, SOFTBANK_HIKARI, Rig, attacker_ua, device, ip_in

from brokerguard.events import AnalystAction, EventError, LoginAttempt, decode_line, encode


def _story(conclude: Callable[[Rig, LoginAttempt], None]) -> list[tuple[str, float, list]]:
    """Two customers with history, one attacker sign-in into A1, the conclusion, then the sign-ins
    an analyst's conclusion changes: the customer's from a new home line, another account from
    the attacker's address, and A1's own from home."""
    r = Rig()
    r.account("A1", passkey=True)
    for account, seed in (("A1", 51), ("A2", 52)):
        r.history(account, ip_in(OCN, seed), device(seed), f"ck-{account}")
    r.tick(days=1)
    fraud = r.login_event("A1", ip_in(ALIBABA_HK, 51), attacker_ua(51), None)
    r.engine.decide(fraud)
    conclude(r, fraud)
    r.tick(hours=2)
    out = []
    for account, ip, ua, cookie in (
        ("A1", ip_in(SOFTBANK_HIKARI, 51), device(51), "ck-A1"),
        ("A2", ip_in(ALIBABA_HK, 51), attacker_ua(52), None),
        ("A1", ip_in(OCN, 51), device(51), "ck-A1"),
        ("A1", ip_in(OCN, 51), device(51), "ck-new"),
    ):
        eid, d = r.login(account, ip, ua, cookie)
        out.append((d.action, round(r.total(eid), 9), sorted(r.codes(eid))))
        r.tick(minutes=10)
    return out


def _event(r: Rig, action: str, **fields) -> AnalystAction:
    return AnalystAction(id=r.new_id("analyst"), ts=r.now, action=action, **fields)  # type: ignore[arg-type]


CASES = {
    "force_reverify": (
        lambda r, f: r.engine.require_reverify("A1", r.now),
        lambda r, f: _event(r, "force_reverify", account="A1"),
    ),
    "trust_device": (
        lambda r, f: r.engine.trust_device("A1", "ck-new"),
        lambda r, f: _event(r, "trust_device", account="A1", device="ck-new"),
    ),
    "confirm_customer": (
        lambda r, f: r.engine.confirm_customer(
            r.login_event("A1", ip_in(SOFTBANK_HIKARI, 51), device(51), "ck-A1")
        ),
        lambda r, f: _event(
            r,
            "confirm_customer",
            account="A1",
            login=r.login_event("A1", ip_in(SOFTBANK_HIKARI, 51), device(51), "ck-A1"),
        ),
    ),
    "confirm_fraud": (
        lambda r, f: r.engine.mark_fraud_infrastructure(f, r.now),
        lambda r, f: _event(r, "confirm_fraud", login=f),
    ),
}


@pytest.mark.parametrize("action", sorted(CASES))
def test_an_analyst_event_is_heard_as_the_direct_call(action: str) -> None:
    direct, as_event = CASES[action]
    nothing = _story(lambda r, f: None)
    called = _story(direct)
    heard = _story(lambda r, f: r.engine.observe(decode_line(encode(as_event(r, f)))))
    assert heard == called
    assert called != nothing  # the conclusion changes what follows


def test_a_confirmed_fraud_event_marks_the_address_for_every_account_but_reverifies_nobody() -> (
    None
):
    outcome = _story(lambda r, f: r.engine.observe(_event(r, "confirm_fraud", login=f)))
    _, (a2_action, _, a2_codes), (a1_action, _, a1_codes), _ = outcome
    assert "confirmed_fraud_infrastructure" in a2_codes
    assert "reverify_required" not in a1_codes  # the victim's re-verification is its own event
    both = _story(
        lambda r, f: [
            r.engine.observe(_event(r, "confirm_fraud", login=f)),
            r.engine.observe(_event(r, "force_reverify", account="A1")),
        ]
    )
    assert "reverify_required" in both[2][2]
    assert both[2][0] == "challenge"


LOGIN = (
    '{"type":"login","id":"l1","ts":"2025-04-07T09:00:00+09:00","account":"A1","session":"s1",'
    '"ip":"203.0.113.9","user_agent":"x","factors":["password"],"success":true}'
)
HEAD = '{"type":"analyst","id":"a1","ts":"2025-04-07T10:00:00+09:00",'


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        (HEAD + '"action":"trust_device","account":"A1"}', "device", "required"),
        (HEAD + '"action":"force_reverify"}', "account", "required"),
        (HEAD + '"action":"force_reverify","account":"A1","device":"ck"}', "device", "absent"),
        (
            HEAD + '"action":"confirm_fraud","account":"A1","login":' + LOGIN + "}",
            "account",
            "absent",
        ),
        (
            HEAD + '"action":"confirm_customer","account":"A2","login":' + LOGIN + "}",
            "login.account",
            "not",
        ),
        (HEAD + '"action":"confirm_customer","account":"A1"}', "login", "required"),
        (HEAD + '"action":"undo","account":"A1"}', "action", "Invalid"),
        (
            HEAD + '"action":"confirm_fraud","login":{"type":"login","id":"l1"}}',
            "login.ts",
            "missing",
        ),
    ],
)
def test_bad_analyst_events_are_refused_naming_the_field(body: str, field: str, words: str) -> None:
    with pytest.raises(EventError) as err:
        decode_line(body, line=3)
    assert err.value.field == field
    assert words in str(err.value)
    assert str(err.value).startswith("line 3: ")
