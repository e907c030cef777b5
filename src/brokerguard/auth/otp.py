"""One-time passwords: TOTP (pyotp) and codes sent by SMS or e-mail, as policy fallbacks.

They are *relayable*: a phishing proxy forwards whatever the victim types within the code's
window (``tests/test_passkeys.py`` shows it). So they are offered only where the policy allows
a fallback, never count as a strong factor, and are fenced in:

- TOTP accepts the current step ±1 (clock drift) and never the same or an older step twice,
  so a code seen once cannot be used again (a proxy must race the customer, not replay);
- sent codes are random, stored only as an HMAC, single-use, expire, and allow a few wrong
  answers before they are void;
- rate limits per account, per account and channel, and per channel over all accounts (SMS
  pumping), each with an error saying which limit and how long to wait.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from datetime import datetime, timedelta
from typing import Literal

import msgspec
import pyotp
from pyotp.utils import strings_equal

from brokerguard.auth.common import Clock, Verified, require_fresh, utcnow
from brokerguard.auth.errors import (
    CodeExpired,
    NotEnrolled,
    TooManyAttempts,
    VerificationFailed,
)
from brokerguard.auth.ratelimit import Limit, RateLimiter
from brokerguard.auth.store import AuthStore, Records
from brokerguard.events import Factor
from brokerguard.notify.contacts import Contacts, mask
from brokerguard.notify.outbox import Notify

__all__ = ["CodeLimits", "OneTimeCodes", "SentCode", "Totp", "TotpEnrolment"]

Channel = Literal["sms", "email"]


class TotpEnrolment(msgspec.Struct, frozen=True, kw_only=True):
    """What the customer's authenticator app needs: the secret and the ``otpauth://`` URI
    (shown as a QR code on the security page — it is a provisioning URI, not a web link)."""

    secret: str
    uri: str


class _TotpRecord(msgspec.Struct, kw_only=True):
    secret: str
    created: datetime
    last_step: int = -1


TOTP_ATTEMPTS = Limit(5, timedelta(minutes=5))
"""Default limit on TOTP attempts per account: guessing 6 digits needs ~10^5 tries."""


class Totp:
    """TOTP enrolment and verification for each account."""

    def __init__(
        self,
        store: AuthStore,
        *,
        issuer: str = "BrokerGuard",
        valid_window: int = 1,
        attempts: Limit = TOTP_ATTEMPTS,
        clock: Clock = utcnow,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.issuer = issuer
        self.valid_window = valid_window
        self.attempts = attempts
        self.clock = clock
        self.limiter = limiter or RateLimiter(store, clock=clock)
        self._active = Records(store, "totp", _TotpRecord)
        self._pending = Records(store, "totp-pending", _TotpRecord)
        self._lock = threading.Lock()

    def enrolled(self, account: str) -> bool:
        return self._active.get(account) is not None

    def begin_enrolment(self, account: str, *, label: str) -> TotpEnrolment:
        """A new secret, active only once :meth:`confirm_enrolment` saw a code made from it."""
        secret = pyotp.random_base32()
        self._pending.put(account, _TotpRecord(secret=secret, created=self.clock()))
        uri = pyotp.TOTP(secret).provisioning_uri(name=label, issuer_name=self.issuer)
        return TotpEnrolment(secret=secret, uri=uri)

    def confirm_enrolment(self, account: str, code: str) -> Verified:
        """Activate the pending secret with a first code (proves the app has it)."""
        with self._lock:
            pending = self._pending.get(account)
            if pending is None:
                raise NotEnrolled(f"account {account!r} has no TOTP enrolment in progress")
            self._check(account, pending, code)
            self._active.put(account, pending)
            self._pending.delete(account)
        return Verified(account=account, factor="totp", at=self.clock())

    def verify(self, account: str, code: str) -> Verified:
        """Verify a code: current step ±``valid_window``, each step at most once."""
        with self._lock:
            record = self._active.get(account)
            if record is None:
                raise NotEnrolled(f"account {account!r} has no TOTP")
            self._check(account, record, code)
            self._active.put(account, record)
        return Verified(account=account, factor="totp", at=self.clock())

    def remove(self, account: str, *, reauth: Verified | None, within: timedelta) -> None:
        """Turn TOTP off; needs a fresh passkey verification (an OTP cannot remove itself)."""
        require_fresh(
            reauth, account=account, now=self.clock(), within=within, what="removing TOTP"
        )
        self._active.delete(account)

    def _check(self, account: str, record: _TotpRecord, code: str) -> None:
        self.limiter.hit("totp", account, self.attempts, what="TOTP attempts")
        code = "".join(code.split())
        totp = pyotp.TOTP(record.secret)
        now = self.clock()
        current = totp.timecode(now)
        for step in range(current - self.valid_window, current + self.valid_window + 1):
            if strings_equal(code, totp.generate_otp(step)):
                if step <= record.last_step:
                    raise VerificationFailed("this TOTP code was already used")
                record.last_step = step
                return
        raise VerificationFailed("wrong TOTP code")


class CodeLimits(msgspec.Struct, frozen=True, kw_only=True):
    """How many codes may be sent: per account, per account and channel, per channel overall."""

    per_account: Limit = Limit(10, timedelta(hours=1))
    per_account_channel: Limit = Limit(5, timedelta(hours=1))
    per_channel: Limit = Limit(10_000, timedelta(minutes=1))


class SentCode(msgspec.Struct, frozen=True, kw_only=True):
    """What the page may show: where the code went (masked) and until when it is valid."""

    channel: Channel
    destination: str
    expires: datetime


class _Code(msgspec.Struct, kw_only=True):
    digest: bytes
    channel: Channel
    factor: Factor
    expires: datetime
    attempts: int = 0


class OneTimeCodes:
    """Random codes sent through the notifier to the registered phone or e-mail address.

    ``key`` is the HMAC key the stored digests use; give the same key to every process (and
    after a restart) or pending codes cannot be checked. Without one a random key is made, which
    is right for a single process.
    """

    def __init__(
        self,
        store: AuthStore,
        notifier: Notify,
        contacts: Contacts,
        *,
        key: bytes | None = None,
        ttl: timedelta = timedelta(minutes=5),
        max_attempts: int = 5,
        digits: int = 6,
        limits: CodeLimits | None = None,
        clock: Clock = utcnow,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.notifier = notifier
        self.contacts = contacts
        self.key = key or secrets.token_bytes(32)
        self.ttl = ttl
        self.max_attempts = max_attempts
        self.digits = digits
        self.limits = limits or CodeLimits()
        self.clock = clock
        self.limiter = limiter or RateLimiter(store, clock=clock)
        self._codes = Records(store, "code", _Code)
        self._lock = threading.Lock()

    def channels(self, account: str) -> list[Channel]:
        """The channels the customer can receive codes on."""
        contact = self.contacts.get(account)
        if contact is None:
            return []
        return [c for c in ("sms", "email") if contact.address(c)]  # type: ignore[misc]

    def send(
        self,
        account: str,
        channel: Channel,
        *,
        purpose: str = "login",
        factor: Factor | None = None,
        kind: str = "one_time_code",
        fields: dict[str, str] | None = None,
    ) -> SentCode:
        """Make a code for ``purpose``, replacing any earlier one, and queue it for delivery.

        ``kind`` and ``fields`` choose the notice (a hold confirmation names the operation);
        ``factor`` is what a verification of this code counts as (default: the channel).
        """
        contact = self.contacts.get(account)
        address = contact.address(channel) if contact is not None else None
        if not address:
            raise NotEnrolled(f"account {account!r} has no registered {channel} contact")
        limits = self.limits
        self.limiter.hit_all(
            [
                ("code-channel", channel, limits.per_channel, f"{channel} codes"),
                ("code-account", account, limits.per_account, "codes for this account"),
                (
                    "code-account-channel",
                    f"{account}\x1f{channel}",
                    limits.per_account_channel,
                    f"{channel} codes for this account",
                ),
            ]
        )
        code = "".join(secrets.choice("0123456789") for _ in range(self.digits))
        expires = self.clock() + self.ttl
        record = _Code(
            digest=self._digest(account, purpose, code),
            channel=channel,
            factor=factor or channel,
            expires=expires,
        )
        self._codes.put(f"{account}\x1f{purpose}", record)
        minutes = f"{self.ttl.total_seconds() / 60:g}"
        notice = {"code": code, "minutes": minutes, "purpose": purpose, **(fields or {})}
        self.notifier.notify(account, kind, notice, channels=(channel,))
        return SentCode(channel=channel, destination=mask(address), expires=expires)

    def verify(self, account: str, code: str, *, purpose: str = "login") -> Verified:
        """Check a code; it is void after success, expiry or ``max_attempts`` wrong answers."""
        key = f"{account}\x1f{purpose}"
        with self._lock:
            record = self._codes.get(key)
            if record is None:
                raise VerificationFailed("no code is pending; ask for a new one")
            if self.clock() > record.expires:
                self._codes.delete(key)
                raise CodeExpired("the code expired; ask for a new one")
            given = self._digest(account, purpose, "".join(code.split()))
            if not hmac.compare_digest(given, record.digest):
                record.attempts += 1
                if record.attempts >= self.max_attempts:
                    self._codes.delete(key)
                    raise TooManyAttempts("too many wrong codes; ask for a new one")
                self._codes.put(key, record)
                left = self.max_attempts - record.attempts
                raise VerificationFailed(f"wrong code ({left} attempts left)")
            self._codes.delete(key)
        return Verified(account=account, factor=record.factor, at=self.clock())

    def cancel(self, account: str, *, purpose: str) -> bool:
        return self._codes.delete(f"{account}\x1f{purpose}")

    def _digest(self, account: str, purpose: str, code: str) -> bytes:
        message = f"{account}\x1f{purpose}\x1f{code}".encode()
        return hmac.new(self.key, message, hashlib.sha256).digest()
