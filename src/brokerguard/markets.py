"""Exchanges' hours, and when a price from the stream became known.

One rule for "the latest price", shared by the detection engine (the last price an order's limit
is measured against) and the reports (the valuation price): a price is as new as the moment it
became known, not the moment its event was delivered, nor its timestamp alone.

- a fill's price is known at once (its timestamp);
- an intraday bar is stamped with its start and its close is known when it ends (``ts`` +
  ``minutes``): the fills inside it are older than its close;
- a daily bar (``minutes`` = 1440) gives its trading day's close, known at the exchange's closing
  time, or at its timestamp if later (a feed may stamp it at the start of the day).

Logs merged from several systems deliver prices out of order; a price known before the one
already held is older and must not replace it.

>>> from datetime import datetime
>>> t = datetime(2025, 3, 21, 0, 0, tzinfo=JST)
>>> price_known("TSE", t, 1440).isoformat()
'2025-03-21T15:30:00+09:00'
>>> price_known("TSE", t, 5).isoformat()
'2025-03-21T00:05:00+09:00'
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

__all__ = ["DAILY_MINUTES", "EXCHANGE_ZONES", "JST", "close_known", "price_known", "trading_day"]

JST = timezone(timedelta(hours=9), "JST")
DAILY_MINUTES = 1440
"""A bar this long or longer is the day's bar: its close is the trading day's close."""

_NEW_YORK, _HONG_KONG, _SHANGHAI = (
    ZoneInfo(name) for name in ("America/New_York", "Asia/Hong_Kong", "Asia/Shanghai")
)
# Where each market trades and when its regular session closes, by the names a broker's feed
# uses for it. Public facts about the exchanges, not about any simulation.
EXCHANGE_ZONES: dict[str, tuple[timezone | ZoneInfo, time]] = {
    **dict.fromkeys(("TSE", "JPX", "OSE"), (JST, time(15, 30))),
    **dict.fromkeys(("US", "NYSE", "NASDAQ", "AMEX", "ARCA"), (_NEW_YORK, time(16, 0))),
    **dict.fromkeys(("HK", "HKEX", "SEHK"), (_HONG_KONG, time(16, 0))),
    **dict.fromkeys(("CN", "SSE", "SZSE"), (_SHANGHAI, time(15, 0))),
}


def trading_day(market: str, ts: datetime) -> date:
    """The exchange's date of an instant: the trading day a bar or fill belongs to."""
    zone, _close = EXCHANGE_ZONES.get(market, (JST, None))
    return ts.astimezone(zone).date()


def close_known(market: str, ts: datetime) -> datetime:
    """When a daily bar stamped ``ts`` is known: the session's close, or ``ts`` if later.

    A feed may stamp the day's bar at the start of the day; its close is not known before the
    exchange closes. An unknown market is taken as Japan time with no known close (``ts``).
    """
    zone, close = EXCHANGE_ZONES.get(market, (JST, None))
    if close is None:
        return ts
    local = ts.astimezone(zone)
    at_close = datetime.combine(local.date(), close, tzinfo=zone)
    return max(ts, at_close)


def price_known(market: str, ts: datetime, minutes: int = 0) -> datetime:
    """When a price stamped ``ts`` became known: a fill's (``minutes`` 0) at once, an intraday
    bar's close when the bar ends, a daily bar's at the exchange's close (:func:`close_known`)."""
    if minutes >= DAILY_MINUTES:
        return close_known(market, ts)
    return ts + timedelta(minutes=minutes) if minutes else ts
