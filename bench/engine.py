"""Benchmark: the detection engine's throughput, decision latency and memory per account.

    python bench/engine.py [SCENARIO] [--events PATH] [--investors N] [--policy FILE]

Records a run first (the scenario — default spring-2025 — simulated under allow-all into a
temporary directory), or takes the ``events.ndjson`` given with ``--events``. Every event is
decoded before the clock starts, so decoding is not measured; then a fresh BrokerGuard replays
the log open loop — ``decide`` for decision points, ``observe`` for the rest, as ``brokerguard
replay`` does — with ``time.perf_counter_ns`` around each ``decide``. Memory is measured after
the replay: the growth of the process's resident set over the replay, and the engine's state
alone (its records re-created from their msgpack encoding under tracemalloc), each divided by
the number of accounts. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import gc
import os
import tempfile
import time
import tracemalloc
from collections import defaultdict
from pathlib import Path

import msgspec

from brokerguard.engine.state import KINDS, MemoryState
from brokerguard.events import read_ndjson
from brokerguard.guard import decision_point
from brokerguard.guards import engine_guard, load_guard
from brokerguard.sim.scenario import load_scenario
from brokerguard.sim.world import simulate

ROOT = Path(__file__).resolve().parent.parent


def rss_bytes() -> int:
    """The current (not peak) resident set size of this process."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def quantile(ordered: list[int], q: float) -> int:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0


def micros(ns: int) -> str:
    return f"{ns / 1000:,.0f} µs" if ns >= 10_000 else f"{ns / 1000:,.1f} µs"


def record(scenario_path: str, investors: int | None, out: Path) -> Path:
    scenario = load_scenario(scenario_path)
    if investors:
        broker = msgspec.structs.replace(scenario.broker, investors=investors)
        scenario = msgspec.structs.replace(scenario, broker=broker)
    started = time.perf_counter()
    summary = simulate(scenario, load_guard("allow-all"), out)
    print(
        f"recorded          {scenario.name} ({scenario.broker.investors:,} investors, "
        f"{scenario.days} days) under allow-all: {summary.events:,} events "
        f"in {time.perf_counter() - started:.1f} s"
    )
    return out / "events.ndjson"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", nargs="?", default=str(ROOT / "scenarios/spring-2025.toml"))
    parser.add_argument("--events", type=Path, help="replay this events.ndjson instead")
    parser.add_argument("--investors", type=int, default=None)
    parser.add_argument("--policy", type=Path, default=None, help="policy TOML (default shipped)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = args.events or record(args.scenario, args.investors, Path(tmp))
        started = time.perf_counter()
        with path.open("rb") as stream:
            events = list(read_ndjson(stream))
        points = [decision_point(e) for e in events]
        print(
            f"decoded           {len(events):,} events in {time.perf_counter() - started:.1f} s "
            "(not measured below)"
        )

    engine = engine_guard(args.policy)
    engine.lookup("203.0.113.1")  # load the network database before the clock starts
    gc.collect()
    # The decoded log is a benchmark artefact, not the engine's: keep the collector from
    # walking its million objects in the middle of someone's decision.
    gc.freeze()
    rss_before = rss_bytes()
    cpu_started = time.process_time()
    decide, observe = engine.decide, engine.observe
    latencies: list[int] = []
    by_point: dict[str, list[int]] = defaultdict(list)
    clock = time.perf_counter_ns
    started_ns = clock()
    for event, point in zip(events, points, strict=True):
        if point is not None:
            t0 = clock()
            decide(event)
            latencies.append(clock() - t0)
        else:
            observe(event)
    elapsed = (clock() - started_ns) / 1e9
    cpu = time.process_time() - cpu_started
    for point, ns in zip((p for p in points if p is not None), latencies, strict=True):
        by_point[point].append(ns)
    gc.unfreeze()
    gc.collect()
    rss_growth = rss_bytes() - rss_before
    engine.campaign_records()

    print(f"engine            {engine.name}")
    print(
        f"replay            {len(events):,} events, {len(latencies):,} decisions in {elapsed:.2f} s"
    )
    print(
        f"events/s          {len(events) / elapsed:,.0f} "
        f"(CPU time {cpu:.2f} s: {len(events) / cpu:,.0f} events per CPU-second)"
    )
    ordered = sorted(latencies)
    print(
        f"decide latency    p50 {micros(quantile(ordered, 0.5))}, "
        f"p99 {micros(quantile(ordered, 0.99))}, max {micros(ordered[-1] if ordered else 0)}"
    )
    for point in ("login", "order", "withdrawal", "settings"):
        values = sorted(by_point.get(point, []))
        if values:
            print(
                f"  {point:<15} {len(values):>8,}  p50 {micros(quantile(values, 0.5))}, "
                f"p99 {micros(quantile(values, 0.99))}, max {micros(values[-1])}"
            )

    state = engine.state
    if not isinstance(state, MemoryState):
        print(f"memory            state is {type(state).__name__}, not measured")
        return
    accounts = max(1, state.count("account"))
    print(f"accounts          {state.count('account'):,}")
    print(
        f"RSS growth        {rss_growth / 2**20:,.1f} MiB over the replay, "
        f"{rss_growth / accounts / 1024:,.2f} KiB/account"
    )
    encoded: dict[str, list[bytes]] = {
        kind: [msgspec.msgpack.encode(r) for r in records.values()]
        for kind, records in state.records.items()
    }
    del events, points, latencies, by_point
    gc.collect()
    tracemalloc.start()
    copies = {
        kind: [msgspec.msgpack.decode(b, type=KINDS[kind]) for b in blobs]
        for kind, blobs in encoded.items()
    }
    live, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del copies
    print(
        f"state in memory   {live / 2**20:,.1f} MiB (tracemalloc, records re-created), "
        f"{live / accounts / 1024:,.2f} KiB/account"
    )
    total = sum(len(b) for blobs in encoded.values() for b in blobs)
    print(
        f"state msgpack     {total / 2**20:,.1f} MiB, {total / accounts:,.0f} bytes/account; "
        + ", ".join(
            f"{kind} {len(blobs):,} × {sum(map(len, blobs)) / max(1, len(blobs)):,.0f} B"
            for kind, blobs in encoded.items()
            if blobs
        )
    )


if __name__ == "__main__":
    main()
