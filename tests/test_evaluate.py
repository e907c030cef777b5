"""Evaluation on small hand-built runs whose right answers are worked out by hand below."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import msgspec
import pytest
from rich.console import Console

from brokerguard.evaluate import evaluate_run, format_table, unauthorized_value_timeline
from brokerguard.events import (
    ChallengeResult,
    Event,
    Execution,
    Instrument,
    LoginAttempt,
    MarketBar,
    Order,
    SessionActivity,
    Withdrawal,
    write_ndjson,
)
from brokerguard.guard import DecisionRecord, Instruction
from brokerguard.truth import PumpedSymbol, Truth, Victim, save_truth

JST = timezone(timedelta(hours=9))
T0 = datetime(2025, 4, 1, 9, 0, tzinfo=JST)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# --- builders ------------------------------------------------------------------------------


def login(id: str, account: str, t: float, success: bool = True) -> LoginAttempt:
    return LoginAttempt(
        id=id,
        ts=at(t),
        account=account,
        session=f"s-{id}",
        ip="203.0.113.7",
        user_agent="UA",
        factors=["password"],
        success=success,
    )


def result(id: str, account: str, t: float, ref: str, outcome: str, factor: str = "sms"):
    return ChallengeResult(
        id=id, ts=at(t), account=account, ref=ref, factor=factor, outcome=outcome
    )


def order(id: str, account: str, t: float, order_id: str, side: str, action: str = "new") -> Order:
    return Order(
        id=id,
        ts=at(t),
        account=account,
        session="s",
        order_id=order_id,
        action=action,
        symbol="1234",
        market="TSE",
        side=side,
        quantity=100,
        price_type="market",
    )


def fill(id: str, account: str, t: float, order_id: str, value: float) -> Execution:
    return Execution(
        id=id,
        ts=at(t),
        account=account,
        order_id=order_id,
        symbol="1234",
        market="TSE",
        side="buy",
        quantity=100,
        price=value / 100,
        value_jpy=value,
    )


def withdrawal(id: str, account: str, t: float, amount: float) -> Withdrawal:
    return Withdrawal(id=id, ts=at(t), account=account, session="s", amount_jpy=amount)


def session(id: str, account: str, t: float) -> SessionActivity:
    return SessionActivity(
        id=id, ts=at(t), account=account, session="stolen", ip="198.51.100.9", user_agent="UA"
    )


def decision(event: Event, action: str, t: float) -> DecisionRecord:
    point = {"login": "login", "order": "order", "withdrawal": "withdrawal"}
    factors = ("sms",) if action == "challenge" else ()
    return DecisionRecord(
        event=event.id,
        ts=at(t),
        account=event.account,
        point=point[event.__struct_config__.tag],
        guard="test-guard",
        action=action,
        score=0.5,
        factors=factors,
    )


def write_run(
    run: Path,
    events: list[Event],
    decisions: list[DecisionRecord],
    truth: Truth,
    campaigns: list[dict] | None = None,
) -> Path:
    run.mkdir(parents=True, exist_ok=True)
    with (run / "events.ndjson").open("wb") as f:
        write_ndjson(f, events)
    (run / "decisions.ndjson").write_bytes(
        b"".join(msgspec.json.encode(d) + b"\n" for d in decisions)
    )
    save_truth(truth, run / "truth.json")
    if campaigns is not None:
        (run / "campaigns.ndjson").write_bytes(
            b"".join(msgspec.json.encode(c) + b"\n" for c in campaigns)
        )
    return run


def make_truth(victims: list[Victim], **kw) -> Truth:
    return Truth(
        scenario="unit",
        seed=7,
        guard="test-guard",
        investors=kw.pop("investors", 10),
        start=T0,
        end=at(86400),
        victims=victims,
        **kw,
    )


# --- the main run --------------------------------------------------------------------------
#
# V1  attacker login denied at +2s                      -> blocked at login, detected after 2 s
# V2  attacker passes an OTP challenge, sells (300k+200k fills) and buys (450k fill); a later
#     withdrawal is held and never confirmed            -> takeover, traded, detected after 191 s
# V3  stolen session (no login); withdrawal of 100k passes an OTP challenge; then an order is
#     denied and never executes                         -> takeover, stopped before trade, 101 s
# V4  attacker login held, confirmed out of band        -> takeover, no trade, undetected
# V5  login challenge abandoned                         -> blocked at login, detected after 3 s
#
# Legit: L1..L4 plus V1's real owner; C1 is a criminal's own account (ignored).


@pytest.fixture
def main_run(tmp_path: Path) -> Path:
    ev: list[Event] = []
    dec: list[DecisionRecord] = []

    def add(event: Event, action: str | None = None, t: float | None = None) -> Event:
        ev.append(event)
        if action is not None:
            dec.append(decision(event, action, t if t is not None else 0))
        return event

    add(
        Instrument(
            id="i1",
            ts=at(0),
            symbol="1234",
            market="TSE",
            segment="growth",
            currency="JPY",
            lot_size=100,
            price=100.0,
            avg_daily_volume=1000,
            market_cap_jpy=1e9,
        )
    )
    add(
        MarketBar(
            id="b1",
            ts=at(0),
            symbol="1234",
            market="TSE",
            minutes=1,
            open=100.0,
            high=101.0,
            low=99.0,
            close=100.5,
            volume=10,
        )
    )
    # V1: denied at login.
    add(login("a1", "V1", 0), "deny", 2)
    # V2: OTP relayed, then trades.
    add(login("a2", "V2", 10), "challenge", 11)
    add(result("a2c", "V2", 20, ref="a2", outcome="passed"))
    add(order("a2s", "V2", 60, "o2s", "sell"), "allow", 60)
    add(fill("x1", "V2", 61, "o2s", 300_000))
    add(fill("x2", "V2", 62, "o2s", 200_000))
    add(order("a2b", "V2", 120, "o2b", "buy"), "allow", 120)
    add(fill("x3", "V2", 121, "o2b", 450_000))
    add(withdrawal("a2w", "V2", 200, 999_999), "hold", 201)
    # V3: session theft.
    add(session("a3s", "V3", 300))
    add(withdrawal("a3w", "V3", 310, 100_000), "challenge", 311)
    add(result("a3c", "V3", 330, ref="a3w", outcome="passed"))
    add(order("a3o", "V3", 400, "o3", "buy"), "deny", 401)
    # V4: hold confirmed out of band.
    add(login("a4", "V4", 450), "hold", 451)
    add(result("a4c", "V4", 500, ref="a4", outcome="passed", factor="oob"))
    # V5: challenge abandoned, then a second login challenged with no answer ever.
    add(login("a5", "V5", 500), "challenge", 503)
    add(result("a5c", "V5", 530, ref="a5", outcome="abandoned"))
    add(login("a5b", "V5", 600), "challenge", 601)

    # Legitimate customers.
    add(login("l1", "L1", 5), "allow", 5)
    add(order("l1o", "L1", 6, "p1", "buy"), "allow", 6)
    add(order("l1x", "L1", 7, "p1", "buy", action="cancel"))
    add(fill("lx1", "L1", 8, "p1", 12_345))  # a customer's own fill is no loss
    add(login("l2", "L2", 5), "challenge", 5)
    add(result("l2c", "L2", 9, ref="l2", outcome="passed"))
    add(order("l2o", "L2", 10, "p2", "buy"), "hold", 10)
    add(order("l2p", "L2", 11, "p3", "sell"), "challenge", 11)
    add(login("l3", "L3", 5), "lock", 5)
    add(login("l4", "L4", 5, success=False), "deny", 5)
    add(
        login("v1own", "V1", 900), "lock", 900
    )  # the victim's owner: legit, but not "customer locked"
    # A criminal's own account: neither victim nor customer.
    add(login("c1", "C1", 5), "lock", 5)
    add(order("c1o", "C1", 6, "q1", "buy"), "hold", 6)

    truth = make_truth(
        [
            Victim(account="V1", attack=0, events=["a1"]),
            Victim(
                account="V2",
                attack=0,
                events=["a2", "a2c", "a2s", "a2b", "a2w"],
                orders=["o2s", "o2b"],
            ),
            Victim(account="V3", attack=0, events=["a3s", "a3w", "a3c", "a3o"], orders=["o3"]),
            Victim(account="V4", attack=0, events=["a4", "a4c"]),
            Victim(account="V5", attack=0, events=["a5", "a5c", "a5b"]),
        ],
        criminal_accounts=["C1"],
        pumped_symbols=[
            PumpedSymbol(symbol="1234", market="TSE", attack=0, first_buy=at(120)),
            PumpedSymbol(symbol="0001", market="HK", attack=0, first_buy=at(130)),
        ],
    )
    campaigns = [
        {
            "id": "k1",
            "raised_at": at(720).isoformat(),
            "symbols": [{"symbol": "1234", "market": "TSE"}],
            "accounts": ["V2"],
        },
        {
            "id": "k2",
            "raised_at": at(600).isoformat(),
            "symbols": [{"symbol": "1234", "market": "TSE"}, {"symbol": "0001", "market": "CN"}],
            "accounts": ["V2", "V3"],
        },
    ]
    return write_run(tmp_path / "run", ev, dec, truth, campaigns)


def test_attack_metrics(main_run: Path) -> None:
    attack = evaluate_run(main_run)["attack"]
    assert attack == {
        "victims": 5,
        "takeovers": 3,  # V2, V3, V4
        "blocked_at_login": 2,  # V1, V5
        "stopped_before_trade": 2,  # V3, V4
        "victims_with_unauthorized_trades": 1,
        "unauthorized_orders_executed": 2,
        "unauthorized_orders_cancelled": 0,  # no instructions.ndjson: the cancel is L1's own
        "sessions_signed_out": 0,
        "unauthorized_value_jpy": 1_050_000.0,  # 300k + 200k + 450k + 100k withdrawal
        "unauthorized_trade_value_jpy": 950_000.0,
        "unauthorized_withdrawals": 1,
        "unauthorized_withdrawals_jpy": 100_000.0,
        "detected": 4,
        # delays 2 (V1), 3 (V5), 101 (V3), 191 (V2): median (3+101)/2, p95 101 + 0.85 * 90
        "detection_delay_s": {"median": 52.0, "p95": 177.5},
    }


def test_run_level_and_legit_metrics(main_run: Path) -> None:
    metrics = evaluate_run(main_run)
    assert metrics["guard"] == "test-guard"
    assert metrics["investors"] == 10
    assert metrics["events"] == 33  # every line, instrument and bar included
    assert metrics["legit"] == {
        "logins": 4,  # L1, L2, L3, V1's owner (L4's wrong password is no login)
        "login_challenges": 1,
        "login_challenge_rate": 0.25,
        "logins_denied": 2,  # L3 lock, V1 owner lock
        "failed_credentials": 1,  # L4: refused by the broker's own password check
        "orders": 3,  # the cancel is not an order
        "orders_held": 1,
        "order_hold_rate": 0.3333,
        "orders_challenged": 1,
        "orders_denied": 0,
        "orders_cancelled": 0,
        "sessions_signed_out": 0,
        "accounts_locked": 1,  # L3 only: V1 is a victim, C1 a criminal
    }


def test_campaign_metrics(main_run: Path) -> None:
    # 1234/TSE first named by k2 at +600, first buy at +120; 0001 is named only on the wrong market.
    assert evaluate_run(main_run)["campaigns"] == {
        "pumped_symbols": 2,
        "detected": 1,
        "detection_delay_s": {"median": 480.0, "p95": 480.0},
    }


def test_campaign_raised_before_first_buy_clips_to_zero(tmp_path: Path) -> None:
    truth = make_truth(
        [], pumped_symbols=[PumpedSymbol(symbol="9", market="CN", attack=0, first_buy=at(100))]
    )
    campaign = {
        "id": "k",
        "raised_at": at(40).isoformat(),
        "symbols": [{"symbol": "9", "market": "CN"}],
    }
    run = write_run(tmp_path / "r", [], [], truth, [campaign])
    assert evaluate_run(run)["campaigns"]["detection_delay_s"]["median"] == 0.0


def test_timeline_is_cumulative_in_time_order(main_run: Path) -> None:
    assert unauthorized_value_timeline(main_run) == [
        (at(61), 300_000.0),
        (at(62), 500_000.0),
        (at(121), 950_000.0),
        (at(310), 1_050_000.0),  # the withdrawal request, paid after its challenge
    ]


def test_empty_run(tmp_path: Path) -> None:
    run = write_run(tmp_path / "empty", [], [], make_truth([], investors=20000))
    metrics = evaluate_run(run)
    assert metrics["events"] == 0
    assert metrics["investors"] == 20000
    assert metrics["attack"]["victims"] == 0
    assert metrics["attack"]["unauthorized_value_jpy"] == 0.0
    assert metrics["attack"]["detection_delay_s"] == {"median": None, "p95": None}
    assert metrics["legit"]["login_challenge_rate"] == 0.0
    assert metrics["legit"]["order_hold_rate"] == 0.0
    assert metrics["campaigns"] == {
        "pumped_symbols": 0,
        "detected": 0,
        "detection_delay_s": {"median": None, "p95": None},
    }
    assert unauthorized_value_timeline(run) == []


def test_hold_needs_out_of_band_confirmation(tmp_path: Path) -> None:
    # An OTP passed on a held login does not release the hold: no takeover, and it is a detection.
    events = [login("a", "V", 0), result("ac", "V", 30, ref="a", outcome="passed", factor="sms")]
    run = write_run(
        tmp_path / "r",
        events,
        [decision(events[0], "hold", 4)],
        make_truth([Victim(account="V", attack=0, events=["a", "ac"])]),
    )
    attack = evaluate_run(run)["attack"]
    assert (attack["takeovers"], attack["blocked_at_login"], attack["detected"]) == (0, 1, 1)
    assert attack["detection_delay_s"]["median"] == 4.0


def test_failed_credentials_are_no_takeover_even_if_allowed(tmp_path: Path) -> None:
    events = [login("a", "V", 0, success=False)]
    run = write_run(
        tmp_path / "r",
        events,
        [decision(events[0], "allow", 1)],
        make_truth([Victim(account="V", attack=0, events=["a"])]),
    )
    assert evaluate_run(run)["attack"]["takeovers"] == 0


def test_an_order_labelled_by_its_order_id_only_is_an_attack_order(tmp_path: Path) -> None:
    """A broker's labels may name an attack order by its id, not its order event (as the
    reports accept): its fills are unauthorized, and it is no customer's order."""
    events = [
        login("a", "V", 0),
        order("o", "V", 10, "n1", "sell"),
        fill("x", "V", 11, "n1", 100_000),
    ]
    run = write_run(
        tmp_path / "r",
        events,
        [decision(events[0], "allow", 0), decision(events[1], "allow", 10)],
        make_truth([Victim(account="V", attack=0, events=["a"], orders=["n1"])]),
    )
    metrics = evaluate_run(run)
    attack = metrics["attack"]
    assert attack["unauthorized_orders_executed"] == 1
    assert attack["unauthorized_trade_value_jpy"] == 100_000.0
    assert attack["victims_with_unauthorized_trades"] == 1
    assert attack["stopped_before_trade"] == 0
    assert metrics["legit"]["orders"] == 0


def test_a_fill_logged_before_its_order_still_counts(tmp_path: Path) -> None:
    """Logs merged from two systems (orders, executions) can put a fill's line before its
    order's: the fill was not yet known to be the attacker's and was dropped, while the
    reports, which read the labels whole, counted it."""
    events = [
        login("a", "V", 0),
        fill("x", "V", 11, "n1", 100_000),  # the execution system's line came first
        order("o", "V", 10, "n1", "buy"),  # the attacker's order, labelled by its event
        fill("y", "V", 12, "n9", 50_000),  # the customer's own order's fill: not counted
    ]
    run = write_run(
        tmp_path / "r",
        events,
        [decision(events[0], "allow", 0), decision(events[2], "allow", 10)],
        make_truth([Victim(account="V", attack=0, events=["a", "o"])]),
    )
    attack = evaluate_run(run)["attack"]
    assert attack["unauthorized_orders_executed"] == 1
    assert attack["unauthorized_trade_value_jpy"] == 100_000.0
    assert attack["victims_with_unauthorized_trades"] == 1


def test_a_wrong_password_denied_is_no_detection(tmp_path: Path) -> None:
    """The broker's own credential check (a passkey-only account refusing the phished
    password) kept the attacker out, not the guard: allow-all denies it too. A lock is the
    guard's doing."""
    events = [login("a", "V", 0, success=False), login("b", "W", 0, success=False)]
    run = write_run(
        tmp_path / "r",
        events,
        [decision(events[0], "deny", 0), decision(events[1], "lock", 5)],
        make_truth(
            [
                Victim(account="V", attack=0, events=["a"]),
                Victim(account="W", attack=0, events=["b"]),
            ]
        ),
    )
    attack = evaluate_run(run)["attack"]
    assert (attack["blocked_at_login"], attack["detected"]) == (2, 1)
    assert attack["detection_delay_s"]["median"] == 5.0


def test_missing_truth_is_a_clear_error(tmp_path: Path) -> None:
    run = write_run(tmp_path / "r", [], [], make_truth([]))
    (run / "truth.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"truth\.json: not found"):
        evaluate_run(run)


def test_bad_decision_line_names_file_and_line(tmp_path: Path) -> None:
    run = write_run(tmp_path / "r", [], [], make_truth([]))
    (run / "decisions.ndjson").write_text('\n{"event": "e1"}\n')
    with pytest.raises(ValueError, match=r"decisions\.ndjson: line 2: .*ts"):
        evaluate_run(run)


def test_format_table_has_one_column_per_guard(main_run: Path, tmp_path: Path) -> None:
    empty = evaluate_run(write_run(tmp_path / "e", [], [], make_truth([])))
    empty["guard"] = "allow-all"
    table = format_table([evaluate_run(main_run), empty])
    assert [c.header for c in table.columns] == ["metric", "test-guard", "allow-all"]
    console = Console(width=120, record=True, color_system=None)
    console.print(table)
    text = console.export_text()
    assert "¥1,050,000" in text
    assert "25.00%" in text  # 1 of 4 legitimate logins challenged
    assert "52.0 s" in text and "2m 58s" in text  # 177.5 s rounds to 178 s
    assert "—" in text  # the empty run's null medians
    ja = Console(width=120, record=True, color_system=None)
    ja.print(format_table([empty], lang="ja"))
    assert "乗っ取り成立" in ja.export_text()


def test_cancels_count_as_the_guards_only_where_it_instructed_them(tmp_path: Path) -> None:
    """A cancel in the log is the guard's doing only for an order it named: customers cancel too."""
    victim = Victim(account="V1", attack=0, events=["v-login", "v-sell"], orders=["vo1"])
    events = [
        login("v-login", "V1", 0),
        order("v-sell", "V1", 10, "vo1", "sell"),
        order("l-buy", "L1", 20, "lo1", "buy"),
        order("l-buy2", "L1", 25, "lo2", "buy"),
        order("k-buy", "L2", 30, "ko1", "buy"),
        order("x1", "V1", 60, "vo1", "sell", action="cancel"),  # the broker, instructed
        order("x2", "L1", 61, "lo1", "buy", action="cancel"),  # the broker, instructed
        order("x3", "L2", 62, "ko1", "buy", action="cancel"),  # L2's own change of mind
    ]
    run = write_run(tmp_path / "run", events, [], make_truth([victim]))
    (run / "instructions.ndjson").write_bytes(
        b"".join(
            msgspec.json.encode(
                Instruction(
                    kind="cancel_orders",
                    ts=at(60),
                    account=account,
                    session="s",
                    orders=orders,
                    cause="c",
                )
            )
            + b"\n"
            for account, orders in (("V1", ("vo1",)), ("L1", ("lo1", "lo2")))
        )
    )
    metrics = evaluate_run(run)
    assert metrics["attack"]["unauthorized_orders_cancelled"] == 1
    assert metrics["legit"]["orders_cancelled"] == 1  # lo2 was named but never cancelled


def test_a_cancel_before_the_instruction_is_the_customers_own(tmp_path: Path) -> None:
    events = [
        order("l-buy", "L1", 20, "lo1", "buy"),
        order("x1", "L1", 30, "lo1", "buy", action="cancel"),  # the customer changed their mind
    ]
    run = write_run(tmp_path / "run", events, [], make_truth([]))
    late = Instruction(
        kind="cancel_orders", ts=at(60), account="L1", session="s", orders=("lo1",), cause="c"
    )
    (run / "instructions.ndjson").write_bytes(msgspec.json.encode(late) + b"\n")
    assert evaluate_run(run)["legit"]["orders_cancelled"] == 0


def test_sessions_signed_out_count_for_attackers_or_customers_by_whose_session(
    tmp_path: Path,
) -> None:
    victim = Victim(account="V1", attack=0, events=["v-login"], sessions=["s-thief"])
    run = write_run(tmp_path / "run", [login("v-login", "V1", 0)], [], make_truth([victim]))
    ended = [
        ("V1", "s-thief"),  # the attacker's session in the victim's account
        ("V1", "s-own"),  # the victim's own session, signed out too: friction
        ("L1", "s-l1"),
        ("L1", "s-l1"),  # asked twice, one session
        ("C1", "s-crook"),  # the criminals' own account: neither
    ]
    (run / "instructions.ndjson").write_bytes(
        b"".join(
            msgspec.json.encode(
                Instruction(kind="end_session", ts=at(60), account=a, session=s, cause="c")
            )
            + b"\n"
            for a, s in ended
        )
    )
    truth = make_truth([victim])
    truth = msgspec.structs.replace(truth, criminal_accounts=["C1"])
    save_truth(truth, run / "truth.json")
    metrics = evaluate_run(run)
    assert metrics["attack"]["sessions_signed_out"] == 1
    assert metrics["legit"]["sessions_signed_out"] == 2


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('{"scenario": "x", ', r"truth\.json: malformed JSON: Input data was truncated"),
        ("\ufeff{}", r"truth\.json: malformed JSON"),
        ('{"scenario": 1}', r"truth\.json: field `scenario`: Expected `str`, got `int`"),
    ],
)
def test_a_bad_truth_file_is_an_error_naming_it(tmp_path: Path, text: str, words: str) -> None:
    run = write_run(tmp_path / "r", [], [], make_truth([]))
    (run / "truth.json").write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=words):
        evaluate_run(run)


def _without_zone(line: bytes) -> bytes:
    """A JSON line whose ``ts`` lost its zone (2025-03-20T09:00:05, no +09:00 or Z)."""
    data = msgspec.json.decode(line)
    data["ts"] = data["ts"][:19]
    return msgspec.json.encode(data) + b"\n"


def test_a_decision_time_without_its_zone_is_refused_naming_file_line_and_field(
    tmp_path: Path,
) -> None:
    """A decision's time without a zone is not a moment; it was accepted silently, and the
    detection delay would have been measured from it."""
    event = login("a", "V", 0)
    run = write_run(
        tmp_path / "r",
        [event],
        [decision(event, "allow", 0), decision(event, "lock", 5)],
        make_truth([Victim(account="V", attack=0, events=["a"])]),
    )
    first, second = (run / "decisions.ndjson").read_bytes().splitlines()
    (run / "decisions.ndjson").write_bytes(first + b"\n" + _without_zone(second))
    with pytest.raises(ValueError, match=r"decisions\.ndjson: line 2: .*timezone.*`\$\.ts`"):
        evaluate_run(run)


def test_an_instruction_time_without_its_zone_is_refused_naming_file_and_line(
    tmp_path: Path,
) -> None:
    run = write_run(tmp_path / "r", [order("o", "V1", 0, "n1", "sell")], [], make_truth([]))
    line = msgspec.json.encode(
        Instruction(kind="cancel_orders", ts=at(1), account="V1", session="s", cause="c")
    )
    (run / "instructions.ndjson").write_bytes(_without_zone(line))
    with pytest.raises(ValueError, match=r"instructions\.ndjson: line 1: .*timezone.*`\$\.ts`"):
        evaluate_run(run)
