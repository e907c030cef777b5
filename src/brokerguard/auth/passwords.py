"""Passwords hashed with Argon2, automatic lock after repeated failures, and the unlock flow.

The guideline asks for two things here: an account locks itself after N consecutive failed
sign-ins (N configurable), and a locked or frozen account is reopened only after the customer's
identity was checked again. So a lock is never lifted by a timer or by a correct password:
an :class:`UnlockRequest` is opened (by the customer or an analyst) and completed either by a
strong factor verified *after* the request (a passkey — an OTP can be relayed by the same
phishing kit that caused the lock) or by an analyst who records how the identity was checked.
Who asked, who completed and how stay on the request, for the audit.

:class:`Lockout` is the lock state of an account, whatever locked it (failures, the guard's
``lock`` decision, the customer's "freeze my account" button, an analyst). :class:`Passwords`
hashes and verifies and reports failures to it.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
from datetime import datetime, timedelta
from typing import Literal

import msgspec
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from brokerguard.auth.common import STRONG_FACTORS, Clock, Verified, require_fresh, utcnow
from brokerguard.auth.errors import AccountLocked, AuthError, NotFound, VerificationFailed
from brokerguard.auth.store import AuthStore, Records
from brokerguard.events import Factor
from brokerguard.notify.outbox import Notify

__all__ = ["LockReason", "LockState", "Lockout", "Passwords", "UnlockRequest"]

LockReason = Literal["failures", "customer", "analyst", "guard"]
_NOTICE_REASON = {
    "failures": "failures",
    "customer": "customer",
    "analyst": "analyst",
    "guard": "analyst",
}


class LockState(msgspec.Struct, kw_only=True):
    """``failures`` counts consecutive failed passwords; ``by`` is who locked (or ``system``)."""

    failures: int = 0
    locked: bool = False
    locked_at: datetime | None = None
    reason: LockReason | None = None
    by: str | None = None


class UnlockRequest(msgspec.Struct, kw_only=True):
    """A request to reopen a locked account, and how it was completed."""

    id: str
    account: str
    created: datetime
    requested_by: str
    status: Literal["open", "completed", "cancelled"] = "open"
    completed_at: datetime | None = None
    completed_by: str | None = None
    method: str | None = None
    note: str = ""


class Lockout:
    """Lock state and unlock requests of accounts."""

    def __init__(
        self,
        store: AuthStore,
        *,
        max_failures: int = 5,
        unlock_window: timedelta = timedelta(minutes=10),
        unlock_factors: frozenset[Factor] = STRONG_FACTORS,
        notifier: Notify | None = None,
        clock: Clock = utcnow,
    ) -> None:
        if max_failures < 1:
            raise ValueError("`max_failures` must be at least 1")
        self.max_failures = max_failures
        self.unlock_window = unlock_window
        self.unlock_factors = unlock_factors
        self.notifier = notifier
        self.clock = clock
        self._states = Records(store, "lock", LockState)
        self._requests = Records(store, "unlock", UnlockRequest)
        self._lock = threading.RLock()

    # --- state ---------------------------------------------------------------------------------
    def state(self, account: str) -> LockState:
        return self._states.get(account) or LockState()

    def is_locked(self, account: str) -> bool:
        return self.state(account).locked

    def check(self, account: str) -> None:
        """Raise AccountLocked when locked; every sign-in path calls this after any factor."""
        state = self.state(account)
        if state.locked:
            raise AccountLocked(f"account {account!r} is locked ({state.reason})")

    def failure(self, account: str) -> LockState:
        """Count a failed sign-in; the ``max_failures``-th in a row locks the account."""
        with self._lock:
            state = self.state(account)
            state.failures += 1
            self._states.put(account, state)
            if not state.locked and state.failures >= self.max_failures:
                return self.lock(account, reason="failures", by="system")
            return state

    def success(self, account: str) -> None:
        """A correct password ends the run of failures (it does not unlock)."""
        with self._lock:
            state = self.state(account)
            if state.failures:
                state.failures = 0
                self._states.put(account, state)

    def lock(self, account: str, *, reason: LockReason, by: str) -> LockState:
        """Lock now (the guard's ``lock``, the freeze button, an analyst, or failures)."""
        with self._lock:
            state = self.state(account)
            if state.locked:
                return state
            state.locked, state.locked_at = True, self.clock()
            state.reason, state.by = reason, by
            self._states.put(account, state)
        if self.notifier is not None:
            self.notifier.notify(account, "account_locked", {"reason": _NOTICE_REASON[reason]})
        return state

    # --- unlock --------------------------------------------------------------------------------
    def request_unlock(self, account: str, *, requested_by: str) -> UnlockRequest:
        """Open an unlock request (``requested_by``: ``customer`` or ``analyst:<id>``)."""
        if not self.is_locked(account):
            raise AuthError(f"account {account!r} is not locked")
        request = UnlockRequest(
            id=secrets.token_urlsafe(12),
            account=account,
            created=self.clock(),
            requested_by=requested_by,
        )
        self._requests.put(f"{account}\x1f{request.id}", request)
        return request

    def complete_by_factor(self, account: str, request_id: str, proof: Verified) -> UnlockRequest:
        """Complete with a strong factor the customer passed after the request was opened."""
        with self._lock:
            request = self._open(account, request_id)
            require_fresh(
                proof,
                account=account,
                now=self.clock(),
                within=self.unlock_window,
                factors=self.unlock_factors,
                what="unlocking the account",
            )
            if proof.at < request.created:
                raise VerificationFailed("the verification is older than the unlock request")
            return self._complete(request, by="customer", method=f"{proof.factor}:{proof.detail}")

    def complete_by_analyst(
        self, account: str, request_id: str, *, analyst: str, method: str, note: str = ""
    ) -> UnlockRequest:
        """Complete after an analyst checked the customer's identity; says how (``method``)."""
        if not analyst.strip() or not method.strip():
            raise ValueError("an analyst unlock must name the analyst and the identity check")
        with self._lock:
            request = self._open(account, request_id)
            request.note = note
            return self._complete(request, by=f"analyst:{analyst}", method=method)

    def cancel(self, account: str, request_id: str) -> UnlockRequest:
        with self._lock:
            request = self._open(account, request_id)
            request.status = "cancelled"
            self._requests.put(f"{account}\x1f{request.id}", request)
            return request

    def requests(self, account: str) -> list[UnlockRequest]:
        """The account's unlock requests, oldest first (the audit trail)."""
        return sorted(self._requests.values(account + "\x1f"), key=lambda r: r.created)

    def _open(self, account: str, request_id: str) -> UnlockRequest:
        request = self._requests.get(f"{account}\x1f{request_id}")
        if request is None:
            raise NotFound(f"account {account!r} has no unlock request {request_id!r}")
        if request.status != "open":
            raise AuthError(f"unlock request {request_id!r} is {request.status}")
        return request

    def _complete(self, request: UnlockRequest, *, by: str, method: str) -> UnlockRequest:
        request.status = "completed"
        request.completed_at = self.clock()
        request.completed_by = by
        request.method = method
        self._requests.put(f"{request.account}\x1f{request.id}", request)
        self._states.put(request.account, LockState())
        return request


class Passwords:
    """Argon2id password hashes; wrong passwords count towards the lock.

    ``hasher`` carries the Argon2 parameters; when they change, a stored hash made with the old
    ones is replaced at the customer's next correct sign-in (the only time the password is known).
    """

    def __init__(
        self,
        store: AuthStore,
        lockout: Lockout,
        *,
        hasher: PasswordHasher | None = None,
        min_length: int = 10,
        clock: Clock = utcnow,
    ) -> None:
        self.lockout = lockout
        self.hasher = hasher or PasswordHasher()
        self.min_length = min_length
        self.clock = clock
        self._hashes = Records(store, "password", _PasswordRecord)
        self._dummy: str | None = None

    def has_password(self, account: str) -> bool:
        return self._hashes.get(account) is not None

    def set(self, account: str, password: str) -> None:
        """Store a new password (after the caller checked who is asking)."""
        if len(password) < self.min_length:
            raise ValueError(f"a password needs at least {self.min_length} characters")
        self._hashes.put(
            account, _PasswordRecord(hash=self.hasher.hash(password), changed=self.clock())
        )

    def verify(self, account: str, password: str) -> Verified:
        """Check a password. A locked account is refused before the password is looked at."""
        self.lockout.check(account)
        record = self._hashes.get(account)
        if record is None:
            self._burn(password)  # same cost as a real check: no account enumeration by time
            raise VerificationFailed("wrong ID or password")
        try:
            self.hasher.verify(record.hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            state = self.lockout.failure(account)
            if state.locked:
                raise AccountLocked(
                    f"account {account!r} locked after {state.failures} failures"
                ) from None
            raise VerificationFailed("wrong ID or password") from None
        self.lockout.success(account)
        if self.hasher.check_needs_rehash(record.hash):
            self._hashes.put(
                account, _PasswordRecord(hash=self.hasher.hash(password), changed=record.changed)
            )
        return Verified(account=account, factor="password", at=self.clock())

    def matches(self, account: str, password: str) -> bool:
        """Whether ``password`` is the account's, at the cost of a real check, whatever the lock.

        Counts nothing and changes nothing: for a locked account, so that the site can send
        the owner who typed the right password to the unlock page while a wrong password on it
        reads like any other wrong password (no one learns that the account is locked).
        """
        record = self._hashes.get(account)
        if record is None:
            self._burn(password)
            return False
        try:
            return bool(self.hasher.verify(record.hash, password))
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def _burn(self, password: str) -> None:
        if self._dummy is None:
            self._dummy = self.hasher.hash(secrets.token_hex(16))
        with contextlib.suppress(VerificationError):
            self.hasher.verify(self._dummy, password)


class _PasswordRecord(msgspec.Struct, kw_only=True):
    hash: str
    changed: datetime
