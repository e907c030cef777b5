"""What analysts confirm reaches the engine: trusted devices, re-verification, case outcomes."""

from __future__ import annotations

from engine_helpers import ALIBABA_HK, OCN, SOFTBANK_HIKARI, Rig, attacker_ua, device, ip_in

from brokerguard.stores.codec import decode, encode


def test_a_trusted_device_speaks_for_the_customer_like_a_familiar_one():
    r = Rig()
    home, ua = ip_in(OCN, 11), device(11)
    r.history("A1", home, ua, "ck-old")
    r.tick(days=1)
    before, _ = r.login("A1", home, ua, "ck-new")
    assert r.llr(before, "login_cookie") > 0  # a new cookie counts against the sign-in

    r.engine.trust_device("A1", "ck-new2")
    r.tick(hours=1)
    after, d = r.login("A1", home, ua, "ck-new2")
    assert r.llr(after, "login_cookie") < 0
    assert d.action == "allow"


def test_forced_reverification_challenges_every_sign_in_until_a_strong_factor_passes():
    r = Rig()
    r.account("A1", passkey=True)
    home, ua = ip_in(OCN, 12), device(12)
    r.history("A1", home, ua, "ck-A1")
    r.tick(days=1)
    eid, d = r.login("A1", home, ua, "ck-A1")
    assert d.action == "allow"

    r.engine.require_reverify("A1", r.now)
    r.tick(minutes=5)
    eid, d = r.login("A1", home, ua, "ck-A1")
    assert d.action == "challenge"
    assert set(d.factors) <= {"passkey", "oob"}
    assert "reverify_required" in {reason.code for reason in d.reasons}
    r.challenge("A1", eid, "sms", "passed")  # a relayable code does not meet the request
    r.tick(minutes=5)
    eid, d = r.login("A1", home, ua, "ck-A1")
    assert d.action == "challenge"
    r.challenge("A1", eid, "passkey", "passed")
    r.tick(minutes=5)
    eid, d = r.login("A1", home, ua, "ck-A1")
    assert d.action == "allow"
    assert r.llr(eid, "reverify_required") == 0


def test_forced_reverification_holds_orders_of_sessions_already_open():
    r = Rig()
    home, ua = ip_in(OCN, 13), device(13)
    r.history("A1", home, ua, "ck-A1")
    r.instrument("TSE", "7203", 3000.0, 20_000_000, 4e13)
    r.holdings("A1", 1_000_000, {"TSE:7203": 100})
    r.tick(days=1)
    login, _ = r.login("A1", home, ua, "ck-A1")
    order, d = r.order("A1", r.session_of(login), "TSE:7203", "buy", 100, 3000.0)
    assert d.action == "allow"
    r.engine.require_reverify("A1", r.now)
    r.tick(minutes=1)
    order, d = r.order("A1", r.session_of(login), "TSE:7203", "buy", 100, 3000.0)
    assert d.action == "hold"
    assert r.llr(order, "reverify_required") > 0


def test_confirmed_fraud_marks_the_address_for_other_accounts_and_makes_the_victim_reverify():
    r = Rig()
    for account, seed in (("A1", 21), ("A2", 22)):
        r.history(account, ip_in(OCN, seed), device(seed), f"ck-{account}")
    r.tick(days=1)
    attacker_ip, ua = ip_in(ALIBABA_HK, 21), attacker_ua(21)
    fraud = r.login_event("A1", attacker_ip, ua, None)
    r.engine.decide(fraud)
    keys = r.engine.confirm_fraud(fraud, r.now)
    assert f"ip:{attacker_ip}" in keys

    r.tick(days=2)
    eid, d = r.login("A2", attacker_ip, attacker_ua(22), None)
    assert r.llr(eid, "confirmed_fraud_infrastructure") > 0
    assert d.action == "challenge"
    # the victim's own next sign-in from home must re-verify
    eid, d = r.login("A1", ip_in(OCN, 21), device(21), "ck-A1")
    assert r.llr(eid, "reverify_required") > 0
    assert d.action == "challenge"
    # the mark fades after confirmed_fraud_days, and the hourly sweep may then forget it
    r.tick(days=40)
    eid, _ = r.login("A2", attacker_ip, attacker_ua(22), None)
    assert r.llr(eid, "confirmed_fraud_infrastructure") == 0


def test_confirmed_customer_sign_in_is_learned_and_unlinked_from_other_accounts():
    r = Rig()
    home, ua = ip_in(OCN, 31), device(31)
    r.history("A1", home, ua, "ck-A1")
    r.tick(days=1)
    new_home = ip_in(SOFTBANK_HIKARI, 31)  # the customer moved house
    login = r.login_event("A1", new_home, ua, "ck-A1")
    r.engine.decide(login)
    before = r.total(login.id)
    r.engine.confirm_customer(login)
    r.tick(hours=2)
    eid, _ = r.login("A1", new_home, ua, "ck-A1")
    assert r.total(eid) < before


def test_feedback_survives_the_state_codec():
    r = Rig()
    r.history("A1", ip_in(OCN, 41), device(41), "ck-A1")
    r.engine.require_reverify("A1", r.now)
    fraud = r.login_event("A2", ip_in(ALIBABA_HK, 41), attacker_ua(41), None)
    keys = r.engine.confirm_fraud(fraud, r.now)
    acc = r.engine.state.get("account", "A1")
    assert decode("account", encode(acc)).reverify_at == acc.reverify_at > 0
    ent = r.engine.state.get("entity", keys[0])
    assert decode("entity", encode(ent)).confirmed_fraud == ent.confirmed_fraud > 0
