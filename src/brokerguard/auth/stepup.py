"""Step-up: carry out the guard's ``challenge`` or ``hold`` and resume the operation on success.

When the guard answers a login, order, withdrawal or settings change with ``challenge``, the
broker calls :meth:`StepUp.start` with the event, the decision and a *resume* callback (the
operation that was stopped). The flow

- offers exactly the factors the decision names, less those the customer has not enrolled
  (no factor left is :class:`~brokerguard.auth.errors.NotEnrolled`: the broker must not
  silently fall back to a weaker one);
- verifies the answer with the passkey, TOTP, code or password module;
- reports the outcome to the guard as a :class:`~brokerguard.events.ChallengeResult` event
  (``ref`` = the stepped-up event; ``passed``, ``failed`` or ``abandoned``) through ``observe``,
  exactly once per challenge, so the guard can learn from it;
- calls *resume* only after ``passed`` — never on a failure, an expiry or an abandonment.

``hold`` sends an out-of-band confirmation code to the registered contact (a notice naming the
operation, no link) and resumes when the customer enters it on the confirmation screen; "this
was not me" rejects it. Challenges live in memory for minutes: after a restart, open ones are
gone and the customer simply starts the operation again.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from brokerguard.auth.common import Clock, Verified, utcnow
from brokerguard.auth.errors import (
    AccountLocked,
    AuthError,
    CredentialFlagged,
    NotEnrolled,
    NotFound,
    RateLimited,
)
from brokerguard.auth.otp import OneTimeCodes, SentCode, Totp
from brokerguard.auth.passkeys import Passkeys
from brokerguard.auth.passwords import Passwords
from brokerguard.events import (
    ChallengeResult,
    Event,
    Factor,
    LoginAttempt,
    Order,
    SettingsChange,
    Withdrawal,
)
from brokerguard.guard import Decision

__all__ = ["Challenge", "Outcome", "Prompt", "StepUp", "describe_operation"]

Status = Literal["open", "passed", "failed", "abandoned"]
CODE_FACTORS: tuple[Factor, ...] = ("sms", "email", "oob")  # answered with a code that was sent
SteppedUp = LoginAttempt | Order | Withdrawal | SettingsChange


@dataclass
class Challenge:
    """One step-up in progress. ``factors`` is what the customer may answer with."""

    id: str
    account: str
    session: str | None
    ref: str
    action: Literal["challenge", "hold"]
    factors: tuple[Factor, ...]
    operation: str
    created: datetime
    expires: datetime
    resume: Callable[[], Any] = field(repr=False)
    status: Status = "open"
    attempts: int = 0
    sent: SentCode | None = None


@dataclass(frozen=True)
class Prompt:
    """What the page shows for a chosen factor: passkey options, or where a code went."""

    factor: Factor
    passkey_options: str | None = None
    sent: SentCode | None = None


@dataclass(frozen=True)
class Outcome:
    """The result of one answer. ``retry``: wrong, ``attempts_left`` more; ``result`` is what
    *resume* returned (only on ``passed``)."""

    status: Literal["passed", "failed", "retry"]
    factor: Factor
    attempts_left: int = 0
    proof: Verified | None = None
    result: Any = None
    error: str | None = None


def describe_operation(event: Event) -> str:
    """A short, language-neutral description of the operation for the confirmation notice."""
    match event:
        case Order():
            price = f"@{event.limit_price:g}" if event.limit_price is not None else "market"
            return f"{event.side.upper()} {event.symbol} ({event.market}) x{event.quantity} {price}"
        case Withdrawal():
            return f"withdrawal JPY {event.amount_jpy:,.0f}"
        case SettingsChange():
            return event.field  # a label key: the notice names it in the customer's language
        case LoginAttempt():
            return "login"
    raise ValueError(f"{type(event).__name__} is not a decision point that can be stepped up")


class StepUp:
    """Runs step-ups with whichever verifiers the broker has; ``observe`` is the guard's."""

    def __init__(
        self,
        *,
        observe: Callable[[Event], None],
        passkeys: Passkeys | None = None,
        totp: Totp | None = None,
        codes: OneTimeCodes | None = None,
        passwords: Passwords | None = None,
        max_attempts: int = 3,
        ttl: timedelta = timedelta(minutes=10),
        clock: Clock = utcnow,
    ) -> None:
        self.observe = observe
        self.passkeys = passkeys
        self.totp = totp
        self.codes = codes
        self.passwords = passwords
        self.max_attempts = max_attempts
        self.ttl = ttl
        self.clock = clock
        self._open: dict[str, Challenge] = {}
        self._lock = threading.Lock()

    # --- what the customer has -----------------------------------------------------------------
    def enrolled(self, account: str) -> tuple[Factor, ...]:
        """The factors this customer can answer with, given the verifiers configured."""
        have: list[Factor] = []
        if self.passkeys is not None and self.passkeys.has_passkey(account):
            have.append("passkey")
        if self.totp is not None and self.totp.enrolled(account):
            have.append("totp")
        if self.codes is not None:
            channels = self.codes.channels(account)
            have.extend(channels)
            if channels:
                have.append("oob")
        if self.passwords is not None and self.passwords.has_password(account):
            have.append("password")
        return tuple(have)

    # --- the flow ------------------------------------------------------------------------------
    def start(
        self,
        event: SteppedUp,
        decision: Decision,
        resume: Callable[[], Any],
        *,
        operation: str | None = None,
    ) -> Challenge:
        """Open a step-up for ``event`` as ``decision`` asks; a hold sends its code at once."""
        if decision.action not in ("challenge", "hold"):
            raise ValueError(f"a {decision.action!r} decision has no step-up")
        account = event.account
        have = self.enrolled(account)
        if decision.action == "hold":
            factors: tuple[Factor, ...] = ("oob",) if "oob" in have else ()
        else:
            factors = tuple(f for f in decision.factors if f in have)
        if not factors:
            asked = ("oob",) if decision.action == "hold" else decision.factors
            raise NotEnrolled(f"account {account!r} has none of the factors {list(asked)}")
        now = self.clock()
        challenge = Challenge(
            id=secrets.token_urlsafe(12),
            account=account,
            session=getattr(event, "session", None),
            ref=event.id,
            action=decision.action,  # type: ignore[arg-type]
            factors=factors,
            operation=operation or describe_operation(event),
            created=now,
            expires=now + self.ttl,
            resume=resume,
        )
        if decision.action == "hold":
            # Sent before the challenge opens: a code that cannot go out (RateLimited) must not
            # leave an open step-up behind, later reported to the guard as abandoned.
            challenge.sent = self._send_confirmation(challenge)
        with self._lock:
            self._open[challenge.id] = challenge
        return challenge

    def get(self, challenge_id: str) -> Challenge:
        challenge = self._open.get(challenge_id)
        if challenge is None:
            raise NotFound(f"no step-up {challenge_id!r}")
        return challenge

    def select(self, challenge_id: str, factor: Factor) -> Prompt:
        """The customer chose a factor: make passkey options, or send the code."""
        challenge = self._usable(challenge_id, factor)
        if factor == "passkey":
            assert self.passkeys is not None
            options = self.passkeys.authentication_options(
                challenge.account, purpose=self._purpose(challenge)
            )
            return Prompt(factor, passkey_options=options)
        if factor in ("sms", "email"):
            assert self.codes is not None
            # The message names what the code approves (not the internal purpose): a customer
            # told "a code for your sign-in" by a phishing page reads what it really is for.
            sent = self.codes.send(
                challenge.account,
                factor,  # type: ignore[arg-type]
                purpose=self._purpose(challenge, factor),
                fields={"purpose": challenge.operation},
            )
            challenge.sent = sent
            return Prompt(factor, sent=sent)
        if factor == "oob":
            challenge.sent = self._send_confirmation(challenge)
            return Prompt(factor, sent=challenge.sent)
        return Prompt(factor)

    def answer(self, challenge_id: str, factor: Factor, response: Any) -> Outcome:
        """Verify an answer. ``passed`` resumes the operation; a wrong answer may be retried
        until ``max_attempts``; a cloned passkey or a locked account fails at once."""
        challenge = self._usable(challenge_id, factor)
        try:
            proof = self._verify(challenge, factor, response)
        except RateLimited:
            raise  # not the customer's answer being wrong: the page says "wait"
        except (CredentialFlagged, AccountLocked, NotEnrolled) as exc:
            self._finish(challenge, factor, "failed")
            return Outcome("failed", factor, error=exc.code)
        except AuthError as exc:
            with self._lock:
                challenge.attempts += 1
                left = self.max_attempts - challenge.attempts
            if left <= 0:
                self._finish(challenge, factor, "failed")
                return Outcome("failed", factor, error=exc.code)
            return Outcome("retry", factor, attempts_left=left, error=exc.code)
        if not self._finish(challenge, factor, "passed"):
            return Outcome("failed", factor, error="closed")  # answered twice at once
        return Outcome("passed", factor, proof=proof, result=challenge.resume())

    def reject(self, challenge_id: str) -> Outcome:
        """The customer says the held operation was not theirs: fail it, never resume."""
        challenge = self._usable(challenge_id, "oob")
        if self.codes is not None:
            for factor in CODE_FACTORS:
                self.codes.cancel(challenge.account, purpose=self._purpose(challenge, factor))
        self._finish(challenge, "oob", "failed")
        return Outcome("failed", "oob", error="rejected_by_customer")

    def abandon(self, challenge_id: str) -> None:
        """The customer left (closed the page, pressed cancel)."""
        challenge = self.get(challenge_id)
        if challenge.status == "open":
            self._finish(challenge, challenge.factors[0], "abandoned")

    def expire(self) -> int:
        """Abandon every challenge past its lifetime; call it now and then. Returns how many."""
        now = self.clock()
        abandoned = 0
        for challenge in [c for c in list(self._open.values()) if c.expires < now]:
            abandoned += self._finish(challenge, challenge.factors[0], "abandoned")
            with self._lock:
                self._open.pop(challenge.id, None)
        return abandoned

    # --- internals -----------------------------------------------------------------------------
    def _usable(self, challenge_id: str, factor: Factor) -> Challenge:
        challenge = self.get(challenge_id)
        if challenge.status != "open":
            raise AuthError(f"step-up {challenge_id!r} is already {challenge.status}")
        if self.clock() > challenge.expires:
            self._finish(challenge, challenge.factors[0], "abandoned")
            raise AuthError(f"step-up {challenge_id!r} expired")
        if factor not in challenge.factors:
            raise AuthError(f"{factor!r} is not offered here; use one of {list(challenge.factors)}")
        return challenge

    def _verify(self, challenge: Challenge, factor: Factor, response: Any) -> Verified:
        account = challenge.account
        if factor == "passkey" and self.passkeys is not None:
            # Only an assertion made for this step-up: one the customer made to approve another
            # operation (or a sign-in, a re-verification) must not approve this one.
            return self.passkeys.authenticate(response, account, purpose=self._purpose(challenge))
        if factor == "totp" and self.totp is not None:
            return self.totp.verify(account, str(response))
        if factor in CODE_FACTORS and self.codes is not None:
            # The code sent for this factor: an SMS or e-mail one-time code (relayable, named
            # by the guard as such) must not pass as the out-of-band confirmation it counts as
            # strong, though both go to the same registered contact.
            purpose = self._purpose(challenge, factor)
            return self.codes.verify(account, str(response), purpose=purpose)
        if factor == "password" and self.passwords is not None:
            return self.passwords.verify(account, str(response))
        raise NotEnrolled(f"no verifier configured for {factor!r}")

    def _purpose(self, challenge: Challenge, factor: Factor = "passkey") -> str:
        """What a passkey assertion or a sent code of this step-up approves: this step-up only
        (its operation, its session), never another one of the same customer; a code, only
        as the factor it was sent for."""
        if factor == "passkey":
            return f"stepup:{challenge.id}"
        return f"stepup:{challenge.id}:{factor}"

    def _send_confirmation(self, challenge: Challenge) -> SentCode:
        assert self.codes is not None
        channels = self.codes.channels(challenge.account)
        if not channels:
            raise NotEnrolled(f"account {challenge.account!r} has no registered contact")
        channel = "email" if "email" in channels else channels[0]
        return self.codes.send(
            challenge.account,
            channel,
            purpose=self._purpose(challenge, "oob"),
            factor="oob",
            kind="hold_confirmation",
            fields={"operation": challenge.operation},
        )

    def _finish(self, challenge: Challenge, factor: Factor, outcome: Status) -> bool:
        """Close the challenge and tell the guard, once; False if it was already closed."""
        with self._lock:
            if challenge.status != "open":
                return False
            challenge.status = outcome  # kept until expiry, so a late answer is told why
        self.observe(
            ChallengeResult(
                id=f"stepup-{challenge.id}",
                ts=self.clock(),
                account=challenge.account,
                session=challenge.session,
                ref=challenge.ref,
                factor=factor,
                outcome=outcome,  # type: ignore[arg-type]
            )
        )
        return True
