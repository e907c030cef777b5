"""Benchmark: the service's reports from its own records, cold and warm (default spring-2025).

    python bench/reports.py [SCENARIO] [--investors N] [--cases N] [--work DIR] [--repeat N]
                            [--only page|monthly|compensation]

Builds a service database the way ``brokerguard demo`` does — the scenario simulated under the
``brokerguard`` guard, its events decided and recorded by the same service ``brokerguard serve``
runs (:func:`brokerguard.service.demo_console.load_run`) — then closes cases as fraud on the
accounts of the run's victims (``--cases``, through the same functions as ``/v1/cases``), and
times :func:`brokerguard.service.reporting.report_tables` as the console's reports page asks
for it (monthly table and every compensation policy), and as the API's two routes ask:

- **cold**: a service object the reports have never seen;
- **warm**: the same request again, nothing changed;
- **after a change**: one more case closed as fraud, then the request again.

Each figure is the median of ``--repeat`` runs; peak memory is the largest traced allocation
(tracemalloc) of one more run of each kind, measured apart so that tracing slows no timing.
``--work DIR`` keeps the run and the database, so a second bench run skips building them
(the build takes a few minutes; the reports themselves seconds). Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import sqlalchemy as sa

from brokerguard.guards import load_guard
from brokerguard.reports import compensation_table, monthly_table
from brokerguard.reports.labels import labels_from_cases, load_cases
from brokerguard.service import actions
from brokerguard.service.db import make_engine, write_transaction
from brokerguard.service.demo_console import DATABASE_FILE, load_run
from brokerguard.service.exports import CASES, export_run
from brokerguard.service.models import alerts, cases, decisions, events
from brokerguard.service.reporting import choose_policies, report_tables
from brokerguard.sim.scenario import load_scenario
from brokerguard.sim.world import simulate
from brokerguard.truth import Truth

ROOT = Path(__file__).resolve().parent.parent


class Records:
    """What :func:`report_tables` needs of a service: ``read()``. A new one is a cold cache."""

    def __init__(self, engine: sa.Engine) -> None:
        self.db = engine

    def read(self) -> sa.Connection:
        return self.db.connect()


def build(scenario_path: str, investors: int | None, guard: str, work: Path) -> Path:
    """The run under ``work/run`` and its database under ``work/db``; made once."""
    run, db = work / "run", work / "db"
    if not (run / "truth.json").is_file():
        scenario = load_scenario(scenario_path)
        if investors:
            broker = msgspec.structs.replace(scenario.broker, investors=investors)
            scenario = msgspec.structs.replace(scenario, broker=broker)
        started = time.perf_counter()
        summary = simulate(scenario, load_guard(guard), run)
        print(
            f"simulated         {summary.events:,} events in {time.perf_counter() - started:.0f} s"
        )
    if not (db / "loaded").is_file():
        started = time.perf_counter()
        totals = load_run(run, db)
        (db / "loaded").write_text(str(totals))
        print(f"loaded            {totals} in {time.perf_counter() - started:.0f} s")
    return db / DATABASE_FILE


def close_fraud_cases(engine: sa.Engine, truth: Truth, count: int, skip: int = 0) -> list[int]:
    """Close a case as fraud on each of ``count`` victims (after ``skip``) with an alert."""
    closed = []
    with engine.connect() as conn:
        alerted = set(conn.scalars(sa.select(alerts.c.account).distinct()))
    victims = [v.account for v in truth.victims if v.account in alerted]
    for account in victims[skip : skip + count]:
        with write_transaction(engine) as conn:
            case = actions.create_case(conn, "bench", account=account)
            actions.update_case(conn, "bench", case["id"], {"status": "closed", "outcome": "fraud"})
        closed.append(case["id"])
    return closed


def full_export(engine: sa.Engine, policies: list[Any]) -> tuple[list[Any], list[Any]]:
    """Both tables the way they were computed before they were kept: everything exported."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        with engine.connect() as conn:
            export_run(conn, out)
        labels = labels_from_cases(load_cases(out / CASES), source="fraud cases")
        return monthly_table(out, labels), compensation_table(out, policies, labels)


def timed(work: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def traced(work: Callable[[], Any]) -> float:
    """Peak traced allocation of ``work`` in MiB."""
    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", nargs="?", default=str(ROOT / "scenarios/spring-2025.toml"))
    parser.add_argument("--investors", type=int, default=None)
    parser.add_argument("--cases", type=int, default=150, help="victims closed as fraud")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "bench-reports")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--guard",
        default="brokerguard",
        help="the guard of the simulated run (the service decides again with its engine); "
        "a weak one (otp-at-login) leaves victims with losses to compensate",
    )
    parser.add_argument(
        "--only", default="", help="the requests whose name contains this (page, monthly, …)"
    )
    args = parser.parse_args()

    path = build(args.scenario, args.investors, args.guard, args.work)
    engine = make_engine(f"sqlite:///{path}")
    truth = msgspec.json.decode((args.work / "run" / "truth.json").read_bytes(), type=Truth)
    with engine.connect() as conn:
        fraud = conn.scalar(sa.select(sa.func.count()).where(cases.c.outcome == "fraud"))
    if not fraud:
        close_fraud_cases(engine, truth, args.cases)
    with engine.connect() as conn:
        n_events = conn.scalar(sa.select(sa.func.count()).select_from(events))
        n_decisions = conn.scalar(sa.select(sa.func.count()).select_from(decisions))
        n_alerts = conn.scalar(sa.select(sa.func.count()).select_from(alerts))
        n_fraud = conn.scalar(sa.select(sa.func.count()).where(cases.c.outcome == "fraud"))
    print(
        f"database          {path} ({path.stat().st_size / 2**20:,.0f} MiB): {n_events:,} events, "
        f"{n_decisions:,} decisions, {n_alerts:,} alerts, {n_fraud:,} cases closed as fraud"
    )

    every = choose_policies(None)
    requests: dict[str, Callable[[Any], Any]] = {
        "page (monthly + compensation)": lambda svc: report_tables(svc, None, True, every),
        "/v1/reports/monthly": lambda svc: report_tables(svc, None, True, None),
        "/v1/reports/compensation": lambda svc: report_tables(svc, None, False, every),
    }
    started = time.perf_counter()
    before = full_export(engine, every)
    took = time.perf_counter() - started
    same = before == report_tables(Records(engine), None, True, every)
    print(
        f"full export       {took:.2f} s: every record exported, both tables computed (the "
        f"path before the tables were kept); {len(before[0])} months, "
        f"{sum(r.logins for r in before[0])} logins, {sum(r.trades for r in before[0])} trades, "
        f"{len(before[1])} compensation rows; report_tables {'equal' if same else 'DIFFERENT'}"
    )
    columns = ("cold s", "warm s", "changed s", "cold MiB", "warm MiB")
    print(f"{'request':32} " + " ".join(f"{c:>9}" for c in columns))
    skip = n_fraud
    added: list[int] = []
    for name, ask in requests.items():
        if args.only not in name:
            continue
        cold = timed(lambda ask=ask: ask(Records(engine)), args.repeat)
        svc = Records(engine)
        ask(svc)
        warm = timed(lambda ask=ask, svc=svc: ask(svc), args.repeat)
        changes = []
        for _ in range(args.repeat):
            added += close_fraud_cases(engine, truth, 1, skip=skip)
            skip += 1
            changes.append(timed(lambda ask=ask, svc=svc: ask(svc), 1))
        cold_mib = traced(lambda ask=ask: ask(Records(engine)))
        warm_mib = traced(lambda ask=ask, svc=svc: ask(svc))
        print(
            f"{name:32} {cold:9.2f} {warm:9.3f} {statistics.median(changes):9.2f} "
            f"{cold_mib:9.1f} {warm_mib:9.2f}"
        )
    with write_transaction(engine) as conn:  # the next bench run starts from the same labels
        for case_id in added:
            actions.update_case(conn, "bench", case_id, {"outcome": "not_fraud"})
    engine.dispose()


if __name__ == "__main__":
    main()
