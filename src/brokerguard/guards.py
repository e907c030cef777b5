"""Guards by name: what ``--guard`` accepts in ``simulate`` and ``compare``."""

from __future__ import annotations

from brokerguard.baselines import BASELINES
from brokerguard.guard import Guard

__all__ = ["GUARD_NAMES", "UnknownGuard", "load_guard"]

GUARD_NAMES: tuple[str, ...] = tuple(BASELINES)


class UnknownGuard(ValueError):
    """A ``--guard`` value that names no known guard."""


def load_guard(name: str) -> Guard:
    """A fresh guard (no state carried over between runs) for a name."""
    try:
        factory = BASELINES[name]
    except KeyError:
        known = ", ".join(GUARD_NAMES)
        raise UnknownGuard(f"unknown guard {name!r}; known guards: {known}") from None
    return factory()
