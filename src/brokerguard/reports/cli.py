"""``brokerguard report``: the monthly table and the compensation calculator on the command line.

Thin commands over :mod:`brokerguard.reports`: read, compute, print a Rich table with Japanese
and English headers, write CSV and charts on request. Bad input exits with status 2 and one
line naming the file, line and field.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from brokerguard.reports.compensation import (
    CompensationRow,
    compensate,
    victim_losses,
    write_compensation_csv,
)
from brokerguard.reports.errors import ReportError
from brokerguard.reports.monthly import (
    MONTHLY_COLUMNS,
    MonthlyRow,
    monthly_table,
    write_monthly_csv,
)
from brokerguard.reports.policies import resolve_policies
from brokerguard.reports.run import events_path, run_labels

__all__ = ["report_app"]

report_app = typer.Typer(
    help="Reports: the regulator's monthly table and compensation per victim.",
    no_args_is_help=True,
    add_completion=False,
)
_errors = Console(stderr=True)
T = TypeVar("T")


def _screen() -> Console:
    """The terminal at its width, or a file or pipe at a width the tables fit."""
    screen = Console()
    return screen if screen.is_terminal else Console(width=160)


def _said_as_option(exc: ReportError, option: str | None) -> str:
    """``exc`` in the words of the command line: the library names its parameter (field
    `valuation_date`), which the user never typed; an error about the value of ``option`` names
    the option (`--valuation-date`) instead."""
    if option is None or exc.line is not None or exc.field != option[2:].replace("-", "_"):
        return str(exc)
    where = [f"option `{option}`", *([str(exc.path)] if exc.path is not None else [])]
    return ": ".join([*where, exc.problem])


def _guarded(work: Callable[[], T], file: Path | None = None, option: str | None = None) -> T:
    """Run ``work``; bad input becomes one red line on stderr and exit status 2. ``file``: the
    file ``work`` reads or writes, named when the system names none (a full disk under a CSV
    file, a labels file that cannot be read: "[Errno 28] No space left on device" alone).
    ``option``: the option (``--policy``) whose value ``work`` uses, named as typed when the
    value is wrong."""
    from brokerguard.cluster.failure import failure_message

    try:
        return work()
    except ReportError as exc:
        message = _said_as_option(exc, option)
    except OSError as exc:
        if exc.errno is None:  # raised with a message of its own, which names the file
            message = str(exc)
        else:
            if exc.filename is None and file is not None:
                exc = OSError(exc.errno, exc.strerror or str(exc), str(file))
            message = failure_message(exc)
    _errors.print(f"[red]error:[/red] {message}", soft_wrap=True, highlight=False)
    raise typer.Exit(code=2)


RunArg = Annotated[
    Path,
    typer.Argument(
        metavar="RUN_DIR", help="A run directory (events.ndjson, decisions.ndjson, truth.json)."
    ),
]
LabelsOpt = Annotated[
    Path | None,
    typer.Option(
        "--labels",
        help="Confirmed fraud cases (CSV or NDJSON: account, kind, order_id, event_id, "
        "confirmed) or a truth.json; default: the run's truth.json.",
    ),
]


def _yen(value: int) -> str:
    return f"¥{value:,}"


def _day(text: str) -> date:
    """A ``--valuation-date``: a day as YYYY-MM-DD, said in those words when it is not one
    (click's own message was "Value error, '2025-02-30' does not match the formats
    '%Y-%m-%d'", of a date in that very format)."""
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text.strip()):
            return date.fromisoformat(text.strip())
        problem = "expected a date as YYYY-MM-DD (a day in Japan time, such as 2025-04-07)"
    except ValueError as exc:  # 2025-02-30: "day is out of range for month"
        problem = f"not a date ({exc})"
    raise typer.BadParameter(f"{problem}, got {text!r}")


def monthly_rich_table(rows: Sequence[MonthlyRow], title: str) -> Table:
    """The monthly table for the terminal, with a total line."""
    table = Table(title=title)
    for name, ja, en in MONTHLY_COLUMNS:
        table.add_column(f"{ja}\n{en}", justify="left" if name == "month" else "right")
    for row in rows:
        table.add_row(
            row.month,
            f"{row.logins:,}",
            f"{row.trades:,}",
            _yen(row.sold_jpy),
            _yen(row.bought_jpy),
        )
    table.add_section()
    table.add_row(
        "合計 total",
        f"{sum(r.logins for r in rows):,}",
        f"{sum(r.trades for r in rows):,}",
        _yen(sum(r.sold_jpy for r in rows)),
        _yen(sum(r.bought_jpy for r in rows)),
    )
    return table


@report_app.command()
def monthly(
    run: RunArg,
    labels: LabelsOpt = None,
    csv: Annotated[Path | None, typer.Option("--csv", help="Write the table as CSV.")] = None,
    chart: Annotated[
        Path | None,
        typer.Option(
            "--chart",
            help="Draw the table as a bar chart: .png (.png added to a name without a suffix), "
            ".svg or .pdf.",
        ),
    ] = None,
) -> None:
    """The regulator-style monthly table: unauthorized logins, trades, value sold and bought."""
    _guarded(lambda: events_path(run))  # the run first: a wrong directory is the likelier slip
    if chart is not None:  # a chart name that cannot be drawn stops it before any file is written
        from brokerguard.reports.chart import chart_path

        chart = _guarded(lambda: chart_path(chart), option="--chart")
    found = _guarded(lambda: run_labels(run, labels), labels or run / "truth.json")
    rows = _guarded(lambda: monthly_table(run, found), run)
    title = f"月次 不正アクセス・不正取引 / Monthly unauthorized access and trading ({run})"
    _screen().print(monthly_rich_table(rows, title))
    if csv is not None:
        written = _guarded(lambda: write_monthly_csv(rows, csv), csv)
        _errors.print(f"csv: {written}", highlight=False)
    if chart is not None:
        from brokerguard.reports.chart import monthly_title, plot_monthly

        drawn = _guarded(lambda: plot_monthly(rows, chart, monthly_title(run)), chart)
        _errors.print(f"chart: {drawn}", highlight=False)


def _summary_table(rows: Sequence[CompensationRow], titles: dict[str, str]) -> Table:
    table = Table(title="補償額 / Compensation, by policy")
    table.add_column("補償方針\npolicy", overflow="fold", max_width=44)
    for ja, en in (
        ("対象", "victims covered"),
        ("対象外", "excluded"),
        ("買付損失", "buy loss"),
        ("売却損失", "sale loss"),
        ("手数料", "fees"),
        ("補償額", "payout"),
    ):
        table.add_column(f"{ja}\n{en}", justify="right", no_wrap=True)
    for name, title in titles.items():
        mine = [r for r in rows if r.policy == name]
        table.add_row(
            f"[bold]{name}[/bold]\n{title}",
            f"{sum(r.eligible for r in mine):,}",
            f"{sum(not r.eligible for r in mine):,}",
            _yen(sum(r.buy_loss_jpy for r in mine)),
            _yen(sum(r.sale_loss_jpy for r in mine)),
            _yen(sum(r.fees_jpy for r in mine)),
            _yen(sum(r.payout_jpy for r in mine)),
        )
    return table


def _victims_table(rows: Sequence[CompensationRow], names: Sequence[str], top: int) -> Table:
    by_account: dict[str, dict[str, CompensationRow]] = {}
    for row in rows:
        by_account.setdefault(row.account, {})[row.policy] = row
    first = names[0]

    def loss(account: str) -> int:
        r = by_account[account][first]
        return r.buy_loss_jpy + r.sale_loss_jpy + r.fees_jpy + r.withdrawn_jpy

    accounts = sorted(by_account, key=lambda a: (-loss(a), a))
    shown = accounts if top <= 0 else accounts[:top]
    title = "被害口座別 / Per victim"
    if len(shown) < len(accounts):
        title += f" (損失の大きい{len(shown)}口座 / largest {len(shown)} of {len(accounts)} losses)"
    table = Table(title=title)
    table.add_column("口座\naccount")
    for ja, en in (("買付損失", "buy loss"), ("売却損失", "sale loss"), ("手数料", "fees")):
        table.add_column(f"{ja}\n{en}", justify="right", no_wrap=True)
    if any(r.withdrawn_jpy for r in rows):
        table.add_column("不正出金\nwithdrawn", justify="right", no_wrap=True)
    for name in names:
        table.add_column(f"補償額\n{name}", justify="right", no_wrap=True)
    for account in shown:
        base = by_account[account][first]
        cells = [account, _yen(base.buy_loss_jpy), _yen(base.sale_loss_jpy), _yen(base.fees_jpy)]
        if any(r.withdrawn_jpy for r in rows):
            cells.append(_yen(base.withdrawn_jpy))
        for name in names:
            r = by_account[account][name]
            cells.append(_yen(r.payout_jpy) if r.eligible else "対象外 excluded")
        table.add_row(*cells)
    return table


@report_app.command()
def compensation(
    run: RunArg,
    policy: Annotated[
        str | None,
        typer.Option(
            "--policy",
            help="A shipped policy (sbi-rakuten-2025, matsui-2025, full-restoration) or a "
            "policy .toml file; default: every shipped policy.",
        ),
    ] = None,
    valuation_date: Annotated[
        date | None,
        typer.Option(
            "--valuation-date",
            parser=_day,
            metavar="YYYY-MM-DD",
            help="Value positions at this day's close (Japan time); default: the run's last day.",
        ),
    ] = None,
    labels: LabelsOpt = None,
    csv: Annotated[
        Path | None, typer.Option("--csv", help="Write every row (with explanations) as CSV.")
    ] = None,
    top: Annotated[
        int, typer.Option("--top", help="Victims to list, largest losses first (0: all).")
    ] = 10,
) -> None:
    """Compensation per victim under one or more policies, from fills and market prices."""
    policies = _guarded(lambda: resolve_policies(policy), option="--policy")
    _guarded(lambda: events_path(run))
    found = _guarded(lambda: run_labels(run, labels), labels or run / "truth.json")
    report = _guarded(
        lambda: victim_losses(run, found, valuation_date=valuation_date),
        run,
        option="--valuation-date",
    )
    rows = [compensate(loss, p, report.valuation_date) for p in policies for loss in report.victims]
    screen = _screen()
    titles = {p.name: f"{p.title_ja}\n{p.title_en}" for p in policies}
    if report.valuation_date is None:
        when = "なし none (イベントなし / no events)"
    elif valuation_date is None:
        when = f"{report.valuation_date} (既定：記録の最終日 / default: the last day of the events)"
    else:
        when = str(report.valuation_date)
    screen.print(f"評価日 valuation date: {when}  ラベル labels: {found.source}")
    screen.print(_summary_table(rows, titles))
    if rows:
        screen.print(_victims_table(rows, [p.name for p in policies], top))
    if csv is not None:
        _errors.print(f"csv: {_guarded(lambda: write_compensation_csv(rows, csv), csv)}")
