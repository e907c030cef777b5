"""The ``brokerguard`` command: thin commands over the library."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated

import msgspec
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from brokerguard.files import write_text
from brokerguard.guards import UnknownGuard, load_guard
from brokerguard.sim.scenario import Scenario, ScenarioError, load_scenario

app = typer.Typer(
    help="BrokerGuard: stop account takeover and unauthorized trading at online brokers.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(stderr=True)


def _screen() -> Console:
    """Where tables go: the terminal at its width, or a file or pipe at a width tables fit."""
    screen = Console()
    return screen if screen.is_terminal else Console(width=150)


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


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def _run(
    scenario: Scenario, guard_name: str, out: Path, label: str
) -> tuple[dict, list[tuple[datetime, float]]]:
    """Simulate, evaluate, write metrics.json; the metrics and the unauthorized-value timeline."""
    from brokerguard.evaluate import evaluate_run_and_timeline
    from brokerguard.sim.world import simulate

    try:
        guard = load_guard(guard_name)
    except UnknownGuard as exc:
        raise _fail(str(exc)) from None
    try:
        with _progress() as progress:
            task = progress.add_task(label, total=1.0)
            summary = simulate(scenario, guard, out, lambda f: progress.update(task, completed=f))
        metrics, timeline = evaluate_run_and_timeline(out)
        write_text(out / "metrics.json", json.dumps(metrics, indent=1, ensure_ascii=False) + "\n")
    except OSError as exc:  # --out a file, not writable, a full disk: named, not a traceback
        raise _written_failure(exc, out) from None
    console.print(f"{label}: {summary.events:,} events, {summary.decisions:,} decisions -> {out}")
    return metrics, timeline


def _written_failure(exc: OSError, out: Path) -> typer.Exit:
    """An ``OSError`` reading or writing under ``out``, in one line naming the file (``out``
    if the system named none)."""
    from brokerguard.cluster.failure import failure_message

    if exc.filename is None:
        exc = OSError(exc.errno, exc.strerror or str(exc), str(out))
    return _fail(failure_message(exc))


def _compare(
    sc: Scenario, names: list[str], out: Path
) -> tuple[list[dict], dict[str, list[tuple[datetime, float]]]]:
    """One run per guard under ``out/<guard's name>``: their metrics and unauthorized-value
    timelines. A policy file runs as ``brokerguard:<stem>``, so its run goes there: its path
    joined to ``out`` could point anywhere (an absolute one is the policy file itself)."""
    folders: dict[str, str] = {}
    for name in names:  # fail before the first long run, not after it
        try:
            folder = load_guard(name).name
        except UnknownGuard as exc:
            raise _fail(str(exc)) from None
        if folder in folders.values():
            other = next(n for n, f in folders.items() if f == folder)
            raise _fail(
                f"--guards: {other!r} and {name!r} both run as {folder} ({out / folder}); "
                "name each guard once and give policy files different names"
            )
        folders[name] = folder
    results = []
    timelines = {}
    for name in names:
        metrics, timelines[name] = _run(sc, name, out / folders[name], f"{sc.name} / {name}")
        results.append(metrics)
    return results, timelines


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
    except OSError as exc:  # a file of the run that cannot be read: named (it was the errno alone)
        if exc.errno is None:  # raised with a message of its own, which names the file
            raise _fail(str(exc)) from None
        raise _written_failure(exc, run) from None
    except ValueError as exc:
        raise _fail(str(exc)) from None
    if as_json:
        typer.echo(json.dumps(metrics, ensure_ascii=False))
    else:
        Console().print(format_table([metrics], lang="both"))


def _value_title(name: str) -> str:
    """The unauthorized-value chart's title, in Japanese too when the chart can draw it."""
    from brokerguard.charts import bilingual

    return bilingual(
        f"{name}: unauthorized value executed, by guard",
        f"{name}：ガード別 不正取引・出金額（累計）",
        "\n",
    )


@app.command()
def compare(
    scenario: Annotated[Path, typer.Argument(help="Scenario TOML file.")],
    guards: Annotated[str, typer.Option(help="Comma-separated guard names.")] = (
        "allow-all,otp-at-login,passkey-at-login,brokerguard"
    ),
    out: Annotated[Path, typer.Option("--out", help="Directory for the runs.")] = Path("runs"),
    seed: SeedOpt = None,
    investors: InvestorsOpt = None,
    days: DaysOpt = None,
) -> None:
    """Run the same scenario and seed under several guards and compare them side by side."""
    from brokerguard.charts import plot_unauthorized_value
    from brokerguard.evaluate import format_table

    sc = _scenario(scenario, seed, investors, days)
    names = [g.strip() for g in guards.split(",") if g.strip()]
    if not names:
        raise _fail("--guards names no guard")
    results, timelines = _compare(sc, names, out)
    _screen().print(format_table(results, lang="both"))
    try:
        chart = plot_unauthorized_value(
            timelines,
            out / "unauthorized-value.png",
            _value_title(sc.name),
        )
        compared = json.dumps(results, indent=1, ensure_ascii=False) + "\n"
        write_text(out / "compare.json", compared)
    except OSError as exc:
        raise _written_failure(exc, out) from None
    console.print(f"chart: {chart}")


@app.command()
def replay(
    events: Annotated[Path, typer.Argument(help="An events.ndjson log (the broker's or a run's).")],
    policy: Annotated[
        Path | None, typer.Option(help="Policy TOML file (default: the shipped policy).")
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", help="Directory for decisions, alerts and campaigns.")
    ] = Path("runs/replay"),
    state: Annotated[
        Path | None,
        typer.Option(help="SQLite file of the engine's state: continue from it, leave it there."),
    ] = None,
    partitions: Annotated[
        int,
        typer.Option(
            min=1,
            help="One engine per account partition, as the cluster runs (brokerguard worker).",
        ),
    ] = 1,
    campaign_stage: Annotated[
        bool,
        typer.Option(
            "--campaign-stage",
            help="With --partitions: campaigns found by a stage over all partitions, as the "
            "cluster with `brokerguard campaign-stage` does; they contain from the next epoch.",
        ),
    ] = False,
    epoch_seconds: Annotated[
        float,
        typer.Option(min=1.0, help="With --campaign-stage: the epoch, in seconds of event time."),
    ] = 60.0,
    stage_shards: Annotated[
        int, typer.Option(min=1, help="With --campaign-stage: shards of the stage (by symbol).")
    ] = 1,
) -> None:
    """Run the detection engine over a log, open loop; write decisions, alerts and campaigns."""
    from brokerguard.engine import PolicyError
    from brokerguard.guards import engine_guard
    from brokerguard.replay import replay as run_replay
    from brokerguard.stores.sqlite import SqliteState, StateFileError

    # refused before the state file is opened: opening it creates it, and a refused replay
    # leaves nothing behind (the state is written only when a replay completes)
    if state is not None and partitions > 1:
        raise _fail("--state keeps one engine's state: it cannot be used with --partitions")
    if state is not None and campaign_stage:
        raise _fail("--state keeps one engine's state: it cannot be used with --campaign-stage")
    try:
        engine = engine_guard(policy)  # a bad policy file is refused here, before the state
        store = SqliteState(state) if state is not None else None
        if store is not None:
            engine = engine_guard(policy, store)
            engine.set_clock(store.saved_meta())  # a state file continues its sweep schedule
    except PolicyError as exc:
        raise _fail(str(exc)) from None
    except StateFileError as exc:
        raise _fail(str(exc)) from None
    if campaign_stage:
        from brokerguard.cluster.staged import StagedGuard
        from brokerguard.engine import BrokerGuard

        base = engine
        engine = StagedGuard(
            partitions,
            stage_shards,
            epoch_seconds,
            base.policy,
            lambda link: BrokerGuard(base.policy, stage=link, name=base.name),
        )
    elif partitions > 1:
        from brokerguard.cluster.partition import PartitionedGuard

        engine = PartitionedGuard(partitions, lambda: engine_guard(policy, None))
    summary = _replay_into(engine, events, out, run_replay)
    if store is not None:
        store.meta = engine.clock()
        store.close()  # only a complete replay is written to the state file
        console.print(f"state: {state}")
    _print_replay(summary, events, out)


def _replay_into(engine, events: Path, out: Path, run_replay):
    """Replay ``events`` through ``engine`` into ``out``, with a progress bar for long logs."""
    from brokerguard.events import EventError

    if events.is_dir():  # a run directory: its events.ndjson
        events = events / "events.ndjson"
    try:
        size = events.stat().st_size
    except OSError as exc:
        raise _fail(f"{events}: cannot read: {exc.strerror}") from None
    try:
        if size < 8 << 20:  # a short file needs no progress bar
            summary = run_replay(events, out, engine)
        else:
            with _progress() as progress:
                task = progress.add_task(f"replay {events.name} / {engine.name}", total=1.0)
                summary = run_replay(
                    events, out, engine, lambda f: progress.update(task, completed=f)
                )
    except EventError as exc:
        message = str(exc)
        if exc.field and exc.field not in message:
            message += f" (field `{exc.field}`)"
        raise _fail(f"{message}; nothing was written to {out}") from None
    except OSError as exc:
        raise _fail(f"{exc.filename or events}: {exc.strerror}; nothing was written") from None
    return summary


def _print_replay(summary, events: Path, out: Path) -> None:
    table = Table(title=f"Replay / リプレイ ({summary.guard})", show_header=False)
    table.add_column()
    table.add_column(justify="right")
    table.add_row("events / イベント", f"{summary.events:,}")
    table.add_row("decisions / 判定", f"{sum(summary.decisions.values()):,}")
    for action, count in summary.decisions.items():
        table.add_row(f"  {action} / {_ACTION_JA[action]}", f"{count:,}")
    table.add_row("alerts / アラート", f"{summary.alerts:,}")
    table.add_row("campaigns / キャンペーン", f"{summary.campaigns:,}")
    table.add_row("instructions / 指示 (取消・ログアウト)", f"{summary.instructions:,}")
    _screen().print(table)
    console.print(
        f"{events} -> {out}/: decisions.ndjson, alerts.ndjson, campaigns.ndjson, "
        "instructions.ndjson"
    )


_ACTION_JA = {
    "allow": "許可",
    "challenge": "追加認証",
    "hold": "保留",
    "deny": "拒否",
    "lock": "凍結",
}


@app.command()
def demo(
    scenario: Annotated[
        Path | None,
        typer.Option(help="Scenario TOML file (default: scenarios/spring-2025.toml)."),
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Directory for the runs.")] = Path("runs/demo"),
    seed: SeedOpt = None,
    investors: InvestorsOpt = None,
    days: DaysOpt = None,
    console_: Annotated[
        bool,
        typer.Option(
            "--console/--no-console",
            help="Load the BrokerGuard run into the console and serve it in the background.",
        ),
    ] = True,
    console_port: Annotated[int, typer.Option(help="Port of the demo's console.")] = 8000,
    stop_console: Annotated[
        bool, typer.Option("--stop-console", help="Only stop a console an earlier demo started.")
    ] = False,
) -> None:
    """The spring-2025 attack against allow-all, OTP, passkeys and BrokerGuard, with charts;
    then the BrokerGuard run in the analyst console (its address is printed at the end)."""
    from brokerguard.charts import (
        bilingual,
        japanese_font,
        plot_campaign_timeline,
        plot_unauthorized_value,
    )
    from brokerguard.demo import DEMO_GUARDS, find_scenario, money_protected, protected_table
    from brokerguard.evaluate import campaign_timelines, format_table

    if stop_console:
        from brokerguard.service.demo_console import stop_console as stop

        console.print("console stopped" if stop(out) else "no demo console was running")
        return
    try:
        path = find_scenario(scenario)
    except FileNotFoundError as exc:
        raise _fail(str(exc)) from None
    sc = _scenario(path, seed, investors, days)
    names = list(DEMO_GUARDS)
    results, timelines = _compare(sc, names, out)
    screen = _screen()
    screen.print(format_table(results, lang="both"))
    screen.print(protected_table(results))
    charts = [
        plot_unauthorized_value(timelines, out / "unauthorized-value.png", _value_title(sc.name)),
        plot_campaign_timeline(
            campaign_timelines(out / "brokerguard"),
            out / "campaign-timeline.png",
            bilingual(
                f"{sc.name} / brokerguard: first coordinated buy vs campaign raised",
                f"{sc.name} / brokerguard：最初の協調買いとキャンペーン検知",
                "\n",
            ),
        ),
    ]
    summary = {"results": results, "money_protected": money_protected(results)}
    write_text(out / "demo.json", json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
    for chart in charts:
        console.print(f"chart: {chart}")
    if japanese_font() is None:
        console.print(
            "charts are labelled in English only: no Japanese font is installed "
            "(install the matplotlib-fontja package, or a system font such as IPAexGothic)"
        )
    if console_:
        _demo_console(out / "brokerguard", out, console_port)


def _demo_console(run_dir: Path, out: Path, port: int) -> None:
    """Load the BrokerGuard run into a service database and start the console on it."""
    from brokerguard.service.demo_console import load_run, start_console

    with (run_dir / "events.ndjson").open("rb") as lines:
        total = sum(1 for _ in lines)
    with _progress() as progress:
        task = progress.add_task("console: loading the run / コンソールに読み込み中", total=total)
        counts = load_run(run_dir, out, lambda done: progress.update(task, completed=done))
    console.print(
        f"console: {counts['accepted']:,} events, {counts['decided']:,} decisions, "
        f"{counts['alerts']:,} alerts recorded"
    )
    try:
        info = start_console(run_dir, out, port=port)
    except (OSError, RuntimeError) as exc:
        raise _fail(f"console: {exc}") from None
    screen = _screen()
    screen.print(
        f"\n[bold]Analyst console / 分析コンソール:[/bold] {info.url}\n"
        f"  user / ユーザー: {info.username}   password / パスワード: {info.password}\n"
        f"  running in the background (pid {info.pid}, log {info.log}); "
        f"stop it with `brokerguard demo --out {out} --stop-console`",
        highlight=False,
        soft_wrap=True,
    )


def main() -> None:  # pragma: no cover
    app()


from brokerguard.phishing.cli import phish_app  # noqa: E402
from brokerguard.reports.cli import report_app  # noqa: E402

app.add_typer(report_app, name="report")
app.add_typer(phish_app, name="phish")
from brokerguard.service.cli import mount as _mount_service  # noqa: E402

_mount_service(app)  # serve, keys, users, audit (src/brokerguard/service/cli.py)
from brokerguard.cluster.cli import mount as _mount_cluster  # noqa: E402

_mount_cluster(app)  # ingest, worker (src/brokerguard/cluster/cli.py)
from brokerguard.frontdoor.cli import mount as _mount_frontdoor  # noqa: E402

_mount_frontdoor(app)  # demo-site (src/brokerguard/frontdoor/cli.py)
