"""Account changes: contact and payout changes always need a strong factor, and leave a mark."""

from __future__ import annotations

import pytest
from engine_helpers import ALIBABA_HK, OCN, Rig, device, ip_in

RELAYABLE = {"sms", "email", "totp", "password"}


def signed_in(r: Rig, account: str, *, passkey: bool = False, cash: float = 1_000_000) -> str:
    """A customer at home in a familiar session; returns the session id."""
    r.account(account, passkey=passkey)
    home, ua = ip_in(OCN, 1), device(1)
    r.history(account, home, ua, f"ck-{account}")
    r.holdings(account, cash, {})
    r.tick(days=1)
    eid, d = r.login(account, home, ua, f"ck-{account}")
    assert d.action == "allow"
    return r.session_of(eid)


@pytest.mark.parametrize("passkey", [False, True], ids=["no-passkey", "passkey-enrolled"])
@pytest.mark.parametrize("field", ["email", "phone", "bank_account"])
def test_contact_and_payout_changes_always_get_a_strong_step_up(field, passkey):
    r = Rig()
    sess = signed_in(r, "A1", passkey=passkey)
    r.tick(minutes=3)
    eid, d = r.settings("A1", sess, field)
    assert d.action == "challenge"
    assert d.factors and not set(d.factors) & RELAYABLE
    assert ("passkey" in d.factors) == passkey
    assert "oob" in d.factors
    assert r.llr(eid, "sensitive_change") > 0


def test_contact_change_in_a_passkey_session_still_gets_a_step_up():
    r = Rig()
    r.account("A1", passkey=True)
    r.history("A1", ip_in(OCN, 2), device(2), "ck-A1")
    r.tick(days=1)
    eid, _ = r.login("A1", ip_in(OCN, 2), device(2), "ck-A1", factors=("passkey",))
    r.tick(minutes=1)
    _, d = r.settings("A1", r.session_of(eid), "email")
    assert d.action == "challenge"
    assert set(d.factors) <= {"passkey", "oob"}


def test_notification_settings_in_a_familiar_session_are_allowed():
    r = Rig()
    sess = signed_in(r, "A1")
    r.tick(minutes=3)
    eid, d = r.settings("A1", sess, "notifications")
    assert d.action == "allow"
    assert r.llr(eid, "session_risk") < 0


def test_notification_settings_in_a_session_from_hosting_score_higher():
    r = Rig()
    sess = signed_in(r, "A1")
    r.tick(minutes=3)
    own, _ = r.settings("A1", sess, "notifications")
    r.tick(minutes=1)
    # the same request from a stolen session cookie (never seen signing in)
    r.activity("A1", "stolen", ip_in(ALIBABA_HK, 3), device(1), "ck-A1")
    theirs, _ = r.settings("A1", "stolen", "notifications")
    assert r.score(theirs) > r.score(own)


@pytest.mark.parametrize("outcome", ["passed", "failed"])
def test_a_withdrawal_after_a_contact_change_carries_recent_contact_change(outcome):
    r = Rig()
    sess = signed_in(r, "A1")
    r.tick(minutes=2)
    before, _ = r.withdrawal("A1", sess, 50_000)
    assert r.signal(before, "recent_contact_change") is None
    r.tick(minutes=2)
    change, d = r.settings("A1", sess, "email")
    assert d.action == "challenge"
    r.challenge("A1", change, "oob", outcome, session=sess)
    r.tick(hours=2)
    after, _ = r.withdrawal("A1", sess, 50_000)
    recent = [s for s in r.signals(after) if s.code == "recent_contact_change"]
    if outcome == "passed":
        assert recent and all(s.llr > 0 for s in recent)
        assert r.score(after) > r.score(before)
    else:  # the change never happened
        assert recent == []
    # the mark fades after the configured days
    r.tick(days=r.engine.policy.detectors.account.recent_change_days + 1)
    late, _ = r.withdrawal("A1", sess, 50_000)
    assert r.signal(late, "recent_contact_change") is None


def test_withdrawing_most_of_the_cash_is_a_signal_and_a_small_withdrawal_is_not():
    r = Rig()
    sess = signed_in(r, "A1", cash=1_000_000)
    r.tick(minutes=2)
    small, d = r.withdrawal("A1", sess, 100_000)
    assert d.action == "allow"
    assert r.signal(small, "withdrawal_size") is None
    r.tick(minutes=2)
    most, _ = r.withdrawal("A1", sess, 850_000)
    assert r.llr(most, "withdrawal_size") > 0


@pytest.mark.parametrize("then", ["withdrawal", "settings"])
def test_recent_contact_change_is_counted_once(then):
    r = Rig()
    sess = signed_in(r, "A1")
    r.tick(minutes=2)
    change, _ = r.settings("A1", sess, "phone")
    r.challenge("A1", change, "oob", "passed", session=sess)
    r.tick(hours=1)
    if then == "withdrawal":
        eid, d = r.withdrawal("A1", sess, 50_000)
    else:
        eid, d = r.settings("A1", sess, "notifications")
    assert [s.code for s in r.signals(eid)].count("recent_contact_change") == 1
    codes = [reason.code for reason in d.reasons]
    assert len(codes) == len(set(codes))
