"""Labels from truth.json and from a broker's confirmed cases; bad files name file, line, field."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from reports_helpers import jst, truth

from brokerguard.reports import (
    FraudCase,
    ReportError,
    labels_from_truth,
    load_cases,
    load_labels,
)
from brokerguard.truth import Victim, save_truth


def test_truth_labels_hold_victims_events_and_orders(tmp_path: Path) -> None:
    t = truth(
        [
            Victim(account="V1", attack=0, events=["l1", "o1", "x1"], orders=["n1"]),
            Victim(account="V2", attack=0, events=["l2"]),
        ],
        criminals=["C1"],
    )
    save_truth(t, tmp_path / "truth.json")
    labels = load_labels(tmp_path / "truth.json")
    assert labels == labels_from_truth(t, source=str(tmp_path / "truth.json"))
    assert labels.accounts == {"V1", "V2"}  # criminals' own accounts are not victims
    assert labels.events == {"l1", "o1", "x1", "l2"}
    assert labels.orders == {("V1", "n1")}


CSV = """\ufeffaccount,kind,order_id,event_id,confirmed
V1,login,,l1,2025-04-02T10:00:00+09:00
V1,trade,n1,,2025-04-01T09:00:00+09:00
V2,trade,,o7,
V2,withdrawal,,w1,
"""


def test_confirmed_cases_from_csv_with_bom(tmp_path: Path) -> None:
    path = tmp_path / "cases.csv"
    path.write_text(CSV, encoding="utf-8")
    labels = load_labels(path)
    assert labels.accounts == {"V1", "V2"}
    assert labels.events == {"l1", "o7", "w1"}
    assert labels.orders == {("V1", "n1")}
    assert labels.confirmed == {"V1": jst(2025, 4, 1, 9)}  # the earliest confirmation


def test_confirmed_cases_from_ndjson_match_the_csv(tmp_path: Path) -> None:
    (tmp_path / "cases.csv").write_text(CSV, encoding="utf-8")
    (tmp_path / "cases.ndjson").write_text(
        '{"account":"V1","kind":"login","event_id":"l1","confirmed":"2025-04-02T10:00:00+09:00"}\n'
        '{"account":"V1","kind":"trade","order_id":"n1","confirmed":"2025-04-01T09:00:00+09:00"}\n'
        "\n"
        '{"account":"V2","kind":"trade","event_id":"o7"}\n'
        '{"account":"V2","kind":"withdrawal","event_id":"w1"}\n'
    )
    from_csv = load_labels(tmp_path / "cases.csv")
    from_ndjson = load_labels(tmp_path / "cases.ndjson")
    assert from_ndjson.events == from_csv.events
    assert from_ndjson.orders == from_csv.orders
    assert from_ndjson.confirmed == from_csv.confirmed


@pytest.mark.parametrize(
    ("text", "line", "field", "words"),
    [
        (
            "account,kind\nV1,trades\n",
            2,
            "kind",
            "expected login, trade or withdrawal, got 'trades'",
        ),
        ("account,kind,order_id\nV1,trade,\n", 2, "order_id", "required for a trade"),
        ("account,kind,order_id\nV1,trade,n1\nV1,login,n2\n", 3, "event_id", "required"),
        ("account,kind,event\nV1,login,l1\n", 1, "event", "unknown column"),
        ("kind,event_id\nlogin,l1\n", 1, "account", "required column missing"),
        ("account,kind,event_id\nV1,login,l1,extra\n", 2, None, "4 cells, the header has 3"),
        (
            "account,kind,event_id,confirmed\nV1,login,l1,2025-04-02 10:00\n",
            2,
            "confirmed",
            "expected a time with its zone",
        ),
    ],
)
def test_bad_csv_names_file_line_and_field(
    tmp_path: Path, text: str, line: int, field: str | None, words: str
) -> None:
    path = tmp_path / "cases.csv"
    path.write_text(text)
    with pytest.raises(ReportError) as info:
        load_cases(path)
    error = info.value
    assert (error.path, error.line, error.field) == (path, line, field)
    assert str(error).startswith(f"{path}: line {line}: ")
    assert words in str(error) or words in error.problem


def test_bad_ndjson_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "cases.ndjson"
    path.write_text('{"account":"V1","kind":"login","event_id":"l1"}\n{"account": "V2",\n')
    with pytest.raises(ReportError, match=r"cases.ndjson: line 2: not a JSON object"):
        load_cases(path)
    path.write_text('{"account":"V1","kind":"login","event_id":"l1","amount":5}\n')
    with pytest.raises(ReportError, match=r"line 1: field `amount`: .*unknown field"):
        load_cases(path)


def test_missing_or_malformed_label_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="absent.csv: labels file not found"):
        load_labels(tmp_path / "absent.csv")
    bad = tmp_path / "truth.json"
    bad.write_text('{"scenario": "x"')
    with pytest.raises(ReportError, match="truth.json: malformed JSON"):
        load_labels(bad)
    bad.write_text('{"scenario": "x", "seed": "seven"}')
    with pytest.raises(ReportError, match=r"truth.json: field `seed`: Expected `int`"):
        load_labels(bad)


def test_a_case_needs_the_id_its_kind_names() -> None:
    assert FraudCase(account="V", kind="trade", event_id="x9").order_id is None
    with pytest.raises(ValueError, match="event_id"):
        FraudCase(account="V", kind="withdrawal", order_id="n1")


@pytest.mark.parametrize(
    "where", ["start", "end", "attacks[0].start", "pumped_symbols[0].first_buy"]
)
def test_a_truth_time_without_its_zone_is_refused_naming_the_field(
    tmp_path: Path, where: str
) -> None:
    """A time without a zone could be any of 24 hours; the report must not guess."""
    import msgspec

    from brokerguard.truth import AttackLabel, PumpedSymbol

    t = msgspec.structs.replace(
        truth([Victim(account="V1", attack=0, events=["l1"])]),
        attacks=[AttackLabel(index=0, kind="phishing", start=jst(2025, 3, 20, 9))],
        pumped_symbols=[
            PumpedSymbol(symbol="9999", market="TSE", attack=0, first_buy=jst(2025, 3, 20, 10))
        ],
    )
    data = msgspec.to_builtins(t)
    parent, key = data, where
    if "[0]." in where:
        name, key = where.split("[0].")
        parent = data[name][0]
    parent[key] = parent[key][:19]  # 2025-03-20T09:00:00, the "+09:00" cut off
    path = tmp_path / "truth.json"
    path.write_bytes(msgspec.json.encode(data))
    with pytest.raises(ReportError, match=rf"truth.json: field `{re.escape(where)}`: .*zone"):
        load_labels(path)
    from brokerguard.evaluate import evaluate_run

    (tmp_path / "events.ndjson").write_bytes(b"")
    (tmp_path / "decisions.ndjson").write_bytes(b"")
    with pytest.raises(ValueError, match=rf"field `{re.escape(where)}`: expected a time with"):
        evaluate_run(tmp_path)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('{"account":"A1","kind":"login","event_id":"l1"}\n', "missing required field"),
        ('[{"account":"A1","kind":"login","event_id":"l1"}]', "Expected `object`, got `array`"),
    ],
)
def test_confirmed_cases_named_json_are_told_apart_from_a_truth_file(
    tmp_path: Path, text: str, words: str
) -> None:
    """A .json labels file is a run's truth.json: cases saved as cases.json got a bare
    "missing required field `scenario`" that said nothing of why."""
    path = tmp_path / "cases.json"
    path.write_text(text)
    with pytest.raises(ReportError, match=rf"cases.json: .*{re.escape(words)}.*\.csv or \.ndjson"):
        load_labels(path)
