"""Benchmark: what cross-account detection sees when accounts are split over partitions.

    python bench/campaign_stage.py [--run DIR] [--partitions 16] [--epochs 10,60,300]

Replays one open-loop run (default: spring-2025, seed 7, under allow-all, simulated into
``runs/bench-stage`` when missing) through

- the embedded engine (one engine sees every account: the yardstick);
- ``--partitions`` engines, one per account partition, each raising campaigns alone (the plain
  cluster, ``replay --partitions N``);
- the same partitions with the campaign stage (``replay --partitions N --campaign-stage``) at
  each epoch length of ``--epochs``, and one partition with the stage at the shortest epoch (the
  cost of the epoch lag alone);

and prints, for each: campaign ids raised, pumped symbols named by a campaign and the delay from
the first pump buy, the attackers' decision points let through of those the embedded engine
stopped, decisions that differ from the embedded engine's, the legitimate login challenge rate
and order hold rate (sign-ins with the right password that were challenged; orders held), and
the replay's events per second. Reads only the run's events; the
ground truth (``truth.json``) only scores.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from datetime import datetime
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from brokerguard.cluster.partition import PartitionedGuard
from brokerguard.cluster.staged import StagedGuard
from brokerguard.engine import BrokerGuard
from brokerguard.events import read_ndjson
from brokerguard.guard import decision_point

ROOT = Path(__file__).resolve().parent.parent


def ensure_run(run: Path) -> Path:
    if (run / "events.ndjson").is_file():
        return run
    from brokerguard.guards import load_guard
    from brokerguard.sim.scenario import load_scenario
    from brokerguard.sim.world import simulate

    scenario = load_scenario(ROOT / "scenarios" / "spring-2025.toml")
    simulate(scenario, load_guard("allow-all"), run)
    return run


def replay(guard, events) -> tuple[dict[str, tuple[str, str]], list[dict], float]:
    """event id -> (action, point), the campaign lines, seconds."""
    out: dict[str, tuple[str, str]] = {}
    t0 = time.perf_counter()
    for e in events:
        point = decision_point(e)
        if point:
            out[e.id] = (guard.decide(e).action, point)
        else:
            guard.observe(e)
    records = guard.campaign_records()
    return out, records, time.perf_counter() - t0


def score(decided, records, truth, attacker, base) -> dict[str, object]:
    raised: dict[tuple[str, str], datetime] = {}
    for r in records:
        at = datetime.fromisoformat(r["raised_at"])
        for s in r["symbols"]:
            key = (s["symbol"], s["market"])
            raised[key] = min(raised.get(key, at), at)
    delays = []
    for p in truth["pumped_symbols"]:
        key = (p["symbol"], p["market"])
        if key in raised:
            first = datetime.fromisoformat(p["first_buy"])
            delays.append(max(0.0, (raised[key] - first).total_seconds()))
    legit = [(a, pt) for e, (a, pt) in decided.items() if e not in attacker]
    logins = [a for a, pt in legit if pt == "login" and a != "deny"]  # not wrong passwords
    orders = [a for a, pt in legit if pt == "order"]
    stopped = [e for e, (a, _) in base.items() if e in attacker and a != "allow"]
    return {
        "ids": len({r["id"] for r in records}),
        "named": f"{len(delays)} of {len(truth['pumped_symbols'])}",
        "delay": statistics.median(delays) if delays else None,
        "through": f"{sum(1 for e in stopped if decided[e][0] == 'allow')} of {len(stopped)}",
        "differ": sum(1 for e, (a, _) in decided.items() if base[e][0] != a),
        "challenge": sum(a == "challenge" for a in logins) / max(1, len(logins)),
        "hold": sum(a == "hold" for a in orders) / max(1, len(orders)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=ROOT / "runs" / "bench-stage")
    parser.add_argument("--partitions", type=int, default=16)
    parser.add_argument("--epochs", default="10,60,300", help="epoch lengths, seconds")
    args = parser.parse_args()
    console = Console(width=170)
    run = ensure_run(args.run)
    with open(run / "events.ndjson", "rb") as f:
        events = list(read_ndjson(f))
    truth = json.loads((run / "truth.json").read_text())
    attacker = {e for v in truth["victims"] for e in v["events"]}
    epochs = [float(x) for x in args.epochs.split(",")]
    n = args.partitions
    variants = [("embedded (1 engine)", BrokerGuard)]
    variants.append((f"{n} partitions, no stage", lambda: PartitionedGuard(n)))
    variants += [
        (f"{n} partitions + stage, epoch {e:g} s", lambda e=e: StagedGuard(n, epoch_seconds=e))
        for e in epochs
    ]
    variants.append(
        (
            f"1 partition + stage, epoch {epochs[0]:g} s",
            lambda: StagedGuard(1, epoch_seconds=epochs[0]),
        )
    )
    rows = []
    base = None
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("replaying", total=len(variants))
        for name, make in variants:
            decided, records, seconds = replay(make(), events)
            base = base or decided
            rows.append((name, score(decided, records, truth, attacker, base), seconds))
            progress.advance(task)
    table = Table(title=f"{run.name}: {len(events):,} events, {len(base):,} decision points")
    for col in (
        "variant",
        "campaign ids",
        "pumped named",
        "median delay s",
        "attacker let through",
        "decisions differ",
        "legit login challenge",
        "legit order hold",
        "events/s",
    ):
        table.add_column(col, justify="left" if col == "variant" else "right")
    for name, m, seconds in rows:
        table.add_row(
            name,
            str(m["ids"]),
            str(m["named"]),
            "-" if m["delay"] is None else f"{m['delay']:.0f}",
            str(m["through"]),
            f"{m['differ']:,}",
            f"{m['challenge']:.2%}",
            f"{m['hold']:.2%}",
            f"{len(events) / seconds:,.0f}",
        )
    console.print(table)


if __name__ == "__main__":
    main()
