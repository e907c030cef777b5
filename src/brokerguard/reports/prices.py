"""Valuation prices: what a symbol was worth at the end of the valuation date, from the stream.

A loss is measured against the price on a valuation date that the firm chooses (the day the
fraud was confirmed, or the day it settles with the customer). The price is the **last close
known by the end of that day in Japan time**, taken from the events themselves so that no price
feed is needed:

- a daily bar (``minutes`` = 1440) gives the day's close, for the Japan date of its timestamp;
- otherwise the latest intraday bar close or fill price on or before the valuation date;
- on the same Japan date a daily close wins over intraday prices (it is the official close),
  and a later date wins over an earlier one whatever its kind.

The simulator stamps a daily bar at the session's close; a broker's feed that stamps it at the
start of the day gives the same date, so both read the same.

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

from datetime import date, datetime, timedelta, timezone

import msgspec

from brokerguard.events import Event, Execution, MarketBar

__all__ = ["PriceBook", "ValuationPrice"]

JST = timezone(timedelta(hours=9), "JST")


class ValuationPrice(msgspec.Struct, frozen=True, kw_only=True):
    """A valuation price with where it came from (``daily close``, ``bar close``, ``fill``)."""

    price: float
    ts: datetime
    source: str

    def describe(self, lang: str = "en") -> str:
        """``daily close 2025-03-21`` / ``2025-03-21 終値``: for explanations people read."""
        day = self.ts.astimezone(JST)
        if lang == "ja":
            kind = {"daily close": "終値", "bar close": "足の終値", "fill": "約定値"}[self.source]
            when = (
                day.strftime("%Y-%m-%d") if self.source == "daily close" else f"{day:%m-%d %H:%M}"
            )
            return f"{when} {kind}"
        if self.source == "daily close":
            return f"daily close {day:%Y-%m-%d}"
        return f"{self.source} {day:%Y-%m-%d %H:%M}"


class PriceBook:
    """The latest valuation price of every symbol seen, up to a valuation date (JST).

    Feed it every event with :meth:`observe`; events after ``valuation_date`` are ignored. With
    ``valuation_date=None`` the book keeps the latest price of the whole stream.
    """

    def __init__(self, valuation_date: date | None = None) -> None:
        self.valuation_date = valuation_date
        self._best: dict[tuple[str, str], tuple[tuple[date, int, datetime], ValuationPrice]] = {}

    def observe(self, event: Event) -> None:
        """Take a bar's close or a fill's price, if it is the latest known so far."""
        if isinstance(event, MarketBar):
            daily = event.minutes >= 1440
            known = event.ts if daily else event.ts + timedelta(minutes=event.minutes)
            source = "daily close" if daily else "bar close"
            day = event.ts.astimezone(JST).date()
            self._offer(event.market, event.symbol, day, daily, known, event.close, source)
        elif isinstance(event, Execution):
            day = event.ts.astimezone(JST).date()
            self._offer(event.market, event.symbol, day, False, event.ts, event.price, "fill")

    def _offer(
        self,
        market: str,
        symbol: str,
        day: date,
        daily: bool,
        known: datetime,
        price: float,
        source: str,
    ) -> None:
        if self.valuation_date is not None and day > self.valuation_date:
            return
        rank = (day, int(daily), known)
        best = self._best.get((market, symbol))
        if best is None or rank >= best[0]:
            self._best[(market, symbol)] = (
                rank,
                ValuationPrice(price=price, ts=known, source=source),
            )

    def price(self, market: str, symbol: str) -> ValuationPrice | None:
        """The valuation price of a symbol, or None when no price of it was seen in time."""
        best = self._best.get((market, symbol))
        return None if best is None else best[1]
