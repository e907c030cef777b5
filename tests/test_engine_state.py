"""Bounded state: idle sessions are swept, windows expire, per-account memories are capped."""

from __future__ import annotations

from datetime import timedelta

from engine_helpers import (
    ALIBABA_HK,
    DOCOMO,
    OCN,
    Rig,
    attacker_ua,
    block,
    chrome_on_windows,
    device,
    ip_in,
)

from brokerguard.engine import BrokerGuard
from brokerguard.engine.detectors.login import MAX_FINE_VALUES
from brokerguard.engine.state import LEVELS, session_key
from brokerguard.events import MarketBar


def test_sessions_idle_longer_than_idle_hours_are_swept_and_active_ones_kept():
    r = Rig()
    idle = r.engine.policy.detectors.session.idle_hours
    old, _ = r.login("A1", ip_in(OCN, 1), device(1), "ck-A1")
    r.tick(hours=idle - 1)
    fresh, _ = r.login("A2", ip_in(OCN, 2), device(2), "ck-A2")
    r.tick(hours=2)
    r.engine.sweep(r.now.timestamp())
    assert r.session_state("A1", r.session_of(old)) is None
    assert r.session_state("A2", r.session_of(fresh)) is not None


def test_a_long_stream_keeps_only_recently_active_sessions():
    r = Rig()
    idle = timedelta(hours=r.engine.policy.detectors.session.idle_hours)
    accounts = [f"A{i}" for i in range(25)]
    started: dict[str, object] = {}
    for _day in range(4):
        for hour in (8, 20):  # two sign-ins a day, never logged out
            r.now = (r.now + timedelta(days=1 if hour == 8 else 0)).replace(hour=hour, minute=0)
            for i, a in enumerate(accounts):
                r.tick(minutes=1)
                eid, _ = r.login(a, ip_in(OCN, i), device(i), f"ck-{a}")
                started[session_key(a, r.session_of(eid))] = r.now
    # no explicit sweep: the engine sweeps as its clock moves
    recent = [s for s, t in started.items() if t >= r.now - idle - timedelta(hours=1)]
    live = list(r.engine.state.keys("session"))
    assert len(live) <= len(recent) < len(started)
    assert set(live) <= set(recent)


def test_infrastructure_windows_expire_and_empty_entities_are_dropped():
    r = Rig()
    window = r.engine.policy.detectors.login.infrastructure_window_hours
    proxy = ip_in(ALIBABA_HK, 3)
    for i in range(3):
        r.history(f"V{i}", ip_in(OCN, 10 + i), device(10 + i), f"ck-V{i}", days=3)
    r.tick(days=1)
    for i in range(2):
        r.tick(minutes=2)
        r.login(f"V{i}", proxy, attacker_ua(i), None)
    assert f"ip:{proxy}" in set(r.engine.state.keys("entity"))
    r.tick(hours=window + 1)
    r.engine.sweep(r.now.timestamp())
    assert f"ip:{proxy}" not in set(r.engine.state.keys("entity"))
    eid, _ = r.login("V2", proxy, attacker_ua(2), None)
    assert r.signal(eid, "shared_infrastructure") is None  # the earlier accounts are forgotten


def test_campaign_infrastructure_outlives_the_window():
    r = Rig()
    window = r.engine.policy.detectors.login.infrastructure_window_hours
    proxy = ip_in(block("overseas_hosting", "Vultr (Singapore)"), 4)
    for i in range(4):
        r.history(f"V{i}", ip_in(OCN, 20 + i), device(20 + i), f"ck-V{i}", days=3)
    r.tick(days=1)
    for i in range(3):
        r.tick(minutes=2)
        eid, _ = r.login(f"V{i}", proxy, attacker_ua(i), None)
        r.challenge(f"V{i}", eid, "oob", "failed", session=r.session_of(eid))
    r.tick(hours=window * 3)
    r.engine.sweep(r.now.timestamp())
    assert f"ip:{proxy}" in set(r.engine.state.keys("entity"))
    eid, _ = r.login("V3", proxy, attacker_ua(9), None)
    assert r.llr(eid, "campaign_infrastructure") > 0


def test_unanswered_challenges_are_forgotten_and_a_late_answer_teaches_nothing():
    r = Rig()
    home, ua = ip_in(OCN, 5), device(5)
    r.history("A1", home, ua, "ck-A1")
    r.tick(days=1)
    where, phone = ip_in(block("jp_hosting", "AWS Tokyo"), 5), device(6, "phone")
    first, d = r.login("A1", where, phone, "ck-phone")
    assert d.action == "challenge"
    assert r.engine.state.get("pending", first) is not None
    r.tick(days=1)
    r.engine.sweep(r.now.timestamp())
    assert r.engine.state.get("pending", first) is None
    r.challenge("A1", first, "oob", "passed", session=r.session_of(first))
    again, _ = r.login("A1", where, phone, "ck-phone")
    assert r.llr(again, "login_network") >= r.llr(first, "login_network")


def test_per_account_addresses_browsers_and_cookies_are_capped():
    r = Rig()
    for i in range(30):  # a phone user: a new address every day, browser updates, cookie resets
        r.tick(days=1)
        r.login("M1", ip_in(DOCOMO, 100 + i), chrome_on_windows(120 + i % 10), f"ck-{i % 9}")
    acc = r.engine.state.get("account", "M1")
    assert acc.n > 2 * MAX_FINE_VALUES  # enough learned sign-ins to overflow the cap
    for level in ("i", "u", "d"):
        kept = [k for k in acc.seen if k.startswith(level + ":")]
        assert 0 < len(kept) <= MAX_FINE_VALUES, level
        assert acc.distinct[LEVELS.index(level)] > len(
            kept
        )  # the novelty estimate still knows how many
    assert acc.seen["n:isp"] == acc.n  # coarse levels are not capped


def bar_years_ahead(r: Rig) -> MarketBar:
    """A market bar whose clock is ten years off (a feed's bad timestamp)."""
    return MarketBar(
        id="bar-2035",
        ts=r.now + timedelta(days=3650),
        symbol="7203",
        market="TSE",
        minutes=5,
        open=2800.0,
        high=2800.0,
        low=2800.0,
        close=2800.0,
        volume=100,
    )


def test_one_event_stamped_years_ahead_does_not_stop_the_sweep():
    """An event whose clock is years off (a market feed's bad timestamp) sets the sweep's
    schedule years ahead; once the stream is back at its own time, sessions are swept hourly
    again instead of piling up until the stream reaches that schedule."""
    r = Rig()
    idle = timedelta(hours=r.engine.policy.detectors.session.idle_hours)
    r.login("A0", ip_in(OCN, 99), device(99), "ck-A0")
    r.engine.observe(bar_years_ahead(r))
    started: dict[str, object] = {}
    for _day in range(3):
        for i in range(10):  # sign-ins never logged out
            r.tick(hours=2)
            eid, _ = r.login(f"A{i}", ip_in(OCN, i), device(i), f"ck-A{i}")
            started[session_key(f"A{i}", r.session_of(eid))] = r.now
    recent = [s for s, t in started.items() if t >= r.now - idle - timedelta(hours=1)]
    live = list(r.engine.state.keys("session"))
    assert len(live) <= len(recent) < len(started)


def test_one_event_stamped_years_ahead_does_not_forget_every_session():
    """Swept at a bad timestamp's time, every session looked idle: the customers signed in a
    minute before lost their sessions (and the trust a passkey earned) to one market bar."""
    r = Rig()
    r.account("A1", passkey=True)
    eid, _ = r.login("A1", ip_in(OCN, 1), device(1), "ck-A1", factors=("passkey",))
    r.tick(minutes=1)
    r.engine.observe(bar_years_ahead(r))
    r.tick(minutes=1)
    r.activity("A1", r.session_of(eid), ip_in(OCN, 1), device(1), "ck-A1")
    session = r.session_state("A1", r.session_of(eid))
    assert session is not None and session.trusted


def test_a_member_seen_again_does_not_hide_expired_ones_behind_it():
    """A, then B, then A again: an hour after B, only A is within the hour. Touched in place,
    A stayed first and hid B's expiry, and B was counted (a campaign's buyers, say)."""
    from brokerguard.engine.state import touch_window

    window: dict[str, float] = {}
    touch_window(window, "A", 0.0, 3600.0, 200)
    touch_window(window, "B", 600.0, 3600.0, 200)
    touch_window(window, "A", 3000.0, 3600.0, 200)
    assert touch_window(window, "C", 4300.0, 3600.0, 200) == 2  # A and C: B expired at 4200
    assert set(window) == {"A", "C"}


def test_two_accounts_sharing_a_session_id_are_judged_as_if_the_ids_differed():
    """A broker may number each account's sessions 1, 2, 3: the same id in two accounts is two
    sessions, and one account's trust (a passkey sign-in) must not vouch for the other."""

    def run(first: str, second: str) -> list[tuple[str, frozenset[str]]]:
        r = Rig()
        r.account("A1", passkey=True)
        r.account("A2")
        r.history("A1", ip_in(OCN, 1), device(1), "ck-A1", days=5)
        r.history("A2", ip_in(OCN, 2), device(2), "ck-A2", days=5)
        r.tick(days=1)
        seen = []
        e1, _ = r.login(
            "A1", ip_in(OCN, 1), device(1), "ck-A1", session=first, factors=("passkey",)
        )
        r.tick(minutes=5)
        thief = ip_in(ALIBABA_HK, 9)
        r.activity("A2", second, thief, attacker_ua(9), None, action="portfolio")
        for eid, _ in (
            r.settings("A2", second, "email"),
            r.withdrawal("A2", second, 900_000),
            r.settings("A1", first, "email"),
        ):
            seen.append(eid)
        r.activity("A1", first, ip_in(OCN, 1), device(1), "ck-A1", action="logout")
        r.tick(minutes=1)
        seen.append(r.withdrawal("A2", second, 900_000)[0])
        assert r.session_state("A1", first) is None  # signed out
        assert r.session_state("A2", second) is not None
        return [(r.traced[e][1].action, frozenset(r.codes(e))) for e in seen]

    assert run("1", "1") == run("A1-1", "A2-1")


def test_a_restarted_engine_still_does_not_sweep_on_one_bad_timestamp():
    """The time of the event before goes with the sweep's schedule: an engine started on the
    state (a service restart, a worker taking over a partition, a replay continuing a state
    file) otherwise swept at the first event's time, however far off, and forgot every session
    that one that ran on kept."""
    r = Rig()
    r.account("A1", passkey=True)
    eid, _ = r.login("A1", ip_in(OCN, 1), device(1), "ck-A1", factors=("passkey",))
    r.tick(minutes=1)
    r.activity("A1", r.session_of(eid), ip_in(OCN, 1), device(1), "ck-A1")
    before = r.engine
    r.engine = BrokerGuard(before.policy, state=before.state)
    r.engine.set_clock(before.clock())
    r.engine.trace = r._trace
    r.engine.observe(bar_years_ahead(r))
    r.tick(minutes=1)
    r.activity("A1", r.session_of(eid), ip_in(OCN, 1), device(1), "ck-A1")
    session = r.session_state("A1", r.session_of(eid))
    assert session is not None and session.trusted
