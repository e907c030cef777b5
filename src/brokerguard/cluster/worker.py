"""A worker: its share of the partitions, one engine per partition on Redis state.

The worker takes partitions by lease (:mod:`.leases`) and consumes each through a durable pull
consumer of its own (``<durable>-<partition>``, filtered on ``<subject>.<partition>``), so a
partition's events are processed by one worker at a time, in stream order. Each partition has
its own engine and state (:mod:`.partition`). For each batch fetched from a partition the worker

1. asks Redis which of the batch's event ids the partition already processed (one round trip)
   and skips those — a redelivered event changes no state twice and decides nothing twice — and
   reads the records the rest will need (two more round trips: what the events name, then the
   symbols their accounts hold);
2. runs the rest through the partition's engine, in stream order;
3. checks that the partition's lease and state are still the ones it read (else it gives the
   batch back, sending and writing nothing of it); with a campaign stage, sends the batch's
   facts and epoch announcements (:mod:`.facts`); writes the decisions, campaign lines and
   instructions it produced (to ``decisions`` / ``campaigns`` / ``instructions`` files,
   appended, one JSON object per line) and, given a database, the decisions, alerts, campaigns
   and instructions to the service's tables (:mod:`.records`: ids derived from event ids, so a
   redelivered batch adds no row twice);
4. flushes the state, the processed ids and the engine's sweep clock to Redis in one MULTI/EXEC,
   fenced on the partition's lease (a worker that lost the partition writes nothing);
5. only then acknowledges the batch.

A worker killed anywhere before 5 has its batch redelivered (after ``ack_wait``) to whichever
worker holds the partition next (after ``lease_ttl``). If it died after 3 but before 4, the
redelivered events are processed again from the state before them, so they decide the same
again: the output files can then hold a line twice with the same content (readers keep one line
per event id); if it died after 4, the ids are in Redis and the events are skipped.

A partition whose consumer has delivered events but whose state is not in Redis (Redis lost its
data) is replayed from the start of the stream: its consumer is deleted and created again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import msgspec
import nats
import redis
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from brokerguard.cluster.facts import (
    DEFAULT_FACTS_STREAM,
    DEFAULT_FACTS_SUBJECT,
    ContainmentStore,
    ensure_facts_stream,
    fact_messages,
    progress_subject,
)
from brokerguard.cluster.leases import Leases, new_worker_id
from brokerguard.cluster.partition import campaign_tag, tag_records
from brokerguard.cluster.stream import (
    DEFAULT_PARTITIONS,
    DEFAULT_STREAM,
    DEFAULT_SUBJECT,
    connect,
    ensure_stream,
    epoch_marker,
)
from brokerguard.engine import BrokerGuard, Policy
from brokerguard.engine.stage import Containment, StageLink, decode_entity
from brokerguard.engine.state import session_key
from brokerguard.events import ChallengeResult, EventError, decode_line
from brokerguard.guard import Instruction, decision_point
from brokerguard.service.blocklist_watch import BlocklistWatch
from brokerguard.service.db import DEFAULT_STATEMENT_TIMEOUT_S
from brokerguard.stores.redis import LeaseLost, RedisState

__all__ = ["WorkerStats", "run_worker"]


@dataclass
class WorkerStats:
    events: int = 0  # processed (not counting skipped redeliveries)
    skipped: int = 0  # redelivered events already processed
    unreadable: int = 0  # messages that are no valid event (logged, acknowledged, passed over)
    decisions: int = 0
    inline: int = 0  # decision points the service had already answered (``serve --nats``)
    inline_differ: int = 0  # ... whose action differs from the worker's
    batches: int = 0
    redelivered: int = 0  # messages delivered more than once
    acquired: int = 0  # partitions taken (at start, on rebalancing, after a death)
    released: int = 0  # partitions handed over to another worker
    lost: int = 0  # partitions whose lease was gone when renewed or when flushing
    rebuilt: int = 0  # partitions replayed from the start of the stream (their state was gone)
    resumed: int = 0  # partitions taken with unacknowledged messages: restarted at the ack floor
    facts: int = 0  # facts sent to the campaign stage
    waits: int = 0  # batches cut at an epoch the campaign stage had not finished
    started: float = field(default_factory=time.perf_counter)
    busy: float = 0.0  # seconds from a batch's arrival to its acknowledgement
    batch_seconds: list[float] = field(default_factory=list)  # each batch, arrival to ack
    latencies: list[float] = field(default_factory=list)  # each decision: published to acked
    cpu: float = 0.0  # this process's CPU seconds in batches (fetch wait excluded)
    redis_round_trips: int = 0
    nats_round_trips: int = 0  # pull requests (idle polls too) and a flush of the acks per batch
    partitions: dict[int, int] = field(default_factory=dict)  # partition -> events processed
    first_batch: float = 0.0  # wall clock (epoch s) when the first batch arrived
    last_ack: float = 0.0  # ... and when the last one was acknowledged

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k != "started"}


def held_symbols(state: RedisState, events: list[Any]) -> Iterator[tuple[str, str]]:
    """The symbols the batch's accounts hold (an order values the holdings of its account)."""
    accounts = state.records["account"]
    for account in {getattr(e, "account", None) for e in events}:
        acc = accounts.get(account) if account is not None else None
        if acc is not None:
            for key in acc.positions:
                yield "symbol", key


def wanted(events: list[Any]) -> Iterator[tuple[str, str]]:
    """The records a batch's events will read, as far as the event alone tells."""
    yield "population", "all"
    for event in events:
        account = getattr(event, "account", None)
        if account is not None:
            yield "account", account
        session = getattr(event, "session", None)
        if session and account is not None:
            yield "session", session_key(account, session)
            yield "session", session  # where state written before session_key keeps it
            # the orders kept under the id, which a session opened there looks for
            yield "ended", session_key(account, session)
            yield "ended", session
        symbol = getattr(event, "symbol", None)
        if symbol is not None:
            yield "symbol", f"{event.market}:{symbol}"
        ip = getattr(event, "ip", None)
        if ip:
            yield "entity", f"ip:{ip}"  # the address's shared-infrastructure record
        if isinstance(event, ChallengeResult):
            yield "pending", event.ref
        login = getattr(event, "login", None)  # an analyst's conclusion about a sign-in
        if login is not None:
            yield "account", login.account
            yield "entity", f"ip:{login.ip}"
            key = session_key(login.account, login.session)
            yield "session", key  # its orders, live or ended
            yield "ended", key
            yield "session", login.session  # ... under the keys of state written before
            yield "ended", login.session  # session_key (see BrokerGuard._session_record)


def inline_decision(headers: dict[str, str] | None) -> dict[str, Any] | None:
    """The service's answer to this event, when ``serve --nats`` published it (its headers).

    The worker still decides the event itself, from its partition's state, so the cluster stays
    deterministic (a replay of the stream decides the same, and the state evolves as if the
    event had come through ``ingest``). The service's answer — the one the broker's system
    received — is the decision of record: the service wrote it (decision, alert) to the
    database it shares with the workers, so the worker writes no decision row of its own for
    the event; its decision goes to the ``--decisions`` file beside the service's (``inline``).
    """
    if not headers or "Bg-Action" not in headers:
        return None
    try:
        score: float | None = float(headers["Bg-Score"])
    except (KeyError, ValueError):
        score = None
    return {
        "action": headers["Bg-Action"],
        "score": score,
        "decision_id": headers.get("Bg-Decision-Id", ""),
        "guard": headers.get("Bg-Guard", ""),
    }


TIMEOUTS = (TimeoutError, nats.errors.TimeoutError)  # asyncio's, or nats-py's own
PARTITION_CACHE = 20_000  # records of a partition kept in memory between batches, at most
FIGURES_KEPT = 1_000_000  # the latest decision latencies and batch times kept in the stats


async def pull(sub: Any, batch: int, wait: float = 0.5, count: list[int] | None = None) -> list:
    """Up to ``batch`` messages: what is there at once, else the first to arrive within ``wait``.

    nats-py's ``fetch(batch, timeout)`` on an empty consumer waits for the whole batch or the
    timeout: at a low rate every event would wait ``timeout``. So a short fetch first; if
    nothing came, a long poll for one message, and then what else is there at once. ``count``
    gets one added per pull request sent (a NATS round trip).
    """
    count = count if count is not None else [0]
    count[0] += 1
    with contextlib.suppress(*TIMEOUTS):
        return await sub.fetch(batch, timeout=0.02)
    count[0] += 1
    try:
        msgs = await sub.fetch(1, timeout=wait)
    except TIMEOUTS:
        return []
    if batch > 1:
        count[0] += 1
        with contextlib.suppress(*TIMEOUTS):
            msgs += await sub.fetch(batch - 1, timeout=0.02)
    return msgs


class _Partition:
    """One partition this worker holds: its engine on its own Redis state, its consumer."""

    def __init__(
        self,
        number: int,
        state: RedisState,
        guard: BrokerGuard,
        sub: Any,
        link: StageLink | None = None,
    ) -> None:
        self.number = number
        self.name = str(number)
        self.state = state
        self.guard = guard
        self.sub = sub
        self.link = link  # with a campaign stage: facts out, containment in
        self.epoch: int | None = None  # the last epoch marker passed (campaign stage)
        self.pop_epoch: int | None = None  # the epoch whose shared population counts are in
        self.token = uuid.uuid4().hex[:12]  # this state's, since built from empty (see facts)
        self.backlog: list = []  # fetched, waiting for the campaign stage to finish an epoch
        self.task: asyncio.Task | None = None
        self.seq = ""  # the stream sequence of the last event flushed ("": none yet)
        self._seen: tuple[list | None, int | None] = (None, None)  # what see() last applied

    def see(self, containment: list[Containment]) -> None:
        """Make visible what the campaign stage found in epochs before this partition's (the
        whole output, in the stage's order: a dismissal frees what came before it)."""
        if self.link is None or self.epoch is None:
            return
        if containment is self._seen[0] and self.epoch == self._seen[1]:
            return  # the store returned what it did last time, and the epoch is the same
        epoch = self.epoch
        self.link.see_only(u for u in containment if u.epoch < epoch)
        self._seen = (containment, epoch)

    def save_clock(self, seq: int) -> None:
        """The engine's sweep schedule and zone go with the state: a new owner continues them.

        With them, the stream sequence of the batch's last event: the state in Redis is the
        effect of the partition's events up to there (see :meth:`check`).
        """
        self.state.meta = {**self.guard.clock(), "seq": str(seq)}
        if self.epoch is not None:
            self.state.meta["epoch"] = str(self.epoch)
        if self.pop_epoch is not None:
            self.state.meta["pop_epoch"] = str(self.pop_epoch)
        self.state.meta["token"] = self.token

    def refresh(self, *also: Callable[[Any], int]) -> list[list]:
        """Before a batch: the state in Redis is still what this worker flushed last.

        ``also``: functions that add reads of their own to the same round trip and return how
        many replies they make; their replies are returned, one list each, in order.

        Then the records cached from earlier batches are still true, and the number of
        campaigns (the next campaign's id) and the sweep clock are read again. If another worker
        flushed meanwhile (this one's lease lapsed without its knowing) the partition is given up
        (:class:`LeaseLost`); a worker that lost its lease to one that has not flushed yet
        decides from the same state as the new owner: its output lines are the same, and its
        fenced flush fails, so nothing of it is acknowledged.
        """
        state = self.state
        pipe = state.redis.pipeline(transaction=False)
        pipe.hlen(f"{state.prefix}:campaign")
        pipe.hgetall(f"{state.prefix}:meta")
        sizes = [queue(pipe) for queue in also]
        state.round_trips += 1
        count, raw, *rest = pipe.execute()
        meta = {k.decode(): v.decode() for k, v in raw.items()}
        if meta.get("seq", "") != self.seq:
            raise LeaseLost(f"partition {self.number}: its state in Redis changed under us")
        # the state in Redis is what this worker last flushed: what it has cached is still true
        self.guard.campaigns._count = int(count)
        self.load_clock(meta)
        replies, at = [], 0
        for size in sizes:
            replies.append(rest[at : at + size])
            at += size
        return replies

    def check(self, lease: str, worker: str) -> None:
        """Before writing a batch's records: the lease is ours and the state is what we read.

        Redis that lost its data (or restarted from an older snapshot) during the batch would
        otherwise let records decided from missing state reach the files and PostgreSQL.
        """
        pipe = self.state.redis.pipeline(transaction=False)
        pipe.get(lease)
        pipe.hget(f"{self.state.prefix}:meta", "seq")
        self.state.round_trips += 1
        owner, seq = pipe.execute()
        if owner != worker.encode() or (seq or b"").decode() != self.seq:
            raise LeaseLost(f"partition {self.number}: lease or state lost during the batch")

    def load_clock(self, meta: dict[str, str]) -> None:
        if "token" in meta:
            self.token = meta["token"]
        if "pop_epoch" in meta:
            self.pop_epoch = int(meta["pop_epoch"])
        if "epoch" in meta:
            self.epoch = int(meta["epoch"])
            if self.link is not None:
                self.link.epoch = self.epoch
        self.guard.set_clock(meta)


class StageProgress:
    """How far the campaign stage got, for the partitions waiting on it.

    A stage shard publishes a word on core NATS each time it gets further; the partitions that
    wait look at Redis then, instead of polling it. One read of Redis serves every partition
    woken by the same word. Redis decides, the word only wakes: a read older than ``STALE_S`` is
    done again, so a lost word costs at most that.
    """

    STALE_S = 0.05

    def __init__(self, store: ContainmentStore) -> None:
        self.store = store
        self.words = 0
        self._next = asyncio.Event()  # set (and replaced) by the next word: no lost wake-ups
        self._read: tuple[int, float, int | None] = (-1, 0.0, None)  # (words, when, below)

    async def heard(self, msg: Any) -> None:
        self.words += 1
        word, self._next = self._next, asyncio.Event()
        word.set()

    def next_word(self) -> asyncio.Event:
        return self._next

    def below(self) -> int | None:
        words, at, below = self._read
        now = time.monotonic()
        if words != self.words or now - at >= self.STALE_S:
            below = self.store.below()
            self._read = (self.words, now, below)
        return below


log = logging.getLogger("brokerguard.worker")


@dataclass(frozen=True)
class Unreadable:
    """A message of the stream that is not a valid event (``ingest`` and the service validate
    what they publish, so only a foreign publisher or a damaged store makes one). It is logged
    and passed over: stopping at it would stop its partition for good, since it would be
    delivered again after every restart."""

    error: str


def read_event(data: bytes, partition: int, seq: int) -> Any:
    try:
        return decode_line(data)
    except EventError as exc:
        log.error(
            "partition %s, stream sequence %s: not an event, passed over: %s", partition, seq, exc
        )
        return Unreadable(str(exc))


def append(out: IO[Any], data: Any) -> None:
    """Write ``data`` to an output file and flush it; an ``OSError`` names the file (a full disk
    says only "No space left on device", and the command said it was NATS)."""
    try:
        out.write(data)
        out.flush()
    except OSError as exc:
        if exc.filename is not None:
            raise
        raise OSError(exc.errno, f"cannot write: {exc.strerror}", out.name) from exc


def close_output(out: IO[Any], quiet: bool) -> None:
    """Close an output file. What it could not write raises an ``OSError`` naming the file,
    unless ``quiet``: another error ends the run (the same file failing at :func:`append`,
    whose unwritten lines the close tries again), and that one is said."""
    try:
        out.close()
    except OSError as exc:
        if not quiet:
            raise OSError(exc.errno, f"cannot write: {exc.strerror}", out.name) from exc


async def run_worker(
    nats_url: str,
    redis_url: str,
    *,
    prefix: str = "bg",
    stream: str = DEFAULT_STREAM,
    subject: str = DEFAULT_SUBJECT,
    partitions: int = DEFAULT_PARTITIONS,
    durable: str = "bg-worker",
    batch: int = 500,
    idle_exit: float = 0.0,
    ack_wait: float = 30.0,
    lease_ttl: float = 10.0,
    decisions: Path | None = None,
    campaigns: Path | None = None,
    instructions: Path | None = None,
    max_events: int = 0,
    database: str | None = None,
    metrics: Any = None,
    worker_id: str | None = None,
    policy: Policy | None = None,
    guard_name: str = "brokerguard",
    campaign_stage: bool = False,
    stage_shards: int = 1,
    facts_stream: str = DEFAULT_FACTS_STREAM,
    facts_subject: str = DEFAULT_FACTS_SUBJECT,
    blocklist: BlocklistWatch | None = None,
    blocklist_poll: float = 5.0,
    statement_timeout: float | None = DEFAULT_STATEMENT_TIMEOUT_S,
    stop: asyncio.Event | None = None,
) -> WorkerStats:
    """Consume until stopped (SIGTERM/SIGINT, or ``stop`` set by whoever runs it in their own
    loop), idle for ``idle_exit`` seconds, or ``max_events``.

    The worker takes its share of the partitions (:mod:`.leases`) and consumes each through its
    own durable consumer ``<durable>-<partition>``. ``max_events`` (tests) stops after that many
    events without acknowledging the batch that crossed it and without releasing anything, like
    a crash. ``metrics`` (a :class:`~brokerguard.cluster.metrics.WorkerMetrics`) is updated per
    batch when given. ``policy`` is the policy every partition's engine runs (the shipped one
    when None): the same file as the service's and ``replay --partitions``'s, or the cluster
    decides differently from them. ``blocklist`` (``worker --blocklist FILE``, already loaded)
    replaces the policy's phishing block-list in every partition's engine; the file is checked
    every ``blocklist_poll`` seconds and a new version that reads whole is swapped into every
    engine held (a broken one is logged and the old list kept, see
    :mod:`brokerguard.service.blocklist_watch`).

    ``campaign_stage``: campaigns are left to ``brokerguard campaign-stage`` (one process per
    shard of ``stage_shards``). Each partition's engine sends its facts to the facts stream and
    reads containment from Redis, and an event of epoch ``k`` waits until the stage is done with
    every epoch before ``k`` (:mod:`brokerguard.engine.stage`); the reference is
    ``replay --partitions N --campaign-stage``.
    """
    client = redis.Redis.from_url(redis_url)
    store = ContainmentStore(client, prefix, stage_shards) if campaign_stage else None
    worker = worker_id or new_worker_id()
    leases = Leases(client, prefix, worker, partitions, lease_ttl)
    stats = WorkerStats()
    sink = None
    last_signals: list = []

    def trace(event, signals, decision) -> None:
        last_signals[:] = signals

    if database:
        from brokerguard.cluster.records import RecordSink

        sink = RecordSink(database, statement_timeout=statement_timeout)
    stop = stop if stop is not None else asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
            loop.add_signal_handler(sig, stop.set)
    nc = await connect(nats_url)
    progress = StageProgress(store) if store is not None else None
    if progress is not None:
        await nc.subscribe(progress_subject(facts_subject, "*"), cb=progress.heard)
    out_decisions: IO[str] | None = open(decisions, "a") if decisions else None  # noqa: SIM115
    out_campaigns: IO[str] | None = open(campaigns, "a") if campaigns else None  # noqa: SIM115
    out_instructions: IO[bytes] | None = open(instructions, "ab") if instructions else None  # noqa: SIM115
    if sink is None and out_instructions is None:
        log.warning(
            "worker: no --database and no --instructions file: the engine's instructions "
            "(orders to cancel, sessions to sign out) reach nobody"
        )
    encode_instruction = msgspec.json.Encoder().encode
    held: dict[int, _Partition] = {}
    states: list[RedisState] = []  # the partition states open now (round trips)
    closed_trips = [0]  # ... and the round trips of those closed before
    requests = [0]  # pull requests sent (NATS round trips), idle polls included

    def redis_round_trips() -> int:
        stage = store.round_trips if store is not None else 0  # the campaign stage's view
        open_trips = sum(s.round_trips for s in states)
        return leases.round_trips + open_trips + closed_trips[0] + stage

    js = nc.jetstream()

    async def acked_beyond(p: int, flushed_to: int, ack_floor: int) -> bool:
        """Whether the consumer acknowledged an event of ``p`` after what the state stands for.

        The ack floor of a filtered consumer can stand past its last acknowledged message (over
        other partitions' sequences), so the question is whether a message of the partition
        lies between the state's sequence and the floor.
        """
        if ack_floor <= flushed_to:
            return False
        try:
            nxt = await js.get_msg(stream, seq=flushed_to + 1, subject=f"{subject}.{p}", next=True)
        except nats.js.errors.NotFoundError:
            return False
        return nxt.seq is not None and nxt.seq <= ack_floor

    async def open_partition(p: int) -> _Partition:
        # The partition is this worker's alone while its lease and state sequence hold (checked
        # before every batch), so its records stay cached from one batch to the next.
        state = RedisState(
            redis_url, prefix=f"{prefix}:{p}", client=client, max_cached=PARTITION_CACHE
        )
        state.fence = (leases.key(p), worker)
        states.append(state)
        meta = state.read_meta()
        name = f"{durable}-{p}"
        try:
            info = await js.consumer_info(stream, name)
        except nats.js.errors.NotFoundError:
            info = None
        flushed_to = int(meta.get("seq", 0))
        resume = 0
        if info is not None and await acked_beyond(p, flushed_to, info.ack_floor.stream_seq):
            # Events were acknowledged whose effect is not in Redis: Redis lost its data, or
            # came back from a snapshot older than the acknowledgements. Replay the partition
            # from the start of the stream, from empty state (README, "Redis loss").
            keys = list(client.scan_iter(match=f"{prefix}:{p}:*", count=1000))
            if keys:
                client.delete(*keys)
            meta = {}
            await js.delete_consumer(stream, name)
            stats.rebuilt += 1
        elif info is not None and info.num_ack_pending > 0:
            # The previous holder died (or lost its lease) with messages delivered and not
            # acknowledged. They would come back only after ack_wait, and meanwhile later
            # messages could reach us first (a partial batch leaves room under
            # max_ack_pending): out of order. So the consumer starts again just after its ack
            # floor; what was processed but not acknowledged is skipped as already seen.
            resume = info.ack_floor.stream_seq + 1
            await js.delete_consumer(stream, name)
            stats.resumed += 1
        config = ConsumerConfig(
            durable_name=name,
            filter_subject=f"{subject}.{p}",
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE if resume else DeliverPolicy.ALL,
            opt_start_seq=resume or None,
            ack_wait=ack_wait,
            # back-pressure: at most one batch delivered and not acknowledged per partition
            max_ack_pending=batch,
        )
        sub = await js.pull_subscribe(f"{subject}.{p}", durable=name, stream=stream, config=config)
        link = StageLink(p, emit_market=p == 0) if campaign_stage else None
        listed = blocklist.blocklist if blocklist is not None else None
        guard = BrokerGuard(policy, state=state, name=guard_name, blocklist=listed, stage=link)
        guard.trace = trace
        if link is None:  # the partition raises campaigns itself, under its tag
            guard.campaign_tag = campaign_tag(p, partitions)
        part = _Partition(p, state, guard, sub, link)
        part.load_clock(meta)
        part.seq = meta.get("seq", "")
        stats.acquired += 1
        return part

    async def close_partition(part: _Partition, release: bool) -> None:
        task, part.task = part.task, None
        if task is not None:
            # Let the outstanding pull request end (it expires with its fetch timeout): a request
            # left open on the server would still deliver messages that nobody acknowledges, and
            # the partition would stall for ack_wait. What it brought is given back at once.
            try:
                msgs = await task
            except Exception:
                msgs = []
            for m in msgs:
                await m.nak()
        backlog, part.backlog = part.backlog, []
        for m in backlog:
            with contextlib.suppress(Exception):
                await m.nak()
        with contextlib.suppress(Exception):
            await part.sub.unsubscribe()
        held.pop(part.number, None)
        # forget the state, counting its round trips: kept in ``states``, its cache (up to
        # PARTITION_CACHE records) would stay in memory after every handover
        if part.state in states:
            states.remove(part.state)
            closed_trips[0] += part.state.round_trips
        if release:
            await nc.flush()  # the acks and naks are in before the next owner starts
            leases.release(part.number)
            stats.released += 1

    async def rebalance() -> None:
        live = leases.beat()
        want = leases.desired(live)
        for p in leases.renew(sorted(held)):
            stats.lost += 1
            await close_partition(held[p], release=False)
        for p in sorted(set(held) - want):
            await close_partition(held[p], release=True)
        for p in sorted(want - set(held)):
            if leases.acquire(p):
                held[p] = await open_partition(p)
        if metrics is not None:
            metrics.owned(sorted(held))

    async def process(part: _Partition, msgs: list) -> bool:
        """Run one batch of one partition; False when ``max_events`` cut it (a crash).

        With a campaign stage the batch can stop at an epoch marker the stage has not caught up
        with: what follows waits in the partition's backlog and what came before is finished
        (facts sent, records and state written, acknowledged) as a batch of its own.
        """
        t0 = time.perf_counter()
        c0 = time.process_time()
        stats.first_batch = stats.first_batch or time.time()
        before = stats.events
        waits_before = stats.waits
        state, guard, p, link = part.state, part.guard, part.name, part.link
        markers = [epoch_marker(m.headers) for m in msgs]
        events = [
            None if k is not None else read_event(m.data, part.number, m.metadata.sequence.stream)
            for m, k in zip(msgs, markers, strict=True)
        ]
        real = [e for e in events if e is not None and not isinstance(e, Unreadable)]
        ids = {p: [e.id for e in real]}
        # one round trip: the state is ours, which ids were done, and how far the stage got
        queues = [lambda pipe: state.queue_seen(pipe, ids)]
        if store is not None:
            queues.append(store.queue_progress)
        seen_replies, *stage_replies = part.refresh(*queues)
        done = state.take_seen(ids, seen_replies)
        below: int | None = None
        containment: list[Containment] = []
        if store is not None:
            below, containment = store.read(stage_replies[0][0])
            part.see(containment)
        state.prefetch(wanted(real))
        state.prefetch(held_symbols(state, real))
        lines: list[str] = []
        points: list[int] = []
        instructed: list[Instruction] = []
        announce: list[tuple[int, int]] = []
        taken = 0
        for i, event in enumerate(events):
            if isinstance(event, Unreadable):
                stats.unreadable += 1
                taken = i + 1
                continue
            if event is None:  # an epoch marker
                k = markers[i]
                if link is not None and (part.epoch is None or k > part.epoch):
                    part.epoch = link.epoch = k
                    announce.append((part.number, k))
                    part.see(containment)
                taken = i + 1
                continue
            if link is not None and part.epoch is not None:
                if below is None or below < part.epoch:
                    stats.waits += 1
                    break  # the campaign stage is not done with the epochs before this one
                if part.pop_epoch != part.epoch and store is not None:
                    # the population and infrastructure records kept over all partitions, up
                    # to the epoch before, in place of this partition's
                    shared = store.population(part.epoch - 1)
                    if shared is not None:
                        guard.login.take_population(shared)
                    taken_to = None if part.pop_epoch is None else part.pop_epoch - 1
                    changed = store.entities(taken_to, part.epoch - 1)
                    state.prefetch(("entity", k.decode()) for r in changed for k in r)
                    for records in changed:
                        for key, data in records.items():
                            guard.login.take_entity(key.decode(), decode_entity(data))
                    part.pop_epoch = part.epoch
            taken = i + 1
            if (p, event.id) in done:
                stats.skipped += 1
                continue
            if link is not None:
                link.order = msgs[i].metadata.sequence.stream
            point = decision_point(event)
            if point:
                last_signals.clear()
                d = guard.decide(event)
                answered = inline_decision(msgs[i].headers)
                if sink is not None and answered is None:
                    # an inline answer is already in the tables: the service recorded it
                    tag = campaign_tag(part.number, partitions)
                    sink.decided(guard, event, point, d, list(last_signals), tag)
                line: dict[str, Any] = {"event": event.id, "action": d.action, "score": d.score}
                if answered is not None:
                    line["inline"] = answered
                    stats.inline += 1
                    stats.inline_differ += answered["action"] != d.action
                lines.append(json.dumps(line, separators=(",", ":")))
                points.append(i)
            else:
                guard.observe(event)
            instructed += guard.take_instructions()
            state.mark(p, [event.id])
            done.add((p, event.id))  # a duplicate inside the batch too
            stats.events += 1
            if max_events and stats.events >= max_events:
                return False  # nothing written, nothing acknowledged: as if killed here
        part.backlog = msgs[taken:]
        msgs = msgs[:taken]
        if not msgs:
            return True  # waiting at the first message: nothing to write
        part.check(leases.key(part.number), worker)
        if link is not None:
            # Only after the check: a batch decided from state that another worker changed or
            # Redis lost is given back above, and its facts must not go out — they carry the
            # message ids of the right facts the next owner sends, which JetStream and the
            # stage would then drop as duplicates. A batch that passed the check was decided
            # from the state the next owner starts from, so should its flush still fail, the
            # facts sent are the very ones sent again.
            facts = link.take()
            out = fact_messages(facts, announce, facts_subject, stage_shards, part.token)
            if out:
                acks = [js.publish(subj, body, headers=h) for subj, body, h in out]
                await asyncio.gather(*acks)
                stats.facts += len(facts)
        tag = campaign_tag(part.number, partitions)
        if out_decisions is not None and lines:
            append(out_decisions, "\n".join(lines) + "\n")
        if out_campaigns is not None:
            records = tag_records(guard.campaign_records(), tag)
            append(
                out_campaigns, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
            )
        if out_instructions is not None and instructed:
            append(out_instructions, b"".join(encode_instruction(i) + b"\n" for i in instructed))
        if sink is not None:
            sink.queue_instructions(instructed, guard.name)
            sink.campaigns(guard, tag)
            sink.write()  # before the state: a crash in between only rewrites the same rows
        seq = msgs[-1].metadata.sequence.stream
        part.save_clock(seq)
        state.flush()  # LeaseLost if another worker holds the partition now: nothing acked
        part.seq = str(seq)
        for m in msgs:
            await m.ack()
        await nc.flush()
        acked = stats.last_ack = time.time()
        redelivered = 0
        for i, m in enumerate(msgs):
            meta = m.metadata
            if meta.num_delivered > 1:
                redelivered += 1
            if i in points:
                stats.latencies.append(acked - meta.timestamp.timestamp())
        stats.redelivered += redelivered
        stats.decisions += len(lines)
        stats.batches += 1
        stats.batch_seconds.append(time.perf_counter() - t0)
        stats.busy += stats.batch_seconds[-1]
        stats.cpu += time.process_time() - c0
        stats.nats_round_trips = requests[0] + stats.batches  # the pulls, an ack flush a batch
        count = sum(1 for e in events[:taken] if e is not None and not isinstance(e, Unreadable))
        stats.partitions[part.number] = stats.partitions.get(part.number, 0) + count
        stats.redis_round_trips = redis_round_trips()
        if metrics is not None:
            metrics.batch(
                part.number,
                stats.events - before,
                stats.latencies[len(stats.latencies) - len(points) :],
                stats.batch_seconds[-1],
                redelivered,
                msgs[-1].metadata.num_pending,
                stats.waits - waits_before,
            )
        # a worker runs for weeks: the per-decision figures (for the bench's final percentiles)
        # keep only the latest, or they would grow by every decision it ever made
        for figures in (stats.latencies, stats.batch_seconds):
            if len(figures) > 2 * FIGURES_KEPT:
                del figures[:-FIGURES_KEPT]
        return True

    async def wait_for_stage(part: _Partition, most: float = 0.5) -> list:
        """The backlog, once the campaign stage is done with the epochs before the partition's;
        nothing (the backlog kept) after ``most`` seconds, to let the loop beat and stop."""
        assert progress is not None
        give_up = time.monotonic() + most
        while True:
            word = progress.next_word()  # taken before reading: a later word wakes us
            below = progress.below()
            if below is not None and part.epoch is not None and below >= part.epoch:
                msgs, part.backlog = part.backlog, []
                return msgs
            left = give_up - time.monotonic()
            if left <= 0:
                break
            # woken by the stage's word; a lost word (core NATS) costs at most STALE_S
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(word.wait(), timeout=min(StageProgress.STALE_S, left))
        if time.monotonic() - part_progress.get(part.number, 0.0) > ack_wait / 3:
            for m in part.backlog:  # still waiting: not to be redelivered meanwhile
                with contextlib.suppress(Exception):
                    await m.in_progress()
            part_progress[part.number] = time.monotonic()
        return []

    part_progress: dict[int, float] = {}
    graceful = False  # only a stop, an idle exit or the end releases the partitions
    try:
        await ensure_stream(js, stream, subject, partitions)
        if campaign_stage:
            await ensure_facts_stream(js, facts_stream, facts_subject)
        idle_since = time.monotonic()
        next_beat = 0.0
        next_poll = time.monotonic() + blocklist_poll
        while not stop.is_set():
            now = time.monotonic()
            if now >= next_beat:
                owned = set(held)
                await rebalance()
                if set(held) - owned:
                    # opening a partition (its state read, its consumer made) is work, not
                    # idleness: on a busy machine it took the whole idle time, and the worker
                    # left with its partitions unread when their first fetch came back empty
                    idle_since = time.monotonic()
                next_beat = now + lease_ttl / 3
            if blocklist is not None and now >= next_poll:
                fresh = await asyncio.to_thread(blocklist.check)
                for part in held.values() if fresh is not None else ():
                    part.guard.set_blocklist(fresh)
                next_poll = now + blocklist_poll
            wake = min(next_beat, next_poll) if blocklist is not None else next_beat
            for part in held.values():
                if part.task is None and part.backlog:
                    part.task = asyncio.create_task(wait_for_stage(part))
                elif part.task is None:
                    part.task = asyncio.create_task(pull(part.sub, batch, count=requests))
            if not held:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), max(0.01, wake - now))
                if idle_exit and time.monotonic() - idle_since >= idle_exit:
                    break
                continue
            tasks = {part.task for part in held.values() if part.task is not None}
            done, _ = await asyncio.wait(
                tasks,
                timeout=max(0.01, wake - time.monotonic()),
                return_when=asyncio.FIRST_COMPLETED,
            )
            worked = False
            for part in list(held.values()):
                task = part.task
                if task is None or task not in done:
                    continue
                part.task = None
                try:
                    msgs = task.result()
                except TIMEOUTS:
                    msgs = []
                if not msgs:
                    continue
                try:
                    if not await process(part, msgs):
                        return stats
                except LeaseLost:
                    # another worker holds it, or Redis lost (part of) its state: give back the
                    # batch at once; the partition is taken again (and checked) at the next beat
                    stats.lost += 1
                    if sink is not None:
                        # the batch's decisions, queued as it ran, were decided from a state
                        # that may be gone: left queued, the next batch of another partition
                        # would write them, and the redone batch's rows be dropped as known
                        sink.discard()
                    for m in msgs:
                        await m.nak()
                    await close_partition(part, release=False)
                    leases.release(part.number)  # if it is still ours
                    next_beat = 0.0
                    continue
                worked = True
            if worked or any(part.backlog for part in held.values()):
                idle_since = time.monotonic()  # waiting for the campaign stage is not idle
            elif idle_exit and time.monotonic() - idle_since >= idle_exit:
                break
        graceful = True
        return stats
    finally:
        if graceful:
            for part in list(held.values()):
                with contextlib.suppress(Exception):
                    await close_partition(part, release=True)
            with contextlib.suppress(Exception):
                leases.leave()
        tasks = [part.task for part in held.values() if part.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        stats.redis_round_trips = redis_round_trips()
        await nc.close()
        client.close()
        if sink is not None:
            sink.close()
        for f in (out_decisions, out_campaigns, out_instructions):
            if f is not None:
                close_output(f, quiet=not graceful)
