"""Late events: a log shipper delivers an event after later ones; it is judged as of its own time.

The engine receives events at-least-once and not always in time order. An event older than what
the engine already saw must neither be judged against what happened after it, nor overwrite the
account's latest state with older values.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import msgspec
from engine_helpers import (
    DIGITALOCEAN_SG,
    HEADLESS_UA,
    HINET,
    KT,
    OCN,
    TENCENT_CN,
    Rig,
    attacker_ua,
    block,
    device,
    ip_in,
)
from instruction_helpers import (
    HOLDING,
    THIN,
    cancels,
    doubtful_session_sells_then_buys,
    kinds,
    lenient_orders,
    lenient_orders_text,
    rig_with_customer,
)

from brokerguard.engine import BrokerGuard
from brokerguard.engine.policy import parse_policy
from brokerguard.engine.state import MemoryState, Run, session_key, touch_window
from brokerguard.events import CanaryHit, LoginAttempt
from brokerguard.stores.codec import decode, encode

V6PLUS = block("jp_home", "v6plus")  # one IPv4 address shared by several households
VULTR_SG = block("overseas_hosting", "Vultr (Singapore)")


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


def wrong_passwords(r: Rig, account: str, ip: str, times: list) -> list[str]:
    """Failed sign-ins at these times, in this order; returns the actions."""
    actions = []
    for at in times:
        r.now = at
        _, d = r.login(account, ip, HEADLESS_UA, None, success=False)
        actions.append(d.action)
    return actions


def test_a_late_failed_password_counts_only_the_failures_of_its_own_window():
    r = Rig()
    limit = r.engine.policy.detectors.login.lock_after_failures
    window = r.engine.policy.detectors.login.failure_window_minutes
    assert (limit, window) == (10, 60)  # the times below are laid out for these
    attacker = ip_in(TENCENT_CN, 30)
    ten = r.now.replace(hour=10)
    burst = [ten + timedelta(minutes=m) for m in range(limit - 1)]  # 10:00 ... 10:08
    assert wrong_passwords(r, "A1", attacker, burst) == ["deny"] * (limit - 1)
    # a failure at 08:30, ninety minutes before the burst, delivered now: alone in its hour
    assert wrong_passwords(r, "A1", attacker, [ten - timedelta(minutes=90)]) == ["deny"]
    # the burst's tenth failure locks, as it would have without the late one
    assert wrong_passwords(r, "A1", attacker, [ten + timedelta(minutes=limit - 1)]) == ["lock"]


def test_a_late_failed_password_that_expired_is_not_counted_later():
    r = Rig()
    limit = r.engine.policy.detectors.login.lock_after_failures
    attacker = ip_in(TENCENT_CN, 31)
    ten = r.now.replace(hour=10)
    burst = [ten + timedelta(minutes=m) for m in range(limit - 2)]  # 10:00 ... 10:07
    assert wrong_passwords(r, "A1", attacker, burst) == ["deny"] * (limit - 2)
    assert wrong_passwords(r, "A1", attacker, [ten - timedelta(minutes=90)]) == ["deny"]
    # at 10:08 the 08:30 failure is long out of the window: nine in it, the tenth locks
    nine, ten_ = ten + timedelta(minutes=limit - 2), ten + timedelta(minutes=limit - 1)
    assert wrong_passwords(r, "A1", attacker, [nine, ten_]) == ["deny", "lock"]


def test_failed_passwords_after_a_late_sign_in_do_not_count_against_it():
    r = Rig()
    home, ua = ip_in(OCN, 32), device(32)
    r.history("A1", home, ua, "ck-A1", days=5)
    r.tick(days=1)
    ten = r.now.replace(hour=10, minute=0)
    wrong_passwords(r, "A1", ip_in(TENCENT_CN, 32), [ten + timedelta(minutes=m) for m in range(3)])
    # the customer's own sign-in at 09:30, delivered after the failures that followed it
    r.now = ten - timedelta(minutes=30)
    eid, d = r.login("A1", home, ua, "ck-A1")
    assert d.action == "allow"
    assert r.signal(eid, "failure_velocity") is None


def test_failed_passwords_from_a_shared_address_after_a_late_sign_in_do_not_count_against_it():
    r = Rig()
    shared, ua = ip_in(V6PLUS, 33), device(33)  # the customer's home line, shared by households
    r.history("A1", shared, ua, "ck-A1", days=5)
    r.tick(days=1)
    ten = r.now.replace(hour=10, minute=0)
    # somebody behind the same address tries passwords on other accounts from 10:00
    for i in range(4):
        wrong_passwords(r, f"B{i}", shared, [ten + timedelta(minutes=i)])
    r.now = ten + timedelta(minutes=5)
    after_id, _ = r.login("A1", shared, ua, "ck-A1")
    assert r.signal(after_id, "failure_velocity").evidence["address"] == 4
    # the customer's sign-in at 09:30, delivered after them
    r.now = ten - timedelta(minutes=30)
    late_id, d = r.login("A1", shared, ua, "ck-A1")
    assert d.action == "allow"
    assert r.signal(late_id, "failure_velocity") is None


def test_a_strong_step_up_failed_after_a_late_sign_in_does_not_count_against_it():
    r = Rig()
    home, ua = ip_in(OCN, 34), device(34)
    r.history("A1", home, ua, "ck-A1", days=5)
    r.tick(days=1)
    ten = r.now.replace(hour=10, minute=0)
    r.now = ten  # a thief with the password, from a cloud, fails the out-of-band confirmation
    eid, d = r.login("A1", ip_in(DIGITALOCEAN_SG, 34), attacker_ua(34), None)
    assert d.action == "challenge"
    r.tick(minutes=1)
    r.challenge("A1", eid, "oob", "failed", session=r.session_of(eid))
    r.tick(minutes=5)
    after_id, _ = r.login("A1", home, ua, "ck-A1")
    assert r.llr(after_id, "failed_step_up") > 0
    # the customer's own sign-in at 09:30, delivered after the failure
    r.now = ten - timedelta(minutes=30)
    late_id, d = r.login("A1", home, ua, "ck-A1")
    assert d.action == "allow"
    assert r.signal(late_id, "failed_step_up") is None


def test_a_late_sign_in_from_before_a_session_failed_is_not_asked_to_confirm():
    """By default (``confirm_sign_ins_hours = 0``) no sign-in is asked to confirm after a
    session failed a strong step-up; one from before the failure, delivered late, neither."""
    r = rig_with_customer(lenient_orders())
    before = r.now - timedelta(hours=1)
    session, _, held = doubtful_session_sells_then_buys(r)
    r.challenge("A1", held, "oob", "failed", session=session)
    r.now = before  # the customer's own sign-in at home, an hour before all that
    eid, d = r.login("A1", ip_in(OCN, 1), device(1), "ck-A1")
    assert d.action == "allow"


def test_a_late_operation_is_not_after_a_contact_change_that_followed_it():
    r = Rig()
    home, ua = ip_in(OCN, 35), device(35)
    r.history("A1", home, ua, "ck-A1", days=5)
    r.holdings("A1", 1_000_000, {})
    r.tick(days=1)
    ten = r.now.replace(hour=10, minute=0)
    r.now = ten - timedelta(minutes=40)
    session = r.session_of(r.login("A1", home, ua, "ck-A1")[0])
    r.now = ten  # the customer changes the registered e-mail, and confirms it
    change, d = r.settings("A1", session, "email")
    assert d.action == "challenge"
    r.tick(minutes=1)
    r.challenge("A1", change, "oob", "passed", session=session)
    r.tick(minutes=5)
    after, _ = r.withdrawal("A1", session, 100_000)
    assert r.signal(after, "recent_contact_change") is not None
    # a withdrawal at 09:30, before the change, delivered late
    r.now = ten - timedelta(minutes=30)
    late, _ = r.withdrawal("A1", session, 100_000)
    assert r.signal(late, "recent_contact_change") is None


class ContactChanges:
    """A customer of ten days' history who changes a contact, confirmed out of band, at a time
    the test chooses (possibly before changes already delivered)."""

    def __init__(self, n: int) -> None:
        self.r = r = Rig()
        self.home, self.ua = ip_in(OCN, n), device(n)
        r.history("A1", self.home, self.ua, "ck-A1", days=10)
        r.holdings("A1", 1_000_000, {})
        r.tick(days=1)
        self.ten = r.now.replace(hour=10, minute=0)

    def change(self, field: str, at) -> str:
        r = self.r
        r.now = at
        session = r.session_of(r.login("A1", self.home, self.ua, "ck-A1")[0])
        r.tick(minutes=1)
        eid, d = r.settings("A1", session, field)
        assert d.action == "challenge"
        r.tick(minutes=1)
        r.challenge("A1", eid, "oob", "passed", session=session)
        return session


def test_a_late_contact_change_does_not_make_the_last_one_older():
    c = ContactChanges(36)
    r, home, ua, ten = c.r, c.home, c.ua, c.ten
    c.change("email", ten)
    c.change("phone", ten - timedelta(days=6))  # a change six days older, delivered late
    r.now = ten + timedelta(days=2)
    session = r.session_of(r.login("A1", home, ua, "ck-A1")[0])
    r.tick(minutes=1)
    eid, _ = r.withdrawal("A1", session, 100_000)
    recent = r.signal(eid, "recent_contact_change")  # the e-mail changed two days ago
    assert recent is not None and recent.evidence["hours_ago"] == 48.0


def test_a_late_sensitive_action_is_no_burst_with_the_actions_that_followed_it():
    r = Rig()
    home, ua = ip_in(OCN, 37), device(37)
    r.history("A1", home, ua, "ck-A1", days=5)
    r.holdings("A1", 1_000_000, {})
    r.tick(days=1)
    burst = r.engine.policy.detectors.session.sensitive_burst
    window = r.engine.policy.detectors.session.sensitive_window_minutes
    ten = r.now.replace(hour=10, minute=0)
    r.now = ten - timedelta(minutes=3 * window)
    session = r.session_of(r.login("A1", home, ua, "ck-A1")[0])
    for m in range(burst - 1):  # one short of a burst, a minute apart from 10:00
        r.now = ten + timedelta(minutes=m)
        eid, _ = r.withdrawal("A1", session, 10_000)
        assert r.signal(eid, "sensitive_burst") is None
    # one from well before them, delivered late: alone in its window
    r.now = ten - timedelta(minutes=2 * window)
    late, _ = r.withdrawal("A1", session, 10_000)
    assert r.signal(late, "sensitive_burst") is None
    # the next one after the three is the burst
    r.now = ten + timedelta(minutes=burst - 1)
    eid, _ = r.withdrawal("A1", session, 10_000)
    assert r.signal(eid, "sensitive_burst").evidence == {"actions": burst}


def test_a_late_touch_keeps_a_window_in_time_order():
    window: dict[str, float] = {}
    touch_window(window, "A", 0.0, 3600.0, 200)
    touch_window(window, "B", 600.0, 3600.0, 200)
    touch_window(window, "A", -600.0, 3600.0, 200)  # A's earlier sign-in, delivered late
    touch_window(window, "C", -300.0, 3600.0, 200)  # C's, late too
    # A's run starts at its late touch and stays where its last touch put it
    assert list(window.items()) == [("C", -300.0), ("A", Run(-600.0, 0.0)), ("B", 600.0)]
    assert touch_window(window, "D", 3700.0, 3600.0, 200) == 2  # B and D: C and A expired


def failed_takeover(r: Rig, account: str, ip: str, at) -> None:
    r.now = at
    eid, d = r.login(account, ip, attacker_ua(40), None)
    assert d.action == "challenge"
    r.tick(minutes=1)
    r.challenge(account, eid, "oob", "failed", session=r.session_of(eid))


def test_a_late_failed_takeover_does_not_keep_an_expired_one_in_a_campaign():
    r = Rig()
    victims = [f"V{i}" for i in range(3)]
    for i, a in enumerate(victims):
        r.history(a, ip_in(OCN, 40 + i), device(40 + i), f"ck-{a}", days=5)
    r.tick(days=1)
    assert r.engine.policy.detectors.campaign.infrastructure_accounts == 3
    assert r.engine.policy.detectors.login.infrastructure_window_hours == 24
    proxy = ip_in(VULTR_SG, 41)
    ten = r.now.replace(hour=10, minute=0)
    failed_takeover(r, "V0", proxy, ten)
    failed_takeover(r, "V1", proxy, ten + timedelta(hours=1))
    failed_takeover(r, "V0", proxy, ten - timedelta(hours=2))  # V0's first try, delivered late
    # a day on, the hourly sweep runs just before V0's failure leaves the 24 hours ...
    r.now = ten + timedelta(hours=23, minutes=55)
    r.activity("V1", "s-other", ip_in(OCN, 41), device(41), "ck-V1")
    # ... and V2 fails from there after it left: two accounts in the window, no campaign
    failed_takeover(r, "V2", proxy, ten + timedelta(hours=24, minutes=10))
    assert list(r.engine.state.keys("campaign")) == []


def test_a_late_request_does_not_take_the_session_back_to_an_older_origin():
    """Home Wi-Fi at 10:00, mobile at 10:10; the 10:05 home request delivered after that must
    leave the session on mobile and its last request at 10:10."""
    r = Rig()
    home, ua = ip_in(OCN, 21), device(21)
    r.history("A1", home, ua, "ck-A1", days=10)
    r.tick(days=1)
    eid, _ = r.login("A1", home, ua, "ck-A1")
    session = r.session_of(eid)
    start = r.now
    mobile = ip_in(block("jp_mobile", "DOCOMO"), 21)
    r.now = start + timedelta(minutes=10)
    r.activity("A1", session, mobile, ua, "ck-A1")
    r.now = start + timedelta(minutes=5)
    r.activity("A1", session, home, ua, "ck-A1")
    state = r.session_state("A1", session)
    assert state is not None and state.ip == mobile
    assert state.last == (start + timedelta(minutes=10)).timestamp()


# --- runs: windows and marks keep their first and last time ----------------------------------


def unfamiliar_sign_in(r: Rig, account: str, ip: str, at) -> str:
    """A sign-in to ``account`` from ``ip`` with a browser it never used, at ``at``."""
    r.now = at
    eid, _ = r.login(account, ip, attacker_ua(50), None)
    return eid


def test_a_late_sign_in_counts_only_the_accounts_from_its_address_before_it():
    """B1 signed in from the cloud address at 07:00 and 10:00, B2 at 10:05; A's sign-in at 08:00,
    delivered after them, shares the address with B1 only (B2 came after it). With one time
    per member the window said B1 and B2; with only those before it, it would say nobody."""
    r = Rig()
    for i, a in enumerate(("A", "B1", "B2")):
        r.history(a, ip_in(OCN, 50 + i), device(50 + i), f"ck-{a}", days=5)
    r.tick(days=1)
    cloud = ip_in(VULTR_SG, 50)
    eight = r.now.replace(hour=8, minute=0)
    unfamiliar_sign_in(r, "B1", cloud, eight - timedelta(hours=1))
    unfamiliar_sign_in(r, "B1", cloud, eight + timedelta(hours=2))
    unfamiliar_sign_in(r, "B2", cloud, eight + timedelta(hours=2, minutes=5))
    late = unfamiliar_sign_in(r, "A", cloud, eight)
    shared = r.signal(late, "shared_infrastructure")
    assert shared is not None and shared.evidence == {f"ip:{cloud}": 1}


def test_a_late_canary_hit_and_a_late_sign_in_see_the_hits_of_their_own_time():
    r = Rig()
    proxy = ip_in(VULTR_SG, 51)
    r.history("A1", ip_in(OCN, 51), device(51), "ck-A1", days=5)
    r.tick(days=1)
    ten = r.now.replace(hour=10, minute=0)

    def hit(at) -> None:
        r.now = at
        r.engine.observe(
            CanaryHit(
                id=r.new_id("can"),
                ts=at,
                ip=proxy,
                origin="https://broker-login.example",
                user_agent=attacker_ua(51),
            )
        )

    hit(ten)
    # a sign-in at 08:00 from the proxy, delivered after the 10:00 hit: nothing was seen then
    before = unfamiliar_sign_in(r, "A1", proxy, ten - timedelta(hours=2))
    assert r.signal(before, "canary_proxy") is None
    hit(ten - timedelta(hours=3))  # a 07:00 hit, delivered late: it is kept, not dropped
    between = unfamiliar_sign_in(r, "A1", proxy, ten - timedelta(hours=1))
    assert r.signal(between, "canary_proxy") is not None


def test_a_late_operation_between_two_contact_changes_is_after_the_first():
    c = ContactChanges(52)
    r, ten = c.r, c.ten
    session = c.change("email", ten)
    c.change("phone", ten + timedelta(days=5))
    # a withdrawal two days after the e-mail change (three before the phone's), delivered late
    r.now = ten + timedelta(days=2)
    late, _ = r.withdrawal("A1", session, 100_000)
    assert r.signal(late, "recent_contact_change") is not None


def test_a_mark_persisted_as_one_time_reads_as_a_run_of_one():
    """State files written before runs hold one float per member and mark: they load as is."""
    old = msgspec.msgpack.encode({"unfamiliar": {"A": 100.0}, "canary": 300.0})
    ent = decode("entity", old)
    assert ent.unfamiliar == {"A": 100.0} and ent.canary == 300.0
    touch_window(ent.unfamiliar, "A", 50.0, 3600.0, 64)  # a late touch makes it a run
    assert ent.unfamiliar == {"A": Run(50.0, 100.0)}
    assert decode("entity", encode(ent)).unfamiliar == {"A": Run(50.0, 100.0)}
    acc = decode("account", msgspec.msgpack.encode({"contact_changed": 400.0}))
    assert acc.contact_changed == 400.0 and acc.bank_changed == 0.0


def three_victims(r: Rig, seed: int) -> list[str]:
    victims = [f"V{i}" for i in range(3)]
    for i, a in enumerate(victims):
        r.history(a, ip_in(OCN, seed + i), device(seed + i), f"ck-{a}", days=5)
    r.tick(days=1)
    assert r.engine.policy.detectors.campaign.infrastructure_accounts == 3
    assert r.engine.policy.detectors.login.infrastructure_window_hours == 24
    return victims


def test_a_late_failed_takeover_from_a_day_before_raises_no_campaign_with_later_ones():
    r = Rig()
    victims = three_victims(r, 60)
    proxy = ip_in(VULTR_SG, 60)
    ten = r.now.replace(hour=10, minute=0)
    failed_takeover(r, victims[0], proxy, ten)
    failed_takeover(r, victims[1], proxy, ten + timedelta(hours=1))
    # the third, 26 hours before the first, delivered now: never three in one day
    failed_takeover(r, victims[2], proxy, ten - timedelta(hours=26))
    assert list(r.engine.state.keys("campaign")) == []


def test_a_late_failed_takeover_completes_a_campaign_with_the_later_ones_of_its_day():
    r = Rig()
    victims = three_victims(r, 63)
    proxy = ip_in(VULTR_SG, 63)
    ten = r.now.replace(hour=10, minute=0)
    failed_takeover(r, victims[0], proxy, ten)
    failed_takeover(r, victims[1], proxy, ten + timedelta(hours=1))
    failed_takeover(r, victims[2], proxy, ten - timedelta(hours=2))  # late, the same day
    (cid,) = r.engine.state.keys("campaign")
    assert sorted(r.engine.state.get("campaign", cid).accounts) == victims


# --- a late sign-in and the session it opened -------------------------------------------------


def test_a_late_sign_in_does_not_start_a_session_in_use_over():
    """The login system's log lags the trading system's: the session's requests and a sell come
    first, its sign-in at 10:00 after them. The session keeps its last request and its orders
    (started over, it lost both: swept as idle, and a later failure named no order)."""
    r = rig_with_customer(lenient_orders())
    home, ua = ip_in(OCN, 1), device(1)
    start = r.now.replace(hour=10, minute=0)
    session = "s-lagging"
    r.now = start + timedelta(minutes=1)
    r.activity("A1", session, home, ua, "ck-A1")
    r.now = start + timedelta(minutes=5)
    sell, d = r.order("A1", session, HOLDING, "sell", 100, ip=home, ua=ua)
    assert d.action == "allow"
    r.now = start + timedelta(minutes=20)
    r.activity("A1", session, home, ua, "ck-A1")
    r.now = start  # the sign-in, delivered now
    _, d = r.login("A1", home, ua, "ck-A1", session=session)
    assert d.action == "allow"
    kept = r.session_state("A1", session)
    assert kept is not None
    assert kept.last == (start + timedelta(minutes=20)).timestamp()
    assert kept.orders == (f"o-{sell}",)


def test_a_late_passkey_sign_in_does_not_restore_the_trust_a_session_lost():
    r = rig_with_customer(lenient_orders())
    signed_in = r.now
    session, _, held = doubtful_session_sells_then_buys(r)
    r.challenge("A1", held, "oob", "failed", session=session)
    failed = r.session_state("A1", session)
    assert failed is not None and not failed.trusted
    llr, last = failed.llr, failed.last
    r.now = signed_in - timedelta(minutes=1)  # a passkey sign-in of that session, delivered late
    _, d = r.login("A1", ip_in(OCN, 1), device(1), "ck-A1", session=session, factors=("passkey",))
    assert d.action == "allow"
    kept = r.session_state("A1", session)
    assert kept is not None and not kept.trusted
    assert (kept.llr, kept.last) == (llr, last)


def test_a_late_sign_in_does_not_revive_a_session_that_ended():
    """A session from abroad sells and logs out; its sign-in, delivered after that, must not open
    it again: a fraud confirmation of the sign-in then still names the sell."""
    r = rig_with_customer(lenient_orders())
    abroad, ua = ip_in(HINET, 5), attacker_ua(5)
    start = r.now.replace(hour=10, minute=0)
    session = "s-thief"
    r.now = start + timedelta(minutes=2)
    sell, d = r.order("A1", session, HOLDING, "sell", 1000, ip=abroad, ua=ua)
    assert d.action == "allow"
    r.now = start + timedelta(minutes=10)
    r.activity("A1", session, abroad, ua, None, action="logout")
    r.now = start
    _, d = r.login("A1", abroad, ua, None, session=session)
    assert r.session_state("A1", session) is None
    r.engine.take_instructions()
    login = msgspec.structs.replace(r.login_event("A1", abroad, ua, None), session=session)
    r.engine.confirm_fraud(login, start + timedelta(hours=1))
    named = cancels(r.engine.take_instructions())
    assert [i.orders for i in named] == [(f"o-{sell}",)]


def test_a_failed_step_up_of_a_late_sign_in_counts_against_the_session_in_use():
    """Forgetting the session in use (as one its sign-in never established) lost its orders;
    its holder failed the step-up: its doubtful orders are named and it is signed out."""
    r = rig_with_customer(lenient_orders())
    abroad, ua = ip_in(HINET, 6), attacker_ua(6)
    start = r.now.replace(hour=10, minute=0)
    session = "s-thief"
    r.now = start + timedelta(minutes=2)
    sell, d = r.order("A1", session, HOLDING, "sell", 1000, ip=abroad, ua=ua)
    assert d.action == "allow"
    r.now = start
    eid, d = r.login("A1", abroad, ua, None, session=session)
    assert d.action == "challenge"
    r.engine.take_instructions()
    r.now = start + timedelta(minutes=3)
    r.challenge("A1", eid, "oob", "failed", session=session)
    kept = r.session_state("A1", session)
    assert kept is not None and not kept.trusted
    assert kinds(r.engine.take_instructions()) == [
        ("cancel_orders", session),
        ("end_session", session),
    ]


def test_a_late_strong_sign_in_does_not_answer_a_session_failure_after_it():
    """With ``confirm_sign_ins_hours``, sign-ins after a session failed a strong step-up must
    confirm until one passes. A passkey sign-in from before the failure, delivered after it,
    passed nothing the failure asks for."""
    text = lenient_orders_text().replace(
        "confirm_sign_ins_hours = 0", "confirm_sign_ins_hours = 24"
    )
    r = rig_with_customer(parse_policy(text))
    before = r.now - timedelta(hours=1)
    session, _, held = doubtful_session_sells_then_buys(r)
    r.challenge("A1", held, "oob", "failed", session=session)
    after = r.now + timedelta(minutes=10)
    r.now = before
    _, d = r.login("A1", ip_in(OCN, 1), device(1), "ck-A1", factors=("passkey",))
    assert d.action == "allow"
    r.now = after
    _, d = r.login("A1", ip_in(OCN, 1), device(1), "ck-A1")
    assert d.action == "challenge"


def test_an_engine_started_on_the_state_knows_a_sign_in_is_late():
    """Only a sign-in older than an event taken before it looks its session up: the engine's
    clock, kept with the state, carries the latest event time over a restart."""
    r = rig_with_customer(lenient_orders())
    home, ua = ip_in(OCN, 1), device(1)
    start = r.now.replace(hour=10, minute=0)
    session = "s-lagging"
    r.now = start + timedelta(minutes=20)
    r.activity("A1", session, home, ua, "ck-A1")
    restarted = BrokerGuard(r.engine.policy, state=r.engine.state)
    restarted.set_clock(r.engine.clock())
    r.engine = restarted
    r.engine.trace = r._trace
    r.now = start
    r.login("A1", home, ua, "ck-A1", session=session)
    kept = r.session_state("A1", session)
    assert kept is not None and kept.last == (start + timedelta(minutes=20)).timestamp()


# --- late prices: the last price is the latest one known, not the last one delivered -------


def last_price(r: Rig, key: str) -> float:
    return r.engine.state.get("symbol", key).last_price


def test_a_late_fill_does_not_overwrite_the_last_price():
    """The execution system's log lags: a fill from 09:40 arrives after one at 10:05. The price
    an order's limit is measured against stays the 10:05 one."""
    r = rig_with_customer()
    ten = r.now.replace(hour=10, minute=0)
    r.now = ten + timedelta(minutes=5)
    r.execution("B1", "x1", THIN, "buy", 100, 140.0)  # the price ran up to ¥140
    r.now = ten - timedelta(minutes=20)
    r.execution("B2", "x2", THIN, "buy", 100, 101.0)  # delivered now
    assert last_price(r, THIN) == 140.0
    r.now = ten + timedelta(minutes=6)
    eid, d = r.login("A1", ip_in(OCN, 1), device(1), "ck-A1")
    assert d.action == "allow"
    oid, _ = r.order("A1", r.session_of(eid), THIN, "buy", 100, 142.0)
    assert r.signal(oid, "limit_above_market") is None  # 1.4% above ¥140, not 41% above ¥101


def test_a_late_bar_does_not_overwrite_the_last_price():
    r = rig_with_customer()
    ten = r.now.replace(hour=10, minute=0)
    r.now = ten + timedelta(minutes=5)
    r.bar(THIN, 140.0)  # 10:05-10:10
    r.now = ten - timedelta(minutes=20)
    r.bar(THIN, 101.0)  # 09:40-09:45, delivered now
    assert last_price(r, THIN) == 140.0
    r.now = (ten - timedelta(days=1)).replace(hour=15, minute=30)
    r.bar(THIN, 99.0, minutes=1440)  # yesterday's close, delivered now
    assert last_price(r, THIN) == 140.0


def test_a_bar_is_as_new_as_its_close():
    """A bar is stamped with its start and delivered when it ends: its close is newer than the
    fills inside it. A daily bar a feed stamps at the start of the day closes at 15:30 in Tokyo."""
    r = rig_with_customer()
    ten = r.now.replace(hour=10, minute=0)
    r.now = ten + timedelta(minutes=3)
    r.execution("B1", "x1", THIN, "buy", 100, 120.0)
    r.now = ten
    r.bar(THIN, 125.0, open_=118.0)  # 10:00-10:05, delivered at its end
    assert last_price(r, THIN) == 125.0
    r.now = ten + timedelta(hours=4)
    r.execution("B1", "x2", THIN, "buy", 100, 130.0)  # 14:00
    r.now = ten.replace(hour=0)
    r.bar(THIN, 128.0, open_=118.0, minutes=1440)  # the day's bar, stamped 00:00
    assert last_price(r, THIN) == 128.0


def test_a_late_instrument_record_does_not_overwrite_the_reference_data():
    """The reference file of a week ago (a liquid ¥100 stock then) arrives after today's (¥140,
    a tenth of the volume). An order's limit is measured against ¥140 and the symbol is as thin
    as today's file says: the old file put back both."""
    r = rig_with_customer()
    ten = r.now.replace(hour=10, minute=0)
    r.now = ten
    r.instrument("TSE", "5555", 140.0, 1_000, 1e9)
    r.now = ten - timedelta(days=7)
    r.instrument("TSE", "5555", 100.0, 1_000_000, 5e9, lot=1)  # delivered now
    sym = r.engine.state.get("symbol", "TSE:5555")
    assert (sym.ref_price, sym.adv, sym.market_cap, sym.lot) == (140.0, 1_000.0, 1e9, 100)
    r.now = ten + timedelta(minutes=5)
    eid, d = r.login("A1", ip_in(OCN, 1), device(1), "ck-A1")
    assert d.action == "allow"
    oid, _ = r.order("A1", r.session_of(eid), "TSE:5555", "buy", 100, 142.0)
    assert r.signal(oid, "limit_above_market") is None  # 1.4% above ¥140, not 42% above ¥100
    assert r.signal(oid, "illiquid_symbol").evidence == {"daily_value_jpy": 140_000}


def test_a_newer_instrument_record_replaces_the_reference_data():
    r = rig_with_customer()
    r.instrument("TSE", "5555", 100.0, 1_000_000, 5e9)
    r.tick(days=1)
    r.instrument("TSE", "5555", 140.0, 1_000, 1e9)
    sym = r.engine.state.get("symbol", "TSE:5555")
    assert (sym.ref_price, sym.adv, sym.ref_at) == (140.0, 1_000.0, r.now.timestamp())


# --- late snapshots of the broker's books ----------------------------------------------------


def test_a_late_holdings_snapshot_does_not_replace_newer_holdings():
    """The books system's snapshot from three days ago (before the customer bought) arrives
    after today's: the account still holds what today's says, and selling all of it is a
    liquidation (with the old, empty holdings the session held nothing to liquidate)."""
    r = rig_with_customer()
    ten = r.now.replace(hour=10, minute=0)
    r.now = ten
    r.holdings("A1", 10_000.0, {HOLDING: 1000})
    r.now = ten - timedelta(days=3)
    r.holdings("A1", 8_010_000.0, {})  # delivered now
    assert r.engine.state.get("account", "A1").positions == {HOLDING: 1000.0}
    r.now = ten + timedelta(minutes=5)
    eid, d = r.login("A1", ip_in(OCN, 1), device(1), "ck-A1")
    assert d.action == "allow"
    sell, _ = r.order("A1", r.session_of(eid), HOLDING, "sell", 1000)
    assert r.signal(sell, "liquidation") is not None


# --- late requests and a session that ended --------------------------------------------------


def test_a_late_order_is_judged_in_its_session_that_ended_and_does_not_reopen_it():
    """The order system's log lags the login system's: the customer's sell at 10:05 arrives after
    her logout at 10:10. It is judged in her own session, which stays ended (opened again, the
    sell was judged as the first request of a session whose sign-in the guard never saw)."""
    r = rig_with_customer()
    home, ua = ip_in(OCN, 1), device(1)
    start = r.now.replace(hour=10, minute=0)
    r.now = start
    eid, d = r.login("A1", home, ua, "ck-A1")
    assert d.action == "allow"
    session = r.session_of(eid)
    r.now = start + timedelta(minutes=2)
    first, _ = r.order("A1", session, HOLDING, "sell", 100, ip=home, ua=ua)
    r.now = start + timedelta(minutes=10)
    r.activity("A1", session, home, ua, "ck-A1", action="logout")
    r.now = start + timedelta(minutes=5)
    late, _ = r.order("A1", session, HOLDING, "sell", 100, ip=home, ua=ua)
    assert r.signal(late, "session_risk") == r.signal(first, "session_risk")
    assert r.session_state("A1", session) is None
    ended = r.ended_session("A1", session)
    assert ended is not None and ended.ended == (start + timedelta(minutes=10)).timestamp()


def test_a_late_order_of_a_session_that_ended_is_named_with_its_orders():
    """A session from abroad sells, logs out, and a second sell from before the logout arrives
    after it. Confirmed as fraud after the idle sweep, the session's orders are both named
    (reopened, the late sell's session ended at the sweep and its orders replaced the first's)."""
    r = rig_with_customer(lenient_orders())
    abroad, ua = ip_in(HINET, 7), attacker_ua(7)
    start = r.now.replace(hour=10, minute=0)
    session = "s-thief"
    r.now = start + timedelta(minutes=2)
    sell, d = r.order("A1", session, HOLDING, "sell", 500, ip=abroad, ua=ua)
    assert d.action == "allow"
    r.now = start + timedelta(minutes=10)
    r.activity("A1", session, abroad, ua, None, action="logout")
    r.now = start + timedelta(minutes=5)
    second, d = r.order("A1", session, HOLDING, "sell", 500, ip=abroad, ua=ua)
    assert d.action == "allow"
    idle = r.engine.policy.detectors.session.idle_hours
    r.now = start + timedelta(hours=idle + 1)
    r.activity("B1", "s-B1", ip_in(OCN, 2), device(2), "ck-B1")  # the hourly sweep runs
    assert r.ended_session("A1", session) is None  # dropped by the idle sweep
    r.engine.take_instructions()
    login = msgspec.structs.replace(r.login_event("A1", abroad, ua, None), session=session)
    r.engine.confirm_fraud(login, r.now)
    named = cancels(r.engine.take_instructions())
    assert [set(i.orders) for i in named] == [{f"o-{sell}", f"o-{second}"}]


def test_a_late_order_of_a_session_forgotten_as_idle_is_named_with_its_orders():
    """The same session, never logged out, is forgotten by the idle sweep (its first sell kept)
    before its second sell, from before its last request, is delivered. The second joins the
    orders kept of its session: it opened a new session over them, whose orders the fraud
    confirmation named instead, and whose own sweep replaced them."""
    r = rig_with_customer(lenient_orders())
    abroad, ua = ip_in(HINET, 7), attacker_ua(7)
    start = r.now.replace(hour=10, minute=0)
    session = "s-thief"
    r.now = start + timedelta(minutes=2)
    sell, d = r.order("A1", session, HOLDING, "sell", 500, ip=abroad, ua=ua)
    assert d.action == "allow"
    r.now = start + timedelta(minutes=10)
    r.activity("A1", session, abroad, ua, None)
    idle = r.engine.policy.detectors.session.idle_hours
    r.now = start + timedelta(hours=idle + 1)
    r.activity("B1", "s-B1", ip_in(OCN, 2), device(2), "ck-B1")  # the hourly sweep runs
    assert r.ended_session("A1", session) is None
    r.now = start + timedelta(minutes=5)
    second, d = r.order("A1", session, HOLDING, "sell", 500, ip=abroad, ua=ua)
    assert d.action == "allow"
    assert r.session_state("A1", session) is None  # no session opened over it
    r.now = start + timedelta(hours=2 * idle + 2)
    r.activity("B1", "s-B1", ip_in(OCN, 2), device(2), "ck-B1")  # and the sweep again
    r.engine.take_instructions()
    login = msgspec.structs.replace(
        r.login_event("A1", abroad, ua, None), session=session, ts=start
    )
    r.engine.confirm_fraud(login, r.now)
    named = cancels(r.engine.take_instructions())
    assert [set(i.orders) for i in named] == [{f"o-{sell}", f"o-{second}"}]


def test_a_late_sign_in_does_not_reopen_a_session_that_ended_with_no_orders():
    r = rig_with_customer()
    home, ua = ip_in(OCN, 1), device(1)
    start = r.now.replace(hour=10, minute=0)
    session = "s-lagging"
    r.now = start + timedelta(minutes=3)
    r.activity("A1", session, home, ua, "ck-A1")
    r.now = start + timedelta(minutes=10)
    r.activity("A1", session, home, ua, "ck-A1", action="logout")
    r.now = start  # its sign-in, delivered after the logout
    _, d = r.login("A1", home, ua, "ck-A1", session=session)
    assert d.action == "allow"
    assert r.session_state("A1", session) is None


def test_a_late_logout_does_not_end_a_session_with_later_activity():
    """A logout stamped 10:10 arrives after the session's request at 10:20 (logs merged from the
    web servers and the trading system): the session is still in use and is not ended. Ended,
    the customer's next order opened it again as a session whose sign-in was never seen."""
    r = rig_with_customer()
    home, ua = ip_in(OCN, 1), device(1)
    start = r.now.replace(hour=10, minute=0)
    r.now = start
    eid, d = r.login("A1", home, ua, "ck-A1")
    assert d.action == "allow"
    session = r.session_of(eid)
    r.now = start + timedelta(minutes=2)
    first, _ = r.order("A1", session, HOLDING, "sell", 100, ip=home, ua=ua)
    r.now = start + timedelta(minutes=20)
    r.activity("A1", session, home, ua, "ck-A1", action="portfolio")
    r.now = start + timedelta(minutes=10)
    r.activity("A1", session, home, ua, "ck-A1", action="logout")  # delivered late
    kept = r.session_state("A1", session)
    assert kept is not None and kept.last == (start + timedelta(minutes=20)).timestamp()
    r.now = start + timedelta(minutes=25)
    later, _ = r.order("A1", session, HOLDING, "sell", 100, ip=home, ua=ua)
    assert r.signal(later, "session_risk") == r.signal(first, "session_risk")


def test_a_late_account_snapshot_does_not_undo_a_newer_one():
    """The customer enrolled a passkey; a snapshot from last week (before she did) arrives after
    today's. A doubtful sign-in is still asked for her passkey, not a code sent to her phone."""
    r = rig_with_customer()
    ten = r.now.replace(hour=10, minute=0)
    r.now = ten
    r.account("A1", passkey=True)
    r.now = ten - timedelta(days=7)
    r.account("A1", passkey=False)  # delivered now
    assert r.engine.state.get("account", "A1").passkey
    r.now = ten + timedelta(minutes=5)
    _, d = r.login("A1", ip_in(HINET, 5), device(1), None)
    assert d.action == "challenge"
    assert "passkey" in d.factors


def test_a_late_fill_already_in_the_holdings_snapshot_is_not_counted_twice():
    """A buy filled at 09:30 arrives after the 10:00 snapshot, which holds it already. Counted
    again, the account held 1,500 shares, and selling 600 of the 1,000 it holds was no
    liquidation (40% of the holdings, not 60%)."""
    r = rig_with_customer()
    ten = r.now.replace(hour=10, minute=0)
    r.now = ten
    r.holdings("A1", 10_000.0, {HOLDING: 1000})  # with the 500 bought at 09:30
    r.now = ten - timedelta(minutes=30)
    r.execution("A1", "x1", HOLDING, "buy", 500, 8000.0)  # delivered now
    acc = r.engine.state.get("account", "A1")
    assert (acc.positions, acc.cash) == ({HOLDING: 1000.0}, 10_000.0)
    r.now = ten + timedelta(minutes=5)
    eid, d = r.login("A1", ip_in(OCN, 1), device(1), "ck-A1")
    assert d.action == "allow"
    sell, _ = r.order("A1", r.session_of(eid), HOLDING, "sell", 600)
    assert r.signal(sell, "liquidation") is not None


def test_a_late_bar_does_not_undo_a_volume_departure():
    """The 10:00 bar trades twenty times the usual volume at a rising price: the symbol departs
    (its campaigns need one buyer fewer). The 09:50 bar, ordinary, arrives after it: old news,
    it does not end the departure (the latest bars still depart)."""
    r = rig_with_customer()
    nine = r.now.replace(hour=9, minute=0)
    for i in range(10):  # 09:00 ... 09:45, the usual thousand shares a bar, one bar missing
        r.now = nine + timedelta(minutes=5 * i)
        r.bar(THIN, 100.0, volume=1000)
    r.now = nine + timedelta(minutes=60)
    r.bar(THIN, 110.0, open_=100.0, volume=20_000)
    assert r.engine.state.get("symbol", THIN).bars == -1
    r.now = nine + timedelta(minutes=50)
    r.bar(THIN, 100.0, volume=1000)  # delivered now
    assert r.engine.state.get("symbol", THIN).bars == -1


# --- a step-up answered after its session's logout -------------------------------------------


def held_buy_then_logout(r: Rig) -> tuple[str, str]:
    """A doubtful session sells, its buy of a small cap is held, and it logs out before the
    step-up is answered. Returns (session, the held buy's event id)."""
    session, _, held = doubtful_session_sells_then_buys(r)
    r.tick(minutes=1)
    r.activity("A1", session, ip_in(HINET, 5), device(1), None, action="logout")
    r.tick(minutes=3)
    return session, held


def test_a_step_up_passed_after_the_logout_does_not_carry_out_the_held_order():
    """A relayed code typed after the session logged out: the broker does not resume the held
    buy, so the account has still never bought the small cap (learned as placed, its next buy
    of it was no first-time buy) and the session stays ended, without the order."""
    r = rig_with_customer(lenient_orders())
    session, held = held_buy_then_logout(r)
    before = r.engine.state.get("account", "A1")
    bought, orders = before.bought, before.orders
    r.challenge("A1", held, "sms", "passed", session=session)
    acc = r.engine.state.get("account", "A1")
    assert THIN not in acc.bought
    assert (acc.bought, acc.orders) == (bought, orders)
    assert r.session_state("A1", session) is None  # not reopened
    ended = r.ended_session("A1", session)
    assert ended is not None and not ended.trusted
    assert f"o-{held}" not in ended.orders


def test_a_passkey_passed_after_the_logout_does_not_learn_the_sign_in():
    """A sign-in from abroad is asked to confirm; its session logs out; the confirmation comes
    after. The session stays ended and untrusted, and the sign-in's network is not learned."""
    r = rig_with_customer()
    abroad = ip_in(HINET, 5)
    eid, d = r.login("A1", abroad, device(1), None)
    assert d.action == "challenge"
    session = r.session_of(eid)
    r.tick(minutes=1)
    r.activity("A1", session, abroad, device(1), None, action="logout")
    seen = dict(r.engine.state.get("account", "A1").seen)
    r.tick(minutes=1)
    r.challenge("A1", eid, "oob", "passed", session=session)
    assert r.engine.state.get("account", "A1").seen == seen
    assert r.session_state("A1", session) is None
    ended = r.ended_session("A1", session)
    assert ended is not None and not ended.trusted


def test_a_settings_change_confirmed_after_the_logout_is_not_applied():
    r = rig_with_customer()
    home, ua = ip_in(OCN, 1), device(1)
    eid, _ = r.login("A1", home, ua, "ck-A1")
    session = r.session_of(eid)
    r.tick(minutes=1)
    change, d = r.settings("A1", session, "email")
    assert d.action == "challenge"
    r.tick(minutes=1)
    r.activity("A1", session, home, ua, "ck-A1", action="logout")
    r.tick(minutes=1)
    r.challenge("A1", change, "oob", "passed", session=session)
    assert r.engine.state.get("account", "A1").contact_changed == 0.0
    assert r.session_state("A1", session) is None


def test_a_strong_step_up_failed_after_the_logout_still_counts():
    """The failure is recorded: the session's doubtful sell is named, the next sign-in carries
    the failure, and the session stays ended (it is not signed out again)."""
    r = rig_with_customer(lenient_orders())
    session, held = held_buy_then_logout(r)
    r.engine.take_instructions()
    r.challenge("A1", held, "oob", "failed", session=session)
    assert kinds(r.engine.take_instructions()) == [("cancel_orders", session)]
    assert r.session_state("A1", session) is None
    ended = r.ended_session("A1", session)
    assert ended is not None and not ended.trusted and ended.orders == ()
    r.tick(minutes=5)
    eid, _ = r.login("A1", ip_in(OCN, 1), device(1), "ck-A1")
    assert r.llr(eid, "failed_step_up") > 0


def test_a_step_up_answered_before_the_logout_and_delivered_after_it_still_counts():
    """The customer's code was typed before she logged out; the log delivers it after the
    logout. The held buy went ahead: it is learned."""
    r = rig_with_customer(lenient_orders())
    session, _, held = doubtful_session_sells_then_buys(r)
    answered = r.tick(minutes=1)
    r.tick(minutes=1)
    r.activity("A1", session, ip_in(HINET, 5), device(1), None, action="logout")
    r.now = answered
    r.challenge("A1", held, "sms", "passed", session=session)
    assert THIN in r.engine.state.get("account", "A1").bought


# --- a session id given again after its logout -------------------------------------------------


def test_a_sign_in_with_a_logged_out_sessions_id_opens_a_new_session():
    """The broker numbers sessions per account and gives a logged-out session's id to the next
    sign-in, from a browser abroad. Nothing of the customer's session (her passkey, her device,
    her sale) carries over to it."""
    r = rig_with_customer(lenient_orders())
    home, ua = ip_in(OCN, 1), device(1)
    r.login("A1", home, ua, "ck-A1", session="1", factors=("passkey",))
    r.tick(minutes=1)
    r.order("A1", "1", HOLDING, "sell", 100)
    r.tick(minutes=5)
    r.activity("A1", "1", home, ua, "ck-A1", action="logout")
    ended = r.ended_session("A1", "1")
    assert ended is not None and ended.trusted and ended.orders
    r.tick(hours=1)
    abroad, thief = ip_in(HINET, 8), attacker_ua(8)
    _, d = r.login("A1", abroad, thief, None, session="1")
    assert d.action == "challenge"
    new = r.session_state("A1", "1")
    assert new is not None and not new.trusted
    assert (new.ip, new.cookie, new.orders, new.sold_value) == (abroad, "d:-", (), 0.0)
    assert new.started == r.now.timestamp() and new.follows == ended.ended


def reused_after_held_buy(r: Rig, by_login: bool) -> tuple[str, str]:
    """A doubtful session's buy is held; it logs out unanswered; the customer's next sign-in
    (or, ``by_login`` False, a request of a remembered session) is given the same id.
    Returns (session, the held buy's event id)."""
    session, held = held_buy_then_logout(r)
    home, ua = ip_in(OCN, 1), device(1)
    if by_login:
        _, d = r.login("A1", home, ua, "ck-A1", session=session)
        assert d.action == "allow"
    else:
        r.activity("A1", session, home, ua, "ck-A1")
    r.tick(minutes=1)
    return session, held


def test_a_step_up_of_the_session_before_does_not_vouch_for_the_one_with_its_id():
    for by_login in (True, False):
        r = rig_with_customer(lenient_orders())
        session, held = reused_after_held_buy(r, by_login)
        r.challenge("A1", held, "oob", "passed", session=session)
        new = r.session_state("A1", session)
        assert new is not None and not new.trusted, by_login
        assert new.orders == (), by_login
        assert THIN not in r.engine.state.get("account", "A1").bought, by_login


def test_a_fraud_confirmed_for_the_session_before_leaves_the_one_with_its_id_alone():
    """The thief's session sold and logged out; the customer's passkey sign-in was given its
    id. The thief's sign-in, confirmed as fraud, names the thief's sell only: the customer's
    sale stands, and her session is neither signed out nor distrusted."""
    r = rig_with_customer(lenient_orders())
    signed_in = r.now
    session, sell, _ = doubtful_session_sells_then_buys(r)
    r.tick(minutes=1)
    r.activity("A1", session, ip_in(HINET, 5), device(1), None, action="logout")
    r.tick(hours=1)
    home, ua = ip_in(OCN, 1), device(1)
    r.login("A1", home, ua, "ck-A1", session=session, factors=("passkey",))
    r.tick(minutes=1)
    own, d = r.order("A1", session, HOLDING, "sell", 100)
    assert d.action == "allow"
    r.engine.take_instructions()
    login = msgspec.structs.replace(
        r.login_event("A1", ip_in(HINET, 5), device(1), None), session=session, ts=signed_in
    )
    r.engine.confirm_fraud(login, r.now)
    said = r.engine.take_instructions()
    assert [(i.kind, i.orders) for i in said] == [("cancel_orders", (sell,))]
    new = r.session_state("A1", session)
    assert new is not None and new.trusted and not new.signed_out
    assert new.orders == (f"o-{own}",)


def test_a_late_sign_in_of_the_session_before_adds_no_doubt_to_the_one_with_its_id():
    """The thief's sign-in from abroad reaches the engine after its session logged out and the
    customer's session was given the id: it belongs to the session that ended."""
    r = rig_with_customer(lenient_orders())
    home, ua = ip_in(OCN, 1), device(1)
    start = r.now.replace(hour=10, minute=0)
    r.now = start + timedelta(minutes=2)
    r.activity("A1", "1", ip_in(HINET, 9), attacker_ua(9), None)
    r.now = start + timedelta(minutes=5)
    r.activity("A1", "1", ip_in(HINET, 9), attacker_ua(9), None, action="logout")
    r.now = start + timedelta(hours=1)
    r.login("A1", home, ua, "ck-A1", session="1")
    llr = r.session_state("A1", "1").llr
    r.now = start  # the thief's sign-in, delivered now
    r.login("A1", ip_in(HINET, 9), attacker_ua(9), None, session="1")
    kept = r.session_state("A1", "1")
    assert kept is not None and kept.llr == llr and kept.ip == home


def thief_then_customer_under_one_id(
    r: Rig,
    factors: tuple[str, ...] = ("passkey",),
    logout: bool = True,
    signs_in: timedelta = timedelta(hours=1),
) -> tuple[str, str]:
    """A phisher's sign-in from abroad (a relayed code) sells at 10:02 and logs out at 10:10
    (``logout`` False: never logs out, the id still in use); at 11:00 (10:00 + ``signs_in``)
    the customer signs in (with her passkey) and is given the same session id, "1".
    Returns (the thief's sell's order id, the thief's sign-in event id)."""
    abroad, ua = ip_in(HINET, 5), device(1)
    start = r.now.replace(hour=10, minute=0)
    r.now = start
    eid, d = r.login("A1", abroad, ua, None, session="1")
    assert d.action == "challenge"
    r.challenge("A1", eid, "sms", "passed", session="1")
    r.now = start + timedelta(minutes=2)
    sell, d = r.order("A1", "1", HOLDING, "sell", 500, ip=abroad, ua=ua)
    assert d.action == "allow"
    if logout:
        r.now = start + timedelta(minutes=10)
        r.activity("A1", "1", abroad, ua, None, action="logout")
    r.now = start + signs_in
    _, d = r.login("A1", ip_in(OCN, 1), ua, "ck-A1", session="1", factors=factors)
    assert d.action == "allow"
    return f"o-{sell}", eid


def customer_sells_then_the_thiefs_sell_arrives(r: Rig) -> tuple[str, str, Any]:
    """After :func:`thief_then_customer_under_one_id`: the customer sells a minute after her
    sign-in, then the thief's sell placed at 10:05 is delivered. The two orders' event ids and
    the customer's session as it was before the late sell."""
    r.tick(minutes=1)
    own, d = r.order("A1", "1", HOLDING, "sell", 100)
    assert d.action == "allow"
    customer = msgspec.structs.replace(r.session_state("A1", "1"))
    r.now = r.now.replace(hour=10, minute=5)  # delivered now
    late, d = r.order("A1", "1", HOLDING, "sell", 500, ip=ip_in(HINET, 5), ua=device(1))
    assert d.action == "allow"
    return own, late, customer


def test_a_late_order_of_the_session_before_is_judged_in_it_not_in_the_one_with_its_id():
    """The thief's second sell, placed at 10:05, reaches the engine after the customer's
    sign-in took the id. It is judged in the thief's session (doubtful, from abroad), not as a
    request of the customer's trusted session from a new network: that took her trust away
    (a hijack) and listed the thief's sell with her orders."""
    r = rig_with_customer(lenient_orders())
    first, _ = thief_then_customer_under_one_id(r)
    first_eid = first.removeprefix("o-")
    own, late, before = customer_sells_then_the_thiefs_sell_arrives(r)
    assert r.signal(late, "session_risk") == r.signal(first_eid, "session_risk")
    assert r.signal(late, "session_hijack") is None
    kept = r.session_state("A1", "1")
    assert kept is not None and kept.trusted and kept.hijack == 0.0
    assert (kept.ip, kept.orders, kept.last) == (before.ip, (f"o-{own}",), before.last)
    thief = kept.before[-1]
    assert thief.ended and not thief.trusted
    assert thief.orders == (first, f"o-{late}")
    assert r.engine.state.get("ended", session_key("A1", "1")).orders == (first, f"o-{late}")


def test_a_late_order_of_a_session_replaced_in_use_is_judged_in_it_not_in_the_new_one():
    """The broker gives the customer's 11:00 sign-in the id of the thief's session, which never
    logged out. His sell placed at 10:05 and delivered after her sign-in is judged in his
    session, as if it ended when hers began: in hers, it took her trust away (a hijack from
    abroad) and was listed with her orders. His sign-in, confirmed as fraud, names his sells
    and neither hers nor her session (it named her orders and signed her out)."""
    r = rig_with_customer(lenient_orders())
    first, thief = thief_then_customer_under_one_id(r, logout=False)
    first_eid = first.removeprefix("o-")
    signed_in = r.now
    own, late, customer = customer_sells_then_the_thiefs_sell_arrives(r)
    assert r.signal(late, "session_risk") == r.signal(first_eid, "session_risk")
    assert r.signal(late, "session_hijack") is None
    kept = r.session_state("A1", "1")
    assert kept is not None and kept.trusted and kept.hijack == 0.0
    assert (kept.ip, kept.orders, kept.last) == (customer.ip, (f"o-{own}",), customer.last)
    his = kept.before[-1]
    assert his.ended == signed_in.timestamp() and not his.trusted
    assert his.orders == (first, f"o-{late}")
    r.now = signed_in + timedelta(hours=1)
    r.engine.take_instructions()
    login = msgspec.structs.replace(
        r.login_event("A1", ip_in(HINET, 5), device(1), None),
        session="1",
        ts=signed_in.replace(hour=10, minute=0),
    )
    assert login.ts.timestamp() == his.started, thief
    r.engine.confirm_fraud(login, r.now)
    said = r.engine.take_instructions()
    assert [(i.kind, set(i.orders)) for i in said] == [("cancel_orders", {first, f"o-{late}"})]
    kept = r.session_state("A1", "1")
    assert kept.trusted and not kept.signed_out and kept.orders == (f"o-{own}",)


def test_a_step_up_of_a_session_replaced_in_use_does_not_vouch_for_the_new_one():
    """The thief's held buy is answered with a relayed code after the customer's password
    sign-in took the id of his session, still in use: it is his session's answer (in hers, it
    made her session trusted and placed his buy among her orders)."""
    r = rig_with_customer(lenient_orders())
    session, _, held = doubtful_session_sells_then_buys(r)
    r.tick(minutes=3)
    _, d = r.login("A1", ip_in(OCN, 1), device(1), "ck-A1", session=session)
    assert d.action == "allow"
    r.tick(minutes=1)
    r.challenge("A1", held, "oob", "passed", session=session)
    new = r.session_state("A1", session)
    assert new is not None and not new.trusted and new.orders == ()
    assert THIN not in r.engine.state.get("account", "A1").bought


class DecodedOnEachGet(MemoryState):
    """A store with no cache in front of it: each ``get`` decodes the record afresh, so two
    gets of one record hand out two objects."""

    def get(self, kind: str, key: str) -> Any | None:
        record = super().get(kind, key)
        return None if record is None else decode(kind, encode(record))


def test_a_late_order_of_the_session_before_is_kept_in_it_by_a_store_that_decodes_each_get():
    """The thief's late sell (as above) on a store that hands out a fresh copy of the record on
    each get: his session is still told apart from the customer's by its times. Told apart by
    being the same object, it was written over her record: her session gone, his put back as
    the latest, and her next order judged as the first request of a session never seen."""
    r = Rig(lenient_orders())
    r.engine = BrokerGuard(r.engine.policy, state=DecodedOnEachGet(track_changes=False))
    rig_with_customer(r=r)
    first, _ = thief_then_customer_under_one_id(r)
    own, late, customer = customer_sells_then_the_thiefs_sell_arrives(r)
    kept = r.session_state("A1", "1")
    assert kept is not None and kept.trusted
    assert (kept.ip, kept.orders, kept.started) == (customer.ip, (f"o-{own}",), customer.started)
    assert [b.orders for b in kept.before] == [(first, f"o-{late}")]


def test_a_late_request_and_sign_in_of_the_session_before_stay_in_it():
    """The thief's page view from another address at 10:07 and his sign-in from 09:59 (a late
    one adds its doubt to the session it belongs to) reach the engine after the customer's
    sign-in took the id: the customer's session keeps its origin and trust."""
    r = rig_with_customer(lenient_orders())
    thief_then_customer_under_one_id(r)
    customer = r.session_state("A1", "1")
    ten = r.now.replace(hour=10, minute=0)
    r.now = ten + timedelta(minutes=7)
    r.activity("A1", "1", ip_in(KT, 5), attacker_ua(5), None)  # delivered now
    kept = r.session_state("A1", "1")
    assert kept is not None and kept.trusted and kept.hijack == 0.0
    assert (kept.ip, kept.ua, kept.llr) == (customer.ip, customer.ua, customer.llr)
    thief = kept.before[-1]
    assert thief.hijack > 0 and thief.ip == ip_in(HINET, 5)  # judged against its origin
    llr = thief.llr
    r.now = ten - timedelta(minutes=1)
    _, d = r.login("A1", ip_in(KT, 6), attacker_ua(6), None, session="1")  # delivered now
    assert d.action == "challenge"
    kept = r.session_state("A1", "1")
    assert kept.trusted and kept.llr == customer.llr
    assert kept.before[-1].llr > llr


def test_a_late_request_of_a_session_no_longer_kept_opens_nothing_over_the_one_with_its_id():
    """The session before is forgotten by the idle sweep while the customer's session with its
    id is in use; its late request then finds no session and leaves the customer's alone."""
    r = rig_with_customer(lenient_orders())
    thief_then_customer_under_one_id(r)
    eleven = r.now
    idle = r.engine.policy.detectors.session.idle_hours
    for hours in range(1, int(idle) + 3):
        r.now = eleven + timedelta(hours=hours)
        r.activity("A1", "1", ip_in(OCN, 1), device(1), "ck-A1")
    kept = r.session_state("A1", "1")
    assert kept is not None and kept.before == ()
    r.now = eleven.replace(hour=10, minute=5)
    r.order("A1", "1", HOLDING, "sell", 500, ip=ip_in(HINET, 5), ua=device(1))
    assert r.session_state("A1", "1") == kept


def test_a_step_up_of_the_session_before_failed_names_its_late_doubtful_orders_too():
    """The thief's held buy is answered (failed) after the customer's sign-in took the id; his
    sell placed before his logout reached the engine after her sign-in too. Both of his
    doubtful sells are named: the late one was listed with his session, not hers."""
    r = rig_with_customer(lenient_orders())
    logged_in = r.now
    session, sell, held = doubtful_session_sells_then_buys(r)
    placed = r.tick(seconds=30)
    r.tick(seconds=30)
    r.activity("A1", session, ip_in(HINET, 5), device(1), None, action="logout")
    r.tick(minutes=3)
    _, d = r.login("A1", ip_in(OCN, 1), device(1), "ck-A1", session=session)
    assert d.action == "allow"
    r.now = placed  # delivered now
    late, d = r.order("A1", session, HOLDING, "sell", 100, ip=ip_in(HINET, 5), ua=device(1))
    assert d.action == "allow"
    r.now = logged_in + timedelta(hours=1)
    r.engine.take_instructions()
    r.challenge("A1", held, "oob", "failed", session=session)
    said = r.engine.take_instructions()
    assert [(i.kind, set(i.orders)) for i in said] == [("cancel_orders", {sell, f"o-{late}"})]
    kept = r.session_state("A1", session)
    assert kept is not None and kept.orders == () and kept.llr < 0
    assert kept.before[-1].doubtful == ()


def thief_then_customer_by_password(r: Rig) -> tuple[LoginAttempt, str, LoginAttempt, str]:
    """The thief's session "1" sells at 10:02 and logs out at 10:10 (as above); at 11:00 the
    customer signs in with her password alone (allowed, not trusted), is given the id, sells at
    11:01 and logs out at 11:10: both sessions ended untrusted with orders. Returns (the
    thief's sign-in, his sell's order id, hers, her sell's order id)."""
    start = r.now.replace(hour=10, minute=0)
    sell, _ = thief_then_customer_under_one_id(r, ("password",))
    assert not r.session_state("A1", "1").trusted
    r.now = start + timedelta(hours=1, minutes=1)
    own, d = r.order("A1", "1", HOLDING, "sell", 100)
    assert d.action == "allow"
    r.now = start + timedelta(hours=1, minutes=10)
    r.activity("A1", "1", ip_in(OCN, 1), device(1), "ck-A1", action="logout")
    thief = msgspec.structs.replace(
        r.login_event("A1", ip_in(HINET, 5), device(1), None), session="1", ts=start
    )
    customer = msgspec.structs.replace(
        r.login_event("A1", ip_in(OCN, 1), device(1), "ck-A1"),
        session="1",
        ts=start + timedelta(hours=1),
    )
    return thief, sell, customer, f"o-{own}"


def test_each_sign_in_under_a_reused_id_keeps_its_own_orders_for_a_fraud_confirmation():
    """Both sessions under the id ended untrusted with orders. The thief's sign-in, confirmed as
    fraud after that, names his sells (the second delivered late, after hers ended) and not
    hers: her session's end replaced the orders kept of his. Hers, confirmed, names hers."""
    r = rig_with_customer(lenient_orders())
    thief, sell, customer, own = thief_then_customer_by_password(r)
    r.now = r.now.replace(hour=10, minute=5)
    late, d = r.order("A1", "1", HOLDING, "sell", 500, ip=ip_in(HINET, 5), ua=device(1))
    assert d.action == "allow"
    r.now = r.now.replace(hour=12)
    r.engine.take_instructions()
    r.engine.confirm_fraud(thief, r.now)
    said = r.engine.take_instructions()  # "1" names her session now: no sign-out asked
    assert [(i.kind, set(i.orders)) for i in said] == [("cancel_orders", {sell, f"o-{late}"})]
    r.engine.confirm_fraud(customer, r.now)
    named = cancels(r.engine.take_instructions())
    assert [i.orders for i in named] == [(own,)]


def test_each_sign_in_under_a_reused_id_keeps_its_own_orders_after_the_idle_sweep():
    """The same, confirmed later: both sessions are forgotten by the idle sweep, and only their
    orders are kept, each with its sign-in (encoded as a store keeps them)."""
    r = rig_with_customer(lenient_orders())
    thief, sell, customer, own = thief_then_customer_by_password(r)
    r.tick(hours=r.engine.policy.detectors.session.idle_hours + 1)
    r.activity("B1", "s-B1", ip_in(OCN, 2), device(2), "ck-B1")  # the hourly sweep runs
    assert r.ended_session("A1", "1") is None
    key = session_key("A1", "1")
    kept = r.engine.state.get("ended", key)
    assert decode("ended", encode(kept)) == kept
    r.engine.take_instructions()
    r.engine.confirm_fraud(customer, r.now)
    assert [i.orders for i in cancels(r.engine.take_instructions())] == [(own,)]
    r.engine.confirm_fraud(thief, r.now)
    assert [i.orders for i in cancels(r.engine.take_instructions())] == [(sell,)]
    assert r.engine.state.get("ended", key) is None


def test_a_sign_in_whose_session_ended_trusted_names_no_orders_of_the_one_before():
    """The customer's passkey session took the thief's id and logged out (trusted: nothing of
    hers kept). Her sign-in, confirmed as fraud by mistake, named the thief's orders, kept for
    his sign-in; now it names none, and his confirmation still names his."""
    r = rig_with_customer(lenient_orders())
    sell, _ = thief_then_customer_under_one_id(r)
    r.tick(minutes=5)
    r.activity("A1", "1", ip_in(OCN, 1), device(1), "ck-A1", action="logout")
    start = r.now.replace(hour=10, minute=0)
    hers = msgspec.structs.replace(
        r.login_event("A1", ip_in(OCN, 1), device(1), "ck-A1"),
        session="1",
        ts=start + timedelta(hours=1),
    )
    his = msgspec.structs.replace(
        r.login_event("A1", ip_in(HINET, 5), device(1), None), session="1", ts=start
    )
    r.engine.take_instructions()
    r.engine.confirm_fraud(hers, r.now)
    assert cancels(r.engine.take_instructions()) == []
    r.engine.confirm_fraud(his, r.now)
    assert [i.orders for i in cancels(r.engine.take_instructions())] == [(sell,)]


def test_a_sign_in_given_the_id_of_a_session_forgotten_as_idle_is_not_the_frauds():
    """The thief's session never logged out; the idle sweep forgot it (his sell kept for a
    fraud confirmation) before the customer's sign-in was given its id. His sign-in, confirmed
    as fraud, names his sell and leaves her session alone: it named her orders and signed her
    out, as if hers were the session he opened, and his sell was not named."""
    r = rig_with_customer(lenient_orders())
    idle = r.engine.policy.detectors.session.idle_hours
    ten = r.now.replace(hour=10, minute=0)
    sell, _ = thief_then_customer_under_one_id(r, logout=False, signs_in=timedelta(hours=idle + 2))
    r.tick(minutes=1)
    own, d = r.order("A1", "1", HOLDING, "sell", 100)
    assert d.action == "allow"
    hers = r.session_state("A1", "1")
    assert hers is not None and hers.trusted and hers.before == ()  # his was forgotten
    r.engine.take_instructions()
    login = msgspec.structs.replace(
        r.login_event("A1", ip_in(HINET, 5), device(1), None), session="1", ts=ten
    )
    r.engine.confirm_fraud(login, r.now)
    said = r.engine.take_instructions()
    assert [(i.kind, i.orders) for i in said] == [("cancel_orders", (sell,))]
    kept = r.session_state("A1", "1")
    assert kept.trusted and not kept.signed_out and kept.orders == (f"o-{own}",)
