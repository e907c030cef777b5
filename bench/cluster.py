"""Benchmark: scale-out end to end — ingest to JetStream, one worker on Redis state.

    python bench/cluster.py [--investors N] [--days N] [--batch N] [--partitions N]
                            [--database URL]

Records a run (scenarios/tiny.toml, open loop under allow-all), publishes its events with
``ingest`` to a stream of its own, then runs one worker (in this process) until the stream is
drained. Prints ingest events/s, the worker's events/s (wall clock from its first batch to its
last acknowledgement, and per worker CPU-second), batch latency percentiles, Redis and NATS round
trips per event and the Redis memory per account. Deletes its stream and keys afterwards. Asserts
nothing except that the worker decided what the embedded engine decides.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import msgspec
import nats
import redis

from brokerguard.cluster.stream import ingest
from brokerguard.cluster.worker import run_worker
from brokerguard.engine import BrokerGuard
from brokerguard.engine.state import KINDS, MemoryState
from brokerguard.events import read_ndjson
from brokerguard.guard import decision_point
from brokerguard.guards import load_guard
from brokerguard.sim.scenario import load_scenario
from brokerguard.sim.world import simulate

ROOT = Path(__file__).resolve().parent.parent
NATS_URL = "nats://127.0.0.1:4222"
REDIS_URL = "redis://127.0.0.1:6379/0"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--investors", type=int, default=2000)
    parser.add_argument("--days", type=int, default=5)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--partitions", type=int, default=16)
    parser.add_argument("--database", help="also write records there (a migrated or empty DB)")
    args = parser.parse_args()

    tag = uuid.uuid4().hex[:8]
    stream, subject, prefix = f"BGB_{tag}", f"bgb.{tag}", f"bgbench-{tag}"
    scenario = load_scenario(ROOT / "scenarios" / "tiny.toml")
    broker = msgspec.structs.replace(scenario.broker, investors=args.investors)
    scenario = msgspec.structs.replace(scenario, days=args.days, broker=broker)
    client = redis.Redis.from_url(REDIS_URL)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        simulate(scenario, load_guard("allow-all"), out)
        with open(out / "events.ndjson", "rb") as f:
            events = list(read_ndjson(f))
        embedded = _embedded(events)
        try:
            t0 = time.perf_counter()
            with open(out / "events.ndjson", "rb") as f:
                published = asyncio.run(ingest(f, NATS_URL, stream, subject, args.partitions))
            ingest_s = time.perf_counter() - t0
            cpu0 = time.process_time()
            stats = asyncio.run(
                run_worker(
                    NATS_URL,
                    REDIS_URL,
                    prefix=prefix,
                    stream=stream,
                    subject=subject,
                    durable="bench",
                    batch=args.batch,
                    idle_exit=1.0,
                    decisions=out / "worker-decisions.ndjson",
                    database=args.database,
                )
            )
            cpu = time.process_time() - cpu0
            got = [
                (d["event"], d["action"], d["score"])
                for d in map(json.loads, (out / "worker-decisions.ndjson").read_text().splitlines())
            ]
            if got != embedded:
                diff = next((x, y) for x, y in zip(embedded, got, strict=False) if x != y)
                raise SystemExit(
                    f"the worker's decisions differ from the embedded engine's "
                    f"({len(got)} vs {len(embedded)}; first: {diff})"
                )
            lat = sorted(stats.batch_seconds)
            n = stats.events
            print(
                f"events {n:,}, accounts {args.investors:,}, partitions {args.partitions}, "
                f"batch {args.batch}, records to {args.database or 'no database'}"
            )
            print(f"  ingest: {published / ingest_s:,.0f} events/s published and acknowledged")
            print(f"  1 worker: {n / stats.busy:,.0f} events/s from first batch to last ack")
            print(
                f"  1 worker: {n / stats.cpu:,.0f} events per worker CPU-second in batches; "
                f"{n / cpu:,.0f} counting its start-up and idle second"
            )
            print(
                f"  batch of {args.batch}, arrival to ack: p50 "
                f"{statistics.median(lat) * 1e3:.0f} ms, p99 "
                f"{lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e3:.0f} ms"
            )
            print(
                f"  Redis round trips per event: {stats.redis_round_trips / n:.3f}; "
                f"NATS round trips per event: {stats.nats_round_trips / n:.3f}"
            )
            total = sum(client.memory_usage(f"{prefix}:{k}", samples=0) or 0 for k in KINDS)
            acc = client.memory_usage(f"{prefix}:account", samples=0) or 0
            n_acc = client.hlen(f"{prefix}:account")
            seen = sum(
                client.memory_usage(k, samples=0) or 0
                for k in client.scan_iter(match=f"{prefix}:seen:*")
            )
            print(
                f"  Redis memory: {total / args.investors:,.0f} B of state per account "
                f"(account records alone {acc / n_acc:,.0f} B); processed-id sets "
                f"{seen / 1024:,.0f} KiB in all"
            )
        finally:
            keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
            if keys:
                client.delete(*keys)
            asyncio.run(_drop(stream))


def _embedded(events: list) -> list[tuple]:
    guard = BrokerGuard(state=MemoryState(track_changes=False))
    out = []
    for e in events:
        if decision_point(e):
            d = guard.decide(e)
            out.append((e.id, d.action, d.score))
        else:
            guard.observe(e)
    return out


async def _drop(stream: str) -> None:
    nc = await nats.connect(NATS_URL)
    with contextlib.suppress(nats.js.errors.NotFoundError):
        await nc.jetstream().delete_stream(stream)
    await nc.close()


if __name__ == "__main__":
    main()
