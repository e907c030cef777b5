"""Shared by the scale-out tests: a small recorded run, replay with flushes, the real servers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import nats
import redis
from engine_helpers import cut_point, replay  # noqa: F401  (re-exported for the cluster tests)

from brokerguard.events import Event, read_ndjson
from brokerguard.guards import load_guard
from brokerguard.sim.scenario import load_scenario
from brokerguard.sim.world import simulate

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = "redis://127.0.0.1:6379/0"
NATS_URL = "nats://127.0.0.1:4222"


def recorded_run(out: Path, investors: int = 300, days: int = 3) -> Path:
    """scenarios/tiny.toml, small, under allow-all: returns the path of its events.ndjson."""
    scenario = load_scenario(ROOT / "scenarios" / "tiny.toml")
    broker = msgspec.structs.replace(scenario.broker, investors=investors)
    scenario = msgspec.structs.replace(scenario, days=days, broker=broker)
    simulate(scenario, load_guard("allow-all"), out)
    return out / "events.ndjson"


def read_events(path: Path) -> list[Event]:
    with open(path, "rb") as f:
        return list(read_ndjson(f))


def redis_client() -> redis.Redis:
    client = redis.Redis.from_url(REDIS_URL)
    client.ping()  # never skip: .ci/run starts Redis when it does not answer
    return client


def fresh_prefix() -> str:
    return f"bgtest-{uuid.uuid4().hex[:10]}"


def drop_prefix(client: redis.Redis, prefix: str) -> None:
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)


class Names:
    """A stream, subject, Redis prefix and consumer name of one test's own."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:10]
        self.stream = f"BGT_{tag}"
        self.subject = f"bgt.{tag}"
        self.prefix = f"bgtest-{tag}"
        self.durable = f"w{tag}"
        self.facts_stream = f"BGTF_{tag}"  # the campaign stage's facts
        self.facts_subject = f"bgtf.{tag}"

    def cli(self, partitions: int = 8) -> list[str]:
        return ["--stream", self.stream, "--subject", self.subject, "--partitions", str(partitions)]


@contextlib.contextmanager
def fresh_names(events: Names | None = None) -> Iterator[Names]:
    """Names for one test; its stream and Redis keys are deleted afterwards.

    ``events``: the test reads the events of that stream (a module's, ingested once: the same
    events each time, and no test writes to it) through consumers of its own, instead of a
    stream of its own; its consumers there are deleted afterwards, the stream is left.
    """
    n = Names()
    if events is not None:
        n.stream, n.subject = events.stream, events.subject
    try:
        yield n
    finally:

        async def drop() -> None:
            nc = await nats.connect(NATS_URL)
            js = nc.jetstream()
            if events is not None:
                with contextlib.suppress(nats.js.errors.NotFoundError):
                    for c in await js.consumers_info(n.stream):
                        if c.name.startswith(f"{n.durable}-"):
                            await js.delete_consumer(n.stream, c.name)
            for stream in (n.facts_stream,) if events is not None else (n.stream, n.facts_stream):
                with contextlib.suppress(nats.js.errors.NotFoundError):
                    await js.delete_stream(stream)
            await nc.close()

        asyncio.run(drop())
        drop_prefix(redis_client(), n.prefix)


@contextlib.contextmanager
def pg_database() -> Iterator[str]:
    """A throwaway PostgreSQL database (the worker migrates it)."""
    import psycopg

    server = os.environ.get("BG_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"bg_cluster_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{server.rpartition('/')[0]}/{name}"
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def lines(*paths: Path) -> list[dict]:
    """Every JSON line; a SIGKILL may cut a file's last line, and only that one is left out."""
    out = []
    for p in paths:
        text = p.read_text() if p.exists() else ""
        complete = text.endswith("\n")
        rows = text.splitlines()
        if rows and not complete:
            rows.pop()
        out += [json.loads(x) for x in rows]
    return out


def decisions(*paths: Path) -> list[tuple]:
    """(event, action, score), one per event; a repeated event must repeat the same decision."""
    first: dict[str, tuple] = {}
    for d in lines(*paths):
        row = (d["event"], d["action"], d["score"])
        assert first.setdefault(d["event"], row) == row
    return sorted(first.values())


def final_campaigns(path: Path) -> dict[str, tuple]:
    """Each campaign as it ended (the replay writes its lines at the end): symbols, accounts."""
    out: dict[str, tuple] = {}
    for c in lines(path):
        symbols = sorted(f"{s['market']}:{s['symbol']}" for s in c["symbols"])
        out[c["id"]] = (symbols, sorted(c["accounts"]), sorted(c["infrastructure"]))
    return out


def stream_ends(n: Names, partitions: int) -> tuple[dict[int, int], int | None]:
    """The stream sequence of each partition's last message, and the epoch the last epoch
    marker opens (None: no markers): where a run of the stream, as it is now, ends."""
    from brokerguard.cluster.stream import epoch_marker

    async def ends() -> tuple[dict[int, int], int | None]:
        nc = await nats.connect(NATS_URL)
        js = nc.jetstream()
        last: dict[int, int] = {}
        epoch = None
        for p in range(partitions):
            with contextlib.suppress(nats.js.errors.NotFoundError):
                msg = await js.get_last_msg(n.stream, f"{n.subject}.{p}")
                last[p] = msg.seq
                k = epoch_marker(msg.headers)
                epoch = k if k is not None and (epoch is None or k > epoch) else epoch
        await nc.close()
        return last, epoch

    return asyncio.run(ends())


def drained(n: Names, ends: tuple[dict[int, int], int | None], stage_shards: int = 0) -> bool:
    """Whether the run is done, as Redis says (asking NATS for the consumers' figures again and
    again slows the workers down): every partition's state stands for the last message of its
    partition (``ends``, :func:`stream_ends`), and (``stage_shards``) every shard of the
    campaign stage is done with every epoch before the last marker's. A partition or shard
    rebuilt after a Redis loss has no state, or an older one, until it has caught up again."""
    last, epoch = ends
    client = redis_client()
    try:
        pipe = client.pipeline(transaction=False)
        for p in last:
            pipe.hget(f"{n.prefix}:{p}:meta", "seq")
        for s in range(stage_shards):
            pipe.get(f"{n.prefix}:stage:{s}:below")
        got = pipe.execute()
    finally:
        client.close()
    seqs, belows = got[: len(last)], got[len(last) :]
    done = all(int(v or 0) >= seq for v, seq in zip(seqs, last.values(), strict=True))
    if stage_shards:
        done = done and epoch is not None and all(int(v or -1) >= epoch for v in belows)
    return done


def stop_when_drained(
    procs: list[subprocess.Popen], n: Names, partitions: int, stage_shards: int = 0
) -> list[str]:
    """Wait until the run is :func:`drained`, then stop ``procs`` (SIGTERM: each finishes and
    acknowledges its batch, and releases what it holds), check they exit with status 0 and
    return their standard errors. Instead of each waiting out an idle window of seconds."""
    ends = stream_ends(n, partitions)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and not drained(n, ends, stage_shards):
        time.sleep(0.1)
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    errors = []
    for proc in procs:
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        errors.append(err)
    return errors


def run_until_drained(
    make: Callable[[asyncio.Event], Awaitable[Any]],
    n: Names,
    partitions: int,
    stage_shards: int = 0,
) -> Any:
    """Run ``make(stop)`` (a worker or stage coroutine in this process) and set ``stop`` once
    the run is :func:`drained`; its result."""

    async def main() -> Any:
        stop = asyncio.Event()
        ends = await asyncio.to_thread(stream_ends, n, partitions)

        async def watch() -> None:
            while not await asyncio.to_thread(drained, n, ends, stage_shards):
                await asyncio.sleep(0.1)
            stop.set()

        watching = asyncio.create_task(watch())
        try:
            return await make(stop)
        finally:
            watching.cancel()

    return asyncio.run(main())
