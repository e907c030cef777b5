"""``brokerguard campaign-stage``: one shard of the campaign stage, on the facts stream.

It consumes ``<facts subject>.<shard>`` (:mod:`.facts`) through the durable consumer
``<durable>-<shard>`` and keeps, per epoch, the facts not yet processed. When every account
partition has announced an epoch later than some buffered ones, it

1. runs those epochs' facts, each epoch in stream order, through its
   :class:`~brokerguard.engine.stage.CampaignStage` (state in Redis under
   ``<prefix>:stage:<shard>:``);
2. writes the campaign lines to ``--campaigns`` and, given a database, the campaigns to the
   service's tables (ids are the stage's own, so a rerun rewrites the same rows);
3. writes the containment found and how far it got to Redis (:class:`.facts.ContainmentStore`,
   containment first: ``HSETNX``, so a rerun changes nothing), which the workers wait on;
4. flushes its state with the announcements and its progress, and only then acknowledges.

A stage killed anywhere before 4 has its messages redelivered (after ``ack_wait``) and processes
the same epochs again from the state before them, deciding the same. Run one process per shard
(under systemd it is restarted); two processes on one shard would process the same facts twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
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
)
from brokerguard.cluster.stream import DEFAULT_PARTITIONS
from brokerguard.cluster.worker import TIMEOUTS, pull
from brokerguard.engine import Policy
from brokerguard.engine.policy import load_policy
from brokerguard.engine.stage import CampaignStage, Containment, Fact
from brokerguard.stores.redis import RedisState

__all__ = ["StageStats", "run_campaign_stage"]

_decode_fact = msgspec.json.Decoder(Fact).decode


@dataclass
class StageStats:
    facts: int = 0  # facts processed (duplicates not counted)
    duplicates: int = 0  # facts sent again (a worker redid a batch) and dropped
    epochs: int = 0  # epochs processed
    containment: int = 0  # keys that came under a campaign
    campaign_lines: int = 0
    cpu: float = 0.0
    wait_for: list[int] = field(default_factory=list)  # partitions not heard from (last look)

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


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
    idle_exit: float = 0.0,
    campaigns: Path | None = None,
    database: str | None = None,
    policy: Policy | None = None,
) -> StageStats:
    """Consume the shard's facts until stopped (SIGTERM/SIGINT) or idle for ``idle_exit`` s.

    Idle means: no fact for that long, every partition heard from, and nothing buffered — a
    stage never leaves workers waiting for an epoch it holds facts of.
    """
    policy = policy if policy is not None else load_policy()
    client = redis.Redis.from_url(redis_url)
    state = RedisState(redis_url, prefix=f"{prefix}:stage:{shard}", client=client)
    meta = state.read_meta()
    stage = CampaignStage(state, policy.detectors, shard, shards)
    stage.next_sweep = float(meta.get("next_sweep", 0.0))
    below: int | None = int(meta["below"]) if "below" in meta else None
    announced: dict[int, int] = {
        int(p): k for p, k in json.loads(meta.get("announced", "{}")).items()
    }
    store = ContainmentStore(client, prefix, shards)
    stats = StageStats()
    sink = None
    if database:
        from brokerguard.cluster.records import RecordSink

        sink = RecordSink(database)
    out: IO[str] | None = open(campaigns, "a") if campaigns else None  # noqa: SIM115
    buffer: dict[int, dict[tuple[int, int], Fact]] = defaultdict(dict)
    waiting: dict[int, list] = defaultdict(list)  # epoch -> its facts' messages, unacknowledged
    heard: list = []  # announcements (and duplicates) to acknowledge at the next flush
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    nc = await nats.connect(nats_url)
    js = nc.jetstream()

    def ready() -> int | None:
        """The epoch below which every partition has sent all its facts (None: not yet)."""
        stats.wait_for = [p for p in range(partitions) if p not in announced]
        if stats.wait_for:
            return None
        return min(announced[p] for p in range(partitions))

    async def advance(new_below: int) -> None:
        nonlocal below
        c0 = time.process_time()
        updates: list[Containment] = []
        done: list = []
        for epoch in sorted(e for e in buffer if e < new_below):
            facts = buffer.pop(epoch)
            state.prefetch(_wanted(facts.values()))
            updates += stage.process(facts.values(), epoch)
            stats.facts += len(facts)
            stats.epochs += 1
            done += waiting.pop(epoch, [])
        lines = list(stage.records(_iso))
        if out is not None and lines:
            out.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in lines))
            out.flush()
        stats.campaign_lines += len(lines)
        if sink is not None:
            sink.campaigns(stage)
            sink.write()
        store.write(shard, updates, new_below)
        stats.containment += len(updates)
        state.meta = {
            "below": str(new_below),
            "announced": json.dumps(announced),
            "next_sweep": repr(stage.next_sweep),
        }
        state.flush()
        below = new_below
        for m in done + heard:
            await m.ack()
        heard.clear()
        await nc.flush()
        stats.cpu += time.process_time() - c0

    try:
        await ensure_facts_stream(js, facts_stream, facts_subject)
        name = f"{durable}-{shard}"
        try:
            info = await js.consumer_info(facts_stream, name)
        except nats.js.errors.NotFoundError:
            info = None
        resume = 0
        if info is not None and info.num_ack_pending > 0:
            # A previous stage died holding facts it had not processed: they would come back
            # only after ack_wait. Start again just after the ack floor; what of it was
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
        sub = await js.pull_subscribe(
            f"{facts_subject}.{shard}", durable=name, stream=facts_stream, config=config
        )
        idle_since = time.monotonic()
        ready()  # who is not heard from yet
        while not stop.is_set():
            try:
                msgs = await pull(sub, batch)
            except TIMEOUTS:
                msgs = []
            if not msgs:
                # idle: every partition heard from, nothing waiting (workers may wait on us)
                settled = not stats.wait_for and not any(buffer.values()) and below is not None
                if idle_exit and settled and time.monotonic() - idle_since >= idle_exit:
                    break
                continue
            idle_since = time.monotonic()
            for m in msgs:
                if m.headers and ANNOUNCE_HEADER in m.headers:
                    said = json.loads(m.data)
                    p, k = int(said["partition"]), int(said["epoch"])
                    announced[p] = max(announced.get(p, k), k)
                    heard.append(m)
                    continue
                fact = _decode_fact(m.data)
                if below is not None and fact.epoch < below or fact.id in buffer[fact.epoch]:
                    stats.duplicates += 1
                    heard.append(m)
                    continue
                buffer[fact.epoch][fact.id] = fact
                waiting[fact.epoch].append(m)
            target = ready()
            if target is not None and (below is None or target > below):
                await advance(target)
        return stats
    finally:
        if out is not None:
            out.close()
        await nc.close()
        client.close()
        if sink is not None:
            sink.close()


def _wanted(facts) -> list[tuple[str, str]]:
    """The records an epoch's facts will touch (read from Redis in one round trip)."""
    wanted: list[tuple[str, str]] = []
    for fact in facts:
        if fact.symbol:
            wanted.append(("symbol", fact.symbol))
        wanted += [("entity", key) for key in fact.keys]
        if fact.campaign:
            wanted.append(("campaign", fact.campaign))
    return wanted
