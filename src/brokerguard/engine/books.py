"""An account's cash and positions: the broker's holdings snapshot, and the movements after it.

The books system sends a snapshot of each account (nightly, say) stamped with the time it is as
of; fills and withdrawals move the account between snapshots. Events come late: a snapshot can
arrive after fills and withdrawals from after its own time were already taken. Taken as it is,
it put back the shares sold since and lost those bought (a thief's sell-off of what was left
was no liquidation), and the cash withdrawn since. So the movements at or after the snapshot
held are kept (:class:`~brokerguard.engine.state.Move`), and a snapshot is taken with every one
of them from its own time on applied again, in time order: the account ends as if the events
had come in time order.

Movements come late among themselves too (two markets' execution feeds, a batch redelivered):
applied in the order delivered, a sell delivered before the buy it sells was lost to the clamp
(nothing to sell yet) and the shares stayed, and a buy delivered before the sale that paid for
it took cash the account did not have yet. So a movement from before one already applied is
applied in its place in time: the later ones are taken back, exactly (each keeps what the clamp
added back when it was applied, ``Move.clamped``), and applied again after it. One from before
a movement no longer kept cannot be: it is applied as it comes.

Kept in time, and in number: the movements of ``holdings_late_hours`` before the latest one,
and at most :data:`MOVES_KEPT`. A snapshot from before a movement no longer kept
(:attr:`~brokerguard.engine.state.AccountState.moves_lost`) cannot be completed and is not
taken: the account keeps the snapshot before it with every movement since, which is the books
unless something the engine does not see moved them (a deposit, a corporate action). A snapshot
older than the one held is not taken either: it would roll the account back.

Pure functions on the account record: no I/O, no clock.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable

import msgspec

from brokerguard.engine.state import AccountState, Move

__all__ = ["MOVES_KEPT", "book", "take_snapshot"]

MOVES_KEPT = 256  # movements kept per account at most (a bot's day), whatever their times


def book(acc: AccountState, move: Move, keep_s: float) -> None:
    """Apply a fill or a withdrawal to the account, and keep it for a late snapshot.

    One older than the snapshot held is in it already: applied again, a buy doubled the
    position and a withdrawal took the cash twice."""
    if move.at < acc.holdings_at:
        return
    moves = acc.moves
    if not moves or moves[-1].at <= move.at:  # in time order: the usual case
        moves = (*moves, _apply(acc, move))
    elif move.at < acc.moves_lost:  # a later movement is no longer kept: in the order delivered
        at = bisect_right(moves, move.at, key=_at)
        moves = (*moves[:at], _apply(acc, move), *moves[at:])
    else:
        at = bisect_right(moves, move.at, key=_at)
        later = moves[at:]
        for each in reversed(later):
            _undo(acc, each)
        moves = (*moves[:at], *(_apply(acc, each) for each in (move, *later)))
    horizon = moves[-1].at - keep_s
    drop = max(len(moves) - MOVES_KEPT, 0)
    while drop < len(moves) and moves[drop].at < horizon:
        drop += 1
    if drop:
        acc.moves_lost = max(acc.moves_lost, moves[drop - 1].at)
        moves = moves[drop:]
    acc.moves = moves


def take_snapshot(
    acc: AccountState, at: float, cash: float, positions: Iterable[tuple[str, float]]
) -> bool:
    """Take the snapshot as of ``at``, with the movements kept from ``at`` on applied again;
    whether it was taken (not when older than the snapshot held, or than a movement no longer
    kept)."""
    if at < acc.holdings_at or at <= acc.moves_lost:
        return False
    acc.holdings_at = at
    acc.cash = cash
    acc.positions = dict(positions)
    acc.moves_lost = 0.0
    if acc.moves:
        acc.moves = tuple(_apply(acc, m) for m in acc.moves if m.at >= at)
    return True


def _at(move: Move) -> float:
    return move.at


def _apply(acc: AccountState, move: Move) -> Move:
    """The movement's shares and cash: no short position (a sell of more than is held empties
    it), no negative cash (a buy on margin, a withdrawal of more than the engine knows of).
    Returns it with what the clamp added back (shares for a sell, cash for the rest: the other
    only grows), so that it can be taken back exactly (:func:`_undo`)."""
    clamped: float | None = None
    if move.key:
        left = acc.positions.get(move.key, 0.0) + move.quantity
        if left > 0:
            acc.positions[move.key] = left
        else:
            acc.positions.pop(move.key, None)
            clamped = -left or None
    cash = acc.cash + move.cash
    acc.cash = max(0.0, cash)
    if move.quantity >= 0:
        clamped = acc.cash - cash or None
    if clamped != move.clamped:
        move = msgspec.structs.replace(move, clamped=clamped)
    return move


def _undo(acc: AccountState, move: Move) -> None:
    """Take back a movement applied by :func:`_apply`, as it was applied."""
    clamped = move.clamped or 0.0
    sold = move.quantity < 0
    if move.key:
        held = acc.positions.get(move.key, 0.0) - move.quantity - (clamped if sold else 0.0)
        if held > 0:
            acc.positions[move.key] = held
        else:
            acc.positions.pop(move.key, None)
    acc.cash = max(0.0, acc.cash - move.cash - (0.0 if sold else clamped))
