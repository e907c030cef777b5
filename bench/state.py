"""Benchmark: the SQLite state file — flush throughput and file size per account after a run.

    python bench/state.py [RUN_DIR | SCENARIO] [--investors N] [--flush-every N]

Replays a recorded run's ``events.ndjson`` (or records one: the scenario, default tiny, open loop
under allow-all) through the engine, once in memory and once on an SQLite file flushed every
``--flush-every`` events; then rewrites every record in one flush. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import msgspec

from brokerguard.engine import BrokerGuard
from brokerguard.engine.state import KINDS, MemoryState
from brokerguard.events import read_ndjson
from brokerguard.guard import decision_point
from brokerguard.guards import load_guard
from brokerguard.sim.scenario import load_scenario
from brokerguard.sim.world import simulate
from brokerguard.stores import SqliteState

ROOT = Path(__file__).resolve().parent.parent


def replay(guard: BrokerGuard, events: list, flush_every: int = 0) -> tuple[float, int]:
    """Seconds spent in flushes and rows they wrote (the whole replay's time if none)."""
    flushing, rows = 0.0, 0
    started = time.perf_counter()
    for i, event in enumerate(events, start=1):
        if decision_point(event):
            guard.decide(event)
        else:
            guard.observe(event)
        if flush_every and i % flush_every == 0:
            t = time.perf_counter()
            rows += guard.state.flush()  # type: ignore[attr-defined]
            flushing += time.perf_counter() - t
    return flushing or time.perf_counter() - started, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", default=str(ROOT / "scenarios/tiny.toml"))
    parser.add_argument("--investors", type=int, default=None)
    parser.add_argument("--flush-every", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(args.source)
        if run.suffix == ".toml":
            scenario = load_scenario(run)
            if args.investors:
                broker = msgspec.structs.replace(scenario.broker, investors=args.investors)
                scenario = msgspec.structs.replace(scenario, broker=broker)
            run = Path(tmp) / "run"
            simulate(scenario, load_guard("allow-all"), run)
        with open(run / "events.ndjson", "rb") as f:
            events = list(read_ndjson(f))

        in_memory, _ = replay(BrokerGuard(state=MemoryState()), events)
        path = Path(tmp) / "state.db"
        state = SqliteState(path)
        started = time.perf_counter()
        flushing, rows = replay(BrokerGuard(state=state), events, args.flush_every)
        on_file = time.perf_counter() - started
        state.flush()  # the tail; then rewrite every record in one flush
        state.handed |= {(kind, key) for kind in KINDS for key in state.records[kind]}
        state._stored.clear()
        t = time.perf_counter()
        rewritten = state.flush()
        full = time.perf_counter() - t
        state.close()
        size = path.stat().st_size
        accounts = len(state.records["account"])
        records = sum(len(r) for r in state.records.values())

    print(f"events            {len(events):,} replayed, {accounts:,} accounts, {records:,} records")
    print(f"replay in memory  {len(events) / in_memory:,.0f} events/s")
    print(
        f"replay on SQLite  {len(events) / on_file:,.0f} events/s, flush every {args.flush_every}"
    )
    print(f"flushes           {rows:,} rows in {flushing:.2f} s = {rows / flushing:,.0f} rows/s")
    print(f"full flush        {rewritten:,} rows in {full:.3f} s = {rewritten / full:,.0f} rows/s")
    print(f"file size         {size / 1e6:.2f} MB = {size / accounts / 1024:.2f} KiB per account")


if __name__ == "__main__":
    main()
