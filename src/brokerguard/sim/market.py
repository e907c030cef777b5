"""The simulated market: instruments, prices that respond to order flow, fills and bars.

Prices are a random walk (the rest of the market) times an impact term driven by the simulated
customers' own net order flow, with the square-root law of market impact: buying ``Q`` shares of a
stock that trades ``ADV`` a day moves its price by about ``k · σ_daily · sqrt(Q / ADV)``. Impact
decays with a half-life of a couple of hours, so a thin stock that hundreds of hijacked accounts
buy within an hour really is pumped, and falls back once the buying stops and the criminals sell.

All prices are in JPY; ``Instrument.currency`` only says what the stock trades in at home.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from brokerguard.sim.calendar import TradingCalendar

__all__ = ["Fill", "Market", "SimInstrument", "build_universe"]

IMPACT_K = 0.5
IMPACT_HALF_LIFE_S = 2 * 3600
BAR_SECONDS = 300
WALK_STEP_S = 3600
WALK_STEP_SIGMA = math.sqrt(WALK_STEP_S / 86400)
_FX = {"JPY": 1.0, "HKD": 19.0, "CNY": 20.5, "USD": 150.0}


@dataclass(slots=True)
class SimInstrument:
    symbol: str
    market: str
    segment: str
    currency: str
    lot_size: int
    base_price: float  # JPY, the random-walk part
    adv: int  # average daily volume, shares
    shares_out: int
    daily_vol: float
    thin: bool
    impact: float = 0.0  # log-price impact of simulated flow
    t: int = 0  # last time the impact was brought up to date
    walk_t: int = 0  # the random walk's last grid point
    walk: random.Random | None = None  # this instrument's own random stream
    # bar under construction
    bar_start: int = -1
    bar_open: float = 0.0
    bar_high: float = 0.0
    bar_low: float = 0.0
    bar_volume: int = 0
    day_volume: int = 0
    resting: list[RestingOrder] = field(default_factory=list)

    @property
    def market_cap_jpy(self) -> float:
        return self.base_price * self.shares_out


@dataclass(slots=True)
class RestingOrder:
    """A limit order from a simulated account waiting in the book until it fills or expires."""

    order_id: str
    account: str
    side: str
    quantity: int
    limit: float
    expires: int


@dataclass(slots=True, frozen=True)
class Fill:
    order_id: str
    account: str
    side: str
    quantity: int
    price: float


def _lognormal(rng: random.Random, median: float, sigma: float) -> float:
    return median * math.exp(rng.gauss(0.0, sigma))


def build_universe(rng: random.Random) -> list[SimInstrument]:
    """A deterministic universe shaped like the markets Japanese retail investors use.

    Heavy-tailed average daily volume; a band of thin Tokyo small caps priced ¥100–200 with market
    cap under ¥5bn, and thin Hong Kong and Shanghai/Shenzhen names, which is what was pumped in
    2025.
    """
    out: list[SimInstrument] = []
    codes = iter(rng.sample(range(1300, 9999), 1400))

    def add(
        market: str,
        segment: str,
        currency: str,
        symbol: str,
        lot: int,
        price: float,
        adv: float,
        vol: float,
        thin: bool,
        mcap: float | None = None,
    ) -> None:
        price = max(price, 1.0)
        shares_out = int((mcap / price) if mcap else adv * rng.uniform(300, 3000))
        out.append(
            SimInstrument(
                symbol,
                market,
                segment,
                currency,
                lot,
                round(price, 2),
                max(int(adv), 100),
                max(shares_out, 10_000),
                vol,
                thin,
            )
        )

    for _ in range(300):
        add(
            "TSE",
            "Prime",
            "JPY",
            str(next(codes)),
            100,
            _lognormal(rng, 2500, 0.8),
            _lognormal(rng, 800_000, 1.2),
            rng.uniform(0.012, 0.025),
            False,
        )
    for _ in range(250):
        add(
            "TSE",
            "Standard",
            "JPY",
            str(next(codes)),
            100,
            _lognormal(rng, 900, 0.7),
            _lognormal(rng, 60_000, 1.2),
            rng.uniform(0.015, 0.03),
            False,
        )
    for _ in range(200):
        add(
            "TSE",
            "Growth",
            "JPY",
            str(next(codes)),
            100,
            _lognormal(rng, 800, 0.8),
            _lognormal(rng, 150_000, 1.3),
            rng.uniform(0.025, 0.05),
            False,
        )
    for _ in range(120):  # thin small caps: ¥100–200, market cap under ¥5bn
        segment = rng.choice(("Standard", "Growth"))
        add(
            "TSE",
            segment,
            "JPY",
            str(next(codes)),
            100,
            rng.uniform(100, 200),
            _lognormal(rng, 40_000, 0.8),
            rng.uniform(0.03, 0.06),
            True,
            mcap=rng.uniform(1.5e9, 4.9e9),
        )
    hk = iter(rng.sample(range(1, 9999), 300))
    for i in range(180):
        thin = i >= 120
        price_hkd = rng.uniform(0.3, 2.5) if thin else _lognormal(rng, 20, 1.0)
        adv = _lognormal(rng, 400_000 if thin else 5_000_000, 1.0)
        add(
            "HK",
            "Main" if not thin else "GEM",
            "HKD",
            f"{next(hk):04d}",
            rng.choice((500, 1000, 2000)),
            price_hkd * _FX["HKD"],
            adv,
            rng.uniform(0.02, 0.06) if thin else rng.uniform(0.015, 0.03),
            thin,
        )
    cn = iter(rng.sample(range(1, 3999), 300))
    for i in range(160):
        thin = i >= 110
        prefix = "600" if i % 2 == 0 else "000"
        price_cny = rng.uniform(2.5, 6.0) if thin else _lognormal(rng, 15, 0.8)
        adv = _lognormal(rng, 300_000 if thin else 8_000_000, 1.0)
        add(
            "CN",
            "SSE" if prefix == "600" else "SZSE",
            "CNY",
            f"{prefix}{next(cn):03d}"[-6:],
            100,
            price_cny * _FX["CNY"],
            adv,
            rng.uniform(0.02, 0.05) if thin else rng.uniform(0.015, 0.03),
            thin,
        )
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    tickers: set[str] = set()
    while len(tickers) < 220:
        tickers.add("".join(rng.choice(letters) for _ in range(rng.choice((3, 4)))))
    for i, ticker in enumerate(sorted(tickers)):
        thin = i % 11 == 0
        price_usd = rng.uniform(1.0, 4.0) if thin else _lognormal(rng, 80, 1.0)
        adv = _lognormal(rng, 150_000 if thin else 3_000_000, 1.0)
        add(
            "US",
            "NASDAQ" if i % 2 else "NYSE",
            "USD",
            ticker,
            1,
            price_usd * _FX["USD"],
            adv,
            rng.uniform(0.04, 0.08) if thin else rng.uniform(0.012, 0.03),
            thin,
        )
    return out


class Market:
    """Prices, the book of resting simulated orders, fills and bars for every instrument."""

    def __init__(
        self,
        instruments: list[SimInstrument],
        calendar: TradingCalendar,
        rng: random.Random,
        start: int,
    ) -> None:
        self.instruments = instruments
        self.by_symbol = {(i.market, i.symbol): i for i in instruments}
        self.calendar = calendar
        self.rng = rng
        for inst in instruments:
            inst.t = inst.walk_t = start
            inst.walk = random.Random(f"{rng.random()}-{inst.market}-{inst.symbol}")
        self.shock: dict[str, tuple[int, int, float]] = {}  # market -> (from, to, total log move)
        # Instruments with a bar under construction, and with resting orders (insertion-ordered
        # dicts rather than sets, so that runs are reproducible).
        self.touched: dict[tuple[str, str], SimInstrument] = {}
        self.books: dict[tuple[str, str], SimInstrument] = {}

    # --- prices ----------------------------------------------------------------------------
    def _advance(self, inst: SimInstrument, t: int) -> None:
        # The random walk steps on a fixed hourly grid from the instrument's own stream, so the
        # path does not depend on when (or how often) someone looks at the price: runs of the
        # same seed under different guards see the same market, apart from their own orders.
        step_sigma = inst.daily_vol * WALK_STEP_SIGMA
        shock = self.shock.get(inst.market)
        while inst.walk_t + WALK_STEP_S <= t:
            a = inst.walk_t
            inst.walk_t += WALK_STEP_S
            inst.base_price *= math.exp(inst.walk.gauss(0.0, step_sigma))  # type: ignore[union-attr]
            if shock is not None:
                lo, hi, move = shock
                overlap = max(0, min(inst.walk_t, hi) - max(a, lo))
                if overlap:
                    inst.base_price *= math.exp(move * overlap / (hi - lo))
        dt = t - inst.t
        if dt > 0:
            inst.impact *= 0.5 ** (dt / IMPACT_HALF_LIFE_S)
            inst.t = t

    def price(self, inst: SimInstrument, t: int) -> float:
        self._advance(inst, t)
        return inst.base_price * math.exp(inst.impact)

    def add_selloff(self, market: str, start: int, end: int, move: float) -> None:
        """A market-wide fall of ``move`` (log return) spread over ``[start, end)``."""
        self.shock[market] = (start, end, move)

    # --- order handling ----------------------------------------------------------------------
    def _impact(self, inst: SimInstrument, side: str, quantity: int) -> None:
        sign = 1.0 if side == "buy" else -1.0
        inst.impact += sign * IMPACT_K * inst.daily_vol * math.sqrt(quantity / inst.adv)

    def _record(self, inst: SimInstrument, t: int, price: float, quantity: int) -> None:
        start = t - t % BAR_SECONDS
        if inst.bar_start != start:
            inst.bar_start = -1  # the caller flushes finished bars before trading in a new one
        if inst.bar_start < 0:
            inst.bar_start = start
            inst.bar_open = inst.bar_high = inst.bar_low = price
            inst.bar_volume = 0
        self.touched[(inst.market, inst.symbol)] = inst
        inst.bar_high = max(inst.bar_high, price)
        inst.bar_low = min(inst.bar_low, price)
        inst.bar_volume += quantity
        inst.day_volume += quantity

    def execute(
        self,
        inst: SimInstrument,
        t: int,
        order_id: str,
        account: str,
        side: str,
        quantity: int,
        limit: float | None,
        expires: int,
    ) -> list[Fill]:
        """Match an order against resting simulated orders, then the rest of the market.

        Resting orders of other simulated accounts (the criminals' sells, say) are matched first
        at their own price; what remains trades against the market at the current price if the
        limit allows, and otherwise rests until ``expires``.
        """
        fills: list[Fill] = []
        remaining = quantity
        book = inst.resting
        if book:
            opposite = sorted(
                (r for r in book if r.side != side and r.account != account and r.expires > t),
                key=lambda r: r.limit if side == "buy" else -r.limit,
            )
            for r in opposite:
                if remaining == 0:
                    break
                crosses = limit is None or (r.limit <= limit if side == "buy" else r.limit >= limit)
                if not crosses:
                    break
                q = min(remaining, r.quantity)
                fills.append(Fill(r.order_id, r.account, r.side, q, r.limit))
                fills.append(Fill(order_id, account, side, q, r.limit))
                r.quantity -= q
                remaining -= q
                self._record(inst, t, r.limit, q)
            inst.resting = [r for r in book if r.quantity > 0 and r.expires > t]
        if remaining:
            price = self.price(inst, t)
            spread = 1.0 + 0.001 * (1 if side == "buy" else -1)
            fill_price = round(price * spread, 2)
            marketable = limit is None or (
                fill_price <= limit if side == "buy" else fill_price >= limit
            )
            if marketable:
                fills.append(Fill(order_id, account, side, remaining, fill_price))
                self._impact(inst, side, remaining)
                self._record(inst, t, fill_price, remaining)
            else:
                inst.resting.append(
                    RestingOrder(order_id, account, side, remaining, float(limit), expires)
                )  # type: ignore[arg-type]
                self.books[(inst.market, inst.symbol)] = inst
        return fills

    def cancel(self, inst: SimInstrument, order_id: str) -> bool:
        before = len(inst.resting)
        inst.resting = [r for r in inst.resting if r.order_id != order_id]
        return len(inst.resting) != before

    def sweep(self, inst: SimInstrument, t: int) -> list[Fill]:
        """Fill resting orders that the market price has reached; drop expired ones."""
        fills: list[Fill] = []
        keep: list[RestingOrder] = []
        price = self.price(inst, t)
        for r in inst.resting:
            if r.expires <= t:
                continue
            if (r.side == "buy" and price <= r.limit) or (r.side == "sell" and price >= r.limit):
                fills.append(Fill(r.order_id, r.account, r.side, r.quantity, r.limit))
                self._record(inst, t, r.limit, r.quantity)
            else:
                keep.append(r)
        inst.resting = keep
        return fills
