"""The monthly table: a hand-built run with known answers, a simulated run checked against counts
worked out independently from its files, month boundaries at JST midnight, CSV round trips."""

from __future__ import annotations

import csv
import itertools
import json
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import msgspec
import pytest
from reports_helpers import decision, fill, jst, login, order, result, truth, write_run

from brokerguard.evaluate import _got_past, evaluate_run
from brokerguard.guard import DecisionRecord
from brokerguard.guards import load_guard
from brokerguard.reports import (
    MonthlyRow,
    ReportError,
    load_labels,
    monthly_table,
    read_monthly_csv,
    write_monthly_csv,
)
from brokerguard.reports.chart import plot_monthly
from brokerguard.reports.run import let_through
from brokerguard.sim.scenario import load_scenario
from brokerguard.sim.world import simulate
from brokerguard.truth import Victim, load_truth

ROOT = Path(__file__).resolve().parent.parent

# --- a hand-built run -------------------------------------------------------------------------


def hand_built(tmp_path: Path, *, decisions: bool = True) -> Path:
    """Logins and fills on both sides of JST month ends; answers in EXPECTED."""
    l_mar = login("l1", "V1", jst(2025, 3, 31, 23, 59, 59))  # allowed: March
    l_apr = login("l2", "V2", jst(2025, 4, 1, 0, 0, 0))  # challenge passed: April
    l_failed = login("l3", "V3", jst(2025, 4, 1, 10))  # challenge failed
    l_denied = login("l4", "V3", jst(2025, 4, 2, 10))  # denied
    l_wrong = login("l5", "V3", jst(2025, 4, 3, 10), success=False)  # wrong password
    l_legit = login("l6", "U1", jst(2025, 4, 3, 11))  # the customer's own
    l_asked = login("l7", "V3", jst(2025, 4, 4, 10))  # no decision: the broker went ahead
    # 15:00 UTC on 31 May is midnight of 1 June in Japan.
    l_june = login("l8", "V1", datetime.fromisoformat("2025-05-31T15:00:00+00:00"))
    events = [
        l_mar,
        l_apr,
        result("c2", "V2", jst(2025, 4, 1, 0, 1), "l2", "passed"),
        l_failed,
        result("c3", "V3", jst(2025, 4, 1, 10, 1), "l3", "failed"),
        l_denied,
        l_wrong,
        l_legit,
        l_asked,
        l_june,
        # O1 (V1) fills across midnight: the trade counts in March, the values in each month.
        order("o1", "V1", jst(2025, 3, 31, 22), "n1", "1111", "sell", 150),
        fill("x1", "V1", jst(2025, 3, 31, 23), "n1", "1111", "sell", 100, 1000),
        fill("x2", "V1", jst(2025, 4, 1, 0, 30), "n1", "1111", "sell", 50, 1000),
        # O2 (V2) bought in April; O3 (V2) never filled.
        order("o2", "V2", jst(2025, 4, 15, 9), "n2", "9999", "buy", 1000),
        fill("x3", "V2", jst(2025, 4, 15, 9), "n2", "9999", "buy", 1000, 95),
        order("o3", "V2", jst(2025, 4, 15, 9, 5), "n3", "9999", "buy", 1000),
        # The victim's own trade and a criminal's fill are not unauthorized trades.
        fill("x4", "V1", jst(2025, 4, 20, 10), "own", "1111", "buy", 10, 1000),
        fill("x5", "C1", jst(2025, 4, 15, 9), "c-n", "9999", "sell", 1000, 95),
    ]
    records = [
        decision(l_mar, "allow"),
        decision(l_apr, "challenge"),
        decision(l_failed, "challenge"),
        decision(l_denied, "deny"),
        decision(l_legit, "allow"),
        decision(l_june, "allow"),
    ]
    labels = truth(
        [
            Victim(account="V1", attack=0, events=["l1", "o1", "x1", "x2", "l8"], orders=["n1"]),
            Victim(account="V2", attack=0, events=["l2", "c2", "o2", "x3", "o3"], orders=["n2"]),
            Victim(account="V3", attack=0, events=["l3", "l4", "l5", "l7"]),
        ],
        criminals=["C1"],
    )
    return write_run(tmp_path / "run", events, records if decisions else None, labels)


EXPECTED = [
    MonthlyRow(month="2025-03", logins=1, trades=1, sold_jpy=100_000, bought_jpy=0),
    MonthlyRow(month="2025-04", logins=2, trades=1, sold_jpy=50_000, bought_jpy=95_000),
    MonthlyRow(month="2025-05"),  # nothing happened: still a row
    MonthlyRow(month="2025-06", logins=1),
]


def test_hand_built_run_gives_the_known_table(tmp_path: Path) -> None:
    assert monthly_table(hand_built(tmp_path)) == EXPECTED


def test_without_decisions_every_labelled_login_counts(tmp_path: Path) -> None:
    """A broker's bare history: nobody asked a guard, so each valid attacker login got in."""
    rows = monthly_table(hand_built(tmp_path, decisions=False))
    # l1 (March); l2, l3, l4, l7 (April; l5 had a wrong password); l8 (June)
    assert [r.logins for r in rows] == [1, 4, 0, 1]
    assert [r.trades for r in rows] == [1, 1, 0, 0]


def test_confirmed_cases_give_the_same_table_as_truth(tmp_path: Path) -> None:
    """A broker's cases name a trade by order id, order event or fill; all count alike."""
    run = hand_built(tmp_path)
    cases = tmp_path / "cases.csv"
    cases.write_text(
        "account,kind,order_id,event_id\n"
        + "".join(f"{a},login,,{e}\n" for a, e in [("V1", "l1"), ("V2", "l2"), ("V3", "l3")])
        + "".join(f"{a},login,,{e}\n" for a, e in [("V3", "l4"), ("V3", "l7"), ("V1", "l8")])
        + "V1,trade,,x2\n"  # a fill of n1
        + "V2,trade,,o2\n"  # the order event of n2
        + "V2,trade,n3,\n"  # never filled
    )
    assert monthly_table(run, load_labels(cases)) == EXPECTED


def test_let_through_reads_decisions_as_the_evaluation_does() -> None:
    """Reports and metrics must agree on which attacker events got past the guard."""
    passed = result("c", "V", jst(2025, 4, 1), "e", "passed")
    oob = result("c", "V", jst(2025, 4, 1), "e", "passed", factor="oob")
    failed = result("c", "V", jst(2025, 4, 1), "e", "failed")
    for action, answers in itertools.product(
        [None, "allow", "challenge", "hold", "deny", "lock"],
        [[], [passed], [oob], [failed], [failed, passed]],
    ):
        record = None
        if action is not None:
            record = decision(login("e", "V", jst(2025, 4, 1)), action)
        assert let_through(record, answers) == _got_past(record, answers), (action, answers)


# --- CSV ------------------------------------------------------------------------------------


def test_csv_round_trips_with_japanese_headers_and_a_bom(tmp_path: Path) -> None:
    path = write_monthly_csv(EXPECTED, tmp_path / "out" / "monthly.csv")
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # Excel reads UTF-8 only with the BOM
    header = raw[3:].decode().splitlines()[0]
    assert header == (
        "月 (month),不正アクセス件数 (unauthorized logins),不正取引件数 (unauthorized trades),"
        "売却金額（円） (value sold (JPY)),買付金額（円） (value bought (JPY))"
    )
    assert read_monthly_csv(path) == EXPECTED


def test_csv_edited_with_japanese_only_headers_and_thousands_separators(tmp_path: Path) -> None:
    path = tmp_path / "edited.csv"
    path.write_text(
        "月,不正アクセス件数,不正取引件数,売却金額（円）,買付金額（円）\n"
        '2025-04,2,1,"50,000","95,000"\n',
        encoding="utf-8-sig",
    )
    assert read_monthly_csv(path) == [EXPECTED[1]]


@pytest.mark.parametrize("month", ["2025/4/1", "2025-04-01", "2025/04", "2025年4月"])
def test_csv_saved_again_by_excel_reads_its_dates_as_months(tmp_path: Path, month: str) -> None:
    """Excel turns the month cells into dates when it opens the file and writes them so when it
    saves it: the table still reads back (the first of the month only)."""
    path = tmp_path / "saved.csv"
    path.write_text(
        "月,不正アクセス件数,不正取引件数,売却金額（円）,買付金額（円）\n"
        f'{month},2,1,"50,000","95,000"\n',
        encoding="utf-8-sig",
    )
    assert read_monthly_csv(path) == [EXPECTED[1]]


def test_csv_saved_by_japanese_excel_as_shift_jis_reads_back(tmp_path: Path) -> None:
    """Saved as "CSV (コンマ区切り)", Excel on Japanese Windows writes Shift-JIS without a BOM; the
    Japanese headers stopped the reader with a UnicodeDecodeError."""
    path = tmp_path / "saved.csv"
    text = write_monthly_csv(EXPECTED, tmp_path / "m.csv").read_text(encoding="utf-8-sig")
    path.write_bytes(text.replace("2025-04", "2025/4/1").encode("cp932"))
    assert read_monthly_csv(path) == EXPECTED


def test_a_csv_in_neither_utf8_nor_shift_jis_is_an_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_bytes("月 (month)\n".encode() + b"\xff\xff\n")
    with pytest.raises(ReportError, match=r"m.csv: neither UTF-8 nor Shift-JIS text"):
        read_monthly_csv(path)


@pytest.mark.parametrize(
    ("body", "line", "field", "words"),
    [
        ("2025-04,2,1,x,0\n", 2, "sold_jpy", "expected a whole number, got 'x'"),
        ("April,2,1,0,0\n", 2, "month", "expected a month as YYYY-MM"),
        ("2025/4/15,2,1,0,0\n", 2, "month", "expected a month as YYYY-MM"),
        ("2025-13,2,1,0,0\n", 2, "month", "expected a month as YYYY-MM"),
        ("2025-04,2,1\n", 2, None, "3 cells, the header has 5"),
    ],
)
def test_bad_csv_cells_name_line_and_column(
    tmp_path: Path, body: str, line: int, field: str | None, words: str
) -> None:
    path = tmp_path / "m.csv"
    path.write_text("month,logins,trades,sold_jpy,bought_jpy\n" + body)
    with pytest.raises(ReportError) as info:
        read_monthly_csv(path)
    assert (info.value.line, info.value.field) == (line, field)
    assert words in str(info.value)


def test_csv_with_an_unknown_column_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("month,logins,trades,firms,sold_jpy,bought_jpy\n")
    with pytest.raises(ReportError, match=r"m.csv: line 1: field `firms`: unknown column"):
        read_monthly_csv(path)


# --- bad runs -------------------------------------------------------------------------------


def test_missing_run_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"events.ndjson: not found"):
        monthly_table(tmp_path)
    (tmp_path / "events.ndjson").write_text("")
    with pytest.raises(FileNotFoundError, match=r"truth.json: not found; give .* --labels"):
        monthly_table(tmp_path)


def test_a_bad_event_line_names_file_line_and_field(tmp_path: Path) -> None:
    run = hand_built(tmp_path)
    with (run / "events.ndjson").open("a") as f:
        f.write('{"type":"login","id":"l9","ts":"2025-04-01T10:00:00+09:00","account":"V1"}\n')
    with pytest.raises(ReportError) as info:
        monthly_table(run)
    assert info.value.path == run / "events.ndjson"
    assert info.value.line == 19
    assert info.value.field == "session"


def test_a_bad_decision_line_names_file_and_line(tmp_path: Path) -> None:
    run = hand_built(tmp_path)
    with (run / "decisions.ndjson").open("a") as f:
        f.write('{"event":"l1"}\n')
    with pytest.raises(ReportError, match=r"decisions.ndjson: line 7: .*missing required field"):
        monthly_table(run)


def test_a_decision_time_without_its_zone_is_refused_naming_the_field(tmp_path: Path) -> None:
    run = hand_built(tmp_path)
    lines = (run / "decisions.ndjson").read_bytes().splitlines(keepends=True)
    record = json.loads(lines[1])
    record["ts"] = record["ts"][:19]  # the zone cut off
    lines[1] = json.dumps(record).encode() + b"\n"
    (run / "decisions.ndjson").write_bytes(b"".join(lines))
    with pytest.raises(ReportError, match=r"decisions.ndjson: line 2: field `ts`: .*timezone"):
        monthly_table(run)


# --- a simulated run, checked against its files read independently --------------------------

TOKYO = ZoneInfo("Asia/Tokyo")


@pytest.fixture(scope="module", params=["allow-all", "passkey-at-login"])
def simulated(request, tmp_path_factory) -> Path:
    scenario = load_scenario(ROOT / "scenarios" / "tiny.toml")
    broker = msgspec.structs.replace(scenario.broker, investors=300, passkey_enrolled=0.3)
    scenario = msgspec.structs.replace(scenario, days=3, broker=broker)
    out = tmp_path_factory.mktemp(request.param)
    simulate(scenario, load_guard(request.param), out)
    return out


def independent_counts(run: Path) -> dict[str, dict[str, float]]:
    """The table worked out with json and zoneinfo only, from truth.json's lists."""
    t = json.loads((run / "truth.json").read_text())
    attacker_events = {e for v in t["victims"] for e in v["events"]}
    orders = {(v["account"], o) for v in t["victims"] for o in v["orders"]}
    decided = {}
    for line in (run / "decisions.ndjson").read_text().splitlines():
        d = json.loads(line)
        decided.setdefault(d["event"], d)
    passed: dict[str, set[str]] = defaultdict(set)  # event -> factors of passed challenges
    logins, first_fill = [], {}
    counts: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for line in (run / "events.ndjson").read_text().splitlines():
        e = json.loads(line)
        month = datetime.fromisoformat(e["ts"]).astimezone(TOKYO).strftime("%Y-%m")
        if e["type"] == "challenge" and e["outcome"] == "passed":
            passed[e["ref"]].add(e["factor"])
        if e["type"] == "login" and e["success"] and e["id"] in attacker_events:
            logins.append((e["id"], month))
        if e["type"] == "execution" and (e["account"], e["order_id"]) in orders:
            counts[month]["sold" if e["side"] == "sell" else "bought"] += e["value_jpy"]
            first_fill.setdefault((e["account"], e["order_id"]), month)
    for login_id, month in logins:
        action = decided.get(login_id, {}).get("action", "allow")
        factors = passed.get(login_id, set())
        if (
            action == "allow"
            or (action == "challenge" and factors)
            or (action == "hold" and "oob" in factors)
        ):
            counts[month]["logins"] += 1
    for month in first_fill.values():
        counts[month]["trades"] += 1
    return counts


def test_simulated_run_matches_counts_from_its_files(simulated: Path) -> None:
    rows = monthly_table(simulated)
    expected = independent_counts(simulated)
    assert [r.month for r in rows] == ["2025-03"]
    for row in rows:
        c = expected[row.month]
        assert row.logins == c["logins"]
        assert row.trades == c["trades"]
        assert row.sold_jpy == round(c["sold"])
        assert row.bought_jpy == round(c["bought"])
    assert sum(r.trades for r in rows) > 0


def test_simulated_run_agrees_with_the_evaluation(simulated: Path) -> None:
    attack = evaluate_run(simulated)["attack"]
    rows = monthly_table(simulated)
    assert sum(r.trades for r in rows) == attack["unauthorized_orders_executed"]
    value = sum(r.sold_jpy + r.bought_jpy for r in rows)
    assert abs(value - attack["unauthorized_trade_value_jpy"]) <= len(rows)
    if evaluate_run(simulated)["guard"] == "passkey-at-login":
        # Enrolled victims' phished logins fail the passkey: labelled, but not counted.
        t = load_truth(simulated / "truth.json")
        labelled = {e for v in t.victims for e in v.events if e.startswith("l")}
        assert sum(r.logins for r in rows) < len(labelled)


# Six sen amounts whose sum is ¥318,822.50 exactly; added as floats they come to
# 318,822.49999999994, which rounds down.
SIX_FILLS = (94793.53, 32912.43, 56377.58, 98959.54, 770.97, 35008.45)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ((100.5,), 101),  # round() made it ¥100 (half to even), the reports ¥101
        ((101.5,), 102),
        (SIX_FILLS, 318_823),
    ],
)
def test_half_yen_is_rounded_up_alike_by_the_table_and_the_evaluation(
    tmp_path: Path, values: tuple[float, ...], expected: int
) -> None:
    """`evaluate` and the monthly table round half yen by one rule (up, brokerguard.money),
    from the exact sum: they differed by ¥1 on the same run."""
    events = [order("o1", "V1", jst(2025, 4, 10, 9), "n1", "9999", "buy", len(values))]
    for i, value in enumerate(values):
        x = fill(f"x{i}", "V1", jst(2025, 4, 10, 9, i + 1), "n1", "9999", "buy", 1, value)
        events.append(x)
    labels = truth([Victim(account="V1", attack=0, events=["o1"], orders=["n1"])])
    run = write_run(tmp_path / "run", events, [], labels)
    (row,) = monthly_table(run)
    attack = evaluate_run(run)["attack"]
    assert row.bought_jpy == expected
    assert attack["unauthorized_trade_value_jpy"] == expected
    assert attack["unauthorized_value_jpy"] == expected


def test_chart_is_drawn(tmp_path: Path) -> None:
    path = plot_monthly(EXPECTED, tmp_path / "charts" / "monthly.png", "unit: by month")
    assert path.read_bytes().startswith(b"\x89PNG")


def test_decision_records_in_the_helpers_are_valid() -> None:
    # The helpers write what the simulator writes: a record that decodes as a DecisionRecord.
    record = decision(login("e", "V", jst(2025, 4, 1)), "hold")
    assert msgspec.json.decode(msgspec.json.encode(record), type=DecisionRecord) == record


def test_csv_reads_in_the_csv_module_as_excel_would_after_the_bom(tmp_path: Path) -> None:
    path = write_monthly_csv(EXPECTED, tmp_path / "m.csv")
    with path.open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows[1]["買付金額（円） (value bought (JPY))"] == "95000"


def _drawn(monkeypatch: pytest.MonkeyPatch, rows: list[MonthlyRow], tmp_path: Path):
    """The figure plot_monthly draws (kept from being closed) for its axes to be looked at."""
    import matplotlib.pyplot as plt

    figures: list = []
    monkeypatch.setattr(plt, "close", figures.append)
    plot_monthly(rows, tmp_path / "m.png", "unit")
    (figure,) = figures
    return figure.axes


@pytest.mark.parametrize("months", [["2025-03", "2025-04"], []])
def test_a_chart_of_months_without_fraud_has_axes_from_zero(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, months: list[str]
) -> None:
    """Nothing to draw: the axes ran from -0.06 to 0.06, with negative and fractional counts."""
    counts, values = _drawn(monkeypatch, [MonthlyRow(month=m) for m in months], tmp_path)
    for ax in (counts, values):
        low, high = ax.get_ylim()
        assert low == 0 and high >= 1
        assert len({p.get_facecolor() for p in ax.get_legend().get_patches()}) == 2
    assert all(t == int(t) for t in counts.get_yticks())
    if not months:
        assert "no events in this period" in counts.texts[0].get_text()


def test_counts_are_whole_numbers_on_the_chart(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    counts, _ = _drawn(monkeypatch, [MonthlyRow(month="2025-03", logins=3, trades=2)], tmp_path)
    assert all(t == int(t) for t in counts.get_yticks())
    assert counts.get_ylim()[0] == 0
