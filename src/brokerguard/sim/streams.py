"""Cheap independent random streams (SplitMix64) for draws that must not disturb others.

Seeding a :class:`random.Random` costs microseconds; the simulator needs a separate stream for
every challenge a customer or attacker answers (so that a guard that asks more questions does not
change what happens next), and a SplitMix64 counter is enough for those few draws.
"""

from __future__ import annotations

__all__ = ["Stream"]

_MASK = (1 << 64) - 1


class Stream:
    """A tiny deterministic generator with the two draws the responders need."""

    __slots__ = ("_state",)

    def __init__(self, seed: int) -> None:
        self._state = seed & _MASK

    def _next(self) -> int:
        self._state = (self._state + 0x9E3779B97F4A7C15) & _MASK
        z = self._state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
        return z ^ (z >> 31)

    def random(self) -> float:
        """A float in [0, 1)."""
        return (self._next() >> 11) / 9007199254740992.0

    def randint(self, a: int, b: int) -> int:
        """An integer in [a, b], both included."""
        return a + self._next() % (b - a + 1)
