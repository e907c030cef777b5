"""Valuation prices: what a symbol was worth at the end of the valuation date, from the stream.

A loss is measured against the price on a valuation date that the firm chooses (the day the
fraud was confirmed, or the day it settles with the customer). The price is the **last close
known by the end of that day in Japan time**, taken from the events themselves so that no price
feed is needed:

- a daily bar (``minutes`` = 1440) gives its trading day's close, known at the exchange's
  closing time (or at its timestamp, if later);
- an intraday bar gives its close, known when the bar ends; a fill its price, at once;
- only prices known by the end of the valuation date in Japan time count;
- within one trading day a daily close wins over intraday prices (it is the official close),
  and a later trading day wins over an earlier one whatever its kind.

The trading day is the date at the exchange (``EXCHANGE_ZONES``; an unknown market is taken as
Japan time). This matters for foreign markets: a New York session ends at 05:00 or 06:00 the
next morning in Japan, so on one Japan date the previous session's close and the evening's new
session both appear, and the newer session must win. The simulator stamps a daily bar at the
session's close; a broker's feed that stamps it at the start of the day reads the same.

When a price became known, and the exchanges' hours, are :mod:`brokerguard.markets`' rule,
shared with the detection engine's last price.

>>> from datetime import date, datetime, timedelta, timezone
>>> from brokerguard.events import MarketBar
>>> book = PriceBook(date(2025, 3, 21))
>>> t = datetime(2025, 3, 21, 15, 30, tzinfo=timezone(timedelta(hours=9)))
>>> book.observe(MarketBar(id="b", ts=t, symbol="9999", market="TSE", minutes=1440,
...                        open=50.0, high=55.0, low=39.0, close=40.0, volume=1))
>>> book.price("TSE", "9999").price
40.0
"""

from __future__ import annotations

from datetime import date, datetime

import msgspec

from brokerguard.events import Event, Execution, MarketBar
from brokerguard.markets import DAILY_MINUTES, EXCHANGE_ZONES, JST, price_known, trading_day

__all__ = ["EXCHANGE_ZONES", "PriceBook", "ValuationPrice", "trading_day"]


class ValuationPrice(msgspec.Struct, frozen=True, kw_only=True):
    """A valuation price with where it came from (``daily close``, ``bar close``, ``fill``).

    ``ts`` is when the price became known; ``day`` the trading day it closes, at the exchange.
    """

    price: float
    ts: datetime
    source: str
    day: date | None = None

    def describe(self, lang: str = "en") -> str:
        """``daily close 2025-03-21`` / ``2025-03-21 終値``: for explanations people read.

        A daily close is named by its trading day (a New York close of 21 March is known on the
        22nd in Japan); intraday prices by when they were known, in Japan time.
        """
        known = self.ts.astimezone(JST)
        day = self.day or known.date()
        if lang == "ja":
            kind = {"daily close": "終値", "bar close": "足の終値", "fill": "約定値"}[self.source]
            when = f"{day:%Y-%m-%d}" if self.source == "daily close" else f"{known:%m-%d %H:%M}"
            return f"{when} {kind}"
        if self.source == "daily close":
            return f"daily close {day:%Y-%m-%d}"
        return f"{self.source} {known:%Y-%m-%d %H:%M}"


class PriceBook:
    """The latest valuation price of every symbol seen, up to a valuation date (JST).

    Feed it every event with :meth:`observe`; prices known after the end of ``valuation_date``
    are ignored. With ``valuation_date=None`` the book keeps the latest price of the stream, and
    ``last_known`` says when the latest of the prices it took became known (a daily close is
    known at the exchange's close, which may be after the last event: the valuation date of
    such a book is that moment's date, not the last event's).
    """

    def __init__(self, valuation_date: date | None = None) -> None:
        self.valuation_date = valuation_date
        self.last_known: datetime | None = None
        self._best: dict[tuple[str, str], tuple[tuple[date, int, datetime], ValuationPrice]] = {}

    def observe(self, event: Event) -> None:
        """Take a bar's close or a fill's price, if it is the latest known so far."""
        if isinstance(event, MarketBar):
            daily = event.minutes >= DAILY_MINUTES
            known = price_known(event.market, event.ts, event.minutes)
            source = "daily close" if daily else "bar close"
            self._offer(event.market, event.symbol, event.ts, daily, known, event.close, source)
        elif isinstance(event, Execution):
            known = price_known(event.market, event.ts)
            self._offer(event.market, event.symbol, event.ts, False, known, event.price, "fill")

    def _offer(
        self,
        market: str,
        symbol: str,
        ts: datetime,
        daily: bool,
        known: datetime,
        price: float,
        source: str,
    ) -> None:
        if self.valuation_date is not None and known.astimezone(JST).date() > self.valuation_date:
            return
        if self.last_known is None or known > self.last_known:
            self.last_known = known
        day = trading_day(market, ts)
        rank = (day, int(daily), known)
        best = self._best.get((market, symbol))
        if best is None or rank >= best[0]:
            self._best[(market, symbol)] = (
                rank,
                ValuationPrice(price=price, ts=known, source=source, day=day),
            )

    def price(self, market: str, symbol: str) -> ValuationPrice | None:
        """The valuation price of a symbol, or None when no price of it was seen in time."""
        best = self._best.get((market, symbol))
        return None if best is None else best[1]
