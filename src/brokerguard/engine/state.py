"""Per-entity state behind one small interface, so that where it lives is someone else's choice.

Detectors read and write plain typed records (msgspec Structs) through :class:`State`: ``get`` a
record by kind and key, mutate it, ``put`` it back. :class:`MemoryState` keeps the live objects in
dicts (``put`` only marks them dirty); :mod:`brokerguard.stores.sqlite` persists the dirty ones to
the embedded SQLite file, and a Redis store can do the same with the same encoded bytes — the
detectors never know which one they talk to.

Everything here is bounded: familiarity counts are capped per account, windows keep only their
last entries and expire by time, idle sessions are swept.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import msgspec

from brokerguard.events import LoginAttempt, Order

__all__ = [
    "session_key",
    "LEVELS",
    "AccountState",
    "CampaignState",
    "EndedSessionState",
    "EntityState",
    "KeptOrders",
    "KINDS",
    "MemoryState",
    "Move",
    "PendingState",
    "PopulationState",
    "Run",
    "Seen",
    "SessionState",
    "State",
    "SymbolState",
    "Window",
    "extend_mark",
    "extend_run",
    "forget_until",
    "prune_window",
    "run_first",
    "run_last",
    "seen_at",
    "touch_window",
    "window_count",
    "window_reaches",
]

LEVELS = "ncaikobud"
"""Hierarchy levels: network kind, country, AS, IP; device kind, OS, browser, UA; cookie."""


class Run(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """When something was seen: its first and its last time (epoch seconds).

    One time (the latest) is not enough once events come late: a late event either moved the
    mark back (and a later one was lost) or was dropped (and an event between the two found
    nothing before it). The run keeps both ends and is taken as seen all along between them:
    bounded state, exact for events in time order, an over-estimate only for a gap inside it."""

    first: float
    last: float


class Move(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """A movement of an account's books after its holdings snapshot: a fill or a withdrawal.

    Kept so that a snapshot delivered after movements from after its own time can take them on
    top of it again (see ``BrokerGuard._holdings``). The full amounts, as the event said: what
    the account ends with is clamped when they are applied (no negative cash, no short
    position), not here."""

    at: float  # when it happened (epoch seconds): a fill's time, a withdrawal's going ahead
    key: str  # the instrument ("TSE:7203"); "" for cash alone (a withdrawal)
    quantity: float  # shares in (+, a buy) or out (-, a sell)
    cash: float  # JPY in (+, a sell) or out (-, a buy, a withdrawal)
    # what the clamp added back when it was applied (shares for a sell, JPY for a buy or a
    # withdrawal: each moves the other only up), so that it can be taken back exactly for a
    # movement from before it delivered after it (see engine.books). None for nothing, the
    # usual case: it costs a byte in the encoding, where 0.0 costs nine.
    clamped: float | None = None


Seen = Run | float
"""A run, or a float for a run of one (first = last): most things are seen once, a float costs
less, and a mark persisted as a float before runs existed reads as one. As a mark, 0.0 is
"never"."""

Window = dict[str, Seen]
"""Distinct members seen recently: member -> when (a run), in order of their last time."""


def run_first(seen: Seen) -> float:
    return seen.first if type(seen) is Run else seen  # type: ignore[return-value]


def run_last(seen: Seen) -> float:
    return seen.last if type(seen) is Run else seen  # type: ignore[return-value]


def extend_run(seen: Seen | None, now: float) -> Seen:
    """``seen`` with ``now`` added (``None``: never seen, a run of one): a late time moves its
    first end back, a later one its last."""
    if seen is None:
        return now
    first, last = run_first(seen), run_last(seen)
    if first <= now <= last:
        return seen
    return Run(min(first, now), max(last, now))


def extend_mark(mark: Seen, now: float) -> Seen:
    """A mark (0.0: never set) with ``now`` added."""
    return extend_run(mark or None, now)


def forget_until(seen: Seen, now: float) -> Seen:
    """What of a mark lies after ``now`` (0.0 if nothing): what a step-up passed at ``now``
    clears is what came before it, not a mark a later event set (delivered earlier)."""
    last = run_last(seen)
    if not seen or last <= now:
        return 0.0
    return seen if run_first(seen) > now else last


def seen_at(seen: Seen, now: float, span: float) -> bool:
    """Whether a mark counts for an event at ``now``: set by then, and less than ``span``
    seconds before it (a late event from before the mark does not see it; one between two
    marks sees the earlier)."""
    return bool(seen) and run_first(seen) <= now and now - run_last(seen) < span


def session_key(account: str, session: str) -> str:
    """The key of a session's records (``session``, ``ended``): the account and its session id.

    A broker's session ids need not be unique across accounts (some number each account's
    sessions 1, 2, 3, ...), and a session's trust must never vouch for another account, so the
    account is part of the key. Its length comes first, so no pair of ids can spell another.
    """
    return f"{len(account)}:{account}:{session}"


def touch_window(window: Window, member: str, now: float, span: float, cap: int) -> int:
    """Add ``member`` at ``now``; drop members older than ``span`` or beyond ``cap``.

    The window stays in order of its members' last times, so that its first member is the
    one to expire first: only then does looking at the first one tell whether any expired.
    A member seen again later moves to the end; a late touch of a member only moves its
    run's start back (it stays where it is); a late new member is put in its place in time
    (at the end, it hid the members expiring before it, and those were counted)."""
    seen = window.get(member)
    if seen is not None and now < run_last(seen):
        window[member] = extend_run(seen, now)
    else:
        if seen is not None:
            del window[member]
        late = bool(window) and now < run_last(next(reversed(window.values())))
        window[member] = extend_run(seen, now)
        if late:
            ordered = sorted(window.items(), key=_last)
            window.clear()
            window.update(ordered)
    if len(window) > cap or run_last(next(iter(window.values()))) < now - span:
        prune_window(window, now, span, cap)
    return len(window)


def _last(item: tuple[str, Seen]) -> float:
    return run_last(item[1])


def prune_window(window: Window, now: float, span: float, cap: int) -> None:
    """Drop the members last seen more than ``span`` before ``now``, then the oldest beyond
    ``cap``."""
    for member in [m for m, seen in window.items() if run_last(seen) < now - span]:
        del window[member]
    while len(window) > cap:
        del window[min(window, key=lambda m: run_last(window[m]))]


def window_count(
    window: Window, now: float, span: float, extra: Window | None = None, skip: str = ""
) -> int:
    """Members seen in the ``span`` seconds up to ``now`` (``skip`` left out), plus those of
    ``extra`` seen then too that are also members (they count twice).

    A member first seen after ``now`` is not counted: for a late event the window holds the
    members that came after it, and those are not evidence about it."""
    since = now - span
    count = 0
    if window and _all_within(window, since, now):  # the usual case: no need to look at each
        count = len(window) - (skip in window)
    else:
        for member, seen in window.items():
            if member != skip and run_last(seen) >= since and run_first(seen) <= now:
                count += 1
    if extra:
        for member, seen in extra.items():
            if member in window and run_last(seen) >= since and run_first(seen) <= now:
                count += 1
    return count


def _all_within(window: Window, since: float, now: float) -> bool:
    """Whether every member was last seen between ``since`` and ``now`` (so first seen by
    ``now``): the window is in order of last times, so its first and last members tell."""
    values = window.values()
    return run_last(next(iter(values))) >= since and run_last(next(reversed(values))) <= now


def window_reaches(
    window: Window, now: float, span: float, need: int, extra: Window | None = None
) -> bool:
    """Whether the window counts ``need`` (:func:`window_count`) at ``now``, or, a late event
    having joined it, at a later member's time within ``span`` of it.

    In time order the member seen last would have found the late one in its window: a
    campaign that the late member completes is raised when it arrives, not never."""
    if window_count(window, now, span, extra) >= need:
        return True
    if not window or run_last(next(reversed(window.values()))) <= now:
        return False  # in time order (the usual case) no member came after it
    later = {t for seen in window.values() for t in (run_first(seen), run_last(seen))}
    return any(
        window_count(window, t, span, extra) >= need for t in sorted(later) if now < t <= now + span
    )


class AccountState(msgspec.Struct, kw_only=True, gc=False):
    """What the guard remembers of one account."""

    # set-up, from account snapshots
    opened: float = 0.0
    passkey: bool = False
    otp_channel: str = "sms"
    account_at: float = 0.0  # the time of the account snapshot these come from (0: none)
    # login familiarity, learned from trusted sign-ins only (see detectors.login)
    n: int = 0
    seen: dict[str, int] = {}  # hierarchy key ("n:isp", "c:isp/JP", "u:1a2b3c4d", ...) -> count
    # Distinct values ever seen per hierarchy level, in the order of ``LEVELS`` (a list, not a
    # dict, and hours as bytes: these two are in every account, so their size is what counts).
    distinct: list[int] = []
    hours: bytearray = msgspec.field(default_factory=bytearray)  # sign-ins per hour, halved at 255
    last_login: float = 0.0
    last_country: str = ""
    # sign-ins learned by passkey, the browsers (user-agent keys) they came from, the latest
    # few, and the sign-ins learned by password from one of those browsers (password_fallback);
    # stored under short names: every account's record carries them
    passkey_logins: int = msgspec.field(default=0, name="pk")
    passkey_browsers: tuple[str, ...] = msgspec.field(default=(), name="pb")
    fallback_logins: int = msgspec.field(default=0, name="pw")
    # Rarely non-empty, so tuples: the empty tuple is shared, an empty list would cost each account.
    failures: tuple[float, ...] = ()  # recent failed credential checks
    challenge_failures: tuple[float, ...] = ()  # recent failed strong step-ups
    # holdings and trading habits
    cash: float = 0.0
    positions: dict[str, float] = {}  # "TSE:7203" -> quantity
    holdings_at: float = 0.0  # the time of the holdings snapshot they start from (0: none)
    # fills and withdrawals at or after ``holdings_at``, in time order, of the last
    # ``holdings_late_hours`` (at most MOVES_KEPT): what a late snapshot takes on top of it
    moves: tuple[Move, ...] = ()
    moves_lost: float = 0.0  # the latest of them no longer kept (0: none): a snapshot up to it
    bought: tuple[str, ...] = ()  # instruments bought before (most recent last, bounded)
    markets: tuple[str, ...] = ()  # markets bought in before
    orders: int = 0
    order_log_mean: float = 0.0  # running mean / variance of log10(order value in JPY)
    order_log_m2: float = 0.0
    margin_used: bool = False
    contact_changed: Seen = 0.0  # when e-mail or phone changed (first and last time)
    bank_changed: Seen = 0.0
    reverify_at: float = 0.0  # when an analyst asked for a strong re-verification (0: none)
    # when sessions signed in with the password failed a strong step-up while doubtful (0: none)
    session_failed_at: Seen = 0.0


class SessionState(msgspec.Struct, kw_only=True, gc=False):
    """One sign-in session, from its login (or its first request) to its last request."""

    account: str
    started: float
    last: float
    ip: str
    asn: str
    country: str
    net_kind: str
    ua: str
    cookie: str = ""
    login_seen: bool = False
    llr: float = 0.0  # how much more likely this session is an attacker's (nats)
    trusted: bool = False  # passed a phishing-resistant challenge (passkey / out-of-band)
    hijack: float = 0.0  # extra llr from mid-life changes of network or device
    sensitive: list[float] = []  # times of sensitive actions (settings, withdrawals)
    sold_value: float = 0.0  # value of sell orders placed in this session
    holdings_value: float = 0.0  # value of the holdings when the session started
    pending: dict[str, str] = {}  # event id awaiting a challenge answer -> decision point
    orders: tuple[str, ...] = ()  # orders that went ahead in it (the latest few)
    doubtful: tuple[str, ...] = ()  # ... of them, those placed while it was doubtful
    campaign: str = ""  # a campaign this session's infrastructure belongs to
    signed_out: bool = False  # the broker was asked to sign it out (asked once)
    # when it ended (a logout; 0.0: live): kept, marked, until the idle sweep drops it, so
    # that a request from before the logout delivered after it does not open it again
    ended: float = 0.0
    # when an earlier session under the same id ended (a logout, or this sign-in if it was
    # still in use; 0.0: none): a broker may give a new sign-in an id used before, and what was
    # asked before then (a step-up, a sign-in confirmed as fraud) is that session's, not this
    # one's
    follows: float = 0.0
    # the sessions before it under the same id, oldest first, each as it ended (logged out, or
    # replaced in use by a sign-in; their own ``before`` empty): a request of one, delivered
    # after this one started, is judged in it. Until the idle sweep forgets them, the latest few.
    before: tuple[SessionState, ...] = ()
    # a sign-in learned into the account's profile although it was doubtful: its keys and hour,
    # to take back out if the session fails a strong step-up
    learned: tuple[str, ...] = ()
    learned_hour: int = -1


class EntityState(msgspec.Struct, kw_only=True, gc=False):
    """An IP address, AS or user agent seen across accounts: the shared-infrastructure signals."""

    unfamiliar: Window = {}  # accounts that signed in from here unfamiliarly, recently
    risky: Window = {}  # accounts whose sign-in from here scored high, recently
    failures: Window = {}  # failed credential checks (member = event id), recently
    logins: int = 0
    unfamiliar_total: int = 0
    campaign: str = ""  # the campaign whose infrastructure this is
    confirmed_fraud: float = 0.0  # when an analyst confirmed a fraudulent sign-in from here
    canary: Seen = 0.0  # clone-page canary hits reported from here (first and last)
    canary_origin: str = ""  # the foreign origin the last hit named


class SymbolState(msgspec.Struct, kw_only=True, gc=False):
    """Reference data and recent trading of one instrument."""

    market: str
    symbol: str
    lot: int = 1
    ref_price: float = 0.0
    last_price: float = 0.0
    # when the last price became known (epoch s; see brokerguard.markets): a fill or bar
    # delivered late, known before it, does not replace it (0.0: none yet, or an older file)
    price_at: float = 0.0
    adv: float = 0.0  # average daily volume, shares
    market_cap: float = 0.0
    # when the reference data (lot, ref_price, adv, market_cap) became known (epoch s): an
    # instrument record delivered late, known before it, does not replace it (0.0: an older file)
    ref_at: float = 0.0
    bar_volume: float = 0.0  # smoothed volume of intraday bars
    bars: int = 0
    bar_at: float = 0.0  # when the latest intraday bar taken ended (epoch s; 0: none)
    day_open: float = 0.0
    suspicious: Window = {}  # account -> last suspicious buy (first-time buyers in risky sessions)
    compromised: Window = {}  # ... of them, those whose session is all but certainly not theirs
    sells: list[tuple[float, float, str]] = []  # recent sell fills: (time, price, account)
    # recent suspicious buy fills no sell was found for yet (their sell may come next)
    unmatched: list[tuple[float, float, str]] = []
    counterparties: dict[str, list[str]] = {}  # seller -> suspicious buyers it was matched with
    campaign: str = ""


class PopulationState(msgspec.Struct, kw_only=True, gc=False):
    """Counts over all accounts' trusted sign-ins: what "usual" looks like at this broker.

    ``counts`` counts accounts (a value once per account, when the account first shows it);
    ``n`` and ``hours`` count sign-ins."""

    n: int = 0
    counts: dict[str, int] = {}
    hours: list[int] = []
    home: str = ""  # the country most accounts sign in from, as of sign-in number ``home_at``
    home_at: int = 0


class CampaignState(msgspec.Struct, kw_only=True, gc=False):
    """A coordinated campaign: symbols, accounts and infrastructure, and how it unfolded."""

    id: str
    raised_at: float
    updated_at: float
    symbols: list[str] = []  # "MARKET:SYMBOL"
    accounts: list[str] = []
    infrastructure: list[str] = []  # "ip:..." / "asn:..." / "ua:..." keys
    counterparties: list[str] = []  # accounts that sold to the campaign's buyers
    timeline: list[tuple[float, str, str]] = []  # (time, what, detail)
    written: int = 0  # timeline entries already written out


class KeptOrders(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """The orders kept of one session that ended untrusted, under an id another session was
    given after it (see :attr:`EndedSessionState.earlier`)."""

    follows: float  # the session's ``follows``: which sign-in under the id they are of
    ended: float  # its last request
    orders: tuple[str, ...]


class EndedSessionState(msgspec.Struct, kw_only=True, gc=False, omit_defaults=True):
    """The orders of a session that was not trusted, kept for a while after it ended (a logout,
    the idle sweep): a fraud confirmation days later can still name them (keyed by session).

    A broker may give the id to a new sign-in after the logout: each session under the id keeps
    its own orders, the latest's here and the ones before in ``earlier`` (written only then:
    a record of one session encodes as it did before they existed)."""

    account: str
    ended: float  # its last request
    orders: tuple[str, ...] = ()
    follows: float = 0.0  # the session's ``follows``: which sign-in under the id they are of
    earlier: tuple[KeptOrders, ...] = ()  # of the sessions before it under the id, oldest first


class PendingState(msgspec.Struct, kw_only=True, gc=False):
    """A decision waiting for the answer to its challenge or hold (keyed by the event id)."""

    point: str  # login | order | settings | withdrawal
    account: str
    session: str
    at: float
    login: LoginAttempt | None = None
    order: Order | None = None
    value: float = 0.0  # the order's value in JPY
    field: str = ""  # the settings field
    amount: float = 0.0  # the withdrawal amount
    doubtful: tuple[str, ...] = ()  # the session's doubtful orders then (it may end meanwhile)


KINDS: dict[str, type[msgspec.Struct]] = {
    "account": AccountState,
    "session": SessionState,
    "entity": EntityState,
    "symbol": SymbolState,
    "population": PopulationState,
    "campaign": CampaignState,
    "pending": PendingState,
    "ended": EndedSessionState,
}
"""Every kind of record, so that stores can encode and decode them."""


class State(Protocol):
    """Where records live. Get, mutate, put: a put is what makes a change durable."""

    def get(self, kind: str, key: str) -> Any | None: ...

    def put(self, kind: str, key: str, record: msgspec.Struct) -> None: ...

    def delete(self, kind: str, key: str) -> None: ...

    def keys(self, kind: str) -> Iterator[str]: ...


class MemoryState:
    """All records in dicts; remembers which were put or deleted since the last :meth:`drain`."""

    def __init__(self, track_changes: bool = True) -> None:
        """``track_changes=False`` for a state nobody persists: the change set would only grow."""
        self.records: dict[str, dict[str, Any]] = {kind: {} for kind in KINDS}
        self.dirty: set[tuple[str, str]] = set()
        self.track_changes = track_changes

    def get(self, kind: str, key: str) -> Any | None:
        return self.records[kind].get(key)

    def put(self, kind: str, key: str, record: msgspec.Struct) -> None:
        self.records[kind][key] = record
        if self.track_changes:
            self.dirty.add((kind, key))

    def delete(self, kind: str, key: str) -> None:
        if self.records[kind].pop(key, None) is not None and self.track_changes:
            self.dirty.add((kind, key))

    def keys(self, kind: str) -> Iterator[str]:
        return iter(list(self.records[kind]))

    def count(self, kind: str) -> int:
        return len(self.records[kind])

    def drain(self) -> Iterator[tuple[str, str, Any | None]]:
        """Yield (kind, key, record or None if deleted) for every change, and forget them."""
        dirty, self.dirty = self.dirty, set()
        for kind, key in dirty:
            yield kind, key, self.records[kind].get(key)
