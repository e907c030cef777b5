"""The guard interface: the one question the broker's systems (and the simulator) ask.

At a decision point — a login, a new order, a withdrawal, a settings change — the broker calls
``guard.decide(event)`` and gets a :class:`Decision`; every other event is passed to
``guard.observe(event)`` so the guard can keep its picture of accounts, sessions and the market.
The simulator uses exactly this interface and nothing else, so a guard that works in simulation
works the same behind the broker's own systems.

Actions climb an ordered ladder, from least to most friction: ``allow`` < ``challenge`` (step-up
with one of ``factors``) < ``hold`` (out-of-band confirmation to the registered contact) <
``deny`` < ``lock`` (the account is frozen until re-verified).

A decision answers one event, but some conclusions reach back to what was allowed earlier: when
a session fails a phishing-resistant step-up, the orders it placed before and that have not yet
executed (a market sell waiting for New York to open) are not the customer's either, and nor is
the session. A guard that draws such conclusions also implements :class:`InstructingGuard`: after
each event the broker takes its :class:`Instruction` list and carries it out (cancels what is
still open, signs the session out).
"""

from __future__ import annotations

from typing import Literal, Protocol, runtime_checkable

import msgspec

from brokerguard.events import Event, Factor, Timestamp

__all__ = [
    "ACTIONS",
    "Action",
    "Decision",
    "DecisionRecord",
    "Guard",
    "Instruction",
    "InstructingGuard",
    "Reason",
    "decision_point",
]

Action = Literal["allow", "challenge", "hold", "deny", "lock"]
ACTIONS: tuple[Action, ...] = ("allow", "challenge", "hold", "deny", "lock")


class Reason(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Why a decision was taken: a machine-readable code and a sentence for people.

    Untracked by the garbage collector (``gc=False``), as is :class:`Decision`: text and tuples
    of text hold no cycle, and the engine keeps its latest decisions (for repeated events)."""

    code: str
    en: str
    ja: str


class Decision(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The guard's answer. ``factors`` lists what satisfies a ``challenge`` (any one of them)."""

    action: Action
    score: float = 0.0
    factors: tuple[Factor, ...] = ()
    reasons: tuple[Reason, ...] = ()

    def __post_init__(self) -> None:
        if not 0.0 <= self.score <= 1.0:
            raise ValueError(f"`score` must be within [0, 1], got {self.score}")
        if self.action == "challenge" and not self.factors:
            raise ValueError("a `challenge` decision must name at least one factor")


class DecisionRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One line of ``decisions.ndjson``: a decision with the event it answered (``ts`` with its
    zone, as an event's: a line without one is refused)."""

    event: str
    ts: Timestamp
    account: str
    point: Literal["login", "order", "withdrawal", "settings"]
    guard: str
    action: Action
    score: float
    factors: tuple[Factor, ...] = ()
    reasons: tuple[Reason, ...] = ()


class Instruction(msgspec.Struct, frozen=True, kw_only=True):
    """Something the broker should do about operations it already let through.

    ``cancel_orders``: cancel whatever is still open of ``orders`` (order ids, all placed in
    ``session``); those already executed stay executed. ``end_session``: sign ``session`` out,
    so that whoever holds it must sign in again (and meet the guard there); ``orders`` is empty.
    ``cause`` is the event that led to it (a failed step-up, an analyst's conclusion). One line
    of ``instructions.ndjson``.
    """

    kind: Literal["cancel_orders", "end_session"]
    ts: Timestamp
    account: str
    session: str
    orders: tuple[str, ...] = ()
    cause: str
    reasons: tuple[Reason, ...] = ()


@runtime_checkable
class Guard(Protocol):
    """What every guard implements; ``name`` is written into each decision record."""

    name: str

    def decide(self, event: Event) -> Decision:
        """Answer a decision-point event (login, order, withdrawal, settings change)."""
        ...

    def observe(self, event: Event) -> None:
        """Take note of any other event; never blocks and never raises on valid input."""
        ...


@runtime_checkable
class InstructingGuard(Guard, Protocol):
    """A guard whose conclusions can reach back to operations it allowed earlier."""

    def take_instructions(self) -> list[Instruction]:
        """The instructions raised since the last call (the caller carries them out)."""
        ...


def decision_point(event: Event) -> Literal["login", "order", "withdrawal", "settings"] | None:
    """The decision point an event is, or None when it is only observed.

    Order cancels are observed, not decided: nobody needs to be stopped from cancelling.
    """
    kind = event.__struct_config__.tag
    if kind == "order":
        return "order" if event.action == "new" else None  # type: ignore[union-attr]
    if kind in ("login", "withdrawal", "settings"):
        return kind  # type: ignore[return-value]
    return None
