"""replay, demo and the engine as a --guard, through the command line (small runs, no timing)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from rich.console import Console
from servers import free_port
from typer.testing import CliRunner

from brokerguard.cli import app
from brokerguard.demo import find_scenario, money_protected, protected_table
from brokerguard.engine.policy import default_policy_path
from brokerguard.engine.signals import SIGNAL_CODES
from brokerguard.evaluate import Campaign, format_table
from brokerguard.events import read_ndjson
from brokerguard.guard import DecisionRecord, decision_point
from brokerguard.replay import Alert

runner = CliRunner()
ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "scenarios" / "tiny.toml"
SMALL = ["--investors", "300", "--days", "3"]


def lines(path: Path, kind: type) -> list:
    decoder = msgspec.json.Decoder(kind)
    return [decoder.decode(raw) for raw in path.read_bytes().splitlines() if raw.strip()]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny run under allow-all: the log that replay reads."""
    out = tmp_path_factory.mktemp("recorded")
    result = runner.invoke(app, ["simulate", str(TINY), "--out", str(out), *SMALL])
    assert result.exit_code == 0, result.output
    return out / "events.ndjson"


def test_replay_writes_decisions_alerts_and_campaigns(recorded: Path, tmp_path: Path) -> None:
    out = tmp_path / "replayed"
    result = runner.invoke(app, ["replay", str(recorded), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "alerts" in result.stdout and "アラート" in result.stdout

    with recorded.open("rb") as stream:
        events = list(read_ndjson(stream))
    asked = [e for e in events if decision_point(e) is not None]
    decisions = lines(out / "decisions.ndjson", DecisionRecord)
    assert [d.event for d in decisions] == [e.id for e in asked]
    assert {d.guard for d in decisions} == {"brokerguard"}
    assert [d.point for d in decisions] == [decision_point(e) for e in asked]

    alerts = lines(out / "alerts.ndjson", Alert)
    # every decision that was not allow is an alert, except wrong passwords (no signals)
    flagged = [
        d
        for d in decisions
        if d.action != "allow"
        and not (d.action == "deny" and [r.code for r in d.reasons] == ["credentials_invalid"])
    ]
    assert [a.event for a in alerts] == [d.event for d in flagged]
    assert [a.action for a in alerts] == [d.action for d in flagged]
    assert alerts, "a run with an attack raises some alerts"
    assert any(a.signals for a in alerts)
    for alert in alerts:
        assert all(r.code and r.en and r.ja for r in alert.reasons)
        assert all(s.code in SIGNAL_CODES and isinstance(s.llr, float) for s in alert.signals)
    raw = json.loads((out / "alerts.ndjson").read_text().splitlines()[0])
    assert set(raw) >= {"event", "ts", "account", "point", "action", "score", "reasons", "signals"}

    campaigns = lines(out / "campaigns.ndjson", Campaign)
    assert all(c.id and c.symbols for c in campaigns)
    assert not list(out.glob(".*.tmp"))


def test_replay_rejects_a_bad_line_and_keeps_what_was_there(recorded: Path, tmp_path: Path) -> None:
    text = recorded.read_text().splitlines()
    logins = [i for i, line in enumerate(text) if line.startswith('{"type":"login"')]
    bad = logins[len(logins) // 2]  # mid-file, after many decisions were written
    record = json.loads(text[bad])
    record["ip"] = "999.1.2.3"
    text[bad] = json.dumps(record)
    broken = tmp_path / "broken.ndjson"
    broken.write_text("\n".join(text) + "\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "decisions.ndjson").write_text("earlier\n")

    result = runner.invoke(app, ["replay", str(broken), "--out", str(out)])
    assert result.exit_code == 2
    assert f"line {bad + 1}:" in result.output
    assert "`ip`" in result.output
    assert "nothing was written" in result.output
    assert (out / "decisions.ndjson").read_text() == "earlier\n"
    assert sorted(p.name for p in out.iterdir()) == ["decisions.ndjson"]

    text[3] = text[3].replace('"type":"', '"typo":"', 1)
    broken.write_text("\n".join(text) + "\n")
    result = runner.invoke(app, ["replay", str(broken), "--out", str(out)])
    assert result.exit_code == 2
    assert "line 4:" in result.output and "type" in result.output


def test_guard_brokerguard_and_a_policy_file_write_campaigns(tmp_path: Path) -> None:
    policy = tmp_path / "mine.toml"
    shutil.copy(default_policy_path(), policy)
    for guard, name in (("brokerguard", "brokerguard"), (str(policy), "brokerguard:mine")):
        out = tmp_path / name.replace(":", "-")
        result = runner.invoke(
            app, ["simulate", str(TINY), "--out", str(out), "--guard", guard, *SMALL]
        )
        assert result.exit_code == 0, result.output
        assert (out / "campaigns.ndjson").is_file()
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["guard"] == name
        assert {d.guard for d in lines(out / "decisions.ndjson", DecisionRecord)} == {name}


def test_a_bad_policy_file_is_refused_naming_the_field(recorded: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    text = default_policy_path().read_text()
    order_prior = re.search(r"^\[order\]\nprior = \S+", text, re.M).group(0)
    bad.write_text(text.replace(order_prior, '[order]\nprior = "low"', 1))
    result = runner.invoke(
        app, ["simulate", str(TINY), "--out", str(tmp_path / "s"), "--guard", str(bad), *SMALL]
    )
    assert result.exit_code == 2
    assert "order.prior" in result.output
    result = runner.invoke(
        app, ["replay", str(recorded), "--policy", str(bad), "--out", str(tmp_path / "r")]
    )
    assert result.exit_code == 2
    assert "order.prior" in result.output
    assert not (tmp_path / "r").exists()


def test_demo_on_a_tiny_scenario_draws_its_charts_and_opens_the_console(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    port = free_port()
    args = ["demo", "--scenario", str(TINY), "--out", str(out), "--console-port", str(port)]
    result = runner.invoke(app, [*args, *SMALL])
    assert result.exit_code == 0, result.output
    try:
        _check_demo_console(result.stdout, port)
    finally:
        stopped = runner.invoke(app, ["demo", "--out", str(out), "--stop-console"])
    assert "console stopped" in stopped.output
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
    _check_demo_runs(out, result)


def _check_demo_console(printed: str, port: int) -> None:
    """The printed address and account open the console on the BrokerGuard run's alerts."""
    address = re.search(r"http://127\.0\.0\.1:(\d+)/console/", printed)
    password = re.search(r"password / パスワード: (\S+)", printed)
    assert address and password, printed
    assert int(address.group(1)) == port
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        login = client.post(
            "/console/login", json={"username": "demo", "password": password.group(1)}
        )
        assert login.status_code == 200, login.text
        alerts = client.get("/console/alerts")
        assert alerts.status_code == 200
        assert "/console/accounts/" in alerts.text  # alerts of the run, linked to accounts
        reports = client.get("/console/reports/monthly.csv")
        assert reports.status_code == 200 and "2025-03" in reports.text


def _check_demo_runs(out: Path, result: Any) -> None:
    guards = ["allow-all", "otp-at-login", "passkey-at-login", "brokerguard"]
    for guard in guards:
        assert (out / guard / "metrics.json").is_file()
    assert "被害口座" in result.stdout and "victims" in result.stdout
    assert "守られた金額" in result.stdout
    assert (out / "unauthorized-value.png").stat().st_size > 1000
    assert (out / "campaign-timeline.png").stat().st_size > 1000
    summary = json.loads((out / "demo.json").read_text())
    assert [r["guard"] for r in summary["results"]] == guards
    assert list(summary["money_protected"]) == guards
    assert summary["money_protected"]["allow-all"]["protected_jpy"] == 0


def test_demo_refuses_a_missing_scenario(tmp_path: Path) -> None:
    result = runner.invoke(app, ["demo", "--scenario", str(tmp_path / "nope.toml")])
    assert result.exit_code == 2
    assert "not found" in result.output


def test_money_protected_against_allow_all() -> None:
    def run(guard: str, value: float) -> dict:
        return {"guard": guard, "attack": {"unauthorized_value_jpy": value}}

    results = [run("otp", 900.0), run("allow-all", 1000.0), run("bg", 50.0)]
    figures = money_protected(results)
    assert figures["allow-all"] == {
        "unauthorized_value_jpy": 1000.0,
        "protected_jpy": 0.0,
        "protected_share": 0.0,
    }
    assert figures["otp"]["protected_jpy"] == 100.0
    assert figures["bg"]["protected_share"] == pytest.approx(0.95)
    assert money_protected([run("a", 0.0)])["a"]["protected_share"] is None
    worse = Console(width=140, record=True, color_system=None)
    worse.print(protected_table([run("allow-all", 100.0), run("x", 150.0)]))
    text = worse.export_text()
    assert "-¥50" in text and "-50.00%" in text
    console = Console(width=140, record=True, color_system=None)
    console.print(protected_table(results))
    text = console.export_text()
    assert "¥950" in text and "95.00%" in text and "守られた割合" in text


def test_bilingual_table_and_shipped_scenario() -> None:
    table = format_table([{"guard": "g", "attack": {"victims": 3}}], lang="both")
    console = Console(width=140, record=True, color_system=None)
    console.print(table)
    assert "victims / 被害口座" in console.export_text()
    assert find_scenario().name == "spring-2025.toml"


def test_replay_with_state_continues_where_the_last_replay_stopped(
    recorded: Path, tmp_path: Path
) -> None:
    lines = recorded.read_bytes().splitlines(keepends=True)
    first, second = tmp_path / "first.ndjson", tmp_path / "second.ndjson"
    first.write_bytes(b"".join(lines[: len(lines) // 2]))
    second.write_bytes(b"".join(lines[len(lines) // 2 :]))
    state = tmp_path / "state.db"
    for part, out in ((first, "r1"), (second, "r2")):
        args = ["replay", str(part), "--state", str(state), "--out", str(tmp_path / out)]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
    whole = runner.invoke(app, ["replay", str(recorded), "--out", str(tmp_path / "whole")])
    assert whole.exit_code == 0, whole.output

    def answers(*dirs: str) -> list[tuple[str, str, float]]:
        records = [r for d in dirs for r in lines_of(tmp_path / d / "decisions.ndjson")]
        return [(r.event, r.action, r.score) for r in records]

    assert answers("r1", "r2") == answers("whole")
    assert len(answers("r2")) > 0


@pytest.mark.parametrize(
    "extra",
    [["--partitions", "2"], ["--campaign-stage"], ["--policy", "bad.toml"]],
)
def test_a_refused_replay_with_state_leaves_no_state_file(
    recorded: Path, tmp_path: Path, extra: list[str]
) -> None:
    """The state is written only when a replay completes: a refused one creates no file."""
    (tmp_path / "bad.toml").write_text('name = "bad"\n')
    extra = [str(tmp_path / a) if a == "bad.toml" else a for a in extra]
    state = tmp_path / "state.db"
    args = ["replay", str(recorded), "--state", str(state), "--out", str(tmp_path / "r"), *extra]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert not state.exists()
    assert not (tmp_path / "r").exists()


def lines_of(path: Path) -> list[DecisionRecord]:
    decoder = msgspec.json.Decoder(DecisionRecord)
    return [decoder.decode(line) for line in path.read_bytes().splitlines() if line.strip()]


def test_a_log_with_every_line_twice_replays_as_the_log_once(
    recorded: Path, tmp_path: Path
) -> None:
    """A log shipped at least once repeats lines: replay decides, and writes, each event once."""
    doubled = tmp_path / "doubled.ndjson"
    doubled.write_bytes(b"".join(line + line for line in recorded.read_bytes().splitlines(True)))
    outs = []
    for name, log in (("once", recorded), ("twice", doubled)):
        out = tmp_path / name
        result = runner.invoke(app, ["replay", str(log), "--out", str(out)])
        assert result.exit_code == 0, result.output
        outs.append(out)
    for name in ("decisions.ndjson", "alerts.ndjson", "campaigns.ndjson"):
        assert (outs[1] / name).read_bytes() == (outs[0] / name).read_bytes(), name
