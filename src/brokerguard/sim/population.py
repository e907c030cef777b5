"""The broker's customers: devices, networks, habits, holdings and cash.

Habits are heavy-tailed because real brokerages are: a few day traders log in several times a
day, most NISA savers once a month. Networks come from real Japanese ISP and carrier ranges
(:mod:`brokerguard.sim.networks`), devices from real user-agent mixes
(:mod:`brokerguard.sim.devices`), so the guard sees what a broker's logs would show.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from brokerguard.sim.devices import random_device
from brokerguard.sim.market import SimInstrument
from brokerguard.sim.networks import Block, pick_block, random_ip
from brokerguard.sim.scenario import Broker

__all__ = ["Device", "Investor", "build_population"]

_MARKET_TASTES = (  # (weight, {market: share of this investor's buys})
    (0.55, {"TSE": 1.0}),
    (0.25, {"TSE": 0.6, "US": 0.4}),
    (0.12, {"US": 0.8, "TSE": 0.2}),
    (0.05, {"TSE": 0.5, "HK": 0.25, "CN": 0.25}),
    (0.03, {"HK": 0.5, "CN": 0.3, "TSE": 0.2}),
)


@dataclass(slots=True)
class Device:
    cookie: str
    kind: str
    user_agent: str
    has_passkey: bool


@dataclass(slots=True)
class Investor:
    account: str
    devices: list[Device]
    home_block: Block
    home_ip: str
    mobile_block: Block
    vpn: bool
    logins_per_day: float
    hours: tuple[float, ...]
    markets: dict[str, float]
    trade_prob: float
    order_jpy: float
    thin_taste: float
    margin: bool
    passkey: bool
    otp_channel: str
    cash: float
    positions: dict[tuple[str, str], int] = field(default_factory=dict)
    nisa: set[tuple[str, str]] = field(default_factory=set)
    bought_before: set[tuple[str, str]] = field(default_factory=set)
    last_session: tuple[str, str, str, str] | None = None  # session, device cookie, ip, ua
    locked_until: int = 0
    abroad_until: int = 0
    abroad_ip: str = ""
    victim: bool = False
    rng: random.Random | None = None
    """This customer's own random stream, so that one guard's friction does not reshuffle
    every other customer's behaviour: runs under different guards stay comparable."""


def build_population(
    broker: Broker,
    instruments: list[SimInstrument],
    rng: random.Random,
    prices: dict[tuple[str, str], float],
) -> list[Investor]:
    """Customers with habits drawn once; deterministic for the generator's state."""
    by_market: dict[str, list[SimInstrument]] = {}
    for inst in instruments:
        if not inst.thin:
            by_market.setdefault(inst.market, []).append(inst)
    tastes = [t for _, t in _MARKET_TASTES]
    taste_weights = [w for w, _ in _MARKET_TASTES]
    investors: list[Investor] = []
    shared_home: tuple[Block, str] | None = None
    for n in range(broker.investors):
        account = f"A{n + 1:07d}"
        devices = []
        for d in range(rng.choices((1, 2, 3), (0.45, 0.4, 0.15))[0]):
            profile = random_device(rng, "phone" if d == 0 and rng.random() < 0.55 else None)
            devices.append(Device(f"d{n + 1:07d}{d}", profile.kind, profile.user_agent, False))
        if shared_home is not None and rng.random() < 0.06:  # a household sharing one line
            home_block, home_ip = shared_home
        else:
            home_block = pick_block("jp_home", rng)
            home_ip = random_ip(home_block, rng)
        shared_home = (home_block, home_ip)
        passkey = rng.random() < broker.passkey_enrolled
        if passkey:
            for device in devices:
                device.has_passkey = rng.random() < 0.85
            devices[0].has_passkey = True
        rate = min(6.0, max(1 / 60, 0.15 * math.exp(rng.gauss(0.0, 1.2))))
        n_hours = rng.choice((1, 2, 3))
        hours = tuple(
            rng.choice((7.5, 8.5, 9.2, 10.5, 12.0, 12.3, 14.0, 19.5, 20.5, 21.5, 22.5, 23.3))
            + rng.uniform(-0.5, 0.5)
            for _ in range(n_hours)
        )
        markets = rng.choices(tastes, taste_weights)[0]
        cash = 30_000 * math.exp(rng.gauss(2.5, 1.3))
        investor = Investor(
            account=account,
            devices=devices,
            home_block=home_block,
            home_ip=home_ip,
            mobile_block=pick_block("jp_mobile", rng),
            vpn=rng.random() < 0.03,
            logins_per_day=rate,
            hours=hours,
            markets=markets,
            trade_prob=min(0.9, 0.15 + 0.1 * rate + rng.uniform(0, 0.15)),
            order_jpy=100_000 * math.exp(rng.gauss(0.3, 1.0)),
            thin_taste=0.05 if rng.random() < 0.08 else 0.0,
            margin=rng.random() < 0.06,
            passkey=passkey,
            otp_channel=broker.otp_channel,
            cash=round(cash),
        )
        # Holdings: a few positions in the markets this investor likes.
        value = 60_000 * math.exp(rng.gauss(2.6, 1.3))
        n_pos = rng.choices((0, 1, 2, 3, 5, 8), (0.08, 0.2, 0.25, 0.22, 0.15, 0.1))[0]
        for _ in range(n_pos):
            market = rng.choices(list(markets), list(markets.values()))[0]
            inst = rng.choice(by_market[market])
            key = (inst.market, inst.symbol)
            lots = max(1, int(value / n_pos / (prices[key] * inst.lot_size)))
            investor.positions[key] = investor.positions.get(key, 0) + lots * inst.lot_size
            investor.bought_before.add(key)
            if market == "TSE" and rng.random() < 0.4:
                investor.nisa.add(key)
        investor.rng = random.Random(rng.getrandbits(64))
        investors.append(investor)
    return investors
