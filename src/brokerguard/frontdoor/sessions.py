"""Customer sessions of the site and the record of sign-ins, for the security page.

A session is a random token in an HttpOnly cookie; the store keeps only its SHA-256, so a copy
of the store does not let anyone sign in. Each session remembers where and on what it started
(address, user agent), which the security page shows with "sign out" next to it. Sign-ins —
successful, refused or challenged — are kept per account (the last 50) with the guard's
answer, so the customer sees attempts too, not only what got through.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

import msgspec

from brokerguard.auth.common import Clock, Verified, utcnow
from brokerguard.auth.store import AuthStore, Records

__all__ = ["LoginRecord", "SiteSession", "Sessions"]

MAX_LOGINS = 50
MAX_DEVICES = 20


class SiteSession(msgspec.Struct, kw_only=True):
    id: str  # public id (shown, used to sign a session out); never the token
    account: str
    created: datetime
    last_seen: datetime
    ip: str
    user_agent: str
    csrf: str
    guard_session: str  # the session id told to the guard
    reauth: Verified | None = None  # the last passkey re-verification in this session
    passkey_permit: datetime | None = None  # until when a passkey may be enrolled (stepped up)


class LoginRecord(msgspec.Struct, kw_only=True):
    ts: datetime
    ip: str
    user_agent: str
    factor: str
    result: str  # allowed | challenged | refused | wrong_password | locked


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Sessions:
    def __init__(
        self, store: AuthStore, *, idle: timedelta = timedelta(hours=2), clock: Clock = utcnow
    ) -> None:
        self.idle = idle
        self.clock = clock
        self._sessions = Records(store, "site-session", SiteSession)
        self._index = Records(store, "site-session-id", _Ref)
        self._logins = Records(store, "site-logins", _Logins)

    def open(self, account: str, ip: str, user_agent: str, guard_session: str) -> str:
        """Start a session; returns the token for the cookie."""
        token = secrets.token_urlsafe(32)
        now = self.clock()
        session = SiteSession(
            id=secrets.token_urlsafe(9),
            account=account,
            created=now,
            last_seen=now,
            ip=ip,
            user_agent=user_agent[:512],
            csrf=secrets.token_urlsafe(24),
            guard_session=guard_session,
        )
        self._sessions.put(_digest(token), session)
        self._index.put(f"{account}\x1f{session.id}", _Ref(_digest(token)))
        return token

    def get(self, token: str | None) -> SiteSession | None:
        if not token:
            return None
        session = self._sessions.get(_digest(token))
        if session is None:
            return None
        now = self.clock()
        if now - session.last_seen > self.idle:
            self.close(session.account, session.id)
            return None
        if now - session.last_seen > timedelta(minutes=1):
            session.last_seen = now
            self._sessions.put(_digest(token), session)
        return session

    def save(self, token: str, session: SiteSession) -> None:
        self._sessions.put(_digest(token), session)

    def of(self, account: str) -> list[SiteSession]:
        found = []
        for key in self._index.keys(account + "\x1f"):
            ref = self._index.get(key)
            session = self._sessions.get(ref.digest) if ref is not None else None
            if session is not None:
                found.append(session)
        return sorted(found, key=lambda s: s.created, reverse=True)

    def close(self, account: str, session_id: str) -> bool:
        """Sign a session out (from itself or from the security page)."""
        ref = self._index.get(f"{account}\x1f{session_id}")
        if ref is None:
            return False
        self._index.delete(f"{account}\x1f{session_id}")
        return self._sessions.delete(ref.digest)

    def close_all(self, account: str) -> int:
        return sum(self.close(account, s.id) for s in self.of(account))

    # --- sign-ins ------------------------------------------------------------------------------
    def note_login(self, account: str, record: LoginRecord) -> None:
        logins = self._logins.get(account) or _Logins()
        logins.items = [*logins.items, record][-MAX_LOGINS:]
        self._logins.put(account, logins)

    def known_device(self, account: str, device: str | None) -> bool:
        """Whether the device cookie signed in to this account before; remembers it now.

        Only a SHA-256 of the cookie is kept, at most :data:`MAX_DEVICES` per account (the
        oldest forgotten first). No cookie is never a known device.
        """
        if not device:
            return False
        digest = _digest(device)[:32]
        logins = self._logins.get(account) or _Logins()
        known = digest in logins.devices
        logins.devices = [*(d for d in logins.devices if d != digest), digest][-MAX_DEVICES:]
        self._logins.put(account, logins)
        return known

    def logins(self, account: str) -> list[LoginRecord]:
        logins = self._logins.get(account)
        return list(reversed(logins.items)) if logins is not None else []


class _Ref(msgspec.Struct):
    digest: str


class _Logins(msgspec.Struct):
    items: list[LoginRecord] = []
    devices: list[str] = []  # digests of device cookies that signed in, oldest first
