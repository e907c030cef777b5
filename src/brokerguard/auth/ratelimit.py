"""Sliding-window rate limits kept in the auth store, with errors that say when to come back.

Each limit counts the hits of the last ``per`` in a small record; :meth:`RateLimiter.hit` either
records one more or raises :class:`~brokerguard.auth.errors.RateLimited` naming the limit and
the wait. Limits guard against guessing codes and against SMS pumping (a bot requesting codes to
premium numbers at the broker's expense).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime, timedelta

import msgspec

from brokerguard.auth.common import Clock, utcnow
from brokerguard.auth.errors import RateLimited
from brokerguard.auth.store import AuthStore, Records

__all__ = ["Limit", "RateLimiter"]


class Limit(msgspec.Struct, frozen=True):
    """At most ``count`` hits in any period of length ``per``."""

    count: int
    per: timedelta

    def __post_init__(self) -> None:
        if self.count < 1 or self.per <= timedelta(0):
            raise ValueError("a limit needs `count` >= 1 and a positive `per`")

    def __str__(self) -> str:
        seconds = self.per.total_seconds()
        unit = f"{seconds / 3600:g} h" if seconds >= 3600 else f"{seconds / 60:g} min"
        return f"{self.count} per {unit}"


class _Window(msgspec.Struct):
    hits: list[datetime] = []


class RateLimiter:
    """Counts hits per (name, key) in the store so limits hold across restarts and workers."""

    def __init__(self, store: AuthStore, *, clock: Clock = utcnow) -> None:
        self._windows = Records(store, "ratelimit", _Window)
        self._lock = threading.Lock()
        self.clock = clock

    def hit(self, name: str, key: str, limit: Limit, *, what: str) -> None:
        """Count one hit, or raise RateLimited (the refused hit is not counted)."""
        self.hit_all([(name, key, limit, what)])

    def hit_all(self, checks: Sequence[tuple[str, str, Limit, str]]) -> None:
        """Count one hit on each (name, key, limit, what) — all of them or, if any is
        exhausted, none: a request refused by one limit must not use up the others."""
        now = self.clock()
        with self._lock:
            windows = []
            for name, key, limit, what in checks:
                record_key = f"{name}\x1f{key}"
                window = self._windows.get(record_key) or _Window()
                hits = [t for t in window.hits if t > now - limit.per]
                if len(hits) >= limit.count:
                    retry_after = max(1.0, (hits[0] + limit.per - now).total_seconds())
                    raise RateLimited(
                        f"too many {what} ({limit}); try again in {retry_after:.0f} s",
                        retry_after=retry_after,
                    )
                windows.append((record_key, hits))
            for record_key, hits in windows:
                hits.append(now)
                self._windows.put(record_key, _Window(hits))

    def purge(self, name: str, per: timedelta) -> int:
        """Forget the windows of ``name`` with no hit in the last ``per``; returns how many.

        For limits keyed by something unbounded (a client's address), so that their records
        do not pile up in the store.
        """
        horizon = self.clock() - per
        gone = 0
        for record_key in self._windows.keys(name + "\x1f"):
            window = self._windows.get(record_key)
            if window is not None and (not window.hits or window.hits[-1] <= horizon):
                gone += self._windows.delete(record_key)
        return gone

    def reset(self, name: str, key: str) -> None:
        self._windows.delete(f"{name}\x1f{key}")
