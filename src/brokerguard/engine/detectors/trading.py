"""Trading: does this order fit the account, or the takeover pattern of 2025?

The pattern was: sell most of the holdings, then at once buy a thin, low-priced instrument the
customer never traded — often in a market they never used, at a limit well above the last price,
sometimes on margin for the first time. Each of those is common on its own among honest customers
(a retail frenzy, a sell-off day), so each is only a modest signal; together, and on top of a
session that is not fully trusted, they are what gets an order held.
"""

from __future__ import annotations

import math

from brokerguard.engine.policy import TradingParams
from brokerguard.engine.signals import Signal
from brokerguard.engine.state import AccountState, SessionState, SymbolState
from brokerguard.events import Order

__all__ = ["TradingWatch", "holdings_value"]

MAX_BOUGHT = 48


def holdings_value(acc: AccountState, price_of) -> float:
    return sum(q * price_of(key) for key, q in acc.positions.items())


class TradingWatch:
    def __init__(self, params: TradingParams) -> None:
        self.p = params

    def order(
        self,
        order: Order,
        acc: AccountState,
        sess: SessionState | None,
        sym: SymbolState | None,
        value: float,
    ) -> list[Signal]:
        p = self.p
        signals: list[Signal] = []
        key = f"{order.market}:{order.symbol}"
        held_before = sess.holdings_value if sess is not None else 0.0
        sold = sess.sold_value if sess is not None else 0.0
        if order.side == "sell":
            if held_before > 0 and sold + value >= p.liquidation_share * held_before:
                signals.append(
                    Signal(
                        "liquidation",
                        p.liquidation_llr,
                        {"sold_share": round((sold + value) / held_before, 2)},
                    )
                )
            return signals
        if held_before > 0 and sold >= p.liquidation_share * held_before:
            signals.append(
                Signal(
                    "liquidation_then_buy",
                    p.liquidation_then_buy_llr,
                    {"sold_share": round(sold / held_before, 2)},
                )
            )
        known_markets = set(acc.markets) | {k.split(":", 1)[0] for k in acc.positions}
        if (acc.orders or acc.positions) and order.market not in known_markets:
            signals.append(Signal("first_in_market", p.first_market_llr, {"market": order.market}))
        if key not in acc.bought and key not in acc.positions:
            signals.append(Signal("first_in_symbol", p.first_symbol_llr, {"symbol": key}))
        if sym is not None:
            price = sym.last_price or sym.ref_price
            daily_value = sym.adv * price
            if 0 < daily_value < p.thin_daily_value_jpy:
                llr = min(
                    p.illiquid_cap,
                    p.illiquid_llr_per_decade * math.log10(p.thin_daily_value_jpy / daily_value),
                )
                signals.append(
                    Signal("illiquid_symbol", llr, {"daily_value_jpy": round(daily_value)})
                )
            if order.limit_price is not None and price > 0:
                pct = (order.limit_price / price - 1.0) * 100.0
                if pct > p.limit_above_pct:
                    llr = min(p.limit_cap, p.limit_llr_per_pct * (pct - p.limit_above_pct))
                    signals.append(Signal("limit_above_market", llr, {"above_pct": round(pct, 1)}))
        if acc.orders >= 5 and value > 0:
            sd = math.sqrt(acc.order_log_m2 / (acc.orders - 1)) if acc.orders > 1 else 0.0
            z = (math.log10(value) - acc.order_log_mean) / max(sd, 0.25)
            if z > p.size_sigmas:
                signals.append(Signal("unusual_size", p.size_llr, {"z": round(z, 1)}))
        if order.margin and not acc.margin_used and (acc.orders or acc.positions):
            signals.append(Signal("margin_first_use", p.margin_first_llr, {}))
        return signals

    @staticmethod
    def placed(order: Order, acc: AccountState, sess: SessionState | None, value: float) -> None:
        """An order went ahead: learn the account's habits from it.

        Its size only when finite: a quantity and a limit each within what an event may carry
        can multiply to more than a float holds, and one infinite value made the running mean
        inf and the variance NaN for good (no order of the account was ever unusual again)."""
        if 0 < value < math.inf:
            acc.orders += 1
            x = math.log10(value)
            delta = x - acc.order_log_mean
            acc.order_log_mean += delta / acc.orders
            acc.order_log_m2 += delta * (x - acc.order_log_mean)
        if order.side == "sell":
            if sess is not None:
                sess.sold_value += value
            return
        key = f"{order.market}:{order.symbol}"
        acc.bought = (*(k for k in acc.bought if k != key), key)[-MAX_BOUGHT:]
        if order.market not in acc.markets:
            acc.markets = (*acc.markets, order.market)
        if order.margin:
            acc.margin_used = True
