"""Customer authentication: passkeys first, OTP fallbacks, Argon2 passwords, lock and step-up.

Every service here is a plain class with its records in an :class:`AuthStore` (memory or
SQLite) and an injected clock, so the web pages, the service API and the tests call the same
functions. Verifiers return a :class:`Verified` proof; operations that need a fresh strong
sign-in take such a proof rather than trusting a flag.
"""

from brokerguard.auth.common import STRONG_FACTORS, Clock, Verified, require_fresh, utcnow
from brokerguard.auth.errors import (
    AccountLocked,
    AuthError,
    CodeExpired,
    CredentialFlagged,
    NotEnrolled,
    NotFound,
    RateLimited,
    ReauthRequired,
    TooManyAttempts,
    VerificationFailed,
)
from brokerguard.auth.otp import CodeLimits, OneTimeCodes, SentCode, Totp, TotpEnrolment
from brokerguard.auth.passkeys import Passkey, PasskeyConfig, Passkeys
from brokerguard.auth.passwords import Lockout, LockReason, LockState, Passwords, UnlockRequest
from brokerguard.auth.ratelimit import Limit, RateLimiter
from brokerguard.auth.stepup import Challenge, Outcome, Prompt, StepUp, describe_operation
from brokerguard.auth.store import AuthStore, MemoryStore, Records, SqliteStore

__all__ = [
    "STRONG_FACTORS",
    "AccountLocked",
    "AuthError",
    "AuthStore",
    "Challenge",
    "Clock",
    "CodeExpired",
    "CodeLimits",
    "CredentialFlagged",
    "Limit",
    "LockReason",
    "LockState",
    "Lockout",
    "MemoryStore",
    "NotEnrolled",
    "NotFound",
    "OneTimeCodes",
    "Outcome",
    "Passkey",
    "PasskeyConfig",
    "Passkeys",
    "Passwords",
    "Prompt",
    "RateLimited",
    "RateLimiter",
    "ReauthRequired",
    "Records",
    "SentCode",
    "SqliteStore",
    "StepUp",
    "TooManyAttempts",
    "Totp",
    "TotpEnrolment",
    "UnlockRequest",
    "VerificationFailed",
    "Verified",
    "describe_operation",
    "require_fresh",
    "utcnow",
]
