"""Benchmark: scale-out end to end — ingest to JetStream, 1 and 2 worker processes on Redis state.

    python bench/cluster.py [--investors N] [--days N] [--batch N] [--partitions N]
                            [--workers 1,2] [--rate EVENTS_PER_S] [--database URL]
                            [--campaign-stage] [--epoch-seconds S]

Records a run (scenarios/tiny.toml, open loop under allow-all) and replays it embedded on
``--partitions`` engines (the reference). Then, for each number of workers, on a stream and Redis
prefix of its own:

1. **throughput**: publishes every event with ``ingest``, then starts the workers (separate
   ``brokerguard worker`` processes) and lets them drain the stream: events/s from the first
   batch to the last acknowledgement (wall clock), and events per worker CPU-second (the
   workers' CPU in batches, and their whole processes' CPU with start-up and idle time);
2. **latency**: starts the workers first, then publishes at ``--rate`` events/s: per decision,
   from the event's publication to the acknowledgement of its batch, p50 / p99.

Also: Redis and NATS round trips per event, Redis memory per account. Every run's decisions must
equal the reference's (else it stops). With ``--campaign-stage`` the workers leave campaigns to a
``brokerguard campaign-stage`` process (one shard) and wait for it at each epoch; the reference is
then ``StagedGuard`` and the stage's CPU is reported beside the workers'. Deletes its streams
and keys afterwards. The machine's other load is not controlled: the CPU-second figures are the
ones to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import msgspec
import nats
import redis

from brokerguard.cluster.partition import PartitionedGuard, partition_of
from brokerguard.cluster.staged import StagedGuard
from brokerguard.cluster.stream import ingest
from brokerguard.engine.state import KINDS
from brokerguard.events import read_ndjson
from brokerguard.guard import decision_point
from brokerguard.guards import load_guard
from brokerguard.sim.scenario import load_scenario
from brokerguard.sim.world import simulate

ROOT = Path(__file__).resolve().parent.parent
NATS_URL = "nats://127.0.0.1:4222"
REDIS_URL = "redis://127.0.0.1:6379/0"
BG = [sys.executable, "-m", "brokerguard"]


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))] if values else float("nan")


class Run:
    """One stream and Redis prefix; the workers as processes."""

    def __init__(self, args, out: Path, label: str) -> None:
        tag = uuid.uuid4().hex[:8]
        self.args = args
        self.out = out
        self.label = label
        self.stream, self.subject, self.prefix = f"BGB_{tag}", f"bgb.{tag}", f"bgbench-{tag}"
        self.facts_stream, self.facts_subject = f"BGBF_{tag}", f"bgbf.{tag}"
        self.stage: tuple[subprocess.Popen, Path] | None = None
        self.database = None
        if args.database:  # a database of its own: decisions already there are not written
            import psycopg

            self.dbname = f"bgbench_{tag}"
            with psycopg.connect(args.database, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{self.dbname}"')
            self.database = f"{args.database.rpartition('/')[0]}/{self.dbname}"
            from brokerguard.service.db import make_engine, migrate

            engine = make_engine(self.database)  # once, before the workers (they race otherwise)
            migrate(engine)
            engine.dispose()

    def start(self, n: int, idle_exit: float) -> list[tuple[subprocess.Popen, Path, Path]]:
        procs = []
        for i in range(n):
            dec = self.out / f"{self.label}-d{i}.ndjson"
            st = self.out / f"{self.label}-s{i}.json"
            cmd = [*BG, "worker", "--stream", self.stream, "--subject", self.subject]
            cmd += ["--prefix", self.prefix, "--durable", "bench"]
            cmd += ["--partitions", str(self.args.partitions), "--batch", str(self.args.batch)]
            cmd += ["--idle-exit", str(idle_exit), "--lease-ttl", "3", "--decisions", str(dec)]
            cmd += ["--stats", str(st)]
            if self.database:
                cmd += ["--database", self.database]
            if self.args.campaign_stage:
                cmd += ["--campaign-stage", *self.facts_args()]
            procs.append((subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True), dec, st))
        if self.args.campaign_stage:
            st = self.out / f"{self.label}-stage.json"
            cmd = [*BG, "campaign-stage", "--prefix", self.prefix, *self.facts_args()]
            cmd += ["--partitions", str(self.args.partitions), "--stage-durable", "bench-stage"]
            cmd += ["--stats", str(st)]  # no idle exit: stopped once the workers are done
            self.stage = (subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True), st)
        return procs

    def facts_args(self) -> list[str]:
        return ["--facts-stream", self.facts_stream, "--facts-subject", self.facts_subject]

    def stage_stats(self) -> dict | None:
        if self.stage is None:
            return None
        proc, st = self.stage
        proc.send_signal(signal.SIGTERM)  # the workers are done: nothing waits on the stage
        _, err = proc.communicate(timeout=600)
        if proc.returncode != 0:
            raise SystemExit(f"campaign stage failed: {err}")
        return json.loads(st.read_text())

    def wait_ready(self, n: int, timeout: float = 60) -> None:
        """Until the workers hold every partition between them (they balanced)."""
        client = redis.Redis.from_url(REDIS_URL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            owners = client.mget([f"{self.prefix}:lease:{p}" for p in range(self.args.partitions)])
            if all(owners) and len(set(owners)) == n:
                return
            time.sleep(0.1)
        raise SystemExit(f"{n} workers did not share the partitions within {timeout} s")

    def finish(self, procs) -> tuple[list[dict], list[tuple]]:
        stats, got = [], {}
        for proc, dec, st in procs:
            _, err = proc.communicate(timeout=600)
            if proc.returncode != 0:
                raise SystemExit(f"worker failed: {err}")
            stats.append(json.loads(st.read_text()))
            for line in dec.read_text().splitlines():
                d = json.loads(line)
                got[d["event"]] = (d["event"], d["action"], d["score"])
        return stats, sorted(got.values())

    def memory(self) -> tuple[dict[str, int], dict[str, int], int]:
        """Bytes (MEMORY USAGE) and records of each kind over all partitions; the id sets."""
        client = redis.Redis.from_url(REDIS_URL)
        size = dict.fromkeys(KINDS, 0)
        count = dict.fromkeys(KINDS, 0)
        seen = 0
        for p in range(self.args.partitions):
            base = f"{self.prefix}:{p}"
            for k in KINDS:
                size[k] += client.memory_usage(f"{base}:{k}", samples=0) or 0
                count[k] += client.hlen(f"{base}:{k}")
            seen += client.memory_usage(f"{base}:seen:{p}", samples=0) or 0
        return size, count, seen

    def drop(self) -> None:
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=f"{self.prefix}:*", count=1000))
        if keys:
            client.delete(*keys)

        async def drop() -> None:
            nc = await nats.connect(NATS_URL)
            for stream in (self.stream, self.facts_stream):
                with contextlib.suppress(nats.js.errors.NotFoundError):
                    await nc.jetstream().delete_stream(stream)
            await nc.close()

        asyncio.run(drop())
        if self.database:
            import psycopg

            with psycopg.connect(self.args.database, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)')


def paced(path: Path, rate: float) -> Iterator[bytes]:
    """The file's lines at ``rate`` lines per second (in steps of 50 lines)."""
    t0 = time.perf_counter()
    with open(path, "rb") as f:
        for n, line in enumerate(f):
            if n % 50 == 0:
                ahead = n / rate - (time.perf_counter() - t0)
                if ahead > 0:
                    time.sleep(ahead)
            yield line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--investors", type=int, default=2000)
    parser.add_argument("--days", type=int, default=5)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--rate", type=float, default=1000.0, help="events/s (latency runs)")
    parser.add_argument(
        "--database",
        help="a PostgreSQL server's URL (a database on it): each run writes its records to a "
        "database of its own, created there and dropped afterwards",
    )
    parser.add_argument("--repeat", type=int, default=1, help="throughput runs per count")
    parser.add_argument(
        "--campaign-stage", action="store_true", help="campaigns in a stage of their own"
    )
    parser.add_argument("--epoch-seconds", type=float, default=60.0)
    args = parser.parse_args()

    scenario = load_scenario(ROOT / "scenarios" / "tiny.toml")
    broker = msgspec.structs.replace(scenario.broker, investors=args.investors)
    scenario = msgspec.structs.replace(scenario, days=args.days, broker=broker)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        simulate(scenario, load_guard("allow-all"), out)
        path = out / "events.ndjson"
        with open(path, "rb") as f:
            events = list(read_ndjson(f))
        market = sum(1 for e in events if partition_of(e, args.partitions) is None)
        messages = len(events) + market * (args.partitions - 1)
        reference = _embedded(events, args.partitions, args)
        print(
            f"{len(events):,} events ({market:,} market events, copied to every partition: "
            f"{messages:,} messages), {args.investors:,} accounts, {args.partitions} partitions, "
            f"batch {args.batch}, records to {args.database or 'no database'}; "
            f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start"
        )
        base: float | None = None
        medians: list[str] = []
        for n, r in ((int(x), r) for x in args.workers.split(",") for r in range(args.repeat)):
            # 1. throughput: the stream is full before the workers start
            run = Run(args, out, f"t{n}-{r}")
            try:
                t0 = time.perf_counter()
                with open(path, "rb") as f:
                    asyncio.run(
                        ingest(
                            f,
                            NATS_URL,
                            run.stream,
                            run.subject,
                            args.partitions,
                            epoch_seconds=args.epoch_seconds,
                        )
                    )
                ingest_s = time.perf_counter() - t0
                stats, got = run.finish(run.start(n, idle_exit=3.0))
                stage = run.stage_stats()
                _check(got, reference, f"{n} workers")
                done = sum(s["events"] for s in stats)
                wall = max(s["last_ack"] for s in stats) - min(s["first_batch"] for s in stats)
                cpu = sum(s["cpu"] for s in stats)
                proc_cpu = sum(s["process_cpu"] for s in stats)
                per_cpu = done / cpu
                base = base or per_cpu
                medians.append(f"{n}\t{per_cpu:.0f}\t{done / wall:.0f}")
                redis_rt = sum(s["redis_round_trips"] for s in stats)
                nats_rt = sum(s["nats_round_trips"] for s in stats)
                size, count, seen = run.memory()
                print(f"\n{n} worker(s), run {r + 1}, load average {os.getloadavg()[0]:.1f}:")
                print(f"  ingest: {len(events) / ingest_s:,.0f} events/s published and acked")
                print(
                    f"  drain: {done:,} messages in {wall:.2f} s = {done / wall:,.0f} messages/s "
                    f"({len(events) / wall:,.0f} events/s of the log), wall clock"
                )
                print(
                    f"  {per_cpu:,.0f} messages per worker CPU-second in batches "
                    f"({per_cpu / base:.0%} of 1 worker's); {done / proc_cpu:,.0f} per "
                    f"CPU-second of the whole processes; per worker: "
                    + ", ".join(f"{s['events']:,} in {s['cpu']:.2f} CPU-s" for s in stats)
                )
                print(
                    "  partitions taken / handed over / lost / rebuilt, redelivered, skipped: "
                    + "; ".join(
                        f"{s['acquired']}/{s['released']}/{s['lost']}/{s['rebuilt']}, "
                        f"{s['redelivered']}, {s['skipped']}"
                        for s in stats
                    )
                )
                if stage is not None:
                    print(
                        f"  campaign stage: {stage['facts']:,} facts, {stage['epochs']:,} epochs, "
                        f"{stage['cpu']:.2f} CPU-s; workers cut {sum(s['waits'] for s in stats):,}"
                        f" batches at an epoch to wait for it"
                    )
                print(
                    f"  Redis round trips per message {redis_rt / done:.3f}, "
                    f"NATS round trips per message {nats_rt / done:.3f}"
                )
                own = sum(size[k] for k in ("account", "session", "pending"))
                shared = sum(size[k] for k in KINDS) - own
                print(
                    f"  Redis: {own / args.investors:,.0f} B per account of the account-keyed "
                    f"state (account records {size['account'] / max(1, count['account']):,.0f} B "
                    f"each, sessions, pending challenges); shared records {shared / 1024:,.0f} "
                    f"KiB over {args.partitions} partitions ({count['symbol']:,} symbol copies "
                    f"{size['symbol'] / 1024:,.0f} KiB, {count['entity']:,} entities); "
                    f"{(own + shared) / args.investors:,.0f} B per account in all; "
                    f"processed-id sets {seen / 1024:,.0f} KiB"
                )
            finally:
                run.drop()
            if r + 1 < args.repeat:
                continue
            # 2. latency: workers waiting, events arriving at --rate
            run = Run(args, out, f"l{n}")
            try:
                procs = run.start(n, idle_exit=3.0)
                run.wait_ready(n)
                t0 = time.perf_counter()
                lines = paced(path, args.rate)
                asyncio.run(
                    ingest(
                        lines,
                        NATS_URL,
                        run.stream,
                        run.subject,
                        args.partitions,
                        window=8,
                        epoch_seconds=args.epoch_seconds,
                    )
                )
                sent = time.perf_counter() - t0
                stats, got = run.finish(procs)
                run.stage_stats()
                _check(got, reference, f"{n} workers, paced")
                lat = [x for s in stats for x in s["latencies"]]
                print(
                    f"  paced at {len(events) / sent:,.0f} events/s: decision latency (published "
                    f"to acked) p50 {pct(lat, 0.5) * 1e3:.0f} ms, p99 {pct(lat, 0.99) * 1e3:.0f} "
                    f"ms over {len(lat):,} decisions"
                )
            finally:
                run.drop()
        print("\nmedian over the runs (workers: messages per worker CPU-second, messages/s):")
        by: dict[int, list[tuple[float, float]]] = {}
        for line in medians:
            n, c, w = line.split("\t")
            by.setdefault(int(n), []).append((float(c), float(w)))
        one = statistics.median(c for c, _ in by[min(by)])
        one_wall = statistics.median(w for _, w in by[min(by)])
        for n, runs in by.items():
            c = statistics.median(x for x, _ in runs)
            w = statistics.median(y for _, y in runs)
            print(
                f"  {n} worker(s): {c:,.0f} per CPU-second ({c / one:.0%} of 1 worker's), "
                f"{w:,.0f} messages/s wall clock ({w / one_wall:.2f}x); runs: "
                + ", ".join(f"{x:,.0f}" for x, _ in runs)
            )


def _check(got: list[tuple], reference: list[tuple], what: str) -> None:
    if got != reference:
        diff = next((x, y) for x, y in zip(reference, got, strict=False) if x != y)
        raise SystemExit(
            f"{what}: decisions differ from the embedded engines' "
            f"({len(got)} vs {len(reference)}; first: {diff})"
        )


def _embedded(events: list, partitions: int, args) -> list[tuple]:
    guard: PartitionedGuard | StagedGuard = PartitionedGuard(partitions)
    if args.campaign_stage:
        guard = StagedGuard(partitions, epoch_seconds=args.epoch_seconds)
    out = []
    for e in events:
        if decision_point(e):
            d = guard.decide(e)
            out.append((e.id, d.action, d.score))
        else:
            guard.observe(e)
    return sorted(out)


if __name__ == "__main__":
    main()
