"""Ground-truth labels of a run: which accounts were attacked, by which events, for what.

The simulator writes these labels to ``truth.json``; a broker replaying its own history writes the
same shape from its investigations. Only :mod:`brokerguard.evaluate` reads them — never a guard or
a detector, which must work from events alone.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import msgspec
from msgspec import Meta

from brokerguard.events import field_of_error
from brokerguard.files import write_bytes

__all__ = [
    "AttackLabel",
    "TruthError",
    "ConfounderLabel",
    "PumpedSymbol",
    "Truth",
    "Victim",
    "load_truth",
    "save_truth",
]

Time = Annotated[datetime, Meta(tz=True)]
"""A moment with its zone: a time without one is refused (where the run's clock was is unknown,
and comparing it with the events' times would fail or mislead)."""


class TruthError(ValueError):
    """A ``truth.json`` that cannot be used; ``path``, ``field`` (or None) and ``problem``."""

    def __init__(self, problem: str, *, path: Path, field: str | None = None) -> None:
        self.problem, self.path, self.field = problem, path, field
        where = f"{path}: field `{field}`" if field else str(path)
        super().__init__(f"{where}: {problem}")


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
    start: Time
    relay_otp: bool = False
    origin: str = ""


class PumpedSymbol(msgspec.Struct, kw_only=True):
    """A symbol the attackers bought through victims' accounts; ``first_buy`` is the first order."""

    symbol: str
    market: str
    attack: int
    first_buy: Time


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
    start: Time
    end: Time
    symbol: str = ""
    market: str = ""
    accounts: list[str] = []


class Truth(msgspec.Struct, kw_only=True):
    scenario: str
    seed: int
    guard: str
    investors: int
    start: Time
    end: Time
    attacks: list[AttackLabel] = []
    victims: list[Victim] = []
    criminal_accounts: list[str] = []
    pumped_symbols: list[PumpedSymbol] = []
    confounders: list[ConfounderLabel] = []


def save_truth(truth: Truth, path: Path) -> None:
    write_bytes(path, msgspec.json.format(msgspec.json.encode(truth), indent=1) + b"\n")


def load_truth(path: Path) -> Truth:
    """Read a ``truth.json``; a file that is not one is a :class:`TruthError` naming the file
    (and the field, when one is wrong): ``runs/x/truth.json: field `attacks[0].start`: expected
    a time with its zone, such as 2025-03-20T09:00:00+09:00, got '2025-03-20T09:00:00'``."""
    path = Path(path)
    data = path.read_bytes()
    try:
        return msgspec.json.decode(data, type=Truth)
    except msgspec.ValidationError as exc:
        message = str(exc)
        field = field_of_error(message)
        problem = message.split(" - at `", 1)[0]
        if "timezone" in problem:
            problem = "expected a time with its zone, such as 2025-03-20T09:00:00+09:00"
            got = _value_at(data, field)
            if got is not None:
                problem += f", got {got!r}"
        raise TruthError(problem, path=path, field=field) from None
    except msgspec.DecodeError as exc:
        raise TruthError(f"malformed JSON: {exc}", path=path) from None


def _value_at(data: bytes, field: str | None) -> object:
    """The value at ``a.b[0].c`` of a JSON document, or None (for an error message only)."""
    if field is None:
        return None
    value: object = msgspec.json.decode(data)
    for part in field.replace("]", "").replace("[", ".").split("."):
        try:
            value = value[int(part)] if isinstance(value, list) else value[part]  # type: ignore[index]
        except (KeyError, IndexError, TypeError, ValueError):
            return None
    return value
