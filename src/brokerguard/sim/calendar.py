"""Trading calendars: when each simulated market is open, in epoch seconds.

The simulator asks "is TSE open now?" and "when does HK open next?" hundreds of thousands of
times, so each market's sessions are laid out once as sorted ``(open, close)`` intervals and
answered with a binary search.
"""

from __future__ import annotations

import bisect
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

__all__ = ["JST", "TradingCalendar", "MARKET_ZONES"]

JST = ZoneInfo("Asia/Tokyo")

# Regular sessions in each market's local time (TSE closes at 15:30 since November 2024).
_SESSIONS: dict[str, tuple[tuple[time, time], ...]] = {
    "TSE": ((time(9, 0), time(11, 30)), (time(12, 30), time(15, 30))),
    "HK": ((time(9, 30), time(12, 0)), (time(13, 0), time(16, 0))),
    "CN": ((time(9, 30), time(11, 30)), (time(13, 0), time(15, 0))),
    "US": ((time(9, 30), time(16, 0)),),
}
MARKET_ZONES = {
    "TSE": JST,
    "HK": ZoneInfo("Asia/Hong_Kong"),
    "CN": ZoneInfo("Asia/Shanghai"),
    "US": ZoneInfo("America/New_York"),
}
# Exchange holidays of 2025–2026 that fall on weekdays. Japan's list is complete; the others hold
# the main closures only (a simplification the README states).
_HOLIDAY_TEXT = {
    "TSE": """
        2025-01-01 2025-01-02 2025-01-03 2025-01-13 2025-02-11 2025-02-24 2025-03-20
        2025-04-29 2025-05-05 2025-05-06 2025-07-21 2025-08-11 2025-09-15 2025-09-23
        2025-10-13 2025-11-03 2025-11-24 2025-12-31 2026-01-01 2026-01-02 2026-01-12
        2026-02-11 2026-02-23 2026-03-20 2026-04-29 2026-05-04 2026-05-05 2026-05-06
        2026-07-20 2026-08-11 2026-09-21 2026-09-22 2026-09-23 2026-10-12 2026-11-03
        2026-11-23 2026-12-31""",
    "HK": "2025-01-01 2025-04-04 2025-04-18 2025-04-21 2025-05-01 2025-05-05",
    "CN": "2025-01-01 2025-04-04 2025-05-01 2025-05-02 2025-05-05",
    "US": "2025-01-01 2025-04-18 2025-05-26 2025-07-04",
}
_HOLIDAYS = {
    market: frozenset(date.fromisoformat(d) for d in text.split())
    for market, text in _HOLIDAY_TEXT.items()
}


class TradingCalendar:
    """Open intervals of every market between two instants."""

    def __init__(self, start: datetime, end: datetime) -> None:
        self.intervals: dict[str, list[tuple[int, int]]] = {}
        first = (start - timedelta(days=2)).date()
        last = (end + timedelta(days=10)).date()
        for market, sessions in _SESSIONS.items():
            zone = MARKET_ZONES[market]
            spans: list[tuple[int, int]] = []
            day = first
            while day <= last:
                if day.weekday() < 5 and day not in _HOLIDAYS[market]:
                    for open_t, close_t in sessions:
                        a = datetime.combine(day, open_t, zone).timestamp()
                        b = datetime.combine(day, close_t, zone).timestamp()
                        spans.append((int(a), int(b)))
                day += timedelta(days=1)
            spans.sort()
            self.intervals[market] = spans
        self._opens = {m: [a for a, _ in s] for m, s in self.intervals.items()}

    def is_open(self, market: str, t: int) -> bool:
        i = bisect.bisect_right(self._opens[market], t) - 1
        return i >= 0 and t < self.intervals[market][i][1]

    def next_open(self, market: str, t: int) -> int:
        """``t`` itself when the market is open, else the start of its next session."""
        if self.is_open(market, t):
            return t
        i = bisect.bisect_right(self._opens[market], t)
        return self._opens[market][min(i, len(self._opens[market]) - 1)]

    def session_close(self, market: str, t: int) -> int:
        """End of the session that is open at ``t`` (or of the next one)."""
        t = self.next_open(market, t)
        i = bisect.bisect_right(self._opens[market], t) - 1
        return self.intervals[market][i][1]

    def trading_days(self, market: str) -> list[int]:
        """The first open instant of each trading day."""
        days: list[int] = []
        last_day = None
        for a, _ in self.intervals[market]:
            d = a // 86400 if market != "TSE" else (a + 32400) // 86400
            if d != last_day:
                days.append(a)
                last_day = d
        return days
