"""A worker: a durable pull consumer on the event stream, the engine on Redis state.

For each batch fetched from JetStream the worker

1. asks Redis which of the batch's event ids its partitions already processed (one round trip)
   and skips those — a redelivered event changes no state twice and decides nothing twice — and
   reads the records the rest will need (two more round trips: what the events name, then the
   symbols their accounts hold);
2. runs the rest through the engine (:class:`~brokerguard.engine.guard.BrokerGuard` on
   :class:`~brokerguard.stores.redis.RedisState`), in stream order;
3. writes the decisions and campaign lines it produced (to ``decisions`` / ``campaigns`` files,
   appended, one JSON object per line) and, given a database, the decisions, alerts and
   campaigns to the service's tables (:mod:`.records`: ids derived from event ids, so a
   redelivered batch adds no row twice);
4. flushes the state and the processed ids to Redis in one MULTI/EXEC;
5. only then acknowledges the batch.

A worker killed anywhere before 5 has its batch redelivered (after ``ack_wait``) to whichever
worker consumes the partitions next. If it died after 3 but before 4, the redelivered events are
processed again from the state before them, so they decide the same again: the output files can
then hold a line twice with the same content (readers keep one line per event id); if it died
after 4, the ids are in Redis and the events are skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import nats
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from brokerguard.cluster.stream import DEFAULT_STREAM, DEFAULT_SUBJECT, ensure_stream
from brokerguard.engine import BrokerGuard
from brokerguard.events import ChallengeResult, decode_line
from brokerguard.guard import decision_point
from brokerguard.stores.redis import RedisState

__all__ = ["WorkerStats", "run_worker"]


@dataclass
class WorkerStats:
    events: int = 0  # processed (not counting skipped redeliveries)
    skipped: int = 0  # redelivered events already processed
    decisions: int = 0
    batches: int = 0
    started: float = field(default_factory=time.perf_counter)
    busy: float = 0.0  # seconds from a batch's arrival to its acknowledgement
    batch_seconds: list[float] = field(default_factory=list)  # each batch, arrival to ack
    cpu: float = 0.0  # this process's CPU seconds in batches (fetch wait excluded)
    redis_round_trips: int = 0
    nats_round_trips: int = 0  # a fetch and a flush of the acks per batch


def held(state: RedisState, events: list[Any]) -> Iterator[tuple[str, str]]:
    """The symbols the batch's accounts hold (an order values the holdings of its account)."""
    accounts = state.records["account"]
    for account in {getattr(e, "account", None) for e in events}:
        acc = accounts.get(account) if account is not None else None
        if acc is not None:
            for key in acc.positions:
                yield "symbol", key


def wanted(events: list[Any]) -> Iterator[tuple[str, str]]:
    """The records a batch's events will read, as far as the event alone tells."""
    for event in events:
        account = getattr(event, "account", None)
        if account is not None:
            yield "account", account
        session = getattr(event, "session", None)
        if session:
            yield "session", session
        symbol = getattr(event, "symbol", None)
        if symbol is not None:
            yield "symbol", f"{event.market}:{symbol}"
        ip = getattr(event, "ip", None)
        if ip:
            yield "entity", f"ip:{ip}"  # the address's shared-infrastructure record
        if isinstance(event, ChallengeResult):
            yield "pending", event.ref


async def run_worker(
    nats_url: str,
    redis_url: str,
    *,
    prefix: str = "bg",
    stream: str = DEFAULT_STREAM,
    subject: str = DEFAULT_SUBJECT,
    durable: str = "bg-worker",
    batch: int = 500,
    idle_exit: float = 0.0,
    ack_wait: float = 30.0,
    decisions: Path | None = None,
    campaigns: Path | None = None,
    max_events: int = 0,
    database: str | None = None,
) -> WorkerStats:
    """Consume until stopped (SIGTERM/SIGINT), idle for ``idle_exit`` seconds, or ``max_events``.

    Every worker with the same ``durable`` name shares one consumer: JetStream hands each batch
    to one of them. ``max_events`` (tests) stops after that many events without acknowledging
    the batch that crossed it, like a crash.
    """
    state = RedisState(redis_url, prefix=prefix)
    guard = BrokerGuard(state=state)
    stats = WorkerStats()
    sink = None
    if database:
        from brokerguard.cluster.records import RecordSink

        sink = RecordSink(database, guard)
        last_signals: list = []

        def trace(event, signals, decision) -> None:
            last_signals[:] = signals

        guard.trace = trace
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
            loop.add_signal_handler(sig, stop.set)
    nc = await nats.connect(nats_url)
    out_decisions: IO[str] | None = open(decisions, "a") if decisions else None  # noqa: SIM115
    out_campaigns: IO[str] | None = open(campaigns, "a") if campaigns else None  # noqa: SIM115
    try:
        js = nc.jetstream()
        await ensure_stream(js, stream, subject)
        config = ConsumerConfig(
            durable_name=durable,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=ack_wait,
            # one batch outstanding at a time: after a crash nothing later is delivered before
            # the dead worker's batch comes back (after ack_wait), so events stay in order
            max_ack_pending=batch,
        )
        sub = await js.pull_subscribe(f"{subject}.*", durable=durable, stream=stream, config=config)
        idle_since = time.monotonic()
        while not stop.is_set():
            try:
                msgs = await sub.fetch(batch, timeout=0.5)
            except (TimeoutError, nats.errors.TimeoutError):  # asyncio's, or nats-py's own
                msgs = []
            if not msgs:
                if idle_exit and time.monotonic() - idle_since >= idle_exit:
                    break
                continue
            idle_since = time.monotonic()
            t0 = time.perf_counter()
            c0 = time.process_time()
            # one partition name per message: the subject's last token
            parts = [m.subject.rsplit(".", 1)[1] for m in msgs]
            events = [decode_line(m.data) for m in msgs]
            by_part: dict[str, list[str]] = {}
            for p, e in zip(parts, events, strict=True):
                by_part.setdefault(p, []).append(e.id)
            state.prefetch(wanted(events))
            state.prefetch(held(state, events))
            done = state.seen_in(by_part)
            lines: list[str] = []
            crashed = False
            for p, event in zip(parts, events, strict=True):
                if (p, event.id) in done:
                    stats.skipped += 1
                    continue
                point = decision_point(event)
                if point:
                    if sink is not None:
                        last_signals.clear()
                    d = guard.decide(event)
                    if sink is not None:
                        sink.decided(event, point, d, list(last_signals))
                    lines.append(
                        json.dumps(
                            {"event": event.id, "action": d.action, "score": d.score},
                            separators=(",", ":"),
                        )
                    )
                else:
                    guard.observe(event)
                state.mark(p, [event.id])
                done.add((p, event.id))  # a duplicate inside the batch too
                stats.events += 1
                if max_events and stats.events >= max_events:
                    crashed = True
                    break
            if crashed:
                break  # nothing written, nothing acknowledged: as if killed here
            if out_decisions is not None and lines:
                out_decisions.write("\n".join(lines) + "\n")
                out_decisions.flush()
            if out_campaigns is not None:
                for record in guard.campaign_records():
                    out_campaigns.write(json.dumps(record, ensure_ascii=False) + "\n")
                out_campaigns.flush()
            if sink is not None:
                sink.campaigns()
                sink.write()  # before the state: a crash in between only rewrites the same rows
            state.flush()
            for m in msgs:
                await m.ack()
            await nc.flush()
            stats.decisions += len(lines)
            stats.batches += 1
            stats.batch_seconds.append(time.perf_counter() - t0)
            stats.busy += stats.batch_seconds[-1]
            stats.cpu += time.process_time() - c0
            stats.nats_round_trips += 2
            stats.redis_round_trips = state.round_trips
        return stats
    finally:
        for f in (out_decisions, out_campaigns):
            if f is not None:
                f.close()
        await nc.close()
        state.redis.close()
        if sink is not None:
            sink.close()
