"""Console log-in throttling: wrong passwords are counted, and guessing is stopped early.

A console account can release holds, unlock customers and read every timeline, so its password
is worth guessing. Each wrong password is a row in ``console_login_failures``; before a
password is checked, the failures of the last :data:`WINDOW` are counted twice:

- for the **username** (someone guessing one analyst's password): at :data:`PER_USERNAME` the
  username is refused for the rest of the window, right password or not;
- for the **client address** (someone spraying one password over many usernames): at
  :data:`PER_CLIENT` that address is refused.

A refused attempt is answered 429 with ``Retry-After`` and is not checked, so the argon2 work
and the guess are both spared; it is not counted either (the window runs out on its own). A
right password clears the username's failures. The counts live in the database, not in one
process, so every replica of ``brokerguard serve`` sees the same. Behind a reverse proxy the
client address is the one its ``X-Forwarded-For`` names when the proxy is trusted (``serve
--forwarded-allow-ips``; on the same host by default), else the proxy's own: the per-client
limit then counts everyone together, which is why it is higher than the per-username one.

The cost is the one every lockout has: someone can keep an analyst out for :data:`WINDOW` by
typing wrong passwords for their username. The analyst's supervisor can still work, and the
audit log names each failure.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from brokerguard.service.models import console_login_failures as failures

__all__ = ["PER_CLIENT", "PER_USERNAME", "WINDOW", "clear", "record_failure", "retry_after"]

WINDOW = timedelta(minutes=15)
PER_USERNAME = 10  # wrong passwords for one username within the window
PER_CLIENT = 50  # wrong passwords from one address within the window, any usernames


def _key(username: str) -> str:
    """Usernames are stored as the users table compares them (``authenticate`` strips)."""
    return username.strip()[:200]


def retry_after(
    conn: sa.Connection, username: str, client: str, now: datetime | None = None
) -> int:
    """Seconds until this attempt may be checked; 0 when it may be checked now."""
    now = now or datetime.now(UTC)
    since = now - WINDOW
    waits = []
    for column, value, limit in (
        (failures.c.username, _key(username), PER_USERNAME),
        (failures.c.client, client[:64], PER_CLIENT),
    ):
        recent = (
            sa.select(failures.c.at)
            .where(column == value, failures.c.at > since)
            .order_by(failures.c.at.desc())
            .limit(limit)
        )
        times = conn.execute(recent).scalars().all()
        if len(times) >= limit:
            # Refused until the oldest of the last ``limit`` failures leaves the window.
            oldest = min(t if t.tzinfo else t.replace(tzinfo=UTC) for t in times)
            waits.append(math.ceil((oldest + WINDOW - now).total_seconds()))
    return max([1, *waits]) if waits else 0


def record_failure(
    conn: sa.Connection, username: str, client: str, now: datetime | None = None
) -> None:
    """Count a wrong password; forget the failures that have left the window."""
    now = now or datetime.now(UTC)
    conn.execute(failures.delete().where(failures.c.at <= now - WINDOW))
    conn.execute(failures.insert().values(username=_key(username), client=client[:64], at=now))


def clear(conn: sa.Connection, username: str) -> None:
    """The right password was given: the username's failures no longer count."""
    conn.execute(failures.delete().where(failures.c.username == _key(username)))
