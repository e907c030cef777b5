"""``brokerguard campaign-stage``: one shard of the campaign stage, on the facts stream.

It consumes ``<facts subject>.<shard>`` (:mod:`.facts`) through the durable consumer
``<durable>-<shard>`` and keeps, per epoch, the facts not yet processed. When every account
partition has announced an epoch later than some buffered ones, it

1. runs those epochs' facts, each epoch in stream order, through its
   :class:`~brokerguard.engine.stage.CampaignStage` (state in Redis under
   ``<prefix>:stage:<shard>:``);
2. checks that the shard is still its own — its lock and the state it read, the fence its flush
   is under — else it gives the advance back, writing nothing of it;
3. writes the campaign lines to ``--campaigns`` and, given a database, the campaigns to the
   service's tables (ids are the stage's own, so a rerun rewrites the same rows);
4. writes the containment found and how far it got to Redis (:class:`.facts.ContainmentStore`,
   containment first: ``HSETNX``, so a rerun changes nothing), which the workers wait on; shard
   0 also deletes what dismissals lifted once no partition can need it (:func:`.facts.lifted`);
5. flushes its state (with 4, the announcements and its progress: one transaction fenced on
   the lock), and only then acknowledges.

A stage killed anywhere before 5 has its messages redelivered and processes the same epochs
again from the state before them, deciding the same. An advance decided from a state that
Redis lost, or after another process took the shard, is given back at 2: its campaigns, decided
from records that were gone, are no campaigns the shard raises (a new id for a symbol already
under one, say), and a line or row of theirs would stay beside the right ones.

One process holds a shard at a time (a lock in Redis with a heartbeat; the state flush is fenced
on it), so a second process per shard is a hot standby that takes over after ``lease_ttl``,
restarting the consumer just after its ack floor.
If Redis loses the shard's state, the shard replays its facts from the start of the stream (and
the workers, which lose theirs too, replay their partitions): the same campaigns again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import msgspec
import nats
import redis
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from brokerguard.cluster.facts import (
    ANNOUNCE_HEADER,
    DEFAULT_FACTS_STREAM,
    DEFAULT_FACTS_SUBJECT,
    ContainmentStore,
    ensure_facts_stream,
    progress_subject,
)
from brokerguard.cluster.leases import Lock, new_worker_id
from brokerguard.cluster.stream import DEFAULT_PARTITIONS, connect
from brokerguard.cluster.worker import TIMEOUTS, append, close_output, pull
from brokerguard.engine import Policy
from brokerguard.engine.policy import load_policy
from brokerguard.engine.stage import CampaignStage, Containment, Fact
from brokerguard.service.db import DEFAULT_STATEMENT_TIMEOUT_S
from brokerguard.stores.redis import LeaseLost, RedisState

__all__ = ["StageStats", "run_campaign_stage"]

_decode_fact = msgspec.json.Decoder(Fact).decode


log = logging.getLogger("brokerguard.stage")


@dataclass
class StageStats:
    facts: int = 0  # facts processed (duplicates not counted)
    duplicates: int = 0  # facts sent again (a worker redid a batch) and dropped
    unreadable: int = 0  # messages that are no fact nor announcement (logged, passed over)
    epochs: int = 0  # epochs processed
    containment: int = 0  # keys that came under a campaign
    campaign_lines: int = 0
    cpu: float = 0.0
    taken: int = 0  # times this process took the shard (at start, after another's death)
    lost: int = 0  # times it found the shard taken, or its state gone, mid-run
    rebuilt: int = 0  # times the shard's state was gone and its facts were replayed
    pruned: int = 0  # containment changes a dismissal lifted, deleted from Redis (shard 0)
    wait_for: list[int] = field(default_factory=list)  # partitions not heard from (last look)

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


class StageLost(Exception):
    """Another process holds the shard now, or Redis lost the shard's state: start again."""


class _Shard:
    """One shard while this process holds it: state, buffered facts, what to acknowledge."""

    def __init__(self, cfg: _Config, client: redis.Redis, stats: StageStats, owner: str) -> None:
        self.cfg = cfg
        self.stats = stats
        self.state = RedisState(cfg.redis_url, prefix=cfg.state_prefix, client=client)
        self.owner = owner
        self.state.fence = (cfg.lock_key, owner)  # a flush only while the shard is ours
        meta = self.state.read_meta()
        self.stage = CampaignStage(self.state, cfg.policy.detectors, cfg.shard, cfg.shards)
        self.stage.next_sweep = float(meta.get("next_sweep", 0.0))
        self.below: int | None = int(meta["below"]) if "below" in meta else None
        # partition -> token of its state -> the latest epoch it announced
        self.announced: dict[int, dict[str, int]] = {
            int(p): dict(by_token)
            for p, by_token in json.loads(meta.get("announced", "{}")).items()
        }
        self.tokens: dict[int, str] = {}  # each partition's state now in Redis (last look)
        self.epochs: dict[int, int] = {}  # ... and the epoch that state stands in
        # Epochs with a dismissal whose lifted containment may still be in Redis (shard 0
        # prunes it for every shard: each hears every dismissal); -1: whatever was left before
        # this process took the shard.
        self.dismissed: list[int] = [-1] if cfg.shard == 0 else []
        self.store = ContainmentStore(client, cfg.prefix, cfg.shards)
        self.buffer: dict[int, dict[tuple[int, int], Fact]] = defaultdict(dict)
        self.waiting: dict[int, list] = defaultdict(list)  # epoch -> its facts' messages
        self.heard: list = []  # announcements and duplicates, acknowledged at the next flush

    def ready(self) -> int | None:
        """The epoch below which every partition has sent all its facts (None: not yet).

        Only announcements of the partitions' states now in Redis count: after Redis lost
        its data the stream still holds the old states' announcements, and counting those would
        run this shard ahead of the partitions being rebuilt.
        """
        parts = range(self.cfg.partitions)
        pipe = self.state.redis.pipeline(transaction=False)
        for p in parts:
            pipe.hmget(f"{self.cfg.prefix}:{p}:meta", "token", "epoch")
        metas = dict(zip(parts, pipe.execute(), strict=True))
        self.tokens = {p: t.decode() for p, (t, _) in metas.items() if t}
        self.epochs = {p: int(k) for p, (t, k) in metas.items() if t and k}
        said = {p: self.announced.get(p, {}).get(self.tokens[p]) for p in parts if p in self.tokens}
        self.stats.wait_for = [p for p in parts if said.get(p) is None]
        if self.stats.wait_for:
            return None
        return min(k for k in said.values() if k is not None)

    def settled(self) -> bool:
        """Every partition heard from and nothing buffered: no worker waits on this shard."""
        return not self.stats.wait_for and not any(self.buffer.values()) and self.below is not None

    def take(self, msgs: list) -> None:
        for m in msgs:
            try:
                if m.headers and ANNOUNCE_HEADER in m.headers:
                    said = json.loads(m.data)
                    p, k = int(said["partition"]), int(said["epoch"])
                    token = str(said.get("token", ""))
                    by_token = self.announced.setdefault(p, {})
                    by_token[token] = max(by_token.get(token, k), k)
                    self.heard.append(m)
                    continue
                fact = _decode_fact(m.data)
            except (ValueError, KeyError, TypeError, msgspec.DecodeError) as exc:
                # only the workers publish here; anything else is logged and passed over
                # rather than stopping the shard (it would come again after every restart)
                log.error(
                    "shard %s: a message that is no fact, passed over: %s", self.cfg.shard, exc
                )
                self.stats.unreadable += 1
                self.heard.append(m)
                continue
            old = self.below is not None and fact.epoch < self.below
            if old or fact.id in self.buffer[fact.epoch]:
                self.stats.duplicates += 1
                self.heard.append(m)
                continue
            self.buffer[fact.epoch][fact.id] = fact
            self.waiting[fact.epoch].append(m)

    def horizon(self) -> int | None:
        """The epoch no reader of the containment will ever be before again (None: unknown).

        A partition's view at epoch ``k`` is built from the changes before ``k``; no partition's
        state stands before the lowest of their epochs (a worker that redoes a batch starts
        from the state in Redis), and every shard is done with the epochs before the lowest
        ``below``, so nothing is written before it any more. A partition rebuilt from the
        start of the stream after Redis lost its data finds the containment gone as well: the
        stages replay theirs with it.
        """
        if len(self.epochs) < self.cfg.partitions:
            return None
        below = self.store.below()
        if below is None:
            return None
        return min(below, *self.epochs.values())

    def check(self) -> None:
        """The shard is still this process's: the lock holds its id (the fence of the state
        flush) and the state in Redis is the one it last flushed. Before an advance reads
        anything, and again before anything of it leaves the stage."""
        pipe = self.state.redis.pipeline(transaction=False)
        pipe.get(self.cfg.lock_key)
        pipe.hget(f"{self.cfg.state_prefix}:meta", "below")
        self.state.round_trips += 1
        held, stored = pipe.execute()
        if held != self.owner.encode():
            raise StageLost(f"shard {self.cfg.shard}: its lock is no longer this process's")
        mine = None if self.below is None else str(self.below)
        if (stored.decode() if stored else None) != mine:
            raise StageLost(f"shard {self.cfg.shard}: its state in Redis changed under us")

    def advance(self, new_below: int, out: IO[str] | None, sink: Any) -> list:
        """Process every complete epoch; returns the messages to acknowledge."""
        stats, stage, state = self.stats, self.stage, self.state
        self.check()
        updates: list[Containment] = []
        done: list = []
        populations = []
        entities: list[tuple[int, dict[str, bytes]]] = []
        for epoch in sorted(e for e in self.buffer if e < new_below):
            facts = self.buffer.pop(epoch)
            state.prefetch(_wanted(facts.values()))
            updates += stage.process(facts.values(), epoch)
            if stage.population_changed:
                stage.population_changed = False
                # encoded now: the next epoch goes on counting in the same record
                populations.append((epoch, msgspec.msgpack.encode(stage.population())))
            changed = stage.changed_entities()
            if changed:
                entities.append((epoch, changed))
            if self.cfg.shard == 0 and any(f.kind == "dismiss" for f in facts.values()):
                self.dismissed.append(epoch)
            stats.facts += len(facts)
            stats.epochs += 1
            done += self.waiting.pop(epoch, [])
        lines = list(stage.records(_iso))
        if sink is not None:
            sink.campaigns(stage, merge=self.cfg.shards > 1)  # queued: written below
        # What dismissals lifted is deleted once no reader can need it, with the state (a
        # stage that lost the shard deletes nothing): the hash keeps what is contained now.
        horizon = self.horizon() if self.dismissed else None
        lifted: list[bytes] = []
        if horizon is not None and any(e < horizon for e in self.dismissed):
            lifted = self.store.lifted(horizon)
        # Everything is decided (the records read): is the shard still ours? Redis may have
        # lost the state since the check above, or another process taken the lock, and what
        # was read from then on was missing or another's. Nothing has left the stage yet: the
        # advance is given back (StageLost) and its facts come again to whoever holds the
        # shard. An advance that passes was decided from the state the next holder starts
        # from, so should its flush still fail, what it wrote is what the next one writes.
        self.check()
        if out is not None and lines:
            append(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in lines))
        stats.campaign_lines += len(lines)
        if sink is not None:
            sink.write()
        # The output goes with the state, in one transaction fenced on the shard's lock: a
        # stage that lost the shard (or whose Redis lost its data) writes none of it.
        shard = self.cfg.shard
        state.also.append(
            lambda pipe: self.store.queue(pipe, shard, updates, new_below, populations, entities)
        )
        if lifted:
            state.also.append(lambda pipe: self.store.queue_prune(pipe, lifted))
        for p, by_token in self.announced.items():  # older states' announcements are done
            keep = self.tokens.get(p)
            for token in [t for t in by_token if t != keep and keep is not None]:
                del by_token[token]
        state.meta = {
            "below": str(new_below),
            "announced": json.dumps(self.announced),
            "next_sweep": repr(stage.next_sweep),
        }
        try:
            state.flush()
        except LeaseLost as exc:
            raise StageLost(str(exc)) from None
        self.store.prune()
        if horizon is not None:
            self.dismissed = [e for e in self.dismissed if e >= horizon]
            stats.pruned += len(lifted)
        stats.containment += len(updates)
        self.below = new_below
        done += self.heard
        self.heard = []
        return done


@dataclass
class _Config:
    redis_url: str
    prefix: str
    shard: int
    shards: int
    partitions: int
    policy: Policy

    @property
    def state_prefix(self) -> str:
        return f"{self.prefix}:stage:{self.shard}"

    @property
    def lock_key(self) -> str:
        return f"{self.prefix}:stage:{self.shard}:owner"


async def run_campaign_stage(
    nats_url: str,
    redis_url: str,
    *,
    shard: int = 0,
    shards: int = 1,
    partitions: int = DEFAULT_PARTITIONS,
    prefix: str = "bg",
    facts_stream: str = DEFAULT_FACTS_STREAM,
    facts_subject: str = DEFAULT_FACTS_SUBJECT,
    durable: str = "bg-stage",
    batch: int = 1000,
    ack_wait: float = 300.0,
    lease_ttl: float = 10.0,
    idle_exit: float = 0.0,
    campaigns: Path | None = None,
    database: str | None = None,
    policy: Policy | None = None,
    statement_timeout: float | None = DEFAULT_STATEMENT_TIMEOUT_S,
    metrics: Any = None,
    stop: asyncio.Event | None = None,
) -> StageStats:
    """Hold the shard and consume its facts until stopped (SIGTERM/SIGINT, or ``stop`` set by
    whoever runs it in their own loop) or idle.

    One process holds a shard at a time (a lock in Redis, renewed every ``lease_ttl / 3``);
    another started on the same shard waits as a hot standby and takes over ``lease_ttl`` after
    the holder dies. Idle (``idle_exit`` seconds without a fact) counts only when every
    partition has been heard from and nothing is buffered: a stage never leaves workers waiting
    for an epoch it holds facts of. ``metrics`` (a
    :class:`~brokerguard.cluster.metrics.StageMetrics`) is updated as it goes.
    """
    cfg = _Config(redis_url, prefix, shard, shards, partitions, policy if policy else load_policy())
    client = redis.Redis.from_url(redis_url)
    owner = new_worker_id()
    stats = StageStats()
    sink = None
    if database:
        from brokerguard.cluster.records import RecordSink

        sink = RecordSink(database, statement_timeout=statement_timeout)
    out: IO[str] | None = open(campaigns, "a") if campaigns else None  # noqa: SIM115
    stop = stop if stop is not None else asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    nc = await connect(nats_url)
    js = nc.jetstream()
    name = f"{durable}-{shard}"
    lock = Lock(client, cfg.lock_key, owner, lease_ttl)  # hold(): take it, or renew it if ours

    async def subscribe(part: _Shard) -> Any:
        """The shard's consumer, restarted where what is in Redis needs it to start."""
        try:
            info = await js.consumer_info(facts_stream, name)
        except nats.js.errors.NotFoundError:
            info = None
        resume = 0
        if info is not None and part.below is None and info.ack_floor.stream_seq > 0:
            # Facts were acknowledged, but the state they went into is not in Redis (Redis lost
            # its data): replay the shard's facts from the start of the stream, from empty.
            keys = list(client.scan_iter(match=f"{cfg.state_prefix}:*", count=1000))
            keys = [k for k in keys if k != cfg.lock_key.encode()]
            if keys:
                client.delete(*keys)
            await js.delete_consumer(facts_stream, name)
            stats.rebuilt += 1
        elif info is not None and info.num_ack_pending > 0:
            # The previous holder died holding facts it had not processed: they would come
            # back only after ack_wait. Start again just after the ack floor; what of that was
            # processed already is dropped (epochs below ``below``) or is the same again.
            resume = info.ack_floor.stream_seq + 1
            await js.delete_consumer(facts_stream, name)
        config = ConsumerConfig(
            durable_name=name,
            filter_subject=f"{facts_subject}.{shard}",
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE if resume else DeliverPolicy.ALL,
            opt_start_seq=resume or None,
            ack_wait=ack_wait,
            # the facts of the epochs not yet complete stay unacknowledged: no limit, or the
            # announcements that complete them could never be delivered
            max_ack_pending=-1,
        )
        return await js.pull_subscribe(
            f"{facts_subject}.{shard}", durable=name, stream=facts_stream, config=config
        )

    stopped = False  # the run ended by itself (an idle exit, a signal), not by an error
    try:
        await ensure_facts_stream(js, facts_stream, facts_subject)
        idle_since = time.monotonic()
        while not stop.is_set():
            if metrics is not None:
                metrics.holding.set(0)
            if not lock.hold():  # standby
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), lease_ttl / 3)
                continue
            stats.taken += 1
            if metrics is not None:
                metrics.holding.set(1)
            part = _Shard(cfg, client, stats, owner)
            sub = await subscribe(part)
            next_beat = time.monotonic() + lease_ttl / 3
            part.ready()
            try:
                while not stop.is_set():
                    if time.monotonic() >= next_beat:
                        if not lock.hold():
                            raise StageLost(f"shard {shard}: the lock was taken")
                        # a Redis that lost its data is noticed here even when no fact comes
                        # (the workers' replayed facts are duplicates JetStream drops)
                        part.check()
                        next_beat = time.monotonic() + lease_ttl / 3
                    try:
                        msgs = await pull(sub, batch)
                    except TIMEOUTS:
                        msgs = []
                    before = (stats.facts, stats.epochs, stats.duplicates)
                    if msgs:
                        idle_since = time.monotonic()
                        part.take(msgs)
                    # also when nothing came: a partition's state (its token) may have reached
                    # Redis after its announcement reached us
                    target = part.ready()
                    if not msgs and (target is None or target == part.below):
                        quiet = time.monotonic() - idle_since >= idle_exit
                        if idle_exit and part.settled() and quiet:
                            stop.set()
                        continue
                    if target is not None and (part.below is None or target > part.below):
                        c0 = time.process_time()
                        acks = part.advance(target, out, sink)
                        for m in acks:
                            await m.ack()
                        await nc.publish(progress_subject(facts_subject, shard), b"%d" % target)
                        await nc.flush()
                        stats.cpu += time.process_time() - c0
                    if metrics is not None:
                        metrics.facts.inc(stats.facts - before[0])
                        metrics.epochs.inc(stats.epochs - before[1])
                        metrics.duplicates.inc(stats.duplicates - before[2])
                        if part.below is not None:
                            metrics.below.set(part.below)
                        if msgs:
                            metrics.lag.set(msgs[-1].metadata.num_pending)
            except StageLost:
                # the advance is given back: what it queued for the tables goes too
                stats.lost += 1
                if sink is not None:
                    sink.discard()
            finally:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
        stopped = True
        return stats
    finally:
        with contextlib.suppress(Exception):
            lock.release()  # a clean stop hands over at once
        await nc.close()
        client.close()
        if sink is not None:
            sink.close()
        if out is not None:
            close_output(out, quiet=not stopped)


def _wanted(facts) -> list[tuple[str, str]]:
    """The records an epoch's facts will touch (read from Redis in one round trip)."""
    wanted: list[tuple[str, str]] = [("population", "all")]
    for fact in facts:
        if fact.symbol:
            wanted.append(("symbol", fact.symbol))
        if fact.kind in ("risky", "clear"):
            wanted += [("entity", key) for key in fact.keys]
        if fact.campaign:
            wanted.append(("campaign", fact.campaign))
    return wanted
