"""API keys: how the broker's systems authenticate to the service.

A key looks like ``bgk_3f9a1c2e_<43 random characters>``: the ``bgk_3f9a1c2e`` part is the key's
id (shown in listings and in the audit log), the rest is 256 bits from :mod:`secrets`. The key is
printed once, when created; the database keeps only ``sha256(key)``.

Why SHA-256 and not argon2: a slow hash protects *guessable* secrets (passwords) from offline
guessing after a database leak. A key with 256 random bits cannot be guessed at any speed, so a
slow hash adds nothing but cost — argon2 would add tens of milliseconds and megabytes of memory
to every ``/v1/decide`` call, whose whole budget is 10 ms. A keyed hash (HMAC with a server secret)
would only help if that secret lived somewhere other than the database, which the embedded
set-up does not have. Console passwords, which people choose, do get argon2 (:mod:`.users`).

Verified keys are cached in memory (:class:`KeyRing`) for ``ttl`` seconds, so the hot path never
waits on the database; revoking a key takes effect within that time.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from brokerguard.service.models import api_keys

__all__ = [
    "KEY_PREFIX",
    "SCOPES",
    "KeyInfo",
    "KeyRing",
    "create_key",
    "hash_key",
    "list_keys",
    "lookup_key",
    "parse_scopes",
    "revoke_key",
]

KEY_PREFIX = "bgk_"
SCOPES: tuple[str, ...] = ("decide", "ingest", "read", "admin")
"""decide: POST /v1/decide; ingest: POST /v1/events; read: GET of alerts, campaigns, cases,
accounts and policy; admin: everything an analyst does (cases, account actions) and the policy."""


@dataclass(frozen=True, slots=True)
class KeyInfo:
    id: str
    name: str
    scopes: frozenset[str]


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def parse_scopes(scopes: Iterable[str]) -> frozenset[str]:
    """Scopes from a list (items may be comma-separated); raises ValueError naming a bad one."""
    found = {s.strip() for item in scopes for s in item.split(",") if s.strip()}
    unknown = sorted(found.difference(SCOPES))
    if unknown:
        raise ValueError(f"unknown scope {unknown[0]!r}; scopes are {', '.join(SCOPES)}")
    if not found:
        raise ValueError(f"a key needs at least one scope: {', '.join(SCOPES)}")
    return frozenset(found)


def create_key(
    conn: sa.Connection, scopes: Iterable[str], name: str = "", created_by: str = "cli"
) -> tuple[KeyInfo, str]:
    """Store a new key; returns its info and the key itself, which is never shown again."""
    scope_set = parse_scopes(scopes)
    key_id = KEY_PREFIX + secrets.token_hex(4)
    key = f"{key_id}_{secrets.token_urlsafe(32)}"
    conn.execute(
        api_keys.insert().values(
            id=key_id,
            name=name,
            key_hash=hash_key(key),
            scopes=",".join(sorted(scope_set)),
            created_at=datetime.now(UTC),
            created_by=created_by,
        )
    )
    return KeyInfo(key_id, name, scope_set), key


def lookup_key(conn: sa.Connection, key: str) -> KeyInfo | None:
    """The key's info when it exists and is not revoked."""
    if not key.startswith(KEY_PREFIX):
        return None
    row = conn.execute(
        sa.select(api_keys.c.id, api_keys.c.name, api_keys.c.scopes).where(
            api_keys.c.key_hash == hash_key(key), api_keys.c.revoked_at.is_(None)
        )
    ).first()
    if row is None:
        return None
    return KeyInfo(row.id, row.name, frozenset(row.scopes.split(",")))


def revoke_key(conn: sa.Connection, key_id: str) -> bool:
    result = conn.execute(
        api_keys.update()
        .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
    )
    return result.rowcount > 0


def list_keys(conn: sa.Connection) -> list[dict[str, Any]]:
    rows = conn.execute(
        sa.select(
            api_keys.c.id,
            api_keys.c.name,
            api_keys.c.scopes,
            api_keys.c.created_at,
            api_keys.c.created_by,
            api_keys.c.revoked_at,
        ).order_by(api_keys.c.created_at)
    )
    return [dict(r._mapping) for r in rows]


class KeyRing:
    """Verified keys by hash, kept ``ttl`` seconds; misses go to the database.

    Only keys that exist are cached, so random keys cannot grow it.
    """

    def __init__(self, engine: sa.Engine, ttl: float = 30.0) -> None:
        self.engine = engine
        self.ttl = ttl
        self._known: dict[str, tuple[KeyInfo, float]] = {}

    def cached(self, key: str) -> KeyInfo | None:
        """The key's info if it was verified less than ``ttl`` seconds ago (no I/O)."""
        hit = self._known.get(hash_key(key))
        if hit is not None and time.monotonic() - hit[1] < self.ttl:
            return hit[0]
        return None

    def verify(self, key: str) -> KeyInfo | None:
        """Look the key up in the database (blocking) and cache it when valid."""
        with self.engine.connect() as conn:
            info = lookup_key(conn, key)
        digest = hash_key(key)
        if info is None:
            self._known.pop(digest, None)
        else:
            self._known[digest] = (info, time.monotonic())
        return info

    def forget(self) -> None:
        self._known.clear()
