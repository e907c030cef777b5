"""Writing records without slowing decisions: a writer process for records, a thread for jobs.

The engine answers ``/v1/decide`` from memory in tens of microseconds; a database round trip per
decision (several on PostgreSQL) would be most of the 10 ms budget. So a request decides, hands
its records to :meth:`Recorder.record` (an append to a queue, no I/O) and answers.

Where the records are written, and why not in a thread: the serving thread and any thread of the
same process share one interpreter lock. A writer *thread* turning thousands of rows a second
into SQL (SQLAlchemy's parameter processing, JSON, hashing the audit chain) took about a quarter
of a core and, sharing the lock, held up the event loop: p99 at 1,000 decisions/s went from
~8 ms to 20–80 ms (bench/api.py). So the records cross a pipe — pickled in batches by a small
sender thread — to a **writer process** with its own interpreter and its own database connection,
which writes whatever accumulated in one transaction per batch and reports back what it wrote.

Analyst actions (cases, notes, account actions, policy changes) are few and need an answer, so
they run with :meth:`Recorder.call` on a **job thread** of the server process, each in its own
transaction — after every record queued before them has been written, so that a case can be
opened on an alert decided a moment ago. Both writers append to the audit chain inside
:func:`~brokerguard.service.db.write_transaction`, which holds the database's write lock, so the
chain stays one chain.

What a crash can lose: records queued and not yet written (normally well under a second's worth). A
writer process that dies is noticed at once (its acknowledgement pipe ends; the server used to
find out only when it next had a batch to send, so an idle service held the dead writer's batch
in memory, and ``wait_idle`` hung, until more records came): the records it had taken and not
acknowledged are saved to a **spill file** (below), so that the backlog empties and jobs waiting
for them go on. A writer that died while the database was away had not written them; one that
died while writing may have committed them just before: every transaction of a writer also
advances its row in ``writer_progress``, the records are spilled with their place in what the
writer was handed, and ``records load-spill`` skips those it wrote, events included (it used to
skip only the decisions already stored, and wrote their events twice). (They were counted as
dropped: answered decisions and their audit entries gone.) The server keeps every batch it
sent until the writer acknowledges it, so it knows what a lost writer had. A writer process
that dies is started again, after a pause that doubles (0.5 s up to 30 s) while new ones die
before writing anything — a writer that cannot start (a missing database directory or driver)
must not become a process a second and a log line each — and the batch it did not take waits
for the next one.

**The database away** (an ``OperationalError``: PostgreSQL down, restarting or unreachable, SQLite
locked, a PostgreSQL statement cancelled by the writer's ``statement_timeout`` — a lock another
session holds, which the writer would otherwise wait on for ever, reporting nothing) loses
nothing: the writer keeps its batch and tries it again, after a pause that doubles from 0.05 s
to :data:`WRITE_PAUSE_MAX_S` (5 s), for as long as the database stays away, and every failed
attempt is reported to the server (``/healthz``: ``degraded``, ``last_error``,
``write_failures``, ``failing_since``; the log: at the first failure, every minute, at the
recovery). Meanwhile records wait in memory, **at most** ``max_backlog`` (:data:`MAX_BACKLOG`,
200,000 by default, about 0.3 GB): at the bound :attr:`Recorder.full` is true and the service
refuses new decisions (``503 recorder_full``: the broker's systems apply their own fallback; no
decision is taken that the audit log would miss) and batches wait, until the writer catches up.
The bound is soft by the little that cannot wait (what a batch already being ingested records
until its next slice, analysts' records, campaign snapshots). A write that fails for good (a
constraint, bad data: any other ``SQLAlchemyError``, and the operational errors that waiting
cannot mend, see :func:`~brokerguard.service.db.database_away`) is retried record by record
and only the record that cannot be written is logged and dropped. ``/healthz`` shows the
backlog, what was written and dropped, the last error and the restarts.

Stopping writes everything queued while a writer writes. While none can start, :meth:`Recorder.stop`
does not wait out the pauses: the pause ends at once, the writer then started gets
:data:`STOP_GRACE_S` to say it is ready, and if it does not (or dies) the stop returns — in
seconds, not after the minute of its timeout. A stop during a database outage gives the database
:data:`STOP_OUTAGE_S` (10 s) to come back; then the writer gives up and tells the server which
records of its batch it did not write (the end of it: a batch is written whole, or record by
record in order).

Every record a stop could not write — the part of the writer's batch it gave up on, the batches
still in the pipe, what was still queued — is saved, in the order it was queued, to one **spill
file** in ``spill_dir`` (:mod:`.spill`: versioned NDJSON, fsynced, renamed into place whole),
named in one error line (:attr:`Recorder.lost_at_stop`, :attr:`Recorder.spill_file`) and listed
by ``/healthz`` until ``brokerguard records load-spill`` has written it. Only if the file cannot
be written (a full disk) are the records counted as dropped, and the line says so.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import json
import logging
import multiprocessing
import pickle
import queue
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa

from brokerguard.service import audit
from brokerguard.service.db import database_away, make_engine, write_transaction
from brokerguard.service.errors import Unavailable
from brokerguard.service.models import (
    alerts,
    campaigns,
    decisions,
    events,
    instructions,
    writer_progress,
)

__all__ = [
    "CampaignRecord",
    "DecisionRecord",
    "EventRecord",
    "InstructionRecord",
    "Recorder",
    "insert_records",
    "write_records",
]

log = logging.getLogger("brokerguard.service.recorder")
T = TypeVar("T")
MAX_BATCH = 5000
SEND_EVERY_S = 0.002  # the sender thread's nap between looks at the queue
RESTART_FIRST_S = 0.5  # pause before starting a lost writer again; doubles while they keep dying
RESTART_MAX_S = 30.0
STOP_GRACE_S = 3.0  # while stopping, how long a starting writer has to say it is ready
WRITE_PAUSE_S = 0.05  # after a write failed with the database away; doubles ...
WRITE_PAUSE_MAX_S = 5.0  # ... up to this, for as long as the database stays away
WRITE_ATTEMPTS = 8  # write_records' default (a worker's batch, not acknowledged, comes again)
STOP_OUTAGE_S = 10.0  # stopping while the database is away: how long it has to come back
MAX_BACKLOG = 200_000  # records waiting for the database, at most, before decisions are refused
OUTAGE_LOG_EVERY_S = 60.0  # while the database stays away, a reminder in the log this often
_STOP = b"STOP"
_READY = "READY"  # a new writer's first message: its database is open, batches may come
_RETRYING = "RETRYING"  # (_RETRYING, failures, error): a write failed, the writer tries again


# A record's place, once a writer process was handed it: (the writer's id, its number in the
# order that writer was handed records, from 1). ``writer_progress`` says how far each writer
# wrote, so a spilled record with a place is known to be written or not (.spill).
Place = tuple[str, int]


@dataclass(slots=True)
class EventRecord:
    row: dict[str, Any]
    at: Place | None = field(default=None, compare=False)


@dataclass(slots=True)
class DecisionRecord:
    decision: dict[str, Any]
    alert: dict[str, Any] | None
    audit: audit.AuditEntry
    at: Place | None = field(default=None, compare=False)


@dataclass(slots=True)
class CampaignRecord:
    row: dict[str, Any]
    merge: bool = False  # join the lists with the stored row's (a campaign several shards grow)
    at: Place | None = field(default=None, compare=False)


@dataclass(slots=True)
class InstructionRecord:
    row: dict[str, Any]
    at: Place | None = field(default=None, compare=False)


Record = EventRecord | DecisionRecord | CampaignRecord | InstructionRecord


@dataclass(slots=True)
class _Job:
    fn: Callable[[sa.Connection], Any]
    after: int  # records queued before the job: written first
    future: Future[Any] = field(default_factory=Future)


class Recorder:
    """Records to the writer process, jobs to the job thread. :meth:`stop` drains both."""

    def __init__(
        self,
        database_url: str,
        engine: sa.Engine,
        *,
        sleep: Callable[[float], object] | None = None,
        max_backlog: int = MAX_BACKLOG,
        write_pause: float = WRITE_PAUSE_S,
        write_pause_max: float = WRITE_PAUSE_MAX_S,
        stop_outage: float = STOP_OUTAGE_S,
        spill_dir: Path | None = None,
        statement_timeout: float | None = None,
    ) -> None:
        from brokerguard.service import spill

        self.database_url = database_url
        # where the records a stop could not write are saved (.spill); beside an SQLite file
        self.spill_dir = spill_dir if spill_dir is not None else spill.default_dir(database_url)
        self.engine = engine  # the job thread's; the writer process opens its own
        self._outbox: collections.deque[Record] = collections.deque()
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._state = threading.Condition()
        self._queued = 0  # records handed to record()
        self._acked = 0  # records the writer process has finished with (written or dropped)
        self.written = 0
        self.dropped = 0
        self.last_error: str | None = None
        self.writer_restarts = 0  # writer processes started after one was lost
        self._stop_asked = threading.Event()  # ends a pause before a restart at once
        # the pause before a restart (tests pass one that only notes it)
        self._sleep = sleep if sleep is not None else self._stop_asked.wait
        self._restart_delay = 0.0  # the last pause; 0 while writers write
        self._progress_at_restart = 0  # records acknowledged by writers at the last restart
        self._lost = 0  # records taken by writers that died before acknowledging them
        self._acks_thread: threading.Thread | None = None
        # set by the acks thread when a writer's pipe ends: the sender looks at once (it only
        # found a dead writer when it next had a batch to send, so an idle service kept the
        # batch the writer died with in memory, and wait_idle hung, until more records came)
        self._ended_pipe: Connection | None = None
        self._ready = False  # the current writer said it is ready
        self._process: multiprocessing.process.BaseProcess | None = None
        self._to_writer: Connection | None = None
        self._from_writer: Connection | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self._sent = 0  # records handed to writer processes
        self.max_backlog = max_backlog
        # the writer's pauses while the database is away, and its last chance at a stop
        self._write_pauses = (write_pause, write_pause_max, stop_outage)
        # seconds a statement of the writer process may run (a lock wait): then it fails, is
        # reported and tried again (db.make_engine); None: the server's own, by default none
        self.statement_timeout = statement_timeout
        # the current writer's halt pipe: written to at a stop, it ends the writer's waiting
        self._halt: Connection | None = None
        self.write_failures = 0  # failed attempts at the batch in hand (the database away)
        self.failing_since: datetime | None = None  # when the current run of failures began
        self._outage_logged = 0.0  # monotonic time of the last line about the outage
        self.lost_at_stop = 0  # records the last stop could not write (spilled, else dropped)
        # batches handed to the writer and not yet acknowledged: (records, pickled batch, the
        # writer's id, the place of the batch's first record in what that writer was handed)
        self._in_flight: collections.deque[tuple[int, bytes, str, int]] = collections.deque()
        self._writer_id = ""  # the current writer process's (writer_progress), made at _spawn
        self._writer_handed = 0  # records handed to it
        self._gave_up = False  # the writer said it gave up on the database at a stop
        self._unwritten: list[Record] = []  # what the stop will spill, in the order queued
        self.spilled = 0  # records saved to spill files by this recorder
        self.spill_file: Path | None = None  # the last spill file written

    # --- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        if self._threads:
            return
        self._stopping = False
        self._gave_up = False
        self._stop_asked.clear()
        self._spawn()
        for target, name in (
            (self._send_forever, "bg-sender"),
            (self._jobs_forever, "bg-jobs"),
        ):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def _spawn(self) -> None:
        """Start a writer process; the sender waits for its ready message before the first batch."""
        self._retire()
        context = multiprocessing.get_context("spawn")  # no fork of a threaded server
        writer_id = uuid.uuid4().hex
        to_writer_r, to_writer_w = context.Pipe(duplex=False)
        from_writer_r, from_writer_w = context.Pipe(duplex=False)
        halt_r, halt_w = context.Pipe(duplex=False)
        process = context.Process(
            target=_writer_main,
            args=(
                self.database_url,
                to_writer_r,
                from_writer_w,
                _Halt(halt_r),
                *self._write_pauses,
                self.statement_timeout,
                writer_id,
            ),
            name="brokerguard-writer",
            daemon=True,
        )
        try:
            process.start()
        except BaseException:
            halt_w.close()
            raise
        finally:
            to_writer_r.close()
            from_writer_w.close()
            halt_r.close()
        self._process, self._to_writer, self._from_writer = process, to_writer_w, from_writer_r
        self._halt = halt_w
        self._writer_id, self._writer_handed = writer_id, 0
        self._ready = False
        if self._stopping:  # started during a stop: its last chance has begun
            self._halt_writer()

    def _halt_writer(self) -> None:
        """Tell the current writer the server stops (a writer that is gone needs no telling)."""
        halt = self._halt
        if halt is not None:
            with contextlib.suppress(OSError):
                halt.send_bytes(b"halt")

    def _retire(self) -> None:
        """Close a lost writer's pipe and reap its process: a long outage must not leak them."""
        if self._to_writer is not None:
            self._to_writer.close()
        if self._halt is not None:
            self._halt.close()
            self._halt = None
        if self._from_writer is not None and not self._ready:  # else the acks thread closes it
            self._from_writer.close()
        if self._process is not None:
            if self._process.is_alive():
                self._process.kill()
            self._process.join(5)
        self._process = self._to_writer = self._from_writer = None

    def stop(self, timeout: float = 60.0) -> None:
        """Write everything queued, then end the threads and the writer process.

        While no writer can start (after one last writer, given :data:`STOP_GRACE_S` to start)
        the stop takes seconds, not ``timeout``. While the database is away, the writer tries for
        ``stop_outage`` seconds more, then gives up. What was not written is saved to a spill
        file (:attr:`spill_file`; counted as dropped only if that fails), named in one error
        line and counted in :attr:`lost_at_stop`."""
        if not self._threads:
            return
        dropped_before, spilled_before = self.dropped, self.spilled
        self.spill_file = None
        self._jobs.put(None)
        self._stopping = True
        self._stop_asked.set()
        self._halt_writer()  # a writer waiting for the database: its last stop_outage seconds
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []
        if self._to_writer is not None:
            with contextlib.suppress(OSError):
                self._to_writer.send_bytes(_STOP)
        if self._process is not None:
            self._process.join(timeout)
        self._retire()
        self._write_off()  # what a writer that gave up had taken and not written
        with self._state:
            while self._outbox:  # queued after the sender's last look (nothing should be)
                self._unwritten.append(self._outbox.popleft())
                self._acked += 1
            unwritten, self._unwritten = self._unwritten, []
            self._state.notify_all()
        path = self._spill(unwritten, "stop", quiet=True) if unwritten else None
        self.lost_at_stop = self.dropped - dropped_before + self.spilled - spilled_before
        if not self.lost_at_stop:
            return
        if path is not None:
            log.error(
                "recorder stopped with %d records not written: %d saved to %s (load them with"
                " `brokerguard records load-spill %s` once the database is back): %s",
                self.lost_at_stop,
                self.spilled - spilled_before,
                path,
                path,
                self.last_error,
            )
        else:
            log.error(
                "recorder stopped with %d records not written (counted as dropped): %s",
                self.lost_at_stop,
                self.last_error,
            )

    @property
    def backlog(self) -> int:
        return self._queued - self._acked + self._jobs.qsize()

    @property
    def full(self) -> bool:
        """``max_backlog`` records wait: take no more work that records (see the module)."""
        return self._queued - self._acked >= self.max_backlog

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until everything queued so far is written (tests, shutdown, loaders)."""
        target = self._queued
        marker: Future[Any] = self._job(lambda conn: None)
        deadline = time.monotonic() + timeout
        with self._state:
            while self._acked < target:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._state.wait(left)
        try:
            marker.result(max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            return False
        return True

    # --- producers -----------------------------------------------------------------------------
    def record(self, item: Record) -> None:
        """Queue a record; never blocks, never does I/O (called on the event loop)."""
        self._queued += 1  # only the event loop's thread records
        self._outbox.append(item)

    def call(self, fn: Callable[[sa.Connection], T]) -> Future[T]:
        """Run ``fn(conn)`` in a write transaction on the job thread, after queued records.

        While the writer retries records (the database away) the job is refused at once
        (:class:`Unavailable`, ``database_away``): it would wait behind the records for as long
        as the outage lasts, and an analyst's request with it, to take effect at some unknown
        later time. Otherwise it is tried, even while ``failing_since`` is still set (a writer
        lost during the outage never acknowledges the batch that would clear it): in its own
        transaction, so while the database is away it fails and nothing is done; a success with
        no batch in a writer's hands clears the outage."""
        if self._retrying():
            raise Unavailable(
                f"the database is away ({self.last_error}); nothing was done: try again when"
                " /healthz says ok",
                code="database_away",
            )
        return self._job(fn)

    def _retrying(self) -> bool:
        """Whether a live writer is retrying records that the database did not take."""
        if self.failing_since is None:
            return False
        with self._state:
            waiting = self._acked < self._queued
        process = self._process
        return waiting and process is not None and process.is_alive()

    def _job(self, fn: Callable[[sa.Connection], T]) -> Future[T]:
        job = _Job(fn, self._queued)
        self._jobs.put(job)
        return job.future

    async def run(self, fn: Callable[[sa.Connection], T]) -> T:
        """:meth:`call`, awaited."""
        return await asyncio.wrap_future(self.call(fn))

    # --- the server process's threads ------------------------------------------------------------
    def _send_forever(self) -> None:
        outbox = self._outbox
        while True:
            if not outbox:
                if self._stopping:
                    return
                if self._ended_pipe is not None:
                    ended, self._ended_pipe = self._ended_pipe, None
                    if ended is self._from_writer and self._writer_lost():
                        self._restart()  # spills what it held, starts another
                    continue
                time.sleep(SEND_EVERY_S)
                continue
            batch = []
            while outbox and len(batch) < MAX_BATCH:
                batch.append(outbox.popleft())
            blob = pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)
            while not self._send(blob, len(batch)):
                if self._stopping:  # no writer to be had: do not hold up the stop
                    self._give_up(batch)
                    return
                self._restart()

    def _send(self, blob: bytes, count: int) -> bool:
        """Hand a batch to the writer; False (the batch kept by the caller) if it is gone.

        The batch is kept in ``_in_flight`` until the writer acknowledges it (it goes in first:
        the acknowledgement may come before ``send_bytes`` returns)."""
        sending = False
        try:
            if not self._ready:
                self._await_ready()
            assert self._to_writer is not None, "no writer process"  # a failed start
            with self._state:
                first = self._writer_handed + 1
                self._in_flight.append((count, blob, self._writer_id, first))
            sending = True
            self._to_writer.send_bytes(blob)
            self._writer_handed += count  # as the writer counts them: in the pipe's order
            self._sent += count
        except (OSError, EOFError, AssertionError) as exc:
            if sending:  # not all of it went: the writer never had it
                with self._state:
                    if self._in_flight and self._in_flight[-1][1] is blob:
                        self._in_flight.pop()
            process = self._process
            if process is None:  # none could be started: _restart said why
                return False
            process.join(1)  # it closed its pipe by exiting: say how it ended
            if self._stopping and process.exitcode == 0:
                return False  # it gave up on a database that stayed away: last_error says so
            if process.exitcode is not None:
                self.last_error = f"writer process lost: exit code {process.exitcode}"
            else:
                self.last_error = f"writer process lost: {str(exc) or type(exc).__name__}"
            return False
        return True

    def _writer_lost(self) -> bool:
        """Whether the current writer, ready once, is gone; says how it ended."""
        process = self._process
        if process is None or not self._ready:
            return False  # none started (the next batch retries), or still starting
        process.join(1)  # its pipe ended: it is exiting, or has exited
        code = process.exitcode  # None if another thread reaped it first: lost all the same
        if self._stopping and code == 0:
            return False  # it gave up on a database that stayed away: the stop handles it
        how = f"exit code {code}" if code is not None else "its pipe closed"
        self.last_error = f"writer process lost: {how}"
        return True

    def _await_ready(self) -> None:
        """Block until a new writer has opened its database; EOFError if it died first.

        Without this, a writer that dies while starting would take a batch into its pipe and
        lose it, and its failure would pass for a success that resets the restart pause.
        """
        assert self._from_writer is not None, "no writer process"
        give_up_at: float | None = None
        while not self._from_writer.poll(0.1):  # a writer that died is readable (end of file)
            if not self._stopping:
                continue
            give_up_at = give_up_at or time.monotonic() + STOP_GRACE_S
            if time.monotonic() >= give_up_at:
                raise TimeoutError(f"no writer process ready {STOP_GRACE_S:.0f} s into the stop")
        if self._from_writer.recv() != _READY:
            raise EOFError("the writer process did not say it was ready")
        self._acks_thread = threading.Thread(
            target=self._acks_forever, args=(self._from_writer,), name="bg-acks", daemon=True
        )
        self._acks_thread.start()
        self._ready = True

    def _restart(self) -> None:
        """Start a new writer after a pause: 0.5 s, doubling to 30 s while none writes anything.

        The pause starts again from 0.5 s once a writer has written (its records acknowledged)
        since the last restart. Logged at the first loss and whenever the pause grows, so a
        writer that cannot start costs a line per doubling, not one every half second.
        """
        self._retire()
        self._write_off()
        if self._acked - self._lost != self._progress_at_restart:  # it wrote: a new outage
            self._restart_delay = 0.0
        delay = (
            min(self._restart_delay * 2, RESTART_MAX_S) if self._restart_delay else RESTART_FIRST_S
        )
        if delay != self._restart_delay:
            log.error(
                "%s (restarts so far: %d); starting a new one in %.1f s",
                self.last_error,
                self.writer_restarts,
                delay,
            )
        self._restart_delay = delay
        self._progress_at_restart = self._acked - self._lost
        self._sleep(delay)
        self.writer_restarts += 1
        try:
            self._spawn()
        except OSError as exc:  # no process to be had now (limits, memory): wait longer
            self.last_error = f"cannot start a writer process: {exc}"

    def _give_up(self, batch: list[Record]) -> None:
        """Stopping with no writer: the batch in hand and everything still queued are left for
        the stop to spill."""
        self._retire()
        self._write_off()
        with self._state:
            self._unwritten.extend(batch)
            lost = len(batch)
            while self._outbox:  # popped one by one: record() may still append meanwhile
                self._unwritten.append(self._outbox.popleft())
                lost += 1
            self._acked += lost
            why = "after the writer gave up on the database" if self._gave_up else "with no writer"
            self.last_error = f"{self.last_error}; stopped {why}: {lost} records not written"
            self._state.notify_all()
        log.error("stopped %s: %d queued records not written", why, lost)

    def _write_off(self) -> None:
        """Settle the records a lost writer had taken and never acknowledged: saved to a spill
        file (by the stop, when stopping; else now), never dropped.

        Otherwise the backlog would never empty and every job queued after them (an analyst's
        action) would wait for them for ever. Its last acknowledgements are read first. A
        writer that gave up at a stop, or died while its write was failing (the database
        away), had not written them. One that died while writing may have committed them just
        before: each record is spilled with its place in what that writer was handed, and
        ``records load-spill`` skips those at or below the writer's ``writer_progress``
        (written in the same transaction as they were). (They were counted as dropped:
        decisions answered, their audit entries gone.)
        """
        if self._acks_thread is not None:
            self._acks_thread.join(5)  # it ends at the dead writer's end of file
            self._acks_thread = None
        with self._state:
            taken, self._in_flight = list(self._in_flight), collections.deque()
            lost = sum(entry[0] for entry in taken)
            if lost <= 0:
                return
            unwritten = self._gave_up or self.failing_since is not None
            stopping = self._stopping  # decided once: spilled here, or by the stop, not both
        records = _placed(taken)
        if not stopping:  # on disk before they count as settled (wait_idle)
            self._spill(records, "writer_lost", maybe_written=not unwritten)
        with self._state:
            if stopping:
                self._unwritten.extend(records)
            self._acked += lost
            self._lost += lost
            self._state.notify_all()

    def _spill(
        self,
        records: list[Record],
        reason: str,
        *,
        quiet: bool = False,
        maybe_written: bool = False,
    ) -> Path | None:
        """Save records that were not written to a spill file; counted as dropped if that fails.
        Returns the file. ``quiet``: the caller logs the line that names it."""
        from brokerguard.service import spill

        count = len(records)
        try:
            path = spill.write(self.spill_dir, records, reason=reason, database=self.database_url)
        except Exception as exc:  # a full disk, a directory gone: nothing more can be done
            problem = f"cannot save {count} records to a spill file in {self.spill_dir}: {exc}"
            with self._state:
                self.dropped += count
                self.last_error = f"{self.last_error}; {problem}"
            log.error("%s (counted as dropped)", problem)
            return None
        with self._state:
            self.spilled += count
            self.spill_file = path
        if not quiet:
            how = (
                "had taken (it may have written them just before it died: loading skips the"
                " records it wrote)"
                if maybe_written
                else "had not written (the database away)"
            )
            log.error(
                "%d records a lost writer process %s are saved to %s: load them with"
                " `brokerguard records load-spill %s` once the database answers",
                count,
                how,
                path,
                path,
            )
        return path

    def _acks_forever(self, conn: Connection) -> None:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                conn.close()
                self._ended_pipe = conn  # the writer is gone: the sender looks now
                return
            if message[0] == _RETRYING:
                self._failing(message[1], message[2])
                continue
            written, dropped, error, left = message
            with self._state:
                taken = written + dropped + left
                settled: list[tuple[int, bytes, str, int]] = []  # whole batches: these are its
                covered = 0
                while covered < taken and self._in_flight:
                    entry = self._in_flight.popleft()
                    covered += entry[0]
                    settled.append(entry)
                if left:  # a stop, the database away: the end of the batch is not written
                    batch = _placed(settled)
                    self._unwritten.extend(batch[len(batch) - left :])
                    self._gave_up = True
                self.written += written
                self.dropped += dropped
                self._acked += taken
                self.last_error = error
                since = self.failing_since
                if not left:
                    self.failing_since, self.write_failures = None, 0
                self._state.notify_all()
            if since is not None and written:
                log.warning(
                    "records are written again, after %.0f s in which the database was away",
                    (datetime.now(UTC) - since).total_seconds(),
                )

    def _failing(self, failures: int, error: str) -> None:
        """The writer could not write its batch (the database away) and tries again."""
        now = time.monotonic()
        with self._state:
            self.write_failures = failures
            self.last_error = error
            first = self.failing_since is None
            if first:
                self.failing_since = datetime.now(UTC)
            since = self.failing_since
        if first or now - self._outage_logged >= OUTAGE_LOG_EVERY_S:
            self._outage_logged = now
            log.error(
                "cannot write records (%d failed attempts since %s): %s; %d records wait, "
                "tried again until the database answers",
                failures,
                since.isoformat(timespec="seconds"),
                error,
                self._queued - self._acked,
            )

    def _jobs_forever(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            with self._state:
                while self._acked < job.after:
                    process = self._process  # the sender thread replaces a lost one
                    if process is None:
                        break
                    if not self._state.wait(1.0) and not process.is_alive():
                        break
            if not job.future.set_running_or_notify_cancel():
                continue
            try:
                with write_transaction(self.engine) as conn:
                    result = job.fn(conn)
            except BaseException as exc:  # handed to the waiting caller
                job.future.set_exception(exc)
            else:
                self._answered()
                job.future.set_result(result)

    def _answered(self) -> None:
        """A job was written: the database answers. If no batch is in a writer's hands, none
        is being retried and the outage is over. (A batch still held, by a lost writer too,
        keeps ``failing_since``: it says whether the batch is spilled or counted as dropped.)"""
        with self._state:
            since = self.failing_since
            if since is None or self._in_flight:
                return
            self.failing_since, self.write_failures, self.last_error = None, 0, None
        log.warning(
            "the database answers again, after %.0f s in which it was away",
            (datetime.now(UTC) - since).total_seconds(),
        )


# --- the writer process -------------------------------------------------------------------------
def _writer_main(
    database_url: str,
    inbox: Connection,
    acks: Connection,
    halt: _Halt,
    pause: float,
    pause_max: float,
    stop_outage: float,
    statement_timeout: float | None = None,
    writer_id: str = "",
) -> None:
    """Receive pickled batches, write them, acknowledge; until told to stop.

    Each record gets its place (``writer_id``, its number in what this writer was handed), and
    each transaction advances the writer's row in ``writer_progress`` to the last record it
    writes: a batch the server spills after this writer died is then known to be written.

    While the database is away a batch is tried again until it is written; once ``halt`` is set
    (the server stops), for ``stop_outage`` seconds more: then the writer acknowledges the batch,
    saying how many records at its end it did not write, and ends (the server spills those and
    what it had sent after them). A statement that runs past ``statement_timeout`` (a lock
    wait) is the database away: the batch is kept and tried again, and the server told."""
    engine = make_engine(database_url, statement_timeout=statement_timeout)
    acks.send(_READY)
    backoff = _WriterBackoff(acks, halt, pause, pause_max, stop_outage)
    handed = 0

    def taken(blob: bytes) -> list[Record]:
        nonlocal handed
        batch: list[Record] = pickle.loads(blob)
        for record in batch:
            handed += 1
            record.at = (writer_id, handed)
        return batch

    try:
        while True:
            try:
                blob = inbox.recv_bytes()
            except (EOFError, OSError):
                return
            if blob == _STOP:
                return
            records = taken(blob)
            stop = False
            while len(records) < MAX_BATCH and inbox.poll():
                more = inbox.recv_bytes()
                if more == _STOP:
                    stop = True
                    break
                records.extend(taken(more))
            acks.send(_write_all(engine, records, backoff, _insert_marking))
            if stop or backoff.gave_up:
                return
    finally:
        engine.dispose()


class _Halt:
    """The server's stop, as a writer process sees it: its end of a pipe that becomes readable
    (a message, or the server's end closed).

    It was a ``multiprocessing.Event``; but a writer killed while it waited on the Event (as it
    does between attempts while the database is away) never acknowledges the wake-up that
    ``Event.set`` waits for, and the server's stop hung for ever. A pipe has no such hand-shake.
    """

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._set = False

    def is_set(self) -> bool:
        self._set = self._set or self.conn.poll()
        return self._set

    def wait(self, timeout: float) -> bool:
        self._set = self._set or self.conn.poll(timeout)
        return self._set


class _GaveUp(Exception):
    """The database stayed away for longer than the :class:`Backoff` waits."""


class Backoff:
    """How :func:`write_records` waits while the database is away (an ``OperationalError``:
    down, restarting, unreachable, locked): a pause from ``pause`` doubling to ``pause_max``,
    for ``attempts`` failed writes (``None``: for as long as :meth:`keep_trying` says)."""

    def __init__(
        self,
        pause: float = WRITE_PAUSE_S,
        pause_max: float = WRITE_PAUSE_MAX_S,
        attempts: int | None = WRITE_ATTEMPTS,
    ) -> None:
        self.first, self.most, self.attempts = pause, pause_max, attempts
        self.failures = 0  # failed writes since the database last answered
        self.gave_up = False
        self._pause = pause

    def failed(self, exc: sa.exc.OperationalError, count: int) -> None:
        """A write of ``count`` records failed with the database away: pause, or give up."""
        self.failures += 1
        error = _brief(exc)
        if not self.keep_trying(error, count, exc):
            self.gave_up = True
            raise _GaveUp(error)
        self.sleep(self._pause)
        self._pause = min(self._pause * 2, self.most)

    def answered(self) -> None:
        """The database answered (the write went through, or failed for a reason of its own)."""
        self.failures = 0
        self._pause = self.first

    def keep_trying(self, error: str, count: int, exc: sa.exc.OperationalError) -> bool:
        ok = self.attempts is None or self.failures < self.attempts
        log.warning(
            "writing %d records failed (attempt %d)%s: %s",
            count,
            self.failures,
            ", retrying" if ok else "",
            exc.orig,
        )
        return ok

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class _WriterBackoff(Backoff):
    """The writer process's: tries for as long as the database stays away, and tells the server
    of every failure; once the server stops (``halt``), for ``stop_outage`` seconds more."""

    def __init__(
        self, acks: Connection, halt: _Halt, pause: float, pause_max: float, stop_outage: float
    ) -> None:
        super().__init__(pause, pause_max, attempts=None)
        self.acks, self.halt, self.stop_outage = acks, halt, stop_outage
        self.give_up_at: float | None = None

    def keep_trying(self, error: str, count: int, exc: sa.exc.OperationalError) -> bool:
        self.acks.send((_RETRYING, self.failures, error))  # the server logs and shows it
        if not self.halt.is_set():
            return True
        if self.give_up_at is None:
            self.give_up_at = time.monotonic() + self.stop_outage
        return time.monotonic() < self.give_up_at

    def sleep(self, seconds: float) -> None:
        if self.give_up_at is None:
            self.halt.wait(seconds)  # a stop ends the pause: its last chance starts now
        else:
            time.sleep(max(0.0, min(seconds, self.give_up_at - time.monotonic())))


def write_records(
    engine: sa.Engine, records: list[Record], backoff: Backoff | None = None
) -> tuple[int, int, str | None]:
    """Write ``records`` in one transaction; returns (written, dropped, last error).

    While the database is away (an ``OperationalError``) the write is tried again as
    ``backoff`` says: by default 8 attempts in about 11 s, the writer process's for as long as
    the database stays away. A write that fails otherwise (a constraint, bad data: it would
    fail again) is done record by record, and only the records that cannot be written are
    logged and dropped. If the backoff gives up, the records not written are returned as
    dropped (a worker's batch then comes again; the writer process gives up only at a stop).
    """
    written, dropped, error, left = _write_all(engine, records, backoff)
    return written, dropped + left, error


def _write_all(
    engine: sa.Engine,
    records: list[Record],
    backoff: Backoff | None = None,
    insert: Callable[[sa.Engine, list[Record]], object] | None = None,
) -> tuple[int, int, str | None, int]:
    """:func:`write_records`, with the records not written because the backoff gave up
    counted apart: (written, dropped, last error, left). The ``left`` ones are always the last
    of ``records`` (the batch whole, or what the record-by-record pass had not reached)."""
    backoff = backoff if backoff is not None else Backoff()
    written = dropped = 0
    try:
        problem = _write_waiting(engine, records, backoff, insert)
        if problem is None:
            return len(records), 0, None, 0
        error = _brief(problem)
        for record in records:  # one by one: keep every record that can be written
            problem = _write_waiting(engine, [record], backoff, insert)
            if problem is None:
                written += 1
                continue
            dropped += 1
            error = _brief(problem)
            kind = type(record).__name__
            log.error("dropped a %s record that cannot be written: %s", kind, problem)
        return written, dropped, error, 0
    except _GaveUp as exc:
        left = len(records) - written - dropped
        log.error("gave up writing %d records, the database being away: %s", left, exc)
        return written, dropped, str(exc), left


def _write_waiting(
    engine: sa.Engine,
    records: list[Record],
    backoff: Backoff,
    insert: Callable[[sa.Engine, list[Record]], object] | None = None,
) -> sa.exc.SQLAlchemyError | None:
    """Write ``records`` (with ``insert``, :func:`_insert` by default), waiting while the
    database is away; the error of a write that can never succeed, or None once written.
    :class:`_GaveUp` when the backoff stops waiting."""
    insert = insert if insert is not None else _insert
    while True:
        try:
            insert(engine, records)
        except sa.exc.OperationalError as exc:
            if not database_away(exc):  # it would fail the same way after the outage
                backoff.answered()
                return exc
            backoff.failed(exc, len(records))
            continue
        except sa.exc.SQLAlchemyError as exc:
            backoff.answered()
            return exc
        backoff.answered()
        return None


def _brief(exc: sa.exc.SQLAlchemyError) -> str:
    """What went wrong, for ``last_error``: the driver's first line, without the statement and
    its parameters that ``str(exc)`` adds. ``/healthz`` shows it to anyone, and the parameters
    are a customer's records (account, session, address); the log keeps the whole error."""
    orig = getattr(exc, "orig", None)
    text = str(orig) if orig is not None else str(exc).split("\n[SQL:", 1)[0]
    return f"{type(orig or exc).__name__}: {text.splitlines()[0] if text else ''}"


def _insert(engine: sa.Engine, records: list[Record]) -> None:
    with write_transaction(engine) as conn:
        insert_records(conn, records)


def _insert_marking(engine: sa.Engine, records: list[Record]) -> None:
    """The writer process's :func:`_insert`: the records, and how far their writer wrote."""
    with write_transaction(engine) as conn:
        insert_records(conn, records)
        mark_written(conn, records)


def mark_written(conn: sa.Connection, records: list[Record]) -> None:
    """Advance ``writer_progress`` to the last place of ``records`` (in the same transaction:
    written and marked, or neither). A record refused for good and passed over is behind the
    mark once a later one is written: it was logged and dropped, never spilled."""
    through: dict[str, int] = {}
    for record in records:
        if record.at is not None:
            writer, n = record.at
            through[writer] = max(n, through.get(writer, 0))
    if not through:
        return
    now = datetime.now(UTC)
    rows = [{"writer": w, "through": n, "updated_at": now} for w, n in through.items()]
    conn.execute(_progress_upsert(conn.dialect.name), rows)


@functools.cache
def _progress_upsert(dialect: str) -> sa.Insert:
    """The upsert of a writer's row, built once per dialect: building ``excluded`` made its
    column proxies again on every transaction, about 0.25 ms of the writer's time each."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    statement = dialect_insert(writer_progress)
    return statement.on_conflict_do_update(
        index_elements=["writer"],
        set_={"through": statement.excluded.through, "updated_at": statement.excluded.updated_at},
    )


def _placed(entries: list[tuple[int, bytes, str, int]]) -> list[Record]:
    """The records of in-flight batches, each with its place in what its writer was handed."""
    records: list[Record] = []
    for _count, blob, writer, first in entries:
        batch: list[Record] = pickle.loads(blob)
        for i, record in enumerate(batch):
            record.at = (writer, first + i) if writer else None
        records.extend(batch)
    return records


def insert_records(conn: sa.Connection, records: list[Record]) -> None:
    """Write ``records``: their rows, and the decisions' audit entries chained after the head.

    ``conn`` must be inside :func:`~brokerguard.service.db.write_transaction`. The writer
    process's code, and ``brokerguard records load-spill``'s (:mod:`.spill`)."""
    event_rows = [r.row for r in records if isinstance(r, EventRecord)]
    decided = [r for r in records if isinstance(r, DecisionRecord)]
    camps = {r.row["id"]: r for r in records if isinstance(r, CampaignRecord)}
    instructed = [r.row for r in records if isinstance(r, InstructionRecord)]
    if event_rows:
        conn.execute(events.insert(), event_rows)
    if instructed:
        conn.execute(_insert_new(conn, instructions, ["cause", "session", "kind"]), instructed)
    if decided:
        conn.execute(decisions.insert(), [r.decision for r in decided])
        alert_rows = [r.alert for r in decided if r.alert is not None]
        if alert_rows:
            conn.execute(alerts.insert(), alert_rows)
    if camps:
        _upsert_campaigns(conn, list(camps.values()))
    if decided:
        audit.append(conn, [r.audit for r in decided])


def _insert_new(conn: sa.Connection, table: sa.Table, keys: list[str]) -> Any:
    """An insert that skips rows whose ``keys`` are already stored (both dialects say it so)."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table).on_conflict_do_nothing(index_elements=keys)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table).on_conflict_do_nothing(index_elements=keys)


def _upsert_campaigns(conn: sa.Connection, records: list[CampaignRecord]) -> None:
    """Insert new campaigns, refresh known ones; the analyst's ``status`` is never overwritten."""
    stored: dict[str, Any] = {}
    merging = {r.row["engine_id"]: r for r in records if r.merge}
    if merging:
        # A shard that grew another shard's campaign started its own copy later: the row is
        # the stored one of the same engine id raised last before it.
        query = sa.select(campaigns).where(campaigns.c.engine_id.in_(list(merging)))
        for row in sorted(conn.execute(query), key=lambda r: _aware(r.raised_at)):
            record = merging[row.engine_id]
            if _aware(row.raised_at) <= record.row["raised_at"]:
                record.row["id"] = row.id
                stored[row.id] = row
    rows = list({r.row["id"]: r.row for r in records}.values())
    ids = [r["id"] for r in rows]
    known = set(conn.scalars(sa.select(campaigns.c.id).where(campaigns.c.id.in_(ids))))
    new = [r for r in rows if r["id"] not in known]
    if new:
        conn.execute(campaigns.insert(), new)
    for record in {r.row["id"]: r for r in records}.values():
        row = record.row
        if row["id"] in known:
            values = {k: v for k, v in row.items() if k not in ("id", "status")}
            if record.merge and row["id"] in stored:
                values = _joined(stored[row["id"]], values)
            conn.execute(campaigns.update().where(campaigns.c.id == row["id"]).values(**values))


def _joined(old: Any, new: dict[str, Any]) -> dict[str, Any]:
    """A campaign row grown in two places: both lists, in the order first seen; the span."""
    out = dict(new)
    for key in ("symbols", "accounts", "infrastructure", "counterparties"):
        out[key] = list(dict.fromkeys([*(getattr(old, key) or []), *new[key]]))
    timeline = {json.dumps(t, sort_keys=True): t for t in [*(old.timeline or []), *new["timeline"]]}
    out["timeline"] = sorted(timeline.values(), key=lambda t: t["at"])
    out["raised_at"] = min(_aware(old.raised_at), new["raised_at"])
    out["updated_at"] = max(_aware(old.updated_at), new["updated_at"])
    return out


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)
