"""What the authentication modules share: the clock and the proof of a verified factor."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import msgspec

from brokerguard.auth.errors import ReauthRequired
from brokerguard.events import Factor

__all__ = ["STRONG_FACTORS", "Clock", "Verified", "require_fresh", "utcnow"]

Clock = Callable[[], datetime]
"""Returns the current time (timezone-aware). Injected so tests control time without sleeping."""

STRONG_FACTORS: frozenset[Factor] = frozenset({"passkey"})
"""Factors that cannot be relayed by a phishing proxy: only a passkey is bound to the origin."""


def utcnow() -> datetime:
    return datetime.now(UTC)


class Verified(msgspec.Struct, frozen=True, kw_only=True):
    """Proof that ``account`` just passed ``factor`` at ``at``; what every verifier returns.

    Operations that need a fresh sign-in (removing a passkey, completing an unlock) take one of
    these instead of a flag, so a caller cannot claim a verification it did not perform.
    ``detail`` names what was used (the passkey's credential id), never a secret.
    """

    account: str
    factor: Factor
    at: datetime
    detail: str = ""


def require_fresh(
    proof: Verified | None,
    *,
    account: str,
    now: datetime,
    within: timedelta,
    factors: frozenset[Factor] = STRONG_FACTORS,
    what: str,
) -> Verified:
    """Check that ``proof`` is a strong verification of ``account`` at most ``within`` old."""
    if proof is None:
        raise ReauthRequired(f"{what} needs a fresh verification with one of {sorted(factors)}")
    if proof.account != account:
        raise ReauthRequired(f"{what}: the verification is for another account")
    if proof.factor not in factors:
        raise ReauthRequired(
            f"{what} needs one of {sorted(factors)}, got a {proof.factor} verification"
        )
    age = now - proof.at
    if age > within or age < -timedelta(seconds=5):
        minutes = within.total_seconds() / 60
        raise ReauthRequired(f"{what} needs a verification from the last {minutes:g} minutes")
    return proof
