"""The reference broker's own books: customers, their cash and positions, orders, instruments.

A real broker has all of this already; the demo site keeps a minimal version in the same
:class:`~brokerguard.auth.store.AuthStore` as its authentication records so that it runs from
one SQLite file. Instruments are a fixed, small list (one liquid large cap, one thin small cap
of the kind the 2025 pump-and-dump used), told to the guard as reference data at start-up.
"""

from __future__ import annotations

import secrets
import threading
from datetime import UTC, datetime

import msgspec

from brokerguard.auth.store import AuthStore, Records
from brokerguard.events import Instrument

__all__ = ["INSTRUMENTS", "Book", "Customer", "PlacedOrder", "instrument_events", "shortfall"]


class Listing(msgspec.Struct, frozen=True, kw_only=True):
    symbol: str
    name_ja: str
    name_en: str
    price: float
    adv: int
    market_cap_jpy: float
    segment: str
    lot: int = 100


INSTRUMENTS: dict[str, Listing] = {
    "7203": Listing(
        symbol="7203",
        name_ja="トヨタ自動車",
        name_en="Toyota Motor",
        price=2800.0,
        adv=20_000_000,
        market_cap_jpy=45e12,
        segment="Prime",
    ),
    "9347": Listing(
        symbol="9347",
        name_ja="サンプル低位株（小型）",
        name_en="Sample thin small cap",
        price=120.0,
        adv=30_000,
        market_cap_jpy=2e9,
        segment="Growth",
    ),
}


def instrument_events(now: datetime | None = None) -> list[Instrument]:
    """Reference data of the listed instruments, for the guard's trading detectors."""
    now = now or datetime.now(UTC)
    return [
        Instrument(
            id=f"ins-{x.symbol}-{now.date().isoformat()}",
            ts=now,
            symbol=x.symbol,
            market="TSE",
            segment=x.segment,
            currency="JPY",
            lot_size=x.lot,
            price=x.price,
            avg_daily_volume=x.adv,
            market_cap_jpy=x.market_cap_jpy,
        )
        for x in INSTRUMENTS.values()
    ]


class Customer(msgspec.Struct, kw_only=True):
    account: str
    name: str
    email: str
    phone: str | None = None
    lang: str = "ja"
    opened: datetime
    cash: float = 0.0
    positions: dict[str, int] = {}


class PlacedOrder(msgspec.Struct, kw_only=True):
    id: str
    account: str
    ts: datetime
    symbol: str
    side: str
    quantity: int
    limit_price: float | None
    status: str  # placed | refused | waiting


def shortfall(
    customer: Customer, symbol: str, side: str, quantity: int, limit_price: float | None
) -> str | None:
    """The text saying why ``customer`` cannot place this order, or None: a sale of more
    shares than held, a purchase costing more than the cash (at the limit, else the last
    price). Without it a sale of shares never held was "filled" and the cash went negative
    (a purchase of ¥500 million on ¥3 million showed ¥-496,999,998)."""
    if side == "sell" and quantity > customer.positions.get(symbol, 0):
        return "order_not_held"
    price = limit_price or INSTRUMENTS[symbol].price
    if side == "buy" and quantity * price > customer.cash:
        return "order_no_cash"
    return None


class Book:
    """Customers and orders; fills are immediate at the limit (or last) price in the demo."""

    def __init__(self, store: AuthStore) -> None:
        self._customers = Records(store, "site-customer", Customer)
        self._orders = Records(store, "site-order", PlacedOrder)
        self._lock = threading.Lock()

    def customer(self, account: str) -> Customer | None:
        return self._customers.get(account)

    def add(self, customer: Customer) -> Customer:
        self._customers.put(customer.account, customer)
        return customer

    def orders(self, account: str, limit: int = 20) -> list[PlacedOrder]:
        found = self._orders.values(account + "\x1f")
        return sorted(found, key=lambda o: o.ts, reverse=True)[:limit]

    def record(self, order: PlacedOrder) -> PlacedOrder:
        self._orders.put(f"{order.account}\x1f{order.id}", order)
        return order

    def execute(self, order: PlacedOrder) -> PlacedOrder:
        """Fill the order at once (the demo has no market): positions and cash move."""
        with self._lock:
            return self._execute(order)

    def execute_within_means(self, order: PlacedOrder) -> str | None:
        """Fill the order if the account can afford it now, else record it refused and return
        the text saying why (:func:`shortfall`). Checked and filled under one lock: orders
        that waited at step-up, each within the cash when placed, are checked again when they
        resume, and two resumed at once cannot both spend the same cash."""
        with self._lock:
            customer = self._customers.get(order.account)
            if customer is None:
                raise KeyError(order.account)
            short = shortfall(customer, order.symbol, order.side, order.quantity, order.limit_price)
            if short is not None:
                order.status = "refused"
                self.record(order)
                return short
            self._execute(order)
            return None

    def _execute(self, order: PlacedOrder) -> PlacedOrder:
        customer = self._customers.get(order.account)
        if customer is None:
            raise KeyError(order.account)
        price = order.limit_price or INSTRUMENTS[order.symbol].price
        held = customer.positions.get(order.symbol, 0)
        if order.side == "sell":
            sold = min(held, order.quantity)
            customer.positions[order.symbol] = held - sold
            if not customer.positions[order.symbol]:
                del customer.positions[order.symbol]
            customer.cash += sold * price
        else:
            customer.positions[order.symbol] = held + order.quantity
            customer.cash -= order.quantity * price
        self._customers.put(customer.account, customer)
        order.status = "placed"
        return self.record(order)


def new_order_id() -> str:
    return "ord-" + secrets.token_hex(6)
