"""Delivery off the decision path: a queue, a worker thread, retries with back-off, a log.

The guard decides in milliseconds; an SMTP relay can take seconds or be down for an hour. So
:meth:`Notifier.notify` only renders the notice, writes a ``queued`` row in the delivery log and
puts the job on a bounded queue; it never waits for a network and never raises because of one.
A worker thread sends, retrying transient failures after ``base``, ``base * factor``, ... seconds
(capped) in a schedule of its own, so one slow retry never holds the others back. Every attempt
is recorded, so an analyst can see which customer was told what, when, and what failed.
"""

from __future__ import annotations

import heapq
import itertools
import queue
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable
from zoneinfo import ZoneInfo

import msgspec

from brokerguard.notify.contacts import Contact, Contacts, mask
from brokerguard.notify.templates import Rendered, render
from brokerguard.notify.webhook import PermanentDeliveryError

__all__ = [
    "Channel",
    "Delivery",
    "DeliveryLog",
    "Notifier",
    "Notify",
    "Retry",
    "format_when",
]

Status = Literal["queued", "sending", "retrying", "sent", "failed", "dropped"]
JST = ZoneInfo("Asia/Tokyo")


def format_when(ts: datetime) -> str:
    """Times in notices are Japan time, as the customer's statements are."""
    return ts.astimezone(JST).strftime("%Y-%m-%d %H:%M JST")


@runtime_checkable
class Channel(Protocol):
    """One way of reaching a customer. ``send`` raises to report a failure; it may block."""

    name: str

    def send(self, to: str, notice: Rendered) -> None: ...


@runtime_checkable
class Notify(Protocol):
    """What the authentication modules need of a notifier (tests may pass a recorder)."""

    def notify(
        self,
        account: str,
        kind: str,
        fields: Mapping[str, str],
        *,
        channels: Sequence[str] | None = None,
        to: Contact | None = None,
    ) -> list[str]: ...


class Retry(msgspec.Struct, frozen=True, kw_only=True):
    """Back-off: attempt n (1-based) failing waits ``min(cap, base * factor**(n-1))`` seconds."""

    attempts: int = 6
    base: float = 2.0
    factor: float = 2.0
    cap: float = 600.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("`attempts` must be at least 1")
        if self.base < 0 or self.factor < 1 or self.cap < 0:
            raise ValueError("`base` and `cap` must be >= 0 and `factor` >= 1")

    def delay(self, attempt: int) -> float:
        return min(self.cap, self.base * self.factor ** (attempt - 1))


class Delivery(msgspec.Struct, frozen=True, kw_only=True):
    """One row of the delivery log. ``recipient`` is masked: the log is no address book."""

    id: str
    account: str
    kind: str
    channel: str
    recipient: str
    status: Status
    attempts: int
    last_error: str | None
    created: datetime
    updated: datetime


class DeliveryLog:
    """The delivery log in SQLite (a file, or ``:memory:``), one row per notice and channel."""

    def __init__(self, path: str | Path = ":memory:") -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS deliveries (id TEXT PRIMARY KEY, account TEXT NOT NULL,"
            " kind TEXT NOT NULL, channel TEXT NOT NULL, recipient TEXT NOT NULL,"
            " status TEXT NOT NULL, attempts INTEGER NOT NULL, last_error TEXT,"
            " created TEXT NOT NULL, updated TEXT NOT NULL)"
        )
        self._db.execute("CREATE INDEX IF NOT EXISTS deliveries_account ON deliveries (account)")

    def add(self, id: str, account: str, kind: str, channel: str, recipient: str) -> None:
        now = datetime.now(UTC).isoformat()
        with self._lock:
            self._db.execute(
                "INSERT INTO deliveries VALUES (?, ?, ?, ?, ?, 'queued', 0, NULL, ?, ?)",
                (id, account, kind, channel, recipient, now, now),
            )

    def update(
        self, id: str, status: Status, *, attempts: int | None = None, error: str | None = None
    ) -> None:
        now = datetime.now(UTC).isoformat()
        with self._lock:
            self._db.execute(
                "UPDATE deliveries SET status = ?, attempts = COALESCE(?, attempts),"
                " last_error = COALESCE(?, last_error), updated = ? WHERE id = ?",
                (status, attempts, error, now, id),
            )

    def get(self, id: str) -> Delivery | None:
        rows = self._select("WHERE id = ?", (id,))
        return rows[0] if rows else None

    def for_account(self, account: str) -> list[Delivery]:
        return self._select("WHERE account = ? ORDER BY created, id", (account,))

    def _select(self, where: str, args: tuple[str, ...]) -> list[Delivery]:
        with self._lock:
            rows = self._db.execute(f"SELECT * FROM deliveries {where}", args).fetchall()
        return [
            Delivery(
                id=r[0],
                account=r[1],
                kind=r[2],
                channel=r[3],
                recipient=r[4],
                status=r[5],
                attempts=r[6],
                last_error=r[7],
                created=datetime.fromisoformat(r[8]),
                updated=datetime.fromisoformat(r[9]),
            )
            for r in rows
        ]


class _Job(msgspec.Struct, kw_only=True):
    id: str
    channel: str
    to: str
    notice: Rendered
    attempt: int = 0


_STOP = object()


class Notifier:
    """Renders notices for a customer and delivers them through the configured channels.

    ``channels`` maps a channel name (``email``, ``sms``, ``push``) to its sender. A notice goes
    to every channel given in ``notify(channels=...)`` (default: every configured channel the
    contact has an address for). ``to`` overrides the registered contact — a change of e-mail
    or phone is announced to the *old* details too, where the real customer still reads.

    Use as a context manager, or call :meth:`start` and :meth:`close`.
    """

    def __init__(
        self,
        contacts: Contacts,
        channels: Mapping[str, Channel],
        *,
        log: DeliveryLog | None = None,
        retry: Retry | None = None,
        broker: str = "BrokerGuard",
        support: Mapping[str, str] | None = None,
        max_queue: int = 10_000,
    ) -> None:
        self.contacts = contacts
        self.channels = dict(channels)
        self.log = log if log is not None else DeliveryLog()
        self.retry = retry if retry is not None else Retry()
        self.broker = broker
        self.support = dict(support or {})
        self._queue: queue.Queue[object] = queue.Queue(maxsize=max_queue)
        self._retries: list[tuple[float, int, _Job]] = []  # heap of (due, tiebreak, job)
        self._tiebreak = itertools.count()
        self._pending = 0  # jobs queued, being sent or waiting for a retry
        self._idle = threading.Condition()
        self._thread: threading.Thread | None = None

    # --- the caller's side -------------------------------------------------------------------
    def notify(
        self,
        account: str,
        kind: str,
        fields: Mapping[str, str],
        *,
        channels: Sequence[str] | None = None,
        to: Contact | None = None,
    ) -> list[str]:
        """Queue a notice; returns the delivery ids (empty when there is nobody to reach).

        Raises only for a caller's mistake (unknown kind, missing field); delivery problems are
        recorded in the log and never reach the caller.
        """
        contact = to if to is not None else self.contacts.get(account)
        fields = dict(fields)
        fields.setdefault("when", format_when(datetime.now(UTC)))
        lang = contact.lang if contact is not None else "ja"
        notice = render(kind, lang, fields, broker=self.broker, support=self.support.get(lang))
        if contact is None:
            return []
        ids = []
        for name in channels if channels is not None else tuple(self.channels):
            address = contact.address(name)
            if name not in self.channels or not address:
                continue
            job = _Job(id=secrets.token_hex(8), channel=name, to=address, notice=notice)
            self.log.add(job.id, account, kind, name, mask(address))
            with self._idle:
                self._pending += 1
            try:
                self._queue.put_nowait(job)
            except queue.Full:  # a flood of notices must not stall decisions: drop and record
                self.log.update(job.id, "dropped", error="delivery queue full")
                self._done()
                continue
            ids.append(job.id)
        return ids

    # --- life cycle ----------------------------------------------------------------------------
    def start(self) -> Notifier:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="brokerguard-notify", daemon=True
            )
            self._thread.start()
        return self

    def close(self, timeout: float | None = 30.0) -> None:
        """Stop the worker after what is queued now; retries still waiting are abandoned."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout)
            self._thread = None

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until nothing is queued, being sent or waiting to be retried (for tests)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def __enter__(self) -> Notifier:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the worker ----------------------------------------------------------------------------
    def _done(self) -> None:
        with self._idle:
            self._pending -= 1
            self._idle.notify_all()

    def _run(self) -> None:
        while True:
            timeout = None
            if self._retries:
                timeout = max(0.0, self._retries[0][0] - time.monotonic())
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                item = None
            if item is _STOP:
                return
            if isinstance(item, _Job):
                self._attempt(item)
            while self._retries and self._retries[0][0] <= time.monotonic():
                self._attempt(heapq.heappop(self._retries)[2])

    def _attempt(self, job: _Job) -> None:
        job.attempt += 1
        self.log.update(job.id, "sending", attempts=job.attempt)
        try:
            self.channels[job.channel].send(job.to, job.notice)
        except PermanentDeliveryError as exc:
            self.log.update(job.id, "failed", error=_describe(exc, job.to))
            self._done()
        except Exception as exc:  # any failure of a sender is a failed attempt, never a crash
            if job.attempt >= self.retry.attempts:
                self.log.update(job.id, "failed", error=_describe(exc, job.to))
                self._done()
            else:
                self.log.update(job.id, "retrying", error=_describe(exc, job.to))
                due = time.monotonic() + self.retry.delay(job.attempt)
                heapq.heappush(self._retries, (due, next(self._tiebreak), job))
        else:
            self.log.update(job.id, "sent")
            self._done()


def _describe(exc: BaseException, to: str) -> str:
    """The error for the log, the recipient masked in it: a relay's refusal names the address
    (``550 5.1.1 <taro@example.jp>: …``), and the log is no address book. Masked before it is
    cut short, so that no part of the address is left."""
    masked = mask(to)
    text = f"{type(exc).__name__}: {exc}"
    return re.sub(re.escape(to), lambda _: masked, text, flags=re.IGNORECASE)[:500]
