"""The one writer: a background thread that owns every write to the service's database.

Why a thread of its own: the engine answers ``/v1/decide`` from memory in tens of microseconds,
and a database round trip per decision (several on PostgreSQL) would be most of the latency
budget. So a request decides, hands its records to :meth:`Recorder.record` (a queue put, no
I/O) and answers; the writer drains the queue and writes whatever accumulated — events,
decisions, alerts, campaigns and their audit entries — in one transaction per batch.

Analyst actions (cases, notes, account actions, policy changes) go through the same thread with
:meth:`Recorder.call`: the caller waits for its own transaction. One writer means one order of
writes, so the audit chain is appended by one thread in the order things happened, and SQLite
never sees two writers of this process at once.

What a crash can lose: records queued but not yet written (normally well under a second's
worth). A write that fails for a passing reason (database restarting, locked) is retried with
a growing pause while records keep queueing; one that fails for good (a constraint) is retried
record by record and the bad record is logged and dropped. ``/healthz`` shows the backlog.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

import sqlalchemy as sa

from brokerguard.service import audit
from brokerguard.service.db import write_transaction
from brokerguard.service.models import alerts, campaigns, decisions, events

__all__ = ["DecisionRecord", "EventRecord", "Recorder"]

log = logging.getLogger("brokerguard.service.recorder")
T = TypeVar("T")
MAX_BATCH = 5000


@dataclass(slots=True)
class EventRecord:
    row: dict[str, Any]


@dataclass(slots=True)
class DecisionRecord:
    decision: dict[str, Any]
    alert: dict[str, Any] | None
    audit: audit.AuditEntry


@dataclass(slots=True)
class CampaignRecord:
    row: dict[str, Any]


@dataclass(slots=True)
class _Job:
    fn: Callable[[sa.Connection], Any]
    future: Future[Any] = field(default_factory=Future)


_STOP = object()


class Recorder:
    """Queue in, batched transactions out. Start it once; :meth:`stop` drains and joins."""

    def __init__(self, engine: sa.Engine, max_batch: int = MAX_BATCH) -> None:
        self.engine = engine
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._pending = 0  # items put and not yet written (under self._idle)
        self._idle = threading.Condition()
        self.written = 0
        self.dropped = 0
        self.last_error: str | None = None

    # --- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="bg-recorder", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Write everything queued, then end the thread."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout)
            self._thread = None

    @property
    def backlog(self) -> int:
        return self._pending

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until everything queued so far is written (tests, shutdown, CLI loaders)."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    # --- producers -----------------------------------------------------------------------------
    def record(self, item: EventRecord | DecisionRecord | CampaignRecord) -> None:
        """Queue a record; never blocks, never does I/O."""
        with self._idle:
            self._pending += 1
        self._queue.put(item)

    def call(self, fn: Callable[[sa.Connection], T]) -> Future[T]:
        """Run ``fn(conn)`` in a write transaction on the writer thread, after what is queued."""
        job = _Job(fn)
        with self._idle:
            self._pending += 1
        self._queue.put(job)
        return job.future

    async def run(self, fn: Callable[[sa.Connection], T]) -> T:
        """:meth:`call`, awaited."""
        return await asyncio.wrap_future(self.call(fn))

    # --- the writer ----------------------------------------------------------------------------
    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch = [self._queue.get()]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if any(item is _STOP for item in batch):
                stopping = True
                batch = [item for item in batch if item is not _STOP]
                while True:  # whatever raced in behind the stop
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
            self._write(batch)
            with self._idle:
                self._pending -= len(batch)
                self._idle.notify_all()

    def _write(self, batch: list[Any]) -> None:
        records: list[Any] = []
        for item in batch:
            if isinstance(item, _Job):
                self._flush(records)
                records = []
                self._job(item)
            else:
                records.append(item)
        self._flush(records)

    def _job(self, job: _Job) -> None:
        if not job.future.set_running_or_notify_cancel():
            return
        try:
            with write_transaction(self.engine) as conn:
                result = job.fn(conn)
        except BaseException as exc:  # handed to the waiting caller
            job.future.set_exception(exc)
        else:
            job.future.set_result(result)

    def _flush(self, records: list[Any]) -> None:
        if not records:
            return
        pause = 0.05
        for _attempt in range(8):
            try:
                self._insert(records)
                self.written += len(records)
                self.last_error = None
                return
            except sa.exc.OperationalError as exc:  # passing: the database is away or locked
                self.last_error = str(exc.orig)
                log.warning("writing %d records failed, retrying: %s", len(records), exc.orig)
                time.sleep(pause)
                pause = min(pause * 2, 5.0)
            except sa.exc.SQLAlchemyError as exc:
                self.last_error = str(exc)
                break
        for record in records:  # one by one: keep every record that can be written
            try:
                self._insert([record])
                self.written += 1
            except sa.exc.SQLAlchemyError as exc:
                self.dropped += 1
                self.last_error = str(exc)
                log.error(
                    "dropped a %s record that cannot be written: %s", type(record).__name__, exc
                )

    def _insert(self, records: list[Any]) -> None:
        event_rows = [r.row for r in records if isinstance(r, EventRecord)]
        decided = [r for r in records if isinstance(r, DecisionRecord)]
        camp_rows = {r.row["id"]: r.row for r in records if isinstance(r, CampaignRecord)}
        with write_transaction(self.engine) as conn:
            if event_rows:
                conn.execute(events.insert(), event_rows)
            if decided:
                conn.execute(decisions.insert(), [r.decision for r in decided])
                alert_rows = [r.alert for r in decided if r.alert is not None]
                if alert_rows:
                    conn.execute(alerts.insert(), alert_rows)
            if camp_rows:
                _upsert_campaigns(conn, list(camp_rows.values()))
            if decided:
                audit.append(conn, [r.audit for r in decided])


def _upsert_campaigns(conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
    """Insert new campaigns, refresh known ones; the analyst's ``status`` is never overwritten."""
    ids = [r["id"] for r in rows]
    known = set(conn.scalars(sa.select(campaigns.c.id).where(campaigns.c.id.in_(ids))))
    new = [r for r in rows if r["id"] not in known]
    if new:
        conn.execute(campaigns.insert(), new)
    for row in rows:
        if row["id"] in known:
            values = {k: v for k, v in row.items() if k not in ("id", "status")}
            conn.execute(campaigns.update().where(campaigns.c.id == row["id"]).values(**values))
