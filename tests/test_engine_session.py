"""Session watch: a session carried off to another network is caught; a phone's roaming is not."""

from __future__ import annotations

import pytest
from engine_helpers import ALIBABA_HK, DOCOMO, OCN, TENCENT_CN, Rig, device, ip_in

SOFTBANK = "TSE:9984"


def familiar_session(r: Rig, account: str, home: str, ua: str, cookie: str) -> str:
    r.instrument("TSE", "9984", 8000.0, 10_000_000, 12e12)
    r.history(account, home, ua, cookie)
    r.tick(days=1)
    eid, d = r.login(account, home, ua, cookie)
    assert d.action == "allow"
    return r.session_of(eid)


@pytest.mark.parametrize("via", ["activity", "order"])
def test_session_used_from_overseas_hosting_is_a_hijack_and_its_next_order_is_held(via):
    r = Rig()
    home, ua = ip_in(OCN, 1), device(1)
    sess = familiar_session(r, "A1", home, ua, "ck-A1")
    r.tick(minutes=2)
    before, d = r.order("A1", sess, SOFTBANK, "buy", 100, 8000.0, ip=home, ua=ua)
    assert d.action == "allow"
    assert r.signal(before, "session_hijack") is None
    r.tick(minutes=30)
    thief = ip_in(ALIBABA_HK, 1)
    if via == "activity":  # the stolen session cookie replayed with the victim's browser data
        r.activity("A1", sess, thief, ua, "ck-A1", action="portfolio")
        r.tick(minutes=1)
        after, d = r.order("A1", sess, SOFTBANK, "buy", 100, 8000.0)
    else:
        after, d = r.order("A1", sess, SOFTBANK, "buy", 100, 8000.0, ip=thief, ua=ua)
    assert d.action == "hold"
    hijack = r.signal(after, "session_hijack")
    assert hijack is not None and hijack.llr > 0
    assert "session_hijack" in {reason.code for reason in d.reasons}
    # what the sign-in earned does not vouch for the thief
    assert r.llr(after, "session_risk") >= 0 > r.llr(before, "session_risk")


def test_new_address_of_the_same_mobile_carrier_mid_session_is_not_a_hijack():
    r = Rig()
    r.instrument("TSE", "9984", 8000.0, 10_000_000, 12e12)
    phone = device(2, "phone")
    r.history("M1", [ip_in(DOCOMO, 200 + i) for i in range(20)], phone, "ck-M1")
    r.tick(days=1)
    first_ip = ip_in(DOCOMO, 300)
    eid, _ = r.login("M1", first_ip, phone, "ck-M1")
    sess = r.session_of(eid)
    for i in range(3):  # the carrier hands out a new address on each reconnection
        r.tick(minutes=7)
        r.activity("M1", sess, ip_in(DOCOMO, 301 + i), phone, "ck-M1")
    r.tick(minutes=1)
    oid, d = r.order("M1", sess, SOFTBANK, "buy", 100, 8000.0, ip=ip_in(DOCOMO, 399), ua=phone)
    assert d.action == "allow"
    assert r.llr(oid, "session_hijack") == 0
    assert r.llr(oid, "session_risk") < 0  # the trust of the sign-in carries on


def test_a_strong_confirmation_of_a_held_order_releases_the_session():
    r = Rig()
    home, ua = ip_in(OCN, 3), device(3)
    sess = familiar_session(r, "A1", home, ua, "ck-A1")
    r.tick(minutes=10)
    cafe = ip_in(TENCENT_CN, 3)  # say, the customer's own VPN app
    held, d = r.order("A1", sess, SOFTBANK, "buy", 100, 8000.0, ip=cafe, ua=ua)
    assert d.action == "hold"
    r.challenge("A1", held, "oob", "passed", session=sess)
    r.tick(minutes=1)
    later, d = r.order("A1", sess, SOFTBANK, "buy", 100, 8000.0, ip=cafe, ua=ua)
    assert d.action == "allow"
    assert r.signal(later, "session_hijack") is None


def test_a_session_never_seen_signing_in_is_judged_by_its_network_not_by_the_stolen_cookie():
    # remember-me sessions: the guard sees no sign-in, only the first request
    def first_request(ip_block, seed: int, ua: str, cookie: str | None) -> float:
        r = Rig()
        home_ua = device(4)
        r.instrument("TSE", "9984", 8000.0, 10_000_000, 12e12)
        r.history("A1", ip_in(OCN, 4), home_ua, "ck-A1")
        r.tick(days=1)
        ip = ip_in(ip_block, seed)
        r.activity("A1", "remembered", ip, ua, cookie)
        oid, _ = r.order("A1", "remembered", SOFTBANK, "buy", 100, 8000.0, ip=ip, ua=ua)
        return r.llr(oid, "session_risk")

    own = first_request(OCN, 4, device(4), "ck-A1")  # the customer at home
    stolen = first_request(ALIBABA_HK, 5, device(4), "ck-A1")  # infostealer: same cookie + UA
    stranger = first_request(ALIBABA_HK, 5, device(99, "phone"), None)  # nothing of the victim's
    assert own < 0
    assert stolen > 0
    assert stolen >= stranger  # the victim's cookie and UA bought the thief nothing


def test_a_burst_of_sensitive_actions_is_a_signal_only_once_it_is_a_burst():
    r = Rig()
    home, ua = ip_in(OCN, 6), device(6)
    sess = familiar_session(r, "A1", home, ua, "ck-A1")
    burst = r.engine.policy.detectors.session.sensitive_burst
    ids = []
    for _ in range(burst + 1):
        r.tick(minutes=1)
        eid, _ = r.settings("A1", sess, "notifications")
        ids.append(eid)
    assert all(r.signal(eid, "sensitive_burst") is None for eid in ids[: burst - 1])
    llrs = [r.llr(eid, "sensitive_burst") for eid in ids[burst - 1 :]]
    assert 0 < llrs[0] < llrs[1]


def test_switching_from_home_fibre_to_the_customers_own_carrier_is_not_a_hijack():
    r = Rig()
    r.instrument("TSE", "9984", 8000.0, 10_000_000, 12e12)
    phone, home = device(7, "phone"), ip_in(OCN, 7)
    days = [home if i % 2 else ip_in(DOCOMO, 400 + i) for i in range(20)]
    r.history("C1", days, phone, "ck-C1")
    r.tick(days=1)
    eid, _ = r.login("C1", home, phone, "ck-C1")
    sess = r.session_of(eid)
    r.tick(minutes=20)  # leaves home; the phone drops Wi-Fi for 4G
    commute = ip_in(DOCOMO, 999)
    r.activity("C1", sess, commute, phone, "ck-C1")
    oid, _ = r.order("C1", sess, SOFTBANK, "buy", 100, 8000.0, ip=commute, ua=phone)
    assert r.signal(oid, "session_hijack") is None
    assert r.llr(oid, "session_risk") < 0
