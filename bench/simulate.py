"""Benchmark: simulated events per second and peak memory for a scenario (default spring-2025).

    python bench/simulate.py [SCENARIO] [--guard NAME] [--investors N]

Measures the whole closed loop — world building, actors, guard calls, NDJSON writing — as
`brokerguard simulate` runs it. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import msgspec

from brokerguard.guards import load_guard
from brokerguard.sim.scenario import load_scenario
from brokerguard.sim.world import simulate

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", nargs="?", default=str(ROOT / "scenarios/spring-2025.toml"))
    parser.add_argument("--guard", default="allow-all")
    parser.add_argument("--investors", type=int, default=None)
    args = parser.parse_args()
    scenario = load_scenario(args.scenario)
    if args.investors:
        broker = msgspec.structs.replace(scenario.broker, investors=args.investors)
        scenario = msgspec.structs.replace(scenario, broker=broker)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        summary = simulate(scenario, load_guard(args.guard), Path(tmp))
        elapsed = time.perf_counter() - started
        size = sum(p.stat().st_size for p in Path(tmp).iterdir())
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"scenario          {scenario.name} ({scenario.broker.investors:,} investors, "
        f"{scenario.days} days), guard {args.guard}"
    )
    print(f"events            {summary.events:,}  (decisions {summary.decisions:,})")
    print(f"wall time         {elapsed:.2f} s")
    print(f"events/s          {summary.events / elapsed:,.0f}")
    print(f"peak memory (RSS) {peak_mib:,.0f} MiB")
    print(f"output            {size / 1e6:,.1f} MB")


if __name__ == "__main__":
    main()
