"""Assemble a run: the broker's accounts, the market clock, customers, attacks, confounders.

:func:`simulate` is what ``brokerguard simulate`` calls: it builds the world for a scenario,
runs it against a guard and writes ``events.ndjson``, ``decisions.ndjson`` and ``truth.json``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import msgspec

from brokerguard.events import AccountSnapshot, HoldingsSnapshot, Instrument, MarketBar, Position
from brokerguard.files import replaced
from brokerguard.guard import Guard
from brokerguard.sim.attackers import plan_attack
from brokerguard.sim.calendar import JST
from brokerguard.sim.confounders import daily_changes, plan_confounder
from brokerguard.sim.customers import customer_life
from brokerguard.sim.flows import apply_fills
from brokerguard.sim.market import BAR_SECONDS, SimInstrument
from brokerguard.sim.networks import pick_block, random_ip, random_ip_of
from brokerguard.sim.population import Investor
from brokerguard.sim.runner import Actor, RunSummary, Simulation, open_outputs
from brokerguard.sim.scenario import Scenario
from brokerguard.truth import save_truth

__all__ = ["build_simulation", "simulate"]

_CURRENCY = {"TSE": "JPY", "HK": "HKD", "CN": "CNY", "US": "USD"}
_BARS_PER_DAY = {"TSE": 60, "HK": 66, "CN": 48, "US": 78}


def build_simulation(
    scenario: Scenario, guard: Guard, events_out=None, decisions_out=None, instructions_out=None
) -> Simulation:
    sim = Simulation(
        scenario,
        guard,
        events_out=events_out,
        decisions_out=decisions_out,
        instructions_out=instructions_out,
    )
    rng = random.Random(f"{scenario.seed}-world")
    sim.thin_by_market = {}
    sim.liquid_by_market = {}
    for inst in sim.market.instruments:
        group = sim.thin_by_market if inst.thin else sim.liquid_by_market
        group.setdefault(inst.market, []).append(inst)
    sim.vpn_ips = [random_ip_of("vpn", rng) for _ in range(40)]
    sim.reserved_symbols = set()
    sim.reserved_accounts = set()
    next_account = [len(sim.investors)]

    def add_account(cash: float) -> Investor:
        next_account[0] += 1
        block = pick_block("jp_home", rng)
        holder = Investor(
            account=f"A{next_account[0]:07d}",
            devices=[],
            home_block=block,
            home_ip=random_ip(block, rng),
            mobile_block=pick_block("jp_mobile", rng),
            vpn=False,
            logins_per_day=1.0,
            hours=(10.0,),
            markets={"TSE": 1.0},
            trade_prob=0.0,
            order_jpy=0.0,
            thin_taste=0.0,
            margin=False,
            passkey=False,
            otp_channel="email",
            cash=cash,
            rng=random.Random(rng.getrandbits(64)),
        )
        sim.by_account[holder.account] = holder
        return holder

    sim.add_account = add_account
    sim.spawn(sim.start, _opening(sim), priority=0)
    sim.spawn(sim.start - sim.start % BAR_SECONDS + BAR_SECONDS, _market_clock(sim), priority=0)
    for i, conf in enumerate(scenario.confounder):
        plan_confounder(sim, i, conf)
    for i, attack in enumerate(scenario.attack):
        plan_attack(sim, i, attack)
    days = scenario.days
    broker = scenario.broker
    if broker.travel_rate:
        sim.spawn(sim.start, daily_changes(sim, "travel", broker.travel_rate, days, rng), 0)
    if broker.new_device_rate:
        sim.spawn(sim.start, daily_changes(sim, "new_device", broker.new_device_rate, days, rng), 0)
    for inv in sim.investors:
        sim.spawn(sim.start, customer_life(sim, inv))
    return sim


def _opening(sim: Simulation) -> Actor:
    """Reference data and the nightly snapshots a broker has before the first event."""
    broker = sim.scenario.broker
    for inst in sim.market.instruments:
        sim.emit(
            Instrument(
                id=sim.new_id("i"),
                ts=sim.ts,
                symbol=inst.symbol,
                market=inst.market,
                segment=inst.segment,  # type: ignore[arg-type]
                currency=_CURRENCY[inst.market],  # type: ignore[arg-type]
                lot_size=inst.lot_size,
                price=round(inst.base_price, 2),
                avg_daily_volume=inst.adv,
                market_cap_jpy=round(inst.market_cap_jpy),
            )
        )
    rng = random.Random(f"{sim.scenario.seed}-opened")
    for inv in sim.investors:
        opened = sim.start - int(86400 * 365 * rng.uniform(0.1, 20))
        sim.emit(
            AccountSnapshot(
                id=sim.new_id("a"),
                ts=sim.ts,
                account=inv.account,
                opened=_at(opened),
                passkey_enrolled=inv.passkey,
                password_login=not inv.passkey or broker.password_fallback,
                otp_channel=inv.otp_channel,  # type: ignore[arg-type]
            )
        )
        sim.emit(
            HoldingsSnapshot(
                id=sim.new_id("h"),
                ts=sim.ts,
                account=inv.account,
                cash_jpy=inv.cash,
                positions=[
                    Position(
                        symbol=s,
                        market=m,
                        quantity=q,  # type: ignore[arg-type]
                        nisa=(m, s) in inv.nisa,
                    )
                    for (m, s), q in inv.positions.items()
                ],
            )
        )
    return
    yield 0


def _market_clock(sim: Simulation) -> Actor:
    """Every five minutes: finished bars, resting orders the price reached; daily bars at close."""
    market = sim.market
    rng = random.Random(f"{sim.scenario.seed}-clock")
    closes = {m: _day_closes(sim, m) for m in ("TSE", "HK", "CN", "US")}
    day_open: dict[tuple[str, str], float] = {}
    while True:
        t = sim.now
        for inst in list(market.touched.values()):
            if inst.bar_start >= 0 and inst.bar_start + BAR_SECONDS <= t:
                _emit_bar(sim, inst, rng)
        for inst in list(market.books.values()):
            if sim.calendar.is_open(inst.market, t) or not inst.resting:
                apply_fills(sim, inst, market.sweep(inst, t))
            if not inst.resting:
                market.books.pop((inst.market, inst.symbol), None)
        for m, times in closes.items():
            if times and times[0] <= t:
                times.pop(0)
                for inst in sim.market.instruments:
                    if inst.market == m:
                        _emit_daily_bar(sim, inst, rng, day_open)
        yield BAR_SECONDS


def _day_closes(sim: Simulation, market: str) -> list[int]:
    closes: dict[int, int] = {}
    for a, b in sim.calendar.intervals[market]:
        if sim.start <= b:
            day = (a + 32400) // 86400
            closes[day] = max(closes.get(day, 0), b)
    return sorted(closes.values())


def _emit_bar(sim: Simulation, inst: SimInstrument, rng: random.Random) -> None:
    background = int(inst.adv / _BARS_PER_DAY[inst.market] * math.exp(rng.gauss(-0.1, 0.45)))
    close = round(sim.market.price(inst, inst.bar_start + BAR_SECONDS), 2)
    sim.emit(
        MarketBar(
            id=sim.new_id("b"),
            ts=_at(inst.bar_start),
            symbol=inst.symbol,
            market=inst.market,
            minutes=BAR_SECONDS // 60,  # type: ignore[arg-type]
            open=inst.bar_open,
            high=max(inst.bar_high, close),
            low=min(inst.bar_low, close),
            close=close,
            volume=inst.bar_volume + background,
        )
    )
    inst.bar_start = -1
    sim.market.touched.pop((inst.market, inst.symbol), None)


def _emit_daily_bar(
    sim: Simulation, inst: SimInstrument, rng: random.Random, day_open: dict[tuple[str, str], float]
) -> None:
    key = (inst.market, inst.symbol)
    close = round(sim.market.price(inst, sim.now), 2)
    open_ = day_open.get(key, close)
    wiggle = abs(rng.gauss(0, inst.daily_vol / 2))
    high = round(max(open_, close) * (1 + wiggle), 2)
    low = round(min(open_, close) * (1 - wiggle), 2)
    volume = int(inst.adv * math.exp(rng.gauss(-0.1, 0.45))) + inst.day_volume
    sim.emit(
        MarketBar(
            id=sim.new_id("b"),
            ts=sim.ts,
            symbol=inst.symbol,
            market=inst.market,
            minutes=1440,  # type: ignore[arg-type]
            open=open_,
            high=high,
            low=max(0.01, low),
            close=close,
            volume=volume,
        )
    )
    inst.day_volume = 0
    day_open[key] = close


def _at(t: int) -> datetime:
    return datetime.fromtimestamp(t, JST)


def simulate(
    scenario: Scenario, guard: Guard, out_dir: Path, progress: Callable[[float], None] | None = None
) -> RunSummary:
    """Run ``scenario`` against ``guard`` and write the run's files into ``out_dir``."""
    events_out, decisions_out, instructions_out = open_outputs(out_dir)
    with events_out, decisions_out, instructions_out:
        sim = build_simulation(scenario, guard, events_out, decisions_out, instructions_out)
        summary = sim.run(progress)
    save_truth(sim.truth, out_dir / "truth.json")
    write_campaigns(guard, out_dir)
    return summary


def write_campaigns(guard: Guard, out_dir: Path) -> None:
    """Write the campaigns a guard raised (if it raises any) to ``campaigns.ndjson``."""
    records = getattr(guard, "campaign_records", None)
    if records is None:
        return
    encoder = msgspec.json.Encoder()
    with replaced(out_dir / "campaigns.ndjson", "wb") as out:
        for record in records():
            out.write(encoder.encode(record) + b"\n")
