"""Why an authentication step did not succeed, as one small exception tree.

::

    AuthError                    base; ``code`` is a stable machine-readable name
    ├── VerificationFailed       the answer was wrong or could not be verified
    │   └── CredentialFlagged    a passkey refused because it looks cloned (counter went back)
    ├── CodeExpired              the code or ceremony is past its lifetime (ask for a new one)
    ├── TooManyAttempts          the code or challenge was answered wrongly too often
    ├── RateLimited              too many requests; ``retry_after`` says when to try again
    ├── AccountLocked            the account is locked until an unlock request is completed
    ├── NotEnrolled              the customer has none of the factors asked for
    ├── ReauthRequired           the operation needs a fresh strong sign-in first
    └── NotFound                 no such passkey, challenge or unlock request

The service layer maps these categories to HTTP statuses in one place; the messages are for
logs and analysts, never shown to a customer as they are (they may say which check failed, which
an attacker should not learn).
"""

from __future__ import annotations

__all__ = [
    "AccountLocked",
    "AuthError",
    "CodeExpired",
    "CredentialFlagged",
    "NotEnrolled",
    "NotFound",
    "RateLimited",
    "ReauthRequired",
    "TooManyAttempts",
    "VerificationFailed",
]


class AuthError(Exception):
    """Base of every error this package raises on purpose."""

    code = "auth_error"


class VerificationFailed(AuthError):
    """The presented factor did not verify (wrong code, bad signature, wrong origin, ...)."""

    code = "verification_failed"


class CredentialFlagged(VerificationFailed):
    """A passkey whose signature counter did not increase: two copies of one key exist.

    The credential stays refused until it is removed and a new passkey registered; a real
    authenticator never counts backwards, so a regression means a clone is in use somewhere.
    """

    code = "credential_flagged"


class CodeExpired(AuthError):
    """The one-time code, ceremony or challenge is past its lifetime."""

    code = "expired"


class TooManyAttempts(AuthError):
    """Too many wrong answers to one code or challenge; a new one must be requested."""

    code = "too_many_attempts"


class RateLimited(AuthError):
    """A rate limit was reached; ``retry_after`` is in seconds."""

    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AccountLocked(AuthError):
    """The account is locked; only a completed unlock request reopens it."""

    code = "account_locked"


class NotEnrolled(AuthError):
    """The customer has not enrolled any of the factors asked for."""

    code = "not_enrolled"


class ReauthRequired(AuthError):
    """A sensitive change needs a fresh strong verification (e.g. a passkey) first."""

    code = "reauth_required"


class NotFound(AuthError):
    """No such passkey, challenge or unlock request (for this account)."""

    code = "not_found"
