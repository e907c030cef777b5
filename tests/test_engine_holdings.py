"""Late holdings snapshots: the broker's books as of a time before fills and withdrawals taken.

A holdings snapshot says what an account held at its own time (``ts``, its as-of time). The books
system may deliver it after fills and withdrawals from after that time were already taken: the
account then holds the snapshot plus every one of them, in time order, whatever the order of
delivery. Movements are kept for that for ``holdings_late_hours``; a snapshot from further back
than what was kept is not taken (the account keeps the snapshot before it and every movement
since), and one older than the snapshot held rolls nothing back.
"""

from __future__ import annotations

import itertools
from datetime import timedelta
from pathlib import Path

from engine_helpers import OCN, Rig, device, ip_in
from instruction_helpers import HOLDING, THIN, rig_with_customer

from brokerguard.engine import BrokerGuard
from brokerguard.engine.policy import default_policy_path, parse_policy
from brokerguard.engine.state import AccountState, Move
from brokerguard.stores import SqliteState, decode, encode

PRICE = 8000.0  # HOLDING's price


def books(r: Rig, account: str = "A1") -> tuple[dict[str, float], float]:
    acc = r.engine.state.get("account", account)
    return acc.positions, acc.cash


def signed_in(r: Rig) -> str:
    """The customer signs in from home (allowed); returns the session."""
    eid, d = r.login("A1", ip_in(OCN, 1), device(1), "ck-A1")
    assert d.action == "allow"
    return r.session_of(eid)


# --- fills after the snapshot's time ---------------------------------------------------------


def test_a_late_snapshot_keeps_the_fills_after_its_time():
    """The 10:00 snapshot arrives after a sell filled at 10:30 and a buy at 10:50: the account
    holds the snapshot with both on top (replaced, it held the 600 sold and lost the 200
    bought, and its cash did not move)."""
    r = rig_with_customer()
    ten = r.now.replace(hour=10, minute=0)
    r.now = ten + timedelta(minutes=30)
    r.execution("A1", "x1", HOLDING, "sell", 600, PRICE)
    r.now = ten + timedelta(minutes=50)
    r.execution("A1", "x2", THIN, "buy", 200, 100.0)
    r.now = ten
    r.holdings("A1", 2_000_000.0, {HOLDING: 1000})  # as of 10:00, delivered at 10:55
    assert books(r) == ({HOLDING: 400.0, THIN: 200.0}, 2_000_000.0 + 600 * PRICE - 200 * 100.0)


def test_selling_what_is_left_after_a_late_snapshot_is_a_liquidation():
    """The customer sold 600 of 1,000 shares at 10:30; the 10:00 snapshot holding the 1,000
    comes after. A new session's sell of the 400 left is all of the holdings (with the snapshot
    taken as it is, 40% of them: no liquidation)."""
    r = rig_with_customer()
    ten = r.now.replace(hour=10, minute=0)
    r.now = ten + timedelta(minutes=30)
    r.execution("A1", "x1", HOLDING, "sell", 600, PRICE)
    r.now = ten
    r.holdings("A1", 10_000.0, {HOLDING: 1000})
    r.now = ten + timedelta(minutes=45)
    sell, _ = r.order("A1", signed_in(r), HOLDING, "sell", 400)
    assert r.signal(sell, "liquidation") is not None


def test_a_fill_in_the_late_snapshot_already_is_not_applied_again():
    """A buy at 09:30 and a sell at 10:30 were taken; the 10:00 snapshot, which holds the buy,
    comes after: only the sell goes on top of it."""
    r = rig_with_customer()
    ten = r.now.replace(hour=10, minute=0)
    r.now = ten - timedelta(minutes=30)
    r.execution("A1", "x1", HOLDING, "buy", 500, PRICE)
    r.now = ten + timedelta(minutes=30)
    r.execution("A1", "x2", HOLDING, "sell", 200, PRICE)
    r.now = ten
    r.holdings("A1", 100_000.0, {HOLDING: 1500})  # with the 09:30 buy
    assert books(r) == ({HOLDING: 1300.0}, 100_000.0 + 200 * PRICE)


def test_every_fill_after_a_late_snapshot_is_kept_not_only_the_last_few():
    """Forty fills between the snapshot's time and its delivery (a busy morning): all forty on
    top of it."""
    r = rig_with_customer()
    ten = r.now.replace(hour=10, minute=0)
    for n in range(40):
        r.now = ten + timedelta(minutes=1 + n)
        r.execution("A1", f"x{n}", THIN, "buy", 10, 100.0)
    r.now = ten
    r.holdings("A1", 1_000_000.0, {HOLDING: 1000})
    assert books(r) == ({HOLDING: 1000.0, THIN: 400.0}, 1_000_000.0 - 400 * 100.0)


def test_a_snapshot_older_than_the_one_held_rolls_nothing_back():
    """Snapshots at 10:00 and a fill at 10:30 taken; yesterday's snapshot arrives: nothing
    changes."""
    r = rig_with_customer()
    ten = r.now.replace(hour=10, minute=0)
    r.now = ten
    r.holdings("A1", 100_000.0, {HOLDING: 1000})
    r.now = ten + timedelta(minutes=30)
    r.execution("A1", "x1", HOLDING, "sell", 600, PRICE)
    before = books(r)
    r.now = ten - timedelta(days=1)
    r.holdings("A1", 9_000_000.0, {THIN: 5})
    assert books(r) == before == ({HOLDING: 400.0}, 100_000.0 + 600 * PRICE)


def test_the_books_do_not_depend_on_the_order_of_delivery():
    """Two snapshots and three fills, delivered in every order: the account ends with the
    later snapshot and the fill after it, as in time order."""
    r0 = rig_with_customer()
    ten = r0.now.replace(hour=10, minute=0)
    events = [
        ("hold", ten, 500_000.0, {HOLDING: 1000}),
        ("fill", ten + timedelta(minutes=30), "sell", 300),
        ("fill", ten + timedelta(minutes=60), "buy", 100),
        ("hold", ten + timedelta(minutes=90), 500_000.0 + 200 * PRICE, {HOLDING: 800}),
        ("fill", ten + timedelta(minutes=120), "sell", 500),
    ]
    want = ({HOLDING: 300.0}, 500_000.0 + 700 * PRICE)
    for order in itertools.permutations(events):
        r = rig_with_customer()
        for n, ev in enumerate(order):
            r.now = ev[1]
            if ev[0] == "hold":
                r.holdings("A1", ev[2], ev[3])
            else:
                r.execution("A1", f"x{n}", HOLDING, ev[2], ev[3], PRICE)
        assert books(r) == want, [ev[:1] + ev[2:] for ev in order]


def test_fills_end_as_in_time_order_whatever_the_order_of_delivery():
    """A sell of the holding pays for a buy of the small cap, which is sold and bought again,
    the four fills delivered in every order: the account ends as in time order. Applied in the
    order delivered, a sell delivered before the buy it sells was lost (there was nothing to
    sell yet) and the shares stayed; a buy delivered before the sell that paid for it took cash
    the account did not have yet (none: the sale's cash came on top)."""
    ten = rig_with_customer().now.replace(hour=10, minute=0)
    fills = [
        (ten + timedelta(minutes=10), HOLDING, "sell", 100, PRICE),
        (ten + timedelta(minutes=20), THIN, "buy", 200, 100.0),
        (ten + timedelta(minutes=30), THIN, "sell", 200, 120.0),
        (ten + timedelta(minutes=40), THIN, "buy", 100, 110.0),
    ]
    want = ({HOLDING: 900.0, THIN: 100.0}, 100 * PRICE - 200 * 100.0 + 200 * 120.0 - 100 * 110.0)
    for order in itertools.permutations(fills):
        r = rig_with_customer()
        r.now = ten
        r.holdings("A1", 0.0, {HOLDING: 1000})
        for n, (at, key, side, quantity, price) in enumerate(order):
            r.now = at
            r.execution("A1", f"x{n}", key, side, quantity, price)
        assert books(r) == want, [fill[1:3] for fill in order]


# --- cash leaving after the snapshot's time --------------------------------------------------


def test_a_late_snapshot_keeps_the_withdrawals_after_its_time():
    """The customer withdrew ¥600,000 at 10:10; the 10:00 snapshot with ¥1,000,000 arrives
    after. She holds ¥400,000, so taking ¥350,000 more is most of her cash (with the snapshot
    taken as it is: a third of it)."""
    r = rig_with_customer()
    ten = r.now.replace(hour=10, minute=0)
    r.now = ten - timedelta(minutes=30)
    r.holdings("A1", 1_000_000.0, {HOLDING: 1000})
    r.now = ten + timedelta(minutes=5)
    session = signed_in(r)
    r.now = ten + timedelta(minutes=10)
    _, d = r.withdrawal("A1", session, 600_000.0)
    assert d.action == "allow"
    r.now = ten
    r.holdings("A1", 1_000_000.0, {HOLDING: 1000})  # as of 10:00, delivered at 10:15
    assert books(r) == ({HOLDING: 1000.0}, 400_000.0)
    r.now = ten + timedelta(minutes=20)
    second, _ = r.withdrawal("A1", session, 350_000.0)
    assert r.signal(second, "withdrawal_size") is not None


def test_a_withdrawal_confirmed_after_the_snapshots_time_is_kept():
    """A withdrawal asked at 09:50 and confirmed out of band at 10:10 leaves at 10:10: the
    10:00 snapshot, delivered after, does not hold it."""
    text = default_policy_path().read_text(encoding="utf-8")
    assert "[withdrawal]\nprior = -5.0" in text
    r = rig_with_customer(
        parse_policy(text.replace("[withdrawal]\nprior = -5.0", "[withdrawal]\nprior = 9.0"))
    )
    ten = r.now.replace(hour=10, minute=0)
    r.now = ten - timedelta(minutes=15)
    session = signed_in(r)
    r.now = ten - timedelta(minutes=10)
    wd, d = r.withdrawal("A1", session, 300_000.0)
    assert d.action == "challenge"
    r.now = ten + timedelta(minutes=10)
    r.challenge("A1", wd, "oob", "passed", session=session)
    r.now = ten
    r.holdings("A1", 1_000_000.0, {HOLDING: 1000})
    assert books(r) == ({HOLDING: 1000.0}, 700_000.0)


def test_a_late_withdrawal_already_in_the_snapshot_is_not_taken_again():
    """A withdrawal from 09:50 decided after the 10:00 snapshot (a replayed log): the snapshot's
    cash is after it already."""
    r = rig_with_customer()
    ten = r.now.replace(hour=10, minute=0)
    r.now = ten - timedelta(minutes=20)
    session = signed_in(r)
    r.now = ten
    r.holdings("A1", 700_000.0, {HOLDING: 1000})
    r.now = ten - timedelta(minutes=10)
    _, d = r.withdrawal("A1", session, 300_000.0)
    assert d.action == "allow"
    assert books(r) == ({HOLDING: 1000.0}, 700_000.0)


# --- what is kept, and for how long ----------------------------------------------------------


def test_movements_before_the_snapshot_held_are_not_kept():
    """Once a snapshot is taken, what came before it can never be needed again."""
    r = rig_with_customer()
    ten = r.now.replace(hour=10, minute=0)
    for n in range(5):
        r.now = ten + timedelta(minutes=n)
        r.execution("A1", f"x{n}", THIN, "buy", 10, 100.0)
    r.now = ten + timedelta(minutes=3, seconds=30)
    r.holdings("A1", 1_000_000.0, {HOLDING: 1000, THIN: 40})
    acc = r.engine.state.get("account", "A1")
    assert [m.at for m in acc.moves] == [(ten + timedelta(minutes=4)).timestamp()]
    assert acc.positions == {HOLDING: 1000.0, THIN: 50.0}


def test_a_snapshot_older_than_a_movement_no_longer_kept_is_not_taken():
    """Movements are kept for ``holdings_late_hours`` (72) before the latest: a snapshot from
    10:00 four days ago, delivered after fills of that day and of today, would need the one no
    longer kept. It is not taken: the account keeps the snapshot before it and every fill since.
    A snapshot from after that fill is taken, with the later fill on top."""
    r = rig_with_customer()
    ten = r.now.replace(hour=10, minute=0)
    r.now = ten + timedelta(minutes=30)
    r.execution("A1", "x1", HOLDING, "sell", 100, PRICE)
    r.now = ten + timedelta(days=4)
    r.execution("A1", "x2", HOLDING, "sell", 200, PRICE)
    acc = r.engine.state.get("account", "A1")
    assert len(acc.moves) == 1 and acc.moves_lost == (ten + timedelta(minutes=30)).timestamp()
    r.now = ten
    r.holdings("A1", 5_000_000.0, {HOLDING: 1000})  # would need the 10:30 sell, not kept
    assert books(r) == ({HOLDING: 700.0}, 10_000.0 + 300 * PRICE)
    r.now = ten + timedelta(hours=1)
    r.holdings("A1", 5_000_000.0, {HOLDING: 900})  # after it: taken, with the later sell
    assert books(r) == ({HOLDING: 700.0}, 5_000_000.0 + 200 * PRICE)


def test_the_movements_kept_are_bounded_in_number_too():
    """A bot trading all day keeps at most MOVES_KEPT movements; a snapshot older than one it
    dropped is not taken, a newer one is."""
    from brokerguard.engine.books import MOVES_KEPT

    r = rig_with_customer()
    ten = r.now.replace(hour=10, minute=0)
    for n in range(MOVES_KEPT + 10):
        r.now = ten + timedelta(seconds=n)
        r.execution("A1", f"x{n}", THIN, "buy", 1, 100.0)
    acc = r.engine.state.get("account", "A1")
    assert len(acc.moves) == MOVES_KEPT
    r.now = ten + timedelta(seconds=5)
    r.holdings("A1", 1_000_000.0, {})
    assert books(r)[0] == {HOLDING: 1000.0, THIN: MOVES_KEPT + 10.0}
    r.now = ten + timedelta(seconds=20)
    r.holdings("A1", 1_000_000.0, {THIN: 20})
    assert books(r) == ({THIN: MOVES_KEPT + 10.0}, 1_000_000.0 - (MOVES_KEPT - 10) * 100.0)


# --- the state ------------------------------------------------------------------------------


def test_the_movements_round_trip_and_an_older_record_reads_without_them():
    acc = AccountState(
        positions={HOLDING: 1.0},
        holdings_at=1.7e9,
        moves=(
            Move(1.7e9 + 5, HOLDING, -100.0, 800_000.0),
            Move(1.7e9 + 9, "", 0.0, -5.0),
            Move(1.7e9 + 12, HOLDING, -150.0, 1_200_000.0, clamped=50.0),
        ),
        moves_lost=1.7e9 + 1,
    )
    assert decode("account", encode(acc)) == acc
    old = encode(AccountState(positions={HOLDING: 1.0}, holdings_at=1.7e9))
    assert decode("account", old).moves == ()


def test_the_movements_kept_survive_a_restart(tmp_path: Path):
    """Fills taken before a restart go on top of a late snapshot delivered after it."""
    r = rig_with_customer()
    ten = r.now.replace(hour=10, minute=0)
    path = tmp_path / "state.db"
    with SqliteState(path) as state:
        for kind, records in r.engine.state.records.items():  # type: ignore[attr-defined]
            for key, record in records.items():
                state.put(kind, key, record)
        r.engine = BrokerGuard(r.engine.policy, state=state)
        r.now = ten + timedelta(minutes=30)
        r.execution("A1", "x1", HOLDING, "sell", 600, PRICE)
    with SqliteState(path) as state:
        r.engine = BrokerGuard(r.engine.policy, state=state)
        r.now = ten
        r.holdings("A1", 2_000_000.0, {HOLDING: 1000})
        assert books(r) == ({HOLDING: 400.0}, 2_000_000.0 + 600 * PRICE)


def test_how_long_movements_are_kept_is_the_policys():
    """``[detectors.trading] holdings_late_hours``: with 1, a fill two hours after another no
    longer keeps it, and a snapshot from before it is not taken."""
    text = default_policy_path().read_text(encoding="utf-8")
    assert "holdings_late_hours = 72" in text
    r = rig_with_customer(
        parse_policy(text.replace("holdings_late_hours = 72", "holdings_late_hours = 1"))
    )
    ten = r.now.replace(hour=10, minute=0)
    r.now = ten + timedelta(minutes=30)
    r.execution("A1", "x1", HOLDING, "sell", 100, PRICE)
    r.now = ten + timedelta(hours=2, minutes=30)
    r.execution("A1", "x2", HOLDING, "sell", 200, PRICE)
    assert [m.at for m in r.engine.state.get("account", "A1").moves] == [r.now.timestamp()]
    r.now = ten
    r.holdings("A1", 5_000_000.0, {HOLDING: 1000})
    assert books(r) == ({HOLDING: 700.0}, 10_000.0 + 300 * PRICE)
