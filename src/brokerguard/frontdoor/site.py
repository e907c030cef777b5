"""The reference site's parts wired together: one :class:`Site` per app, built from a config.

Everything a page needs hangs off the ``Site``: the authentication services of
:mod:`brokerguard.auth` (passkeys, passwords with lockout, one-time codes, step-up), the
notifier behind the customer's notification settings, the site's books and sessions, and the
:class:`~.guardclient.GuardClient` to the BrokerGuard service. Locks go both ways: whatever
locks the account here (failures, the freeze button, a ``lock`` answer) also locks it at the
guard, so the broker's other systems (an app, a phone desk) get ``lock`` too; completing an
unlock request lifts both.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from brokerguard.auth import (
    Limit,
    Lockout,
    OneTimeCodes,
    PasskeyConfig,
    Passkeys,
    Passwords,
    RateLimiter,
    SqliteStore,
    StepUp,
)
from brokerguard.auth.passwords import LockReason, UnlockRequest
from brokerguard.auth.stepup import Challenge
from brokerguard.events import (
    AccountSnapshot,
    ChallengeResult,
    Event,
    HoldingsSnapshot,
    Position,
    SessionActivity,
)
from brokerguard.frontdoor.book import Book, Customer
from brokerguard.frontdoor.guardclient import GuardClient, GuardError
from brokerguard.frontdoor.prefs import Preferences, PreferredNotifier
from brokerguard.frontdoor.sessions import Sessions, SiteSession
from brokerguard.guard import Reason
from brokerguard.notify import Contact, Notifier
from brokerguard.notify.outbox import Channel

__all__ = [
    "MAX_BODY",
    "UNLOCK_PER_ACCOUNT",
    "UNLOCK_PER_ADDRESS",
    "BookContacts",
    "Site",
    "SiteConfig",
]

FEED_PAGE = 500  # instructions asked for at once (the API allows up to 1,000)
log = logging.getLogger(__name__)


UNLOCK_PER_ACCOUNT = 10
"""Unlock asks (``/unlock/ask``, ``/unlock/options``) per account ID and hour, whoever asks."""
UNLOCK_PER_ADDRESS = 60
"""The default of :attr:`SiteConfig.unlock_per_address`: asks per client address and hour."""

MAX_BODY = 64 * 1024
"""The largest request body the site reads (a form, a canary report, a WebAuthn response are a
few kilobytes); anyone may post to its log-in and canary, so none is read whole unbounded."""


@dataclass(frozen=True, kw_only=True)
class SiteConfig:
    """``origin`` is the site's own origin: passkeys are bound to it, the canary compares to it."""

    origin: str
    rp_id: str
    store_path: str | Path
    broker: str = "Demo Securities"
    support: str = "0120-000-000"
    max_failures: int = 5
    code_key: bytes | None = None
    secure_cookies: bool = False
    extra_origins: tuple[str, ...] = field(default=())
    # How often the guard's feed of instructions is read (seconds; 0: never): sign-outs that an
    # analyst's conclusion or another system's report asks for reach the site this way.
    instructions_poll: float = 5.0
    # Unlock asks per hour from one client address, whatever ID it types (per ID it is
    # UNLOCK_PER_ACCOUNT, 10). Higher than per ID: many customers of a mobile carrier come from
    # one carrier-grade NAT address, and a criminal probing IDs is held by the per-ID limit.
    unlock_per_address: int = UNLOCK_PER_ADDRESS

    def __post_init__(self) -> None:
        n = self.unlock_per_address
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 100_000:
            raise ValueError(
                "unlock_per_address: the unlock asks allowed per client address and hour must "
                f"be a whole number from 1 to 100000, not {n!r}"
            )


@dataclass
class Waiting:
    reasons: tuple[Reason, ...]
    undo: Callable[[], None] | None = None


class BookContacts:
    """The notifier's contacts, read from the site's customer records."""

    def __init__(self, book: Book) -> None:
        self.book = book

    def get(self, account: str) -> Contact | None:
        customer = self.book.customer(account)
        if customer is None:
            return None
        lang = "en" if customer.lang == "en" else "ja"
        return Contact(email=customer.email, phone=customer.phone, lang=lang)


class Site:
    def __init__(
        self, config: SiteConfig, guard: GuardClient, channels: dict[str, Channel]
    ) -> None:
        self.config = config
        self.guard = guard
        self.store = SqliteStore(config.store_path)
        self.book = Book(self.store)
        self.sessions = Sessions(self.store)
        self.prefs = Preferences(self.store)
        self.contacts = BookContacts(self.book)
        self.limiter = RateLimiter(self.store)  # canary reports per address, unlock requests
        self.unlock_purge_due: datetime | None = None  # when the unlock windows are purged next
        self.unlock_limits = (  # per account ID, per client address
            Limit(UNLOCK_PER_ACCOUNT, timedelta(hours=1)),
            Limit(config.unlock_per_address, timedelta(hours=1)),
        )
        self.canary_reports = 0
        self.outbox = Notifier(
            self.contacts,
            channels,
            broker=config.broker,
            support={"ja": config.support, "en": config.support},
        )
        self.notifier = PreferredNotifier(self.outbox, self.prefs)
        origins = (config.origin, *config.extra_origins)
        self.passkeys = Passkeys(
            PasskeyConfig(rp_id=config.rp_id, rp_name=config.broker, origins=origins),
            self.store,
            notifier=self.notifier,
        )
        self.lockout = Lockout(self.store, max_failures=config.max_failures, notifier=self.notifier)
        self.passwords = Passwords(self.store, self.lockout)
        self.codes = OneTimeCodes(self.store, self.notifier, self.contacts, key=config.code_key)
        self.stepup = StepUp(
            observe=self.tell, passkeys=self.passkeys, codes=self.codes, passwords=None
        )
        self.waiting: dict[str, Waiting] = {}  # open step-up id -> reasons, undo
        self._feed_seq = 0  # the last instruction read from the guard's feed
        self._stopping = threading.Event()
        self._follower: threading.Thread | None = None

    # --- the guard ---------------------------------------------------------------------------
    def tell(self, event: Event) -> None:
        """Send an event that needs no answer (a step-up outcome, set-up, holdings).

        A step-up's outcome also closes what the site kept for it, and undoes what waited on a
        step-up that did not pass (an order becomes refused). The report to the guard is best
        effort: a customer who passed must not lose the operation because the guard is away.
        What the guard's answer instructs is carried out at once (:meth:`carry_out`).
        """
        if isinstance(event, ChallengeResult) and event.id.startswith("stepup-"):
            waiting = self.waiting.pop(event.id.removeprefix("stepup-"), None)
            if waiting is not None and event.outcome != "passed" and waiting.undo is not None:
                waiting.undo()
        with contextlib.suppress(GuardError):
            self.carry_out(self.guard.send([event]).get("instructions") or [])

    def carry_out(self, instructions: list[dict[str, Any]]) -> int:
        """Do what the guard asks about what it let through; returns the sessions signed out.

        ``end_session``: the session that failed a phishing-resistant step-up while doubtful,
        or whose sign-in an analyst confirmed as fraud, is signed out here; whoever holds it
        signs in again and meets the guard there. Closing a session already closed does
        nothing, so an instruction read twice (the answer, then the feed) is harmless.
        ``cancel_orders`` needs nothing: this site's orders fill at once.
        """
        ended = 0
        for instruction in instructions:
            if instruction.get("kind") != "end_session":
                continue
            account = instruction["account"]
            for session in self.sessions.of(account):
                if session.guard_session == instruction["session"]:
                    ended += self.sessions.close(account, session.id)
        return ended

    def wait_for(self, challenge: Challenge, reasons: tuple[Reason, ...], undo=None) -> None:
        """Keep the guard's reasons for the step-up page, and what to undo if it fails."""
        self.stepup.expire()  # abandoned step-ups are told to the guard and forgotten
        self.waiting[challenge.id] = Waiting(reasons=reasons, undo=undo)

    def snapshot(self, account: str) -> None:
        """Tell the guard the account's set-up and holdings (before a sign-in is decided)."""
        customer = self.book.customer(account)
        if customer is None:
            return
        now = datetime.now(UTC)
        self.guard.send(
            [
                AccountSnapshot(
                    id=f"acct-{account}-{now.timestamp():.6f}",
                    ts=now,
                    account=account,
                    opened=customer.opened,
                    passkey_enrolled=self.passkeys.has_passkey(account),
                    password_login=True,
                    otp_channel="email",
                ),
                HoldingsSnapshot(
                    id=f"hold-{account}-{now.timestamp():.6f}",
                    ts=now,
                    account=account,
                    cash_jpy=max(customer.cash, 0.0),
                    positions=[
                        Position(symbol=s, market="TSE", quantity=q)
                        for s, q in customer.positions.items()
                        if q > 0
                    ],
                ),
            ]
        )

    def lock(self, account: str, *, reason: LockReason, by: str) -> None:
        """Lock here and at the guard; every session of the account ends."""
        self.lockout.lock(account, reason=reason, by=by)
        self.sessions.close_all(account)
        # The site's own lock holds even when the guard cannot be reached.
        with contextlib.suppress(GuardError):
            self.guard.freeze(account, f"{reason}: locked by {by} at the front door")

    def end_session(self, session: SiteSession, ip: str, user_agent: str) -> None:
        """Sign a session out here and tell the guard, which then forgets the session."""
        self.sessions.close(session.account, session.id)
        now = datetime.now(UTC)
        self.tell(
            SessionActivity(
                id=f"logout-{session.id}-{now.timestamp():.6f}",
                ts=now,
                account=session.account,
                session=session.guard_session,
                ip=ip,
                user_agent=user_agent,
                action="logout",
            )
        )

    def pending_unlock(self, account: str) -> UnlockRequest | None:
        """The account's open unlock request (the latest), if any: the site finds it itself,
        it never takes the browser's word for which request a passkey answers."""
        still_open = [r for r in self.lockout.requests(account) if r.status == "open"]
        return still_open[-1] if still_open else None

    def open_request(self, account: str, requested_by: str) -> UnlockRequest:
        """The account's open unlock request, or a new one: the customer's request is the one
        an analyst's unlock completes, so its trail shows who asked and who reopened."""
        pending = self.pending_unlock(account)
        if pending is not None:
            return pending
        return self.lockout.request_unlock(account, requested_by=requested_by)

    def ask_analyst_unlock(self, account: str) -> bool:
        """The customer asks the security team to reopen a locked account (no passkey, or
        none at hand): the open unlock request is reused or one opened, and the guard records
        the request (``request_unlock``) for the analysts' list. False when the guard could not
        be told (the page always says to call the support desk if no one calls back); the
        request stays open here and an analyst's unlock with a note completes it all the same
        (:meth:`lifted_by_analyst`).
        """
        request = self.open_request(account, "customer")
        note = f"unlock request {request.id}: the customer asked for an analyst's unlock"
        try:
            self.guard.request_unlock(account, note)
        except GuardError:
            return False
        return True

    def lifted_by_analyst(self, account: str) -> bool:
        """Complete the site's unlock when an analyst lifted the guard's lock after the site's.

        The analyst path of the unlock flow: the security team checks the customer's identity
        (a call back to the registered phone, documents) and unlocks the account in the console
        or through the API, writing in the note how the identity was checked. The site reads
        the guard's account actions and completes its own unlock request with that analyst and
        that note; an unlock without a note completes nothing (the page keeps saying "contact
        support"), nor does the site's own unlock or one older than the lock.
        """
        state = self.lockout.state(account)
        if not state.locked:
            return False
        try:
            actions = self.guard.actions(account)
        except GuardError:
            return False
        latest = next((a for a in actions if a["action"] in ("lock", "freeze", "unlock")), None)
        if latest is None or latest["action"] != "unlock" or latest["actor"] == self.guard.actor:
            return False
        note = str(latest.get("note") or "").strip()
        when = datetime.fromisoformat(str(latest["created_at"]))
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        if not note or (state.locked_at is not None and when < state.locked_at):
            return False
        request = self.open_request(account, f"analyst:{latest['actor']}")
        self.lockout.complete_by_analyst(
            account, request.id, analyst=str(latest["actor"]), method=note
        )
        return True

    def add_customer(
        self,
        account: str,
        password: str,
        *,
        name: str,
        email: str,
        lang: str = "ja",
        cash: float = 3_000_000.0,
        positions: dict[str, int] | None = None,
    ) -> Customer:
        """Open a demo customer with a password (the demo's seed, and the tests')."""
        customer = self.book.add(
            Customer(
                account=account,
                name=name,
                email=email,
                lang=lang,
                opened=datetime.now(UTC),
                cash=cash,
                positions=dict(positions or {}),
            )
        )
        self.passwords.set(account, password)
        return customer

    def follow_instructions(self) -> int:
        """Read the guard's feed since the last read and carry it out; returns the sessions
        signed out. Reading on from the last ``seq`` misses nothing: the guard's writers commit
        in ``seq`` order (tests/service/test_feed_order.py)."""
        ended = 0
        after = self._feed_seq
        while True:  # page by page, so that a long feed is caught up with in one call
            rows = self.guard.instructions(after=after, limit=FEED_PAGE)
            ended += self.carry_out(rows)
            if not rows:
                break
            self._feed_seq = after = max(int(row["seq"]) for row in rows)
            if len(rows) < FEED_PAGE:
                break
        return ended

    def _follow(self) -> None:
        while not self._stopping.wait(self.config.instructions_poll):
            try:
                self.follow_instructions()
            except GuardError as exc:  # the guard is away: try again at the next poll
                log.info("instructions feed: %s", exc)
            except Exception:  # anything else must not end the thread unseen
                log.exception("instructions feed: could not be carried out")

    def start(self) -> None:
        self.outbox.start()
        if self.config.instructions_poll > 0:
            self._follower = threading.Thread(target=self._follow, name="feed", daemon=True)
            self._follower.start()

    def close(self) -> None:
        self._stopping.set()
        if self._follower is not None:
            self._follower.join(timeout=10)
        self.outbox.close(timeout=10)
        self.guard.close()
        self.store.close()
