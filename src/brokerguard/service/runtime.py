"""The running service: settings, and the one object that holds the parts together.

:class:`Service` opens the database (and brings its schema up to date), picks the policy, builds
the engine around its state, loads the analysts' account locks, and owns the recorder thread and
the periodic work (campaign snapshots, state flushes). :meth:`Service.decide` and
:meth:`Service.ingest` are the two uses of the engine; both run on the event loop (see
:mod:`.host` for why).

With ``nats_url`` (``serve --nats``) every event the engine takes, and every decision, is also
handed to :class:`~brokerguard.service.publish.Publisher`, in the engine's order: an append to a
bounded outbox, drained to NATS JetStream by a task of its own, so NATS never delays a decision.

With ``blocklist_path`` (``serve --blocklist FILE``) the phishing block-list comes from that file
instead of the policy's ``[detectors.login] blocklist``: loaded at start (a broken file stops the
start), then polled every ``blocklist_poll_seconds`` and swapped into the running engine when it
changed and reads whole (:mod:`.blocklist_watch`); an analyst's approval in the console reloads
it at once. Policy changes keep it.

Records a stop could not write (the database away) are saved to a spill file in ``spill_dir``
(``serve --spill-dir``; by default beside the SQLite file, else the directory the service started
in; :mod:`.spill`). At start the service checks it can write there, and says loudly — an error
line per file, ``/healthz`` ``degraded`` with ``spill_files`` — when spill files wait to be
loaded (``brokerguard records load-spill``); it does not load them itself (see :mod:`.spill`).

Which policy runs: ``--policy FILE`` when given (recorded as the current policy if it differs
from the last one); else the last policy recorded in the database (one set through
``PUT /v1/policy`` survives a restart); else the shipped default.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
import sqlalchemy as sa

from brokerguard.engine import BrokerGuard, Policy, load_policy
from brokerguard.engine.policy import default_policy_path, parse_policy
from brokerguard.events import Event, LoginAttempt
from brokerguard.guard import decision_point
from brokerguard.service import actions, queries, spill
from brokerguard.service.blocklist_watch import BlocklistWatch
from brokerguard.service.db import (
    DEFAULT_DATABASE,
    DEFAULT_REPORT_TIMEOUT_S,
    DEFAULT_STATEMENT_TIMEOUT_S,
    check_statement_timeout,
    make_engine,
    migrate,
    statement_timeout_ms,
    write_transaction,
)
from brokerguard.service.errors import Conflict, InvalidInput, Unavailable
from brokerguard.service.host import INGEST_SLICE, GuardHost, check_guard_name, guard_name
from brokerguard.service.keys import KeyRing
from brokerguard.service.limits import DEFAULT_MAX_BODY
from brokerguard.service.recorder import (
    MAX_BACKLOG,
    STOP_OUTAGE_S,
    WRITE_PAUSE_MAX_S,
    WRITE_PAUSE_S,
    Recorder,
)
from brokerguard.service.records import (
    campaign_record,
    decision_record,
    event_record,
    instruction_record,
)
from brokerguard.service.users import ConsoleUser, session_user
from brokerguard.stores.sqlite import SqliteState

if TYPE_CHECKING:
    from brokerguard.service.publish import Publisher

__all__ = ["DEFAULT_STATEMENT_TIMEOUT_S", "Service", "Settings"]

log = logging.getLogger("brokerguard.service")
T = TypeVar("T")
BACKLOG_HIGH = 50_000  # ingest waits while the writer has more than this to write
ANSWERS_KEPT = 5_000  # the latest answers, given again to a caller that retries an event
MAX_ID = 128  # an event's ids (``events.Id``): accounts, device cookies


@dataclass(frozen=True, kw_only=True)
class Settings:
    """What ``brokerguard serve`` and :func:`~brokerguard.service.app.create_app` take."""

    database_url: str = DEFAULT_DATABASE
    policy_path: Path | None = None
    state_path: Path | None = None
    max_body: int = DEFAULT_MAX_BODY  # bytes; larger requests get 413
    tick_seconds: float = 1.0  # campaign snapshots, state flushes, garbage-collector freezes
    full_gc_seconds: float = 3600.0  # how often the collector walks the whole heap (see tick)
    key_ttl: float = 30.0  # seconds a verified API key is trusted without the database
    secure_cookies: bool = False  # set behind HTTPS: the session cookie is then Secure
    # --nats: publish every event taken, and the decisions, to the cluster's stream (.publish)
    nats_url: str | None = None
    nats_stream: str = "BG_EVENTS"
    nats_subject: str = "bg.events"
    nats_partitions: int = 16
    outbox: int = 100_000  # messages waiting for NATS, at most; more are dropped and counted
    epoch_seconds: float = 60.0  # epoch markers for the campaign stage (ingest's --epoch-seconds)
    drain_seconds: float = 5.0  # on shutdown, how long to keep publishing what is queued
    # --blocklist: the phishing block-list file, reloaded when it changes (.blocklist_watch)
    blocklist_path: Path | None = None
    blocklist_poll_seconds: float = 5.0
    # records waiting for the database (.recorder): at most this many, then decisions get 503
    max_backlog: int = MAX_BACKLOG
    write_pause: float = WRITE_PAUSE_S  # the first pause after a failed write; doubles ...
    write_pause_max: float = WRITE_PAUSE_MAX_S  # ... to this, while the database is away
    stop_outage: float = STOP_OUTAGE_S  # at shutdown, how long the database has to come back
    # where the records a stop could not write are saved (.spill); None: beside the SQLite
    # file, or the current directory
    spill_dir: Path | None = None
    # at shutdown, the last flush of the --state file: tries, and the pause between them
    stop_flush_attempts: int = 3
    stop_flush_pause: float = 1.0
    # PostgreSQL: seconds a statement may run (a lock wait, a query that never ends) before it
    # is cancelled: the writer process's (reported and tried again, .recorder) and the
    # readers' and analysts' jobs' (503 statement_timeout, nothing done); 0: no limit
    statement_timeout: float = DEFAULT_STATEMENT_TIMEOUT_S
    # PostgreSQL: the same for the report tables' reads (.reporting), which scan the records and
    # may legitimately take longer than a list or a page; 0: no limit
    report_timeout: float = DEFAULT_REPORT_TIMEOUT_S
    # compute the console's report tables in the background at start-up (``serve`` does), so
    # that the first visit of the reports page reads them from memory (.reporting)
    warm_reports: bool = False

    def __post_init__(self) -> None:
        check_statement_timeout(self.statement_timeout)
        check_statement_timeout(self.report_timeout, "report_timeout")


class Service:
    def __init__(self, settings: Settings) -> None:
        self._answered: OrderedDict[str, dict[str, Any]] = OrderedDict()  # see decide
        self.settings = settings
        # reads, console sessions, key look-ups, analysts' jobs: a statement stuck behind a lock
        # fails after statement_timeout (503 statement_timeout) instead of hanging for ever
        self.db = make_engine(settings.database_url, statement_timeout=settings.statement_timeout)
        migrate(self.db)
        self.keys = KeyRing(self.db, settings.key_ttl)
        self.spill_dir = spill.check_dir(
            settings.spill_dir or spill.default_dir(settings.database_url)
        )
        self.spills_at_start = spill.pending(self.spill_dir)
        self._say_spills(self.spills_at_start)
        self.recorder = Recorder(
            settings.database_url,
            self.db,
            max_backlog=settings.max_backlog,
            write_pause=settings.write_pause,
            write_pause_max=settings.write_pause_max,
            stop_outage=settings.stop_outage,
            spill_dir=self.spill_dir,
            statement_timeout=settings.statement_timeout,
        )
        policy, source, origin = self._initial_policy()
        self.policy_source = source
        self.policy_origin = origin
        self._policy = policy
        if settings.state_path is not None:  # a state file that cannot be used fails now
            SqliteState(settings.state_path).close()
        self.blocklist: BlocklistWatch | None = None
        if settings.blocklist_path is not None:  # a list that cannot be read fails now
            self.blocklist = BlocklistWatch(settings.blocklist_path)
            self.blocklist.load()
        self._blocklist_lock: asyncio.Lock | None = None
        self._watcher: asyncio.Task[None] | None = None
        self.host: GuardHost = None  # type: ignore[assignment]  # built by start(), see there
        self._ticker: asyncio.Task[None] | None = None
        self._flushing: asyncio.Task[int] | None = None
        self._answering: set[str] = set()  # held orders whose analyst's answer is being recorded
        self._flushed_at: float | None = None  # monotonic time of the last state flush written
        self.stop_problems: list[str] = []  # what the last stop could not save (see stop)
        self._next_full_gc = 0.0
        self.publisher: Publisher | None = None
        if settings.nats_url:
            from brokerguard.service.publish import Publisher

            self.publisher = Publisher(
                settings.nats_url,
                stream=settings.nats_stream,
                subject=settings.nats_subject,
                partitions=settings.nats_partitions,
                capacity=settings.outbox,
                epoch_seconds=settings.epoch_seconds,
                drain_timeout=settings.drain_seconds,
            )

    def _say_spills(self, waiting: list[spill.SpillInfo]) -> None:
        """Spill files of an earlier run wait: their records are in no table and not in the
        audit chain until loaded. Not loaded here (see :mod:`.spill` for why)."""
        if not waiting:
            return
        held = sum(info.records or 0 for info in waiting)
        log.error(
            "%d spill files in %s hold %d records an earlier run could not write: they are not"
            " in the database nor in its audit chain until loaded with `brokerguard records"
            " load-spill FILE --database URL` (once the database answers)",
            len(waiting),
            self.spill_dir,
            held,
        )
        for info in waiting:
            if info.problem is None and info.created_at is not None:
                when = info.created_at.isoformat(timespec="seconds")
                what = f"{info.records} records, {info.reason}, written {when}"
            else:
                what = f"unreadable: {info.problem}"
            log.error("spill file waiting to be loaded: %s (%s)", info.path, what)

    async def spill_files(self) -> list[spill.SpillInfo]:
        """The spill files waiting in the spill directory (read in a thread)."""
        return await asyncio.to_thread(spill.pending, self.spill_dir)

    def _initial_policy(self) -> tuple[Policy, str, str]:
        path = self.settings.policy_path
        with self.db.connect() as conn:
            current = queries.current_policy(conn)
        if path is None and current is not None:
            return (
                parse_policy(current["source"], f"stored policy {current['id']}"),
                current["source"],
                current["origin"],
            )
        origin = str(path) if path is not None else "default"
        file = path if path is not None else default_policy_path()
        policy = load_policy(file)
        check_guard_name(policy)  # refused at start, not every decision's record lost
        source = Path(file).read_text(encoding="utf-8")
        if current is None or current["source"] != source:
            with write_transaction(self.db) as conn:
                actions.record_policy(conn, "system", policy.name, source, origin)
        return policy, source, origin

    # --- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        """Build the engine on the event loop's thread (its SQLite state connection must live
        on the thread that uses it) and start the writers and the ticker."""
        path = self.settings.state_path
        state = SqliteState(path) if path is not None else None
        listed = self.blocklist.blocklist if self.blocklist is not None else None
        guard = BrokerGuard(
            self._policy, state=state, name=guard_name(self._policy), blocklist=listed
        )
        self.host = GuardHost(guard, state, blocklist=listed)
        with self.db.connect() as conn:
            locks = queries.locked_accounts(conn)
        self.host.locked = {account: actor for account, (_, actor) in locks.items()}
        self.host.frozen = {account for account, (action, _) in locks.items() if action == "freeze"}
        self.recorder.start()
        if self.publisher is not None:
            await self.publisher.start()
        gc.collect()
        gc.freeze()  # what startup built is never walked again by the collector
        self._next_full_gc = time.monotonic() + self.settings.full_gc_seconds
        self._ticker = asyncio.get_running_loop().create_task(self._tick_forever())
        if self.blocklist is not None:
            self._blocklist_lock = asyncio.Lock()
            self._watcher = asyncio.get_running_loop().create_task(self._watch_blocklist())

    async def stop(self) -> None:
        """End the periodic work, save the engine's state, publish and write what is queued.

        Every step runs whatever happened in the one before: a state file that cannot be
        written must not cost the queued records (decisions, alerts, audit entries) nor the
        publisher's outbox, as it did when the last flush raised and ended the stop. The last
        flush is tried ``stop_flush_attempts`` times; what could not be saved or written is
        logged in one error line and listed in :attr:`stop_problems`.
        """
        problems: list[str] = []
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        if self._flushing is not None:
            with contextlib.suppress(Exception):
                await self._flushing
            self._flushing = None
        try:
            try:
                self.tick(flush=False)  # the last campaign snapshots, to the recorder
            except Exception as exc:
                log.exception("the last campaign snapshot failed")
                problems.append(f"campaign snapshot: {exc}")
            saved = await self._last_flush(problems)
            if self.publisher is not None:
                try:
                    await self.publisher.stop()
                except Exception as exc:
                    log.exception("stopping the publisher failed")
                    problems.append(f"publisher: {exc}")
            try:
                self.host.close(flush=saved)  # not once more: that was the last try
            except Exception as exc:
                log.exception("closing the engine's state file failed")
                problems.append(f"engine state file: {exc}")
        finally:
            self.recorder.stop()
            if self.recorder.lost_at_stop:
                saved = self.recorder.spill_file
                where = (
                    f" (saved to {saved}: `brokerguard records load-spill {saved}`)"
                    if saved is not None
                    else " (lost)"
                )
                problems.append(
                    f"{self.recorder.lost_at_stop} records not written{where}:"
                    f" {self.recorder.last_error}"
                )
            self.db.dispose()
            self.stop_problems = problems
        if problems:
            log.error("stopped, but not everything was saved: %s", "; ".join(problems))

    async def _last_flush(self, problems: list[str]) -> bool:
        """The engine's state to its file, in one instant; tried again after a pause if it fails
        (a file locked by another program, a full disk). If it never succeeds the file keeps the
        last flush that was written: what the engine learned since is lost, and said so."""
        attempts = max(1, self.settings.stop_flush_attempts)
        for attempt in range(1, attempts + 1):
            try:
                self.host.flush()
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                if attempt < attempts:
                    log.warning(
                        "the engine state's last flush failed (attempt %d of %d), trying again in"
                        " %.1f s: %s",
                        attempt,
                        attempts,
                        self.settings.stop_flush_pause,
                        error,
                    )
                    await asyncio.sleep(self.settings.stop_flush_pause)
                    continue
                state = self.host.state_file
                changed = len(state.dirty | state.handed) if state is not None else 0
                since = (
                    f"its flush of {time.monotonic() - self._flushed_at:.0f} s before the stop"
                    if self._flushed_at is not None
                    else "what the last run left in it"
                )
                problems.append(  # logged with the stop's other problems
                    f"engine state not saved to {self.settings.state_path} after {attempts}"
                    f" attempts ({error}): the file keeps {since}, the changes to up to"
                    f" {changed} records since are lost"
                )
            else:
                self._flushed_at = time.monotonic()
                return True
        return False

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.tick_seconds)
            try:
                self.tick(flush=False)
            except Exception:  # a failed snapshot must not end the ticker
                log.exception("periodic work failed")
            if self._flushing is None or self._flushing.done():
                self._flushing = asyncio.get_running_loop().create_task(self._flush_state())

    async def _flush_state(self) -> int:
        try:
            rows = await self.host.flush_in_slices()
        except Exception:  # the changes stay pending for the next flush
            log.exception("state flush failed")
            return 0
        self._flushed_at = time.monotonic()
        return rows

    async def _watch_blocklist(self) -> None:
        while True:
            await asyncio.sleep(self.settings.blocklist_poll_seconds)
            try:
                await self.reload_blocklist()
            except Exception:  # a failed poll must not end the watch
                log.exception("block-list poll failed")

    async def reload_blocklist(self) -> bool:
        """Read the block-list file if it changed (in a thread) and swap the new list into the
        engine (on the loop); True when a new list is in force. A broken file keeps the old."""
        if self.blocklist is None or self._blocklist_lock is None:
            return False
        async with self._blocklist_lock:
            fresh = await asyncio.to_thread(self.blocklist.check)
            if fresh is None:
                return False
            self.host.set_blocklist(fresh)
            return True

    def tick(self, flush: bool = True) -> None:
        """Snapshot grown campaigns and flush the engine's state file (on the loop thread).

        The ticker passes ``flush=False`` and flushes in slices instead
        (:meth:`GuardHost.flush_in_slices`): at 1,000 decisions/s, encoding a second's changed
        records in one go held every request due meanwhile for tens of milliseconds.

        Then freeze the garbage collector's view: the engine's state only grows, and a full
        collection walks all of it — tens of milliseconds stolen from whichever decision is
        running (measured with bench/api.py). Objects alive for a tick are moved out of the
        collector's generations, so automatic collections only walk the last second's objects.
        Freed objects are still freed (reference counting); only garbage in reference cycles
        that outlived a tick waits for the full collection made every ``full_gc_seconds``.
        """
        for camp in self.host.changed_campaigns():
            self.recorder.record(campaign_record(camp))
        if flush:
            self.host.flush()
        if time.monotonic() >= self._next_full_gc:
            self._next_full_gc = time.monotonic() + self.settings.full_gc_seconds
            gc.unfreeze()
            gc.collect()
        gc.freeze()

    # --- the engine ------------------------------------------------------------------------------
    def admit(self) -> None:
        """Refuse new work that records while ``max_backlog`` records wait for the database.

        Called before a decision is taken and before a batch is begun, never in the middle of
        one: a decision that was taken is recorded, and a batch is taken whole or not at all."""
        if self.recorder.full:
            raise Unavailable(
                f"{self.recorder.backlog} records wait to be written"
                f" ({self.recorder.last_error or 'the database is slow'}); no decision was"
                " taken: try again later",
                code="recorder_full",
            )

    def decide(self, event: Event, point: str, caller: str) -> dict[str, Any]:
        """Decide one event and queue its records; returns the answer's fields."""
        decision, signals, locked = self.host.decide(event)
        if self.host.guard.repeated and not locked:
            first = self._answered.get(event.id)
            if first is not None and first["account"] == getattr(event, "account", None):
                # a retry of an event already decided: the same answer, nothing recorded again
                # (a second decision row, and an alert without its signals, were written)
                return first
        decision_id, alerted, record = decision_record(
            event,
            point,
            decision,
            signals,
            guard=self.host.name,
            caller=caller,
            alert=not locked,
            campaigns=self.host.campaign_row_id,
        )
        self.recorder.record(event_record(event))
        self.recorder.record(record)
        answer = {
            "decision_id": decision_id,
            "event_id": event.id,
            "account": record.decision["account"],
            "point": point,
            "action": decision.action,
            "score": decision.score,
            "factors": list(decision.factors),
            "reasons": record.decision["reasons"],
            "alert_id": decision_id if alerted else None,
        }
        if self.publisher is not None:
            self.publisher.event(event, answer, self.host.name)
        self._answered[event.id] = answer
        if len(self._answered) > ANSWERS_KEPT:
            self._answered.popitem(last=False)
        return answer

    def record_instructions(self) -> list[dict[str, Any]]:
        """Record the instructions the engine raised since it was last asked; return them.

        Called after everything that feeds the engine (a decision's callers call it too), so
        that none waits in it: the broker's order system reads them from the feed
        (``GET /v1/instructions``)."""
        taken = self.host.guard.take_instructions()
        for instruction in taken:
            self.recorder.record(instruction_record(instruction, self.host.name))
        return [msgspec.to_builtins(i) for i in taken]

    async def ingest(self, events: list[Event], caller: str) -> dict[str, Any]:
        """Observe a batch in order (deciding its decision points), yielding to the loop."""
        counts: dict[str, int] = {}
        observed = decided = alerts = 0
        instructions: list[dict[str, Any]] = []
        self.admit()
        high = min(BACKLOG_HIGH, self.settings.max_backlog)
        for start in range(0, len(events), INGEST_SLICE):
            while self.recorder.backlog > high:  # a batch begun waits: it is taken whole
                await asyncio.sleep(0.01)
            for event in events[start : start + INGEST_SLICE]:
                point = decision_point(event)
                if point is None:
                    self.host.observe(event)
                    if self.publisher is not None:
                        self.publisher.event(event)
                    self.recorder.record(event_record(event))
                    instructions += self.record_instructions()
                    observed += 1
                    continue
                answer = self.decide(event, point, caller)
                instructions += self.record_instructions()
                decided += 1
                counts[answer["action"]] = counts.get(answer["action"], 0) + 1
                alerts += answer["alert_id"] is not None
            await asyncio.sleep(0)
        return {
            "accepted": len(events),
            "observed": observed,
            "decided": decided,
            "actions": counts,
            "alerts": alerts,
            "instructions": instructions,
        }

    # --- what analysts do that the engine must hear ----------------------------------------------
    async def act_on_account(
        self, actor: str, account: str, action: str, target: str | None, note: str
    ) -> dict[str, Any]:
        """Record an account action (with its audit entry), then tell the engine.

        - ``release_order`` / ``cancel_order`` (target: the held order's event id): the
          out-of-band confirmation the hold waited for, passed or failed; :class:`Conflict` if no
          such order of the account is held, and if the hold was answered (the customer's code)
          or expired while the action was being recorded: the engine hears the answer while
          the action's transaction is open, so the action is recorded (and audited) only if the
          answer took effect.
        - ``lock`` / ``unlock``: while locked, every decision on the account is ``lock``.
        - ``freeze``: the same lock, asked for by the customer (through the broker's site); its
          decisions say so. ``unlock`` ends it too.
        - ``request_unlock``: the customer asked the broker's site for an analyst's unlock; the
          record is for the console's list of waiting accounts (:mod:`.unlock_queue`), the
          engine hears nothing.
        - ``force_reverify``: every sign-in and operation asks for a passkey or out-of-band
          confirmation until the customer passes one.
        - ``trust_device`` (target: the device cookie): the cookie counts as the customer's.

        An account, or a device cookie, longer than an event's ids is refused
        (:class:`InvalidInput`) before anything is recorded: the engine's event could not be
        made from it.
        """
        if not 1 <= len(account) <= MAX_ID:
            raise InvalidInput(f"an account has 1 to {MAX_ID} characters", field="account")
        if action == "trust_device" and len(target or "") > MAX_ID:
            # the cookie goes into an event the workers read, whose ids are at most 128 long
            raise InvalidInput(f"a device cookie is at most {MAX_ID} characters", field="target")
        host = self.host
        answering = action in ("release_order", "cancel_order")
        ref = target or ""
        if answering:
            if not self._held_order(ref, account):
                raise Conflict(
                    f"no held order {target!r} of account {account!r} waits for an answer",
                    field="target",
                )
            if ref in self._answering:  # another analyst's answer is being recorded
                raise Conflict(
                    f"held order {target!r} is being answered by another action", field="target"
                )
            self._answering.add(ref)
        loop = asyncio.get_running_loop()
        answered: list[str] = []  # the answer's event id, once the engine heard it

        def write(conn: sa.Connection) -> dict[str, Any]:
            row = actions.record_account_action(conn, actor, account, action, target, note)
            if answering:  # on the loop, before this transaction commits (see above)
                answer_id = f"action-{row['id']}"
                call_on_loop(loop, lambda: self._answer_hold(account, ref, action, answer_id))
                answered.append(answer_id)
            return row

        try:
            row = await self.recorder.run(write)
        except BaseException:
            if answered:  # the engine heard it and the commit failed: the rarest of windows
                log.error(
                    "the engine heard %s of held order %r (event %s) but the action's record"
                    " was not written: the answer is kept with the events only",
                    action,
                    ref,
                    answered[0],
                )
            raise
        finally:
            if answering:
                self._answering.discard(ref)
        if action in ("lock", "freeze"):
            host.locked[account] = actor
            if action == "freeze":
                host.frozen.add(account)
            else:
                host.frozen.discard(account)
        elif action == "unlock":
            host.locked.pop(account, None)
            host.frozen.discard(account)
        elif action == "force_reverify":
            self._pass_on(host.conclude("force_reverify", account=account))
        elif action == "trust_device" and target:
            self._pass_on(host.conclude("trust_device", account=account, device=target))
        self.record_instructions()
        return row

    def _held_order(self, ref: str, account: str) -> bool:
        """Whether the order ``ref`` of ``account`` is held, waiting for an answer."""
        pending = self.host.pending(ref)
        return pending is not None and pending.account == account and pending.point == "order"

    def _answer_hold(self, account: str, ref: str, action: str, answer_id: str) -> None:
        """Tell the engine an analyst's answer to a held order (on the event loop's thread).
        :class:`Conflict` if the hold no longer waits: the customer answered it with the code,
        or it expired, after the action was checked."""
        if not self._held_order(ref, account):
            raise Conflict(
                f"held order {ref!r} was already answered (the customer's confirmation) or"
                f" expired while the {action} was being recorded: nothing done",
                field="target",
            )
        answer = self.host.answer_hold(ref, action == "release_order", answer_id)
        assert answer is not None, "a hold that waits is answered"
        self._pass_on(answer)  # the workers' engines hear the confirmation too
        self.record_instructions()  # refusing a held order: what its session placed before

    def _pass_on(self, event: Event) -> None:
        """An event the service made itself (an analyst's conclusion, a hold's answer): kept
        with the events and, with ``--nats``, published, so workers and replays hear it too."""
        self.recorder.record(event_record(event))
        if self.publisher is not None:
            self.publisher.event(event)

    async def update_case(
        self, actor: str, case_id: int, changes: dict[str, Any]
    ) -> dict[str, Any]:
        """Change a case; a newly given outcome is what the engine learns from.

        Fraud on a sign-in alert marks the sign-in's address (and hosting AS) for every account
        and makes the victim re-verify; fraud on anything else makes the account re-verify. Not
        fraud on a sign-in alert teaches the engine that sign-in as the customer's own.
        """

        def change(conn: sa.Connection) -> tuple[dict[str, Any], bool, LoginAttempt | None]:
            before = queries.get_case(conn, case_id)
            case = actions.update_case(conn, actor, case_id, changes)
            decided = bool(case["outcome"]) and (before or {}).get("outcome") != case["outcome"]
            alert = case["alert_id"] if decided else None
            login = queries.alert_login(conn, alert) if alert is not None else None
            return case, decided, login

        case, decided, login = await self.recorder.run(change)
        if decided:
            fraud = case["outcome"] == "fraud"
            if login is not None:
                for event in self.host.confirm(login, fraud):
                    self._pass_on(event)
            elif fraud and case["account"]:
                self._pass_on(self.host.conclude("force_reverify", account=case["account"]))
            self.record_instructions()  # a fraudulent sign-in's session: open orders, sign-out
        return case

    async def update_campaign(self, actor: str, campaign_id: str, status: str) -> dict[str, Any]:
        """Set a campaign's status; ``dismissed`` (not an attack) also ends its containment in
        the engine (see :mod:`brokerguard.engine.feedback`)."""
        campaign = await self.recorder.run(
            lambda conn: actions.update_campaign(conn, actor, campaign_id, status)
        )
        if status == "dismissed":  # the workers' engines and a campaign stage hear it too
            self._pass_on(self.host.conclude("dismiss_campaign", campaign=campaign["engine_id"]))
        return campaign

    async def review_blocklist(
        self, actor: str, host: str, approve: bool, note: str
    ) -> dict[str, Any]:
        """An analyst's decision on a host in the block-list review queue.

        Approval writes the host to the served list (``--blocklist``; without it, the list the
        host was queued for) and reloads it at once, so the next sign-in from that host is
        checked against it; rejection keeps it out for good. A list file that cannot be read or
        written is a :class:`Conflict` and changes nothing.
        """
        from brokerguard.phishing._blocklist import BlocklistError
        from brokerguard.service import blocklist_review

        path = self.blocklist.path if self.blocklist is not None else None

        def decide(conn: sa.Connection) -> dict[str, Any]:
            return blocklist_review.decide(conn, actor, host, approve, note, path)

        try:
            row = await self.recorder.run(decide)
        except BlocklistError as exc:
            raise Conflict(str(exc), field="blocklist") from None
        except OSError as exc:
            problem = f"cannot write the block-list: {exc.strerror}"
            raise Conflict(problem, field="blocklist") from None
        if approve:
            await self.reload_blocklist()
        return row

    def set_policy(
        self, policy: Policy, source: str, origin: str, engine: BrokerGuard | None = None
    ) -> None:
        self._policy = policy
        self.host.set_policy(policy, engine)
        self.policy_source = source
        self.policy_origin = origin

    # --- console sessions (called from a thread pool) ---------------------------------------------
    def console_session(self, token: str) -> ConsoleUser | None:
        with self.db.connect() as conn:
            return session_user(conn, token)

    def read(self, *, report: bool = False) -> sa.Connection:
        """A connection for reads (use as a context manager, from a thread pool).

        Its statements run under ``statement_timeout`` (PostgreSQL); with ``report`` under
        ``report_timeout`` instead, for the transaction the connection's first statement begins
        (``SET LOCAL``: the pooled connection's next user has the engine's own again)."""
        conn = self.db.connect()
        if report and conn.dialect.name == "postgresql":
            try:
                milliseconds = statement_timeout_ms(self.settings.report_timeout)
                conn.execute(sa.text(f"SET LOCAL statement_timeout = {milliseconds}"))
            except BaseException:
                conn.close()
                raise
        return conn


LOOP_CALL_TIMEOUT_S = 10.0  # a job thread's wait for the event loop to run its call


def call_on_loop(loop: asyncio.AbstractEventLoop, fn: Callable[[], T]) -> T:
    """Run ``fn`` on ``loop`` (the engine's thread) from a job thread, and return its result.

    If the loop does not get to it within :data:`LOOP_CALL_TIMEOUT_S` (a stopping service), the
    call is withdrawn and never runs: :class:`Unavailable`, and the job's transaction rolls
    back."""
    future: Future[T] = Future()

    def run() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(fn())
        except BaseException as exc:  # handed to the job thread
            future.set_exception(exc)

    loop.call_soon_threadsafe(run)
    try:
        return future.result(LOOP_CALL_TIMEOUT_S)
    except TimeoutError:
        if future.cancel():
            raise Unavailable("the service is busy or stopping; nothing was done") from None
        return future.result()
