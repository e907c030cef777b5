"""Legitimate behaviour that looks like an attack, so that friction is measured where it hurts.

A retail frenzy (hundreds of real customers buying one thin stock for the first time within an
hour), a market-wide sell-off day, customers abroad, new phones: a guard that stops attackers by
punishing these is not a guard a broker can run.
"""

from __future__ import annotations

import random
from datetime import datetime

from brokerguard.sim.calendar import JST
from brokerguard.sim.customers import customer_session
from brokerguard.sim.devices import random_device
from brokerguard.sim.networks import random_ip_of
from brokerguard.sim.population import Device, Investor
from brokerguard.sim.runner import Actor, Simulation
from brokerguard.sim.scenario import Confounder
from brokerguard.truth import ConfounderLabel

__all__ = ["plan_confounder", "daily_changes"]

DAY = 86400


def plan_confounder(sim: Simulation, index: int, conf: Confounder) -> None:
    rng = random.Random(f"{sim.scenario.seed}-confounder-{index}")
    start = int(conf.start.timestamp())
    if conf.kind == "frenzy":
        pool = [
            i
            for i in sim.thin_by_market[conf.market]
            if (i.market, i.symbol) not in sim.reserved_symbols
        ]
        inst = rng.choice(pool)
        sim.reserved_symbols.add((inst.market, inst.symbol))
        when = sim.calendar.next_open(inst.market, start)
        buyers = [
            inv
            for inv in sim.investors
            if inv.account not in sim.reserved_accounts and inv.cash > 50_000
        ]
        chosen = rng.sample(buyers, min(conf.buyers, len(buyers)))
        for inv in chosen:
            sim.spawn(when + int(rng.expovariate(1 / 1200)) % 3600, _once(sim, inv, ("buy", inst)))
        _label(sim, index, conf, when, when + 3600, chosen, inst.symbol, inst.market)
    elif conf.kind == "selloff":
        for market, move in (("TSE", -0.08), ("HK", -0.12), ("CN", -0.07), ("US", -0.05)):
            opens = sim.calendar.next_open(market, start)
            sim.market.add_selloff(market, opens, opens + 3 * 3600, move)
        opens = sim.calendar.next_open("TSE", start)
        holders = [inv for inv in sim.investors if inv.positions]
        chosen = rng.sample(holders, int(len(holders) * conf.share))
        for inv in chosen:
            sim.spawn(opens + int(rng.uniform(0, 6 * 3600)), _once(sim, inv, ("selloff",)))
        _label(sim, index, conf, opens, opens + 6 * 3600, chosen)
    else:
        days = conf.days or max(1, (sim.end - start) // DAY)
        sim.spawn(start, daily_changes(sim, conf.kind, conf.share, days, rng), priority=0)
        _label(sim, index, conf, start, min(sim.end, start + days * DAY), [])


def _label(
    sim: Simulation,
    index: int,
    conf: Confounder,
    start: int,
    end: int,
    accounts: list[Investor],
    symbol: str = "",
    market: str = "",
) -> None:
    """Note the confounder in the run's truth, for measuring the friction a guard caused it."""
    sim.truth.confounders.append(
        ConfounderLabel(
            index=index,
            kind=conf.kind,
            start=datetime.fromtimestamp(start, JST),
            end=datetime.fromtimestamp(end, JST),
            symbol=symbol,
            market=market,
            accounts=[inv.account for inv in accounts],
        )
    )


def _once(sim: Simulation, inv, purpose: tuple) -> Actor:
    yield from customer_session(sim, inv, purpose)


def daily_changes(sim: Simulation, kind: str, share: float, days: int, rng: random.Random) -> Actor:
    """Each day, send a share of customers abroad, or give them a new device."""
    for _ in range(days):
        if kind == "travel":
            # Trips last 2–8 days, so starting share/5 a day keeps about `share` abroad.
            for inv in rng.sample(sim.investors, int(len(sim.investors) * share / 5)):
                inv.abroad_until = sim.now + rng.randint(2, 8) * DAY
                inv.abroad_ip = random_ip_of("overseas_home", rng)
        elif kind == "new_device":
            for inv in rng.sample(sim.investors, int(len(sim.investors) * share)):
                profile = random_device(rng, "phone")
                device = Device(
                    sim.new_id("d"),
                    profile.kind,
                    profile.user_agent,
                    inv.passkey and rng.random() < 0.5,
                )
                inv.devices.insert(0, device)
                del inv.devices[3:]
        yield DAY
