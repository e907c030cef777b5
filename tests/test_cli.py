"""The command line, run in process: exit codes, files written, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from brokerguard.cli import app

runner = CliRunner()
SCENARIO = """
name = "cli"
seed = 5
start = "2025-03-17T00:00:00+09:00"
days = 3
[broker]
investors = 200
[[attack]]
start = "2025-03-18T09:00:00+09:00"
victims = 5
target_markets = ["TSE"]
targets = 1
"""


def write(tmp_path: Path, text: str = SCENARIO, name: str = "s.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_simulate_then_evaluate_json(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = runner.invoke(app, ["simulate", str(write(tmp_path)), "--out", str(out)])
    assert result.exit_code == 0, result.output
    for name in ("events.ndjson", "decisions.ndjson", "truth.json", "metrics.json"):
        assert (out / name).is_file(), name
    result = runner.invoke(app, ["evaluate", str(out), "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics["guard"] == "allow-all"
    assert metrics["investors"] == 200
    assert metrics["attack"]["victims"] == 5
    assert set(metrics) >= {"guard", "investors", "events", "attack", "legit", "campaigns"}
    result = runner.invoke(app, ["evaluate", str(out)])
    assert result.exit_code == 0, result.output
    assert "Evaluation / 評価結果" in result.stdout  # labels in both languages, as demo's


def test_compare_writes_a_table_and_a_chart(tmp_path: Path, monkeypatch) -> None:
    import matplotlib.pyplot as plt

    from brokerguard.charts import japanese_font

    figures: list = []
    monkeypatch.setattr(plt, "close", figures.append)
    out = tmp_path / "cmp"
    result = runner.invoke(
        app,
        ["compare", str(write(tmp_path)), "--guards", "allow-all,otp-at-login", "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert "otp-at-login" in result.stdout
    assert "Evaluation / 評価結果" in result.stdout  # labels in both languages, as demo's
    assert (out / "unauthorized-value.png").stat().st_size > 1000
    results = json.loads((out / "compare.json").read_text())
    assert [r["guard"] for r in results] == ["allow-all", "otp-at-login"]
    assert results[1]["legit"]["login_challenge_rate"] == 1.0
    title = figures[0].axes[0].get_title()  # in Japanese too, as the chart's axes are
    assert title.startswith("cli: unauthorized value executed, by guard")
    if japanese_font() is not None:
        assert "cli：ガード別 不正取引・出金額" in title


def test_compare_by_default_puts_the_engine_beside_the_baselines(tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    result = runner.invoke(app, ["compare", str(write(tmp_path)), "--out", str(out)])
    assert result.exit_code == 0, result.output
    results = json.loads((out / "compare.json").read_text())
    guards = [r["guard"] for r in results]
    assert guards == ["allow-all", "otp-at-login", "passkey-at-login", "brokerguard"]


def test_compare_runs_a_policy_file_into_a_folder_named_after_its_guard(tmp_path: Path) -> None:
    """--guards takes a policy file's path; its run goes to out/<guard name>, not to the path
    joined to out (an absolute path was the policy file itself: FileExistsError)."""
    from brokerguard.engine.policy import default_policy_path

    policy = tmp_path / "policies" / "mine.toml"
    policy.parent.mkdir()
    policy.write_text(default_policy_path().read_text())
    out = tmp_path / "cmp"
    guards = f"allow-all,{policy}"
    result = runner.invoke(
        app, ["compare", str(write(tmp_path)), "--guards", guards, "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert (out / "brokerguard:mine" / "metrics.json").is_file()
    assert policy.is_file() and not any(policy.parent.glob("*.ndjson"))
    results = json.loads((out / "compare.json").read_text())
    assert [r["guard"] for r in results] == ["allow-all", "brokerguard:mine"]
    # two guards that would share a folder are refused before anything runs
    twin = tmp_path / "other" / "mine.toml"
    twin.parent.mkdir()
    twin.write_text(policy.read_text())
    out2 = tmp_path / "cmp2"
    guards = f"{policy},{twin}"
    result = runner.invoke(
        app, ["compare", str(write(tmp_path)), "--guards", guards, "--out", str(out2)]
    )
    assert result.exit_code == 2
    assert "brokerguard:mine" in result.output
    assert not out2.exists()


def test_overrides_and_errors(tmp_path: Path) -> None:
    path = write(tmp_path)
    result = runner.invoke(
        app, ["simulate", str(path), "--out", str(tmp_path / "o"), "--guard", "magic"]
    )
    assert result.exit_code == 2
    assert "unknown guard 'magic'" in result.output
    bad = write(tmp_path, SCENARIO.replace("victims = 5", "victims = 'many'"), "bad.toml")
    result = runner.invoke(app, ["simulate", str(bad), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "attack[0].victims" in result.output
    result = runner.invoke(
        app, ["simulate", str(path), "--out", str(tmp_path / "o2"), "--investors", "50"]
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "o2" / "metrics.json").read_text())
    assert metrics["investors"] == 50
    result = runner.invoke(app, ["evaluate", str(tmp_path / "nowhere")])
    assert result.exit_code == 2
    assert "not found" in result.output


def test_an_output_directory_that_cannot_be_made_is_named_in_one_line(tmp_path: Path) -> None:
    """``simulate --out`` naming a file (or a directory that cannot be written) was a
    traceback (``FileExistsError``) after the progress bar; now one line naming it, exit 2."""
    taken = tmp_path / "taken"
    taken.write_text("not a directory\n")
    result = runner.invoke(app, ["simulate", str(write(tmp_path)), "--out", str(taken)])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    assert f"error: {taken}: File exists" in " ".join(result.stderr.split())
    inside = taken / "run"
    result = runner.invoke(app, ["simulate", str(write(tmp_path)), "--out", str(inside)])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    assert f"error: {inside}: Not a directory" in " ".join(result.stderr.split())


def test_a_run_file_that_cannot_be_read_is_named(tmp_path: Path) -> None:
    """``evaluate`` on a run whose decisions cannot be read (procfs: reading at 0 fails with
    EIO) said "[Errno 5] Input/output error", no file named."""
    run = tmp_path / "run"
    assert runner.invoke(app, ["simulate", str(write(tmp_path)), "--out", str(run)]).exit_code == 0
    (run / "decisions.ndjson").unlink()
    (run / "decisions.ndjson").symlink_to("/proc/self/mem")
    result = runner.invoke(app, ["evaluate", str(run)])
    assert result.exit_code == 2, result.output
    said = " ".join(result.stderr.split())
    assert f"error: {run}" in said and "Input/output error" in said, said
