"""Ground-truth labels of a run: which accounts were attacked, by which events, for what.

The simulator writes these labels to ``truth.json``; a broker replaying its own history writes the
same shape from its investigations. Only :mod:`brokerguard.evaluate` reads them — never a guard or
a detector, which must work from events alone.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import msgspec

from brokerguard.events import field_of_error

__all__ = [
    "AttackLabel",
    "ConfounderLabel",
    "PumpedSymbol",
    "Truth",
    "Victim",
    "load_truth",
    "save_truth",
]


class Victim(msgspec.Struct, kw_only=True):
    """One attacked account; ``events`` are the ids of every event the attacker caused on it."""

    account: str
    attack: int
    events: list[str] = []
    sessions: list[str] = []
    orders: list[str] = []


class AttackLabel(msgspec.Struct, kw_only=True):
    index: int
    kind: str
    start: datetime
    relay_otp: bool = False
    origin: str = ""


class PumpedSymbol(msgspec.Struct, kw_only=True):
    """A symbol the attackers bought through victims' accounts; ``first_buy`` is the first order."""

    symbol: str
    market: str
    attack: int
    first_buy: datetime


class ConfounderLabel(msgspec.Struct, kw_only=True):
    """Legitimate behaviour the simulator played that looks like an attack, so that the friction a
    guard caused it can be measured.

    ``frenzy``: the thin ``symbol``/``market`` customers rushed into, its buyers in ``accounts``,
    their sessions starting between ``start`` (the market's open) and ``end``. ``selloff``: the
    customers who sold most holdings in ``accounts``, their sessions starting between ``start``
    and ``end``. ``travel``/``new_device``: the days it ran, without accounts (a new draw each day).
    """

    index: int
    kind: str
    start: datetime
    end: datetime
    symbol: str = ""
    market: str = ""
    accounts: list[str] = []


class Truth(msgspec.Struct, kw_only=True):
    scenario: str
    seed: int
    guard: str
    investors: int
    start: datetime
    end: datetime
    attacks: list[AttackLabel] = []
    victims: list[Victim] = []
    criminal_accounts: list[str] = []
    pumped_symbols: list[PumpedSymbol] = []
    confounders: list[ConfounderLabel] = []


def save_truth(truth: Truth, path: Path) -> None:
    path.write_bytes(msgspec.json.format(msgspec.json.encode(truth), indent=1) + b"\n")


def load_truth(path: Path) -> Truth:
    """Read a ``truth.json``; a file that is not one is a ValueError naming the file (and the
    field, when one is wrong): ``runs/x/truth.json: field `victims[0].account`: Expected `str`,
    got `int```."""
    try:
        return msgspec.json.decode(path.read_bytes(), type=Truth)
    except msgspec.ValidationError as exc:
        message = str(exc)
        field = field_of_error(message)
        where = f"{path}: field `{field}`" if field else str(path)
        raise ValueError(f"{where}: {message.split(' - at `', 1)[0]}") from None
    except msgspec.DecodeError as exc:
        raise ValueError(f"{path}: malformed JSON: {exc}") from None
