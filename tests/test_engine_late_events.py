"""Late events: a log shipper delivers an event after later ones; it is judged as of its own time.

The engine receives events at-least-once and not always in time order. An event older than what
the engine already saw must neither be judged against what happened after it, nor overwrite the
account's latest state with older values.
"""

from __future__ import annotations

from datetime import timedelta

from engine_helpers import HINET, KT, OCN, Rig, attacker_ua, device, ip_in


def test_a_late_sign_in_is_not_impossible_travel_against_a_later_one():
    r = Rig()
    home, ua = ip_in(OCN, 11), device(11)
    r.history("A1", home, ua, "ck-A1", days=10)
    r.tick(days=1)
    r.now = r.now.replace(hour=8)
    r.login("A1", home, ua, "ck-A1")
    before_flight = r.now + timedelta(hours=1)
    r.tick(hours=10)
    seoul_id, _ = r.login("A1", ip_in(KT, 11), ua, "ck-A1")  # ten hours later: a flight
    assert r.signal(seoul_id, "impossible_travel") is None
    # the shipper delivers the customer's last sign-in at home, an hour after the first, now
    r.now = before_flight
    late_id, d = r.login("A1", home, ua, "ck-A1")
    assert d.action == "allow"
    assert r.signal(late_id, "impossible_travel") is None


def test_a_late_sign_in_does_not_make_the_last_sign_in_older():
    r = Rig()
    home, ua = ip_in(OCN, 12), device(12)
    r.history("A1", home, ua, "ck-A1", days=10)
    r.tick(days=1)
    r.now = r.now.replace(hour=8)
    r.login("A1", home, ua, "ck-A1")
    before_flight = r.now + timedelta(hours=2)
    r.tick(hours=10)
    _, d = r.login("A1", ip_in(KT, 12), ua, "ck-A1")  # landed in Seoul
    assert d.action == "allow"
    after_landing = r.now + timedelta(minutes=30)
    r.now = before_flight  # the last sign-in at home, delivered late: learned, and older
    _, d = r.login("A1", home, ua, "ck-A1")
    assert d.action == "allow"
    # half an hour after the sign-in in Seoul, somebody signs in from a home line in Taiwan
    r.now = after_landing
    eid, _ = r.login("A1", ip_in(HINET, 12), attacker_ua(12), None)
    travel = r.signal(eid, "impossible_travel")
    assert travel is not None
    assert travel.evidence == {"from": "KR", "to": "TW", "minutes": 30}
