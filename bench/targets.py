"""Targets: does the detection engine meet the product's targets on each scenario?

    python bench/targets.py [SCENARIO ...] [--guard NAME|POLICY.toml] [--seed N] [--out DIR]
                            [--json FILE] [--jobs N]

Each scenario (default: every file in scenarios/ except tiny.toml) is simulated under allow-all,
passkey-at-login and the engine (``--guard``, default ``brokerguard``; a policy file runs the
engine with that policy). The runs are scored with :func:`brokerguard.evaluate.evaluate_run`, and
two figures the evaluation does not have are measured here from the run files: whether the
customers of a retail frenzy and of a sell-off (labelled by the simulator in ``truth.json``) were
left alone, and how long after its first coordinated buy each pumped symbol was named by a
campaign. One table per scenario shows each target, the measured figure and pass/fail; the
results go to a JSON file. A bench prints; it asserts nothing.

The targets (from the engine's issue):

- unauthorized value executed ≤ 1% of allow-all's, and below passkey-at-login's;
- legitimate login challenge rate ≤ 2%, legitimate order hold rate ≤ 0.2%, no legitimate account
  locked, every frenzy buyer and every sell-off seller left alone (no login or order of theirs
  in the confounder's window answered with anything but ``allow``);
- every pumped symbol named by a campaign within 10 minutes of the first coordinated buy. A
  symbol counts as pumped when at least two hijacked accounts placed buys in it
  (:data:`COORDINATED`): a buy by a single hijacked account is no cross-account campaign to
  name, so such symbols are listed apart (the per-account trading detector must hold that buy,
  and the unauthorized value counts it if it executed).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import queue
import shutil
import tempfile
import time
from concurrent.futures import Future, ProcessPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from brokerguard.evaluate import Campaign, evaluate_run, orders_named_for_cancelling
from brokerguard.guard import DecisionRecord
from brokerguard.guards import UnknownGuard, load_guard
from brokerguard.sim.scenario import ScenarioError, load_scenario
from brokerguard.sim.world import simulate
from brokerguard.truth import Truth, load_truth

ROOT = Path(__file__).resolve().parent.parent
BASELINES = ("allow-all", "passkey-at-login")

VALUE_SHARE = 0.01  # of allow-all's unauthorized value
LOGIN_CHALLENGE_RATE = 0.02
ORDER_HOLD_RATE = 0.002
CAMPAIGN_DELAY_S = 600.0
COORDINATED = 2  # hijacked accounts buying one symbol for a coordinated buy

#: How long after a confounder's last session starts its logins and orders are still its own:
#: a login comes first in a session (a mistyped password may delay it by a minute); orders follow
#: within minutes, or wait for a held order's confirmation.
LOGIN_SLACK = timedelta(minutes=10)
ORDER_SLACK = timedelta(hours=2)


# --- measuring one run -----------------------------------------------------------------------


class _Line(msgspec.Struct):
    """The fields of a login or an order that this bench needs (other fields are skipped)."""

    type: str
    id: str
    ts: datetime
    account: str
    success: bool = True
    action: str = "new"
    order_id: str = ""
    symbol: str = ""
    market: str = ""
    side: str = ""


def _logins_and_orders(run_dir: Path):
    decoder = msgspec.json.Decoder(_Line)
    with open(run_dir / "events.ndjson", "rb") as stream:
        for raw in stream:
            if raw.startswith(b'{"type":"login"') or raw.startswith(b'{"type":"order"'):
                yield decoder.decode(raw)


def _raised(run_dir: Path) -> dict[tuple[str, str], datetime]:
    """When a campaign first named each symbol (market, symbol)."""
    raised: dict[tuple[str, str], datetime] = {}
    path = run_dir / "campaigns.ndjson"
    if path.is_file():
        decoder = msgspec.json.Decoder(Campaign)
        with open(path, "rb") as stream:
            for raw in stream:
                if raw.strip():
                    campaign = decoder.decode(raw)
                    for s in campaign.symbols:
                        key = (s.market, s.symbol)
                        if key not in raised or campaign.raised_at < raised[key]:
                            raised[key] = campaign.raised_at
    return raised


def measure_run(run_dir: Path, truth: Truth) -> dict[str, Any]:
    """What the evaluation does not measure, from the run files and labels (one pass each).

    ``confounders``: for each labelled frenzy and sell-off, its customers' logins and orders in
    its window and how many the guard answered with anything but ``allow``. Frenzy: successful
    logins of the buyers from the frenzy's start to its last session's start (plus a few
    minutes) and their buys of the frenzy symbol; sell-off: the sellers' successful logins in the
    window and their sells. Ordinary sessions of the same customers in the window count too —
    friction in the middle of a frenzy is friction all the same. Victims and the criminals'
    accounts are left out (a frenzy buyer may be phished later).

    ``pumped``: for each pumped symbol, seconds from its first attack buy to the first campaign
    naming it (None: never named; 0 when named before the first buy) and how many hijacked
    accounts placed buy orders in it. ``other_campaign_symbols``: symbols campaigns named that
    no attacker bought (a frenzy symbol is marked as such).
    """
    labels = [c for c in truth.confounders if c.kind in ("frenzy", "selloff")]
    excluded = {v.account for v in truth.victims} | set(truth.criminal_accounts)
    groups = [set(c.accounts) - excluded for c in labels]
    watched = set().union(*groups)
    attack_orders = {(v.account, o) for v in truth.victims for o in v.orders}

    not_allowed: dict[str, str] = {}
    decoder = msgspec.json.Decoder(DecisionRecord)
    with open(run_dir / "decisions.ndjson", "rb") as stream:
        for raw in stream:
            rec = decoder.decode(raw)
            if rec.action != "allow" and rec.account in watched:
                not_allowed[rec.event] = rec.action
    named = orders_named_for_cancelling(run_dir)  # a cancel of one of them is the guard's doing

    stats = [
        {
            "kind": c.kind,
            "index": c.index,
            "symbol": c.symbol,
            "market": c.market,
            "start": c.start.isoformat(),
            "end": c.end.isoformat(),
            "accounts": len(group),
            "logins": 0,
            "orders": 0,
            "not_allowed": {},
            "accounts_not_left_alone": set(),
        }
        for c, group in zip(labels, groups, strict=True)
    ]
    hijacked_buyers: dict[tuple[str, str], set[str]] = {}
    buy_orders: dict[tuple[str, str], int] = {}
    for event in _logins_and_orders(run_dir):
        if event.type == "order" and (event.account, event.order_id) in attack_orders:
            if event.action == "new" and event.side == "buy":
                key = (event.market, event.symbol)
                hijacked_buyers.setdefault(key, set()).add(event.account)
                buy_orders[key] = buy_orders.get(key, 0) + 1
            continue
        if event.account not in watched:
            continue
        for c, group, stat in zip(labels, groups, stats, strict=True):
            if event.account not in group or event.ts < c.start:
                continue
            if event.type == "login":
                if not event.success or event.ts > c.end + LOGIN_SLACK:
                    continue
                stat["logins"] += 1
            elif event.action == "cancel":
                asked = named.get((event.account, event.order_id))
                if asked is not None and event.ts >= asked:
                    stat["not_allowed"]["order_cancelled"] = (
                        stat["not_allowed"].get("order_cancelled", 0) + 1
                    )
                    stat["accounts_not_left_alone"].add(event.account)
                continue
            else:
                if event.action != "new" or event.ts > c.end + ORDER_SLACK:
                    continue
                if c.kind == "frenzy" and (event.side, event.symbol, event.market) != (
                    "buy",
                    c.symbol,
                    c.market,
                ):
                    continue
                if c.kind == "selloff" and event.side != "sell":
                    continue
                stat["orders"] += 1
            action = not_allowed.get(event.id)
            if action is not None:
                key = f"{event.type}_{action}"
                stat["not_allowed"][key] = stat["not_allowed"].get(key, 0) + 1
                stat["accounts_not_left_alone"].add(event.account)
    for stat in stats:
        stat["accounts_not_left_alone"] = len(stat["accounts_not_left_alone"])

    raised = _raised(run_dir)
    pumped = {}
    for p in truth.pumped_symbols:
        key = (p.market, p.symbol)
        at = raised.get(key)
        pumped[f"{p.market}:{p.symbol}"] = {
            "delay_s": None if at is None else max(0.0, (at - p.first_buy).total_seconds()),
            "hijacked_buyers": len(hijacked_buyers.get(key, ())),
            "buy_orders": buy_orders.get(key, 0),
        }
    frenzies = {(c.market, c.symbol) for c in labels if c.kind == "frenzy"}
    other = [
        f"{m}:{s}" + (" (frenzy)" if (m, s) in frenzies else "")
        for m, s in sorted(raised)
        if f"{m}:{s}" not in pumped
    ]
    return {"confounders": stats, "pumped": pumped, "other_campaign_symbols": other}


def run_one(
    scenario_path: str, guard: str, seed: int | None, out_dir: str, updates: Any, key: str
) -> dict[str, Any]:
    """Simulate one scenario under one guard and measure the run (in a worker process)."""
    scenario = load_scenario(scenario_path)
    if seed is not None:
        scenario = msgspec.structs.replace(scenario, seed=seed)
    run_dir = Path(out_dir)
    started = time.perf_counter()
    last = [-1.0]

    def progress(fraction: float) -> None:
        if fraction - last[0] >= 0.01 or fraction >= 1.0:
            last[0] = fraction
            updates.put((key, "simulating", fraction))

    simulate(scenario, load_guard(guard), run_dir, progress)
    simulated = time.perf_counter() - started
    updates.put((key, "evaluating", 1.0))
    truth = load_truth(run_dir / "truth.json")
    return {
        "metrics": evaluate_run(run_dir),
        **measure_run(run_dir, truth),
        "simulate_s": round(simulated, 1),
        "total_s": round(time.perf_counter() - started, 1),
    }


# --- judging a scenario ----------------------------------------------------------------------


def _target(name: str, measured: str, ok: bool | None) -> dict[str, Any]:
    return {"target": name, "measured": measured, "status": "n/a" if ok is None else ok}


def orders_stopped_rate(legit: dict[str, Any]) -> float:
    """Customers' orders held, or cancelled on the guard's instruction, per order placed: both
    stop an honest order (a cancel after the fact, which is why it counts no less)."""
    stopped = legit["orders_held"] + legit.get("orders_cancelled", 0)
    return stopped / legit["orders"] if legit["orders"] else 0.0


def judge(runs: dict[str, dict[str, Any]], engine: str) -> list[dict[str, Any]]:
    """Each target with the measured figure and True/False (or "n/a" where it does not apply)."""
    value = {g: r["metrics"]["attack"]["unauthorized_value_jpy"] for g, r in runs.items()}
    allow, passkey, mine = value["allow-all"], value["passkey-at-login"], value[engine]
    legit = runs[engine]["metrics"]["legit"]
    targets = []

    share = mine / allow if allow else None
    targets.append(
        _target(
            "unauthorized value ≤ 1% of allow-all's",
            "no attack value under allow-all"
            if share is None
            else f"{share:.2%}  (¥{mine:,.0f} of ¥{allow:,.0f})",
            None if share is None else share <= VALUE_SHARE,
        )
    )
    targets.append(
        _target(
            "unauthorized value below passkey-at-login's",
            "no attack value under passkey-at-login"
            if not passkey and not mine
            else f"¥{mine:,.0f} vs ¥{passkey:,.0f}",
            None if not passkey and not mine else mine < passkey,
        )
    )
    rate = legit["login_challenge_rate"]
    targets.append(
        _target(
            "legit login challenge rate ≤ 2%",
            f"{rate:.2%}  ({legit['login_challenges']:,} of {legit['logins']:,})",
            rate <= LOGIN_CHALLENGE_RATE,
        )
    )
    rate = orders_stopped_rate(legit)
    targets.append(
        _target(
            "legit orders held or cancelled ≤ 0.2%",
            f"{rate:.2%}  ({legit['orders_held']:,} held, "
            f"{legit.get('orders_cancelled', 0):,} cancelled, of {legit['orders']:,})",
            rate <= ORDER_HOLD_RATE,
        )
    )
    locked = legit["accounts_locked"]
    targets.append(_target("no legit account locked", f"{locked:,} locked", locked == 0))

    for kind, label, who in (
        ("frenzy", "every frenzy buyer left alone", "buyers"),
        ("selloff", "every sell-off seller left alone", "sellers"),
    ):
        groups = [c for c in runs[engine]["confounders"] if c["kind"] == kind]
        if not groups:
            targets.append(_target(label, f"no {kind} in the scenario", None))
            continue
        accounts = sum(c["accounts"] for c in groups)
        bothered = sum(c["accounts_not_left_alone"] for c in groups)
        counts: dict[str, int] = {}
        for c in groups:
            for k, n in c["not_allowed"].items():
                counts[k] = counts.get(k, 0) + n
        detail = ", ".join(f"{k.replace('_', ' ')} {n}" for k, n in sorted(counts.items()))
        logins = sum(c["logins"] for c in groups)
        orders = sum(c["orders"] for c in groups)
        measured = f"{bothered:,} of {accounts:,} {who} not left alone"
        measured += f" ({detail})" if detail else f" ({logins:,} logins, {orders:,} orders)"
        targets.append(_target(label, measured, bothered == 0))

    everything = runs[engine]["pumped"]
    pumped = {s: p for s, p in everything.items() if p["hijacked_buyers"] >= COORDINATED}
    lone = [
        f"{s} ({'never named' if p['delay_s'] is None else 'named ' + _minutes(p['delay_s'])})"
        for s, p in everything.items()
        if 0 < p["hijacked_buyers"] < COORDINATED
    ]
    lone_text = f"bought by one hijacked account only (not judged): {', '.join(lone)}"
    if not pumped:
        measured = "no pumped symbol" + (f" ({lone_text})" if lone else "")
        targets.append(_target("every pumped symbol detected ≤ 10 min", measured, None))
    else:
        named = [p["delay_s"] for p in pumped.values() if p["delay_s"] is not None]
        in_time = sum(d <= CAMPAIGN_DELAY_S for d in named)
        measured = f"{in_time} of {len(pumped)} in time"
        if named:
            measured += f", slowest {_minutes(max(named))}"
        missed = [
            f"{s} ({_accounts(p['hijacked_buyers'])})"
            for s, p in pumped.items()
            if p["delay_s"] is None
        ]
        late = [
            f"{s} ({_minutes(p['delay_s'])})"
            for s, p in pumped.items()
            if p["delay_s"] is not None and p["delay_s"] > CAMPAIGN_DELAY_S
        ]
        if missed:
            measured += f"; never named: {', '.join(missed)}"
        if late:
            measured += f"; late: {', '.join(late)}"
        if lone:
            measured += f"; {lone_text}"
        targets.append(
            _target("every pumped symbol detected ≤ 10 min", measured, in_time == len(pumped))
        )
    return targets


def _accounts(n: int) -> str:
    return f"{n} hijacked account{'s' if n != 1 else ''} bought"


def _minutes(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m {secs:02d}s"


def scenario_table(name: str, info: str, runs: dict[str, Any], targets: list, engine: str) -> Table:
    attack = {g: r["metrics"]["attack"] for g, r in runs.items()}
    table = Table(title=f"{name} — {info}", title_justify="left")
    table.add_column("target")
    table.add_column(f"measured ({engine})")
    table.add_column("result", justify="center")
    for t in targets:
        status = t["status"]
        cell = (
            "[green]pass[/green]"
            if status is True
            else "[red]FAIL[/red]"
            if status is False
            else "[dim]n/a[/dim]"
        )
        table.add_row(t["target"], t["measured"], cell)
    a = attack[engine]
    allow = attack["allow-all"]["unauthorized_value_jpy"]
    passkey = attack["passkey-at-login"]["unauthorized_value_jpy"]
    table.caption = (
        f"victims {a['victims']:,} · taken over {a['takeovers']:,} · with unauthorized trades "
        f"{a['victims_with_unauthorized_trades']:,} · withdrawals paid "
        f"{a['unauthorized_withdrawals']} · unauthorized value: allow-all ¥{allow:,.0f}, "
        f"passkey-at-login ¥{passkey:,.0f}"
    )
    other = runs[engine]["other_campaign_symbols"]
    if other:
        table.caption += f"\ncampaigns also named symbols no attacker bought: {', '.join(other)}"
    table.caption_justify = "left"
    return table


def summary_line(name: str, targets: list[dict[str, Any]]) -> str:
    applicable = [t for t in targets if t["status"] != "n/a"]
    failed = [t["target"] for t in applicable if t["status"] is False]
    met = len(applicable) - len(failed)
    line = f"{name}: {met}/{len(applicable)} targets met"
    return line + (f" — failed: {'; '.join(failed)}" if failed else " — all met")


# --- the command -----------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "scenarios", nargs="*", help="scenario files (default: scenarios/*.toml except tiny.toml)"
    )
    parser.add_argument("--guard", default="brokerguard", help="engine name or policy .toml path")
    parser.add_argument("--seed", type=int, default=None, help="override every scenario's seed")
    parser.add_argument("--out", type=Path, default=None, help="keep the runs here")
    parser.add_argument(
        "--json", type=Path, default=None, help="results file (default: OUT/targets.json)"
    )
    parser.add_argument(
        "--jobs", type=int, default=min(3, os.cpu_count() or 1), help="runs in parallel"
    )
    args = parser.parse_args()
    paths = [Path(p) for p in args.scenarios] or [
        p for p in sorted((ROOT / "scenarios").glob("*.toml")) if p.name != "tiny.toml"
    ]
    try:  # a bad --guard or scenario fails here, before anything runs
        engine = load_guard(args.guard).name
        loaded = [(path, load_scenario(path)) for path in paths]
    except (UnknownGuard, ScenarioError) as exc:
        parser.error(str(exc))
    console = Console()

    with tempfile.TemporaryDirectory(prefix="bg-targets-") as tmp:
        out = args.out or Path(tmp)
        json_path = args.json or (args.out / "targets.json" if args.out else None)
        scenarios = [
            (path, scenario, scenario.seed if args.seed is None else args.seed)
            for path, scenario in loaded
        ]
        results = _run_all(
            scenarios, args.guard, engine, args.seed, out, args.jobs, console, keep=bool(args.out)
        )

        report = {"guard": engine, "seed": args.seed, "scenarios": results}
        if json_path is not None:
            json_path.parent.mkdir(parents=True, exist_ok=True)
            json_path.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    console.print()
    for r in results:
        console.print(summary_line(r["name"], r["targets"]))
    if json_path is not None:
        console.print(f"results: {json_path}")


def _run_all(
    scenarios, guard, engine, seed, out, jobs, console, keep: bool = True
) -> list[dict[str, Any]]:
    """Run every scenario under every guard; ``keep=False`` deletes a scenario's run files as
    soon as it is judged (a run of a few thousand customers writes about 100 MB)."""
    guards = (*BASELINES, guard)
    manager = multiprocessing.Manager()
    updates = manager.Queue()
    pending: dict[Future, tuple[int, str]] = {}
    runs: list[dict[str, Any]] = [{} for _ in scenarios]
    results: list[dict[str, Any] | None] = [None] * len(scenarios)
    columns = (
        TextColumn("{task.description:<34}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
    )
    with (
        Progress(*columns, console=console) as progress,
        ProcessPoolExecutor(max_workers=max(1, jobs)) as pool,
    ):
        overall = progress.add_task("runs", total=len(scenarios) * len(guards))
        tasks: dict[str, TaskID] = {}
        for i, (path, scenario, _) in enumerate(scenarios):
            for g in (guard, *BASELINES):  # the slow engine run first
                key = f"{scenario.name}/{g}"
                run_dir = out / scenario.name / g.replace(":", "-").replace("/", "-")
                future = pool.submit(run_one, str(path), g, seed, str(run_dir), updates, key)
                pending[future] = (i, g)
        while pending:
            try:
                while True:
                    key, phase, fraction = updates.get(timeout=0.2)
                    if key not in tasks:
                        tasks[key] = progress.add_task(key, total=1.0)
                    progress.update(tasks[key], completed=fraction, description=f"{key} {phase}")
            except queue.Empty:
                pass
            for future in [f for f in pending if f.done()]:
                i, g = pending.pop(future)
                path, scenario, run_seed = scenarios[i]
                key = f"{scenario.name}/{g}"
                if key in tasks:
                    progress.remove_task(tasks.pop(key))
                progress.advance(overall)
                runs[i][g] = future.result()
                if len(runs[i]) == len(guards):
                    named = {engine if g == guard else g: r for g, r in runs[i].items()}
                    targets = judge(named, engine)
                    info = (
                        f"seed {run_seed}, {scenario.broker.investors:,} investors, "
                        f"{scenario.days} days"
                    )
                    progress.console.print(
                        scenario_table(scenario.name, info, named, targets, engine)
                    )
                    if not keep:
                        shutil.rmtree(out / scenario.name, ignore_errors=True)
                    results[i] = {
                        "scenario": str(path),
                        "name": scenario.name,
                        "seed": run_seed,
                        "targets": targets,
                        "met": all(t["status"] is not False for t in targets),
                        "runs": named,
                    }
    manager.shutdown()
    return [r for r in results if r is not None]


if __name__ == "__main__":
    main()
