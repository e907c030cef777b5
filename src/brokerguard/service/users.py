"""Console users: analysts, supervisors and administrators who log in with a password.

Passwords are chosen by people, so they are hashed with argon2id (:mod:`argon2`, its default
parameters: slow and memory-hard on purpose, so a leaked table cannot be guessed through
quickly). A hash made with older parameters is upgraded at the next successful login.

A login creates a console session: a random token in an HttpOnly cookie, of which the database
keeps only ``sha256(token)``, and a CSRF token the console sends back in a header (or form field)
with every request that changes something. Sessions expire after :data:`SESSION_HOURS`.

Roles climb: ``analyst`` (triage alerts, work cases) < ``supervisor`` (also account actions:
lock, release a held order, …) < ``admin`` (also users, keys and the policy).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from brokerguard.service.models import console_sessions, users

__all__ = [
    "MAX_USERNAME",
    "MIN_PASSWORD",
    "ROLES",
    "SESSION_HOURS",
    "ConsoleUser",
    "UserError",
    "authenticate",
    "create_session",
    "create_user",
    "end_session",
    "role_at_least",
    "session_user",
]

ROLES: tuple[str, ...] = ("analyst", "supervisor", "admin")
SESSION_HOURS = 12
MIN_PASSWORD = 12
MAX_USERNAME = 200 - len("user:")
"""The audit log and the records name a user ``user:NAME`` in columns of 200 characters;
PostgreSQL refuses a longer value, so a longer name could never log in there."""
_hasher = PasswordHasher()
_DUMMY = _hasher.hash("not a password of anyone's")  # verified when the user does not exist


class UserError(ValueError):
    """A user that cannot be created: bad role, short password, name taken."""


@dataclass(frozen=True, slots=True)
class ConsoleUser:
    id: int
    username: str
    role: str
    csrf: str = ""  # the session's CSRF token (empty outside a session)


def role_at_least(role: str, minimum: str) -> bool:
    return ROLES.index(role) >= ROLES.index(minimum)


def create_user(conn: sa.Connection, username: str, password: str, role: str) -> ConsoleUser:
    if role not in ROLES:
        raise UserError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
    username = username.strip()
    if not username or len(username) > MAX_USERNAME:
        raise UserError(f"a username needs 1 to {MAX_USERNAME} characters")
    if len(password) < MIN_PASSWORD:
        raise UserError(f"a password needs at least {MIN_PASSWORD} characters")
    taken = conn.execute(sa.select(users.c.id).where(users.c.username == username)).first()
    if taken is not None:
        raise UserError(f"the username {username!r} is taken")
    result = conn.execute(
        users.insert().values(
            username=username,
            password_hash=_hasher.hash(password),
            role=role,
            created_at=datetime.now(UTC),
        )
    )
    return ConsoleUser(int(result.inserted_primary_key[0]), username, role)


def authenticate(conn: sa.Connection, username: str, password: str) -> ConsoleUser | None:
    """The user when the password is right; the same work is done when the user is unknown."""
    row = conn.execute(
        sa.select(users).where(users.c.username == username.strip(), users.c.disabled.is_(False))
    ).first()
    try:
        _hasher.verify(row.password_hash if row is not None else _DUMMY, password)
    except (VerificationError, InvalidHashError):
        return None
    if row is None:
        return None
    if _hasher.check_needs_rehash(row.password_hash):
        conn.execute(
            users.update().where(users.c.id == row.id).values(password_hash=_hasher.hash(password))
        )
    return ConsoleUser(row.id, row.username, row.role)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_session(conn: sa.Connection, user: ConsoleUser) -> tuple[str, ConsoleUser]:
    """A new session for ``user``: the cookie token and the user with the session's CSRF token."""
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(24)
    now = datetime.now(UTC)
    conn.execute(
        console_sessions.insert().values(
            token_hash=_token_hash(token),
            user_id=user.id,
            csrf=csrf,
            created_at=now,
            expires_at=now + timedelta(hours=SESSION_HOURS),
        )
    )
    return token, ConsoleUser(user.id, user.username, user.role, csrf)


def session_user(conn: sa.Connection, token: str) -> ConsoleUser | None:
    """The user of a live session (not expired, user not disabled), with its CSRF token."""
    row = conn.execute(
        sa.select(users.c.id, users.c.username, users.c.role, console_sessions.c.csrf)
        .join(users, users.c.id == console_sessions.c.user_id)
        .where(
            console_sessions.c.token_hash == _token_hash(token),
            console_sessions.c.expires_at > datetime.now(UTC),
            users.c.disabled.is_(False),
        )
    ).first()
    if row is None:
        return None
    return ConsoleUser(row.id, row.username, row.role, row.csrf)


def end_session(conn: sa.Connection, token: str) -> None:
    conn.execute(
        console_sessions.delete().where(console_sessions.c.token_hash == _token_hash(token))
    )
