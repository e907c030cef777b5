"""The ``brokerguard`` command: thin commands over the library."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import msgspec
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from brokerguard.guards import UnknownGuard, load_guard
from brokerguard.sim.scenario import Scenario, ScenarioError, load_scenario

app = typer.Typer(
    help="BrokerGuard: stop account takeover and unauthorized trading at online brokers.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(stderr=True)


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}", soft_wrap=True, markup=True, highlight=False)
    return typer.Exit(code=2)


def _scenario(path: Path, seed: int | None, investors: int | None, days: int | None) -> Scenario:
    try:
        scenario = load_scenario(path)
    except ScenarioError as exc:
        raise _fail(str(exc)) from None
    changes: dict[str, object] = {}
    if seed is not None:
        changes["seed"] = seed
    if days is not None:
        changes["days"] = days
    if investors is not None:
        changes["broker"] = msgspec.structs.replace(scenario.broker, investors=investors)
    if changes:
        try:
            raw = msgspec.to_builtins(msgspec.structs.replace(scenario, **changes))
            scenario = msgspec.convert(raw, type=Scenario)
        except (msgspec.ValidationError, ValueError) as exc:
            raise _fail(f"{path}: {exc}") from None
    return scenario


def _run(scenario: Scenario, guard_name: str, out: Path, label: str) -> dict:
    from brokerguard.evaluate import evaluate_run
    from brokerguard.sim.world import simulate

    try:
        guard = load_guard(guard_name)
    except UnknownGuard as exc:
        raise _fail(str(exc)) from None
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task(label, total=1.0)
        summary = simulate(scenario, guard, out, lambda f: progress.update(task, completed=f))
    metrics = evaluate_run(out)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1, ensure_ascii=False) + "\n")
    console.print(f"{label}: {summary.events:,} events, {summary.decisions:,} decisions -> {out}")
    return metrics


SeedOpt = Annotated[int | None, typer.Option(help="Override the scenario's seed.")]
InvestorsOpt = Annotated[int | None, typer.Option(help="Override broker.investors.")]
DaysOpt = Annotated[int | None, typer.Option(help="Override the number of days.")]


@app.command()
def simulate(
    scenario: Annotated[Path, typer.Argument(help="Scenario TOML file.")],
    out: Annotated[Path, typer.Option("--out", help="Directory for the run's files.")],
    guard: Annotated[str, typer.Option(help="Guard to run against.")] = "allow-all",
    seed: SeedOpt = None,
    investors: InvestorsOpt = None,
    days: DaysOpt = None,
) -> None:
    """Simulate a broker under attack, closed loop against a guard; write the run to --out."""
    sc = _scenario(scenario, seed, investors, days)
    _run(sc, guard, out, f"{sc.name} / {guard}")


@app.command()
def evaluate(
    run: Annotated[Path, typer.Argument(help="A run directory written by simulate.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False,
) -> None:
    """Score a run against its ground truth: attacks stopped, value lost, friction."""
    from brokerguard.evaluate import evaluate_run, format_table

    try:
        metrics = evaluate_run(run)
    except (OSError, ValueError) as exc:
        raise _fail(str(exc)) from None
    if as_json:
        typer.echo(json.dumps(metrics, ensure_ascii=False))
    else:
        Console().print(format_table([metrics]))


@app.command()
def compare(
    scenario: Annotated[Path, typer.Argument(help="Scenario TOML file.")],
    guards: Annotated[str, typer.Option(help="Comma-separated guard names.")] = (
        "allow-all,otp-at-login,passkey-at-login"
    ),
    out: Annotated[Path, typer.Option("--out", help="Directory for the runs.")] = Path("runs"),
    seed: SeedOpt = None,
    investors: InvestorsOpt = None,
    days: DaysOpt = None,
) -> None:
    """Run the same scenario and seed under several guards and compare them side by side."""
    from brokerguard.charts import plot_unauthorized_value
    from brokerguard.evaluate import format_table, unauthorized_value_timeline

    sc = _scenario(scenario, seed, investors, days)
    names = [g.strip() for g in guards.split(",") if g.strip()]
    if not names:
        raise _fail("--guards names no guard")
    for name in names:  # fail before the first long run, not after it
        try:
            load_guard(name)
        except UnknownGuard as exc:
            raise _fail(str(exc)) from None
    results = []
    timelines = {}
    for name in names:
        run_dir = out / name
        results.append(_run(sc, name, run_dir, f"{sc.name} / {name}"))
        timelines[name] = unauthorized_value_timeline(run_dir)
    Console().print(format_table(results))
    chart = plot_unauthorized_value(
        timelines,
        out / "unauthorized-value.png",
        f"{sc.name}: unauthorized value executed, by guard",
    )
    (out / "compare.json").write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    console.print(f"chart: {chart}")


def main() -> None:  # pragma: no cover
    app()


from brokerguard.phishing.cli import phish_app  # noqa: E402

app.add_typer(phish_app, name="phish")
