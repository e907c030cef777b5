"""Guards by name: what ``--guard`` accepts in ``simulate`` and ``compare``.

A name is one of the baselines, ``brokerguard`` (the detection engine with the shipped default
policy), or the path of a policy TOML file (the engine with that policy).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from brokerguard.baselines import BASELINES
from brokerguard.guard import Guard

if TYPE_CHECKING:
    from brokerguard.engine import BrokerGuard

__all__ = ["GUARD_NAMES", "UnknownGuard", "engine_guard", "load_guard"]

GUARD_NAMES: tuple[str, ...] = (*BASELINES, "brokerguard")


class UnknownGuard(ValueError):
    """A ``--guard`` value that names no known guard or readable policy file."""


def load_guard(name: str) -> Guard:
    """A fresh guard (no state carried over between runs) for a name or a policy file."""
    if name in BASELINES:
        return BASELINES[name]()
    from brokerguard.engine import PolicyError

    if name == "brokerguard":
        return engine_guard()
    if name.endswith(".toml"):
        try:
            return engine_guard(name)
        except PolicyError as exc:
            raise UnknownGuard(str(exc)) from None
    known = ", ".join(GUARD_NAMES)
    raise UnknownGuard(
        f"unknown guard {name!r}; known guards: {known}, or the path of a policy .toml file"
    )


def engine_guard(policy: Path | str | None = None, state=None) -> BrokerGuard:
    """A detection engine: the shipped default policy, or the policy file at ``policy``.

    ``state`` is where it keeps what it learns (fresh memory when None; a
    :class:`~brokerguard.stores.sqlite.SqliteState` to continue from a file). Raises
    :class:`~brokerguard.engine.PolicyError` naming the field when the file is not a valid
    policy. The guard's name is ``brokerguard``, or ``brokerguard:<file stem>``.
    """
    from brokerguard.engine import BrokerGuard, load_policy

    if policy is None:
        return BrokerGuard(state=state)
    path = Path(policy)
    return BrokerGuard(load_policy(path), state=state, name=f"brokerguard:{path.stem}")
