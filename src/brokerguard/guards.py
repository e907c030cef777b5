"""Guards by name: what ``--guard`` accepts in ``simulate`` and ``compare``.

A name is one of the baselines, ``brokerguard`` (the detection engine with the shipped default
policy), or the path of a policy TOML file (the engine with that policy).
"""

from __future__ import annotations

from pathlib import Path

from brokerguard.baselines import BASELINES
from brokerguard.guard import Guard

__all__ = ["GUARD_NAMES", "UnknownGuard", "load_guard"]

GUARD_NAMES: tuple[str, ...] = (*BASELINES, "brokerguard")


class UnknownGuard(ValueError):
    """A ``--guard`` value that names no known guard or readable policy file."""


def load_guard(name: str) -> Guard:
    """A fresh guard (no state carried over between runs) for a name or a policy file."""
    if name in BASELINES:
        return BASELINES[name]()
    from brokerguard.engine import BrokerGuard, PolicyError, load_policy

    if name == "brokerguard":
        return BrokerGuard()
    if name.endswith(".toml"):
        try:
            policy = load_policy(Path(name))
        except PolicyError as exc:
            raise UnknownGuard(str(exc)) from None
        return BrokerGuard(policy, name=f"brokerguard:{Path(name).stem}")
    known = ", ".join(GUARD_NAMES)
    raise UnknownGuard(
        f"unknown guard {name!r}; known guards: {known}, or the path of a policy .toml file"
    )
