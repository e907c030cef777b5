"""Small hand-built runs for the report tests: events at exact Japan times, decisions, labels.

Every builder takes an explicit timestamp (``jst(...)``), so that tests of month boundaries say
precisely which side of midnight an event falls on.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import msgspec

from brokerguard.events import (
    ChallengeResult,
    Event,
    Execution,
    LoginAttempt,
    MarketBar,
    Order,
    Withdrawal,
    write_ndjson,
)
from brokerguard.guard import DecisionRecord
from brokerguard.truth import Truth, Victim, save_truth

JST = timezone(timedelta(hours=9))


def jst(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0):
    return datetime(year, month, day, hour, minute, second, tzinfo=JST)


def login(id: str, account: str, ts: datetime, success: bool = True) -> LoginAttempt:
    return LoginAttempt(
        id=id,
        ts=ts,
        account=account,
        session=f"s-{id}",
        ip="203.0.113.7",
        user_agent="UA",
        factors=["password"],
        success=success,
    )


def result(id: str, account: str, ts: datetime, ref: str, outcome: str, factor: str = "sms"):
    return ChallengeResult(id=id, ts=ts, account=account, ref=ref, factor=factor, outcome=outcome)


def order(
    id: str, account: str, ts: datetime, order_id: str, symbol: str, side: str, quantity: int
) -> Order:
    return Order(
        id=id,
        ts=ts,
        account=account,
        session="s",
        order_id=order_id,
        symbol=symbol,
        market="TSE",
        side=side,
        quantity=quantity,
        price_type="market",
    )


def fill(
    id: str,
    account: str,
    ts: datetime,
    order_id: str,
    symbol: str,
    side: str,
    quantity: int,
    price: float,
) -> Execution:
    return Execution(
        id=id,
        ts=ts,
        account=account,
        order_id=order_id,
        symbol=symbol,
        market="TSE",
        side=side,
        quantity=quantity,
        price=price,
        value_jpy=quantity * price,
    )


def daily(id: str, symbol: str, ts: datetime, close: float) -> MarketBar:
    """A daily bar stamped at the close, as the simulator writes it."""
    return MarketBar(
        id=id,
        ts=ts,
        symbol=symbol,
        market="TSE",
        minutes=1440,
        open=close,
        high=close,
        low=close,
        close=close,
        volume=1000,
    )


def bar(id: str, symbol: str, ts: datetime, close: float, minutes: int = 5) -> MarketBar:
    return MarketBar(
        id=id,
        ts=ts,
        symbol=symbol,
        market="TSE",
        minutes=minutes,
        open=close,
        high=close,
        low=close,
        close=close,
        volume=100,
    )


def withdrawal(id: str, account: str, ts: datetime, amount: float) -> Withdrawal:
    return Withdrawal(id=id, ts=ts, account=account, session="s", amount_jpy=amount)


def decision(event: Event, action: str) -> DecisionRecord:
    point = {"login": "login", "order": "order", "withdrawal": "withdrawal"}
    return DecisionRecord(
        event=event.id,
        ts=event.ts,
        account=event.account,  # type: ignore[union-attr]
        point=point[event.__struct_config__.tag],  # type: ignore[index]
        guard="test-guard",
        action=action,
        score=0.5,
        factors=("sms",) if action == "challenge" else (),
    )


def truth(victims: list[Victim], criminals: list[str] | None = None) -> Truth:
    return Truth(
        scenario="unit",
        seed=1,
        guard="test-guard",
        investors=10,
        start=jst(2025, 3, 1),
        end=jst(2025, 7, 1),
        victims=victims,
        criminal_accounts=criminals or [],
    )


def write_run(
    run: Path,
    events: list[Event],
    decisions: list[DecisionRecord] | None = None,
    labels: Truth | None = None,
) -> Path:
    """A run directory; ``decisions=None`` writes no decisions file (a broker's bare history)."""
    run.mkdir(parents=True, exist_ok=True)
    with (run / "events.ndjson").open("wb") as stream:
        write_ndjson(stream, sorted(events, key=lambda e: e.ts))
    if decisions is not None:
        (run / "decisions.ndjson").write_bytes(
            b"".join(msgspec.json.encode(d) + b"\n" for d in decisions)
        )
    if labels is not None:
        save_truth(labels, run / "truth.json")
    return run
