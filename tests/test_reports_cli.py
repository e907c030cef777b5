"""``brokerguard report …`` in process: tables with Japanese and English headers, files, errors."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import msgspec
import pytest
from typer.testing import CliRunner

from brokerguard.cli import app
from brokerguard.guards import load_guard
from brokerguard.reports import compensation_table, monthly_table, read_monthly_csv
from brokerguard.sim.scenario import load_scenario
from brokerguard.sim.world import simulate

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    scenario = load_scenario(ROOT / "scenarios" / "tiny.toml")
    broker = msgspec.structs.replace(scenario.broker, investors=300)
    scenario = msgspec.structs.replace(scenario, days=3, broker=broker)
    out = tmp_path_factory.mktemp("run")
    simulate(scenario, load_guard("allow-all"), out)
    return out


def test_monthly_prints_the_table_and_writes_csv_and_chart(run: Path, tmp_path: Path) -> None:
    csv, chart = tmp_path / "m.csv", tmp_path / "m.png"
    result = runner.invoke(
        app, ["report", "monthly", str(run), "--csv", str(csv), "--chart", str(chart)]
    )
    assert result.exit_code == 0, result.output
    for header in ("不正アクセス件数", "unauthorized logins", "買付金額", "value bought", "合計"):
        assert header in result.output
    rows = monthly_table(run)
    assert f"¥{rows[0].bought_jpy:,}" in result.output
    assert read_monthly_csv(csv) == rows
    assert chart.read_bytes().startswith(b"\x89PNG")


def test_compensation_under_every_shipped_policy(run: Path, tmp_path: Path) -> None:
    csv = tmp_path / "c.csv"
    result = runner.invoke(app, ["report", "compensation", str(run), "--csv", str(csv)])
    assert result.exit_code == 0, result.output
    for text in ("sbi-rakuten-2025", "matsui-2025", "full-restoration", "補償額", "payout"):
        assert text in result.output
    # the run's last day, said to be the default
    assert "評価日 valuation date: 2025-03-19 (既定：記録の最終日 / default: the last day of" in (
        result.output
    )
    assert csv.read_bytes().startswith(b"\xef\xbb\xbf")


def test_compensation_under_one_policy_and_a_valuation_date(run: Path) -> None:
    result = runner.invoke(
        app,
        [
            "report",
            "compensation",
            str(run),
            "--policy",
            "matsui-2025",
            "--valuation-date",
            "2025-03-19",
            "--top",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "matsui-2025" in result.output and "sbi-rakuten-2025" not in result.output
    assert "largest 3 of" in result.output
    assert "評価日 valuation date: 2025-03-19  " in result.output  # as given, no "default"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["monthly", "{tmp}/nowhere"], "events.ndjson: not found"),
        (["compensation", "{run}", "--policy", "nomura"], "unknown policy 'nomura'"),
        (["compensation", "{run}", "--valuation-date", "2025-03-01"], "before the last"),
        (["monthly", "{run}", "--labels", "{tmp}/cases.csv"], "line 2: field `kind`"),
        (["compensation", "{run}", "--labels", "{tmp}/absent.csv"], "labels file not found"),
    ],
)
def test_bad_input_exits_2_with_the_problem_named(
    run: Path, tmp_path: Path, args: list[str], words: str
) -> None:
    (tmp_path / "cases.csv").write_text("account,kind,event_id\nA1,logon,l1\n")
    argv = ["report", *(a.format(run=run, tmp=tmp_path) for a in args)]
    result = runner.invoke(app, argv)
    assert result.exit_code == 2
    assert words in " ".join(result.output.split())


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (
            ["compensation", "--valuation-date", "2025-03-01"],
            "error: option `--valuation-date`: 2025-03-01 is before the last unauthorized fill "
            "(2025-03-19 ",
        ),
        (["compensation", "--valuation-date", "2025-03-01"], "on or after 2025-03-19"),
        (["compensation", "--policy", "nomura"], "error: option `--policy`: unknown policy"),
        (["monthly", "--chart", "m.csv"], "error: option `--chart`: m.csv: a chart is drawn as"),
        (
            ["compensation", "--valuation-date", "2025/03/01"],
            "'--valuation-date': expected a date as YYYY-MM-DD (a day in Japan time, such as "
            "2025-04-07), got '2025/03/01'",
        ),
        (
            ["compensation", "--valuation-date", "2025-02-30"],
            "'--valuation-date': not a date (day is out of range for month), got '2025-02-30'",
        ),
    ],
)
def test_a_bad_option_value_is_named_by_the_option_as_typed(run: Path, args, said) -> None:
    """The user typed ``--valuation-date``; the error said field `valuation_date`, the library's
    name for it, and neither which date would do nor, for 2025-02-30, what was wrong."""
    result = runner.invoke(app, ["report", args[0], str(run), *args[1:]])
    assert result.exit_code == 2, result.output
    message = " ".join(result.stderr.replace("│", " ").split())
    assert said in message
    assert "valuation_date" not in message and "field `" not in message


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["monthly", "--csv", "/dev/full"], "/dev/full: No space left on device"),
        (["compensation", "--csv", "/dev/full"], "/dev/full: No space left on device"),
        (["monthly", "--labels", "/proc/self/mem"], "/proc/self/mem: Input/output error"),
    ],
)
def test_a_file_that_cannot_be_written_or_read_is_named(run: Path, args, named) -> None:
    """A full disk under ``--csv`` was "[Errno 28] No space left on device", which file not
    said; so was a labels file that cannot be read (procfs: reading at 0 fails with EIO)."""
    result = runner.invoke(app, ["report", args[0], str(run), *args[1:]])
    assert result.exit_code == 2, result.output
    assert f"error: {named}" in " ".join(result.stderr.split())


def test_a_chart_that_cannot_be_written_is_an_error_not_a_success(
    run: Path, tmp_path: Path
) -> None:
    """Matplotlib's ``savefig`` let a failed write pass: ``--chart`` on a full disk said
    "chart: PATH" and exit 0, the chart cut short or missing."""
    full = tmp_path / "chart.png"  # a chart name whose every write fails as on a full disk
    full.symlink_to("/dev/full")
    result = runner.invoke(app, ["report", "monthly", str(run), "--chart", str(full)])
    assert result.exit_code == 2, result.output
    assert f"error: {full}: No space left on device" in "".join(result.stderr.split("\n"))
    assert "chart:" not in result.stderr


def test_the_console_keeps_a_run_directorys_tables_until_its_files_change(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo's console reports from a run directory: each table is computed once while the
    directory's files stay as they are, equals the direct computation, and a changed file
    computes it again."""
    from brokerguard.service import reporting

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    policies = list(reporting.compensation_policies().values())
    calls: list[Path] = []
    real = reporting.monthly_table
    monkeypatch.setattr(reporting, "monthly_table", lambda d: calls.append(d) or real(d))
    first = reporting.report_tables(None, copy, True, policies)
    assert first[1], "the allow-all run has victims to compensate"
    assert first == (monthly_table(copy), compensation_table(copy, policies))
    assert reporting.report_tables(None, copy, True, policies) == first
    assert len(calls) == 1
    truth = copy / "truth.json"
    later = truth.stat().st_mtime_ns + 2_000_000_000
    os.utime(truth, ns=(later, later))
    assert reporting.report_tables(None, copy, True, policies) == first
    assert len(calls) == 2


def test_a_chart_named_without_a_suffix_is_a_png_named_so(run: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["report", "monthly", str(run), "--chart", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "m.png").read_bytes().startswith(b"\x89PNG")
    assert not (tmp_path / "m").exists()
    assert f"chart: {tmp_path / 'm.png'}" in " ".join(result.output.split())


@pytest.mark.parametrize(("name", "magic"), [("m.SVG", b"<?xml"), ("m.pdf", b"%PDF")])
def test_a_chart_may_be_svg_or_pdf(run: Path, tmp_path: Path, name: str, magic: bytes) -> None:
    result = runner.invoke(app, ["report", "monthly", str(run), "--chart", str(tmp_path / name)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / name).read_bytes().startswith(magic)


@pytest.mark.parametrize("name", ["m.csv", "monthly.2025-03"])
def test_a_chart_with_another_suffix_is_refused_before_anything_is_written(
    run: Path, tmp_path: Path, name: str
) -> None:
    csv = tmp_path / "m-table.csv"
    argv = ["report", "monthly", str(run), "--csv", str(csv), "--chart", str(tmp_path / name)]
    result = runner.invoke(app, argv)
    assert result.exit_code == 2
    output = " ".join(result.output.split())
    assert "error: option `--chart`: " in output
    assert f"{name}: a chart is drawn as PNG, SVG or PDF" in output
    assert "Traceback" not in output
    assert not csv.exists() and not (tmp_path / name).exists()


def test_the_monthly_charts_title_names_the_run_in_both_languages(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`report monthly . --chart` from inside the run: the title named no run (": unauthorized,
    by month"), and was English only on a chart whose labels are bilingual."""
    import matplotlib.pyplot as plt

    from brokerguard.charts import japanese_font

    figures: list = []
    monkeypatch.setattr(plt, "close", figures.append)
    monkeypatch.chdir(run)
    result = runner.invoke(app, ["report", "monthly", ".", "--chart", str(tmp_path / "m.png")])
    assert result.exit_code == 0, result.output
    title = figures[0]._suptitle.get_text()
    assert title.startswith(f"{run.name}: unauthorized access and trading, by month")
    if japanese_font() is not None:
        assert f"{run.name}：月次 不正アクセス・不正取引" in title
