"""The audit log is hash-chained: ``brokerguard audit verify`` finds a removed or altered entry."""

from __future__ import annotations

import sqlalchemy as sa
from conftest import Api
from typer.testing import CliRunner

from brokerguard.cli import app
from brokerguard.events import Event
from brokerguard.guard import decision_point
from brokerguard.service.db import make_engine
from brokerguard.service.models import audit_log, decisions

runner = CliRunner()


def verify(url: str, *extra: str):
    return runner.invoke(app, ["audit", "verify", "--database", url, *extra])


def raw_sql(url: str, statement: str) -> None:
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(statement))
    engine.dispose()


def entries(url: str) -> list[sa.Row]:
    engine = make_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(audit_log).order_by(audit_log.c.seq)).all()
    engine.dispose()
    return rows


def count_rows(url: str, table: sa.Table) -> int:
    engine = make_engine(url)
    with engine.connect() as conn:
        n = conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
    engine.dispose()
    return n


def filled(api: Api, events: list[Event]) -> None:
    assert api.ingest(events[:3000]).status_code == 200
    opened = api.client.post("/v1/cases", json={"account": "A0000001"}, headers=api.auth("admin"))
    assert opened.status_code == 201
    api.settle()


def test_every_decision_and_action_is_chained(
    api: Api, database_url: str, recorded_events: list[Event]
) -> None:
    filled(api, recorded_events)
    rows = entries(database_url)
    actions = [r.action for r in rows]
    assert actions[0] == "policy.set" and actions[-1] == "case.create"
    # one audit entry per decision point of the log, each with its decision row
    points = sum(1 for e in recorded_events[:3000] if decision_point(e))
    assert actions.count("decision") == points == count_rows(database_url, decisions)
    assert [r.seq for r in rows] == list(range(1, len(rows) + 1))
    assert all(r.prev_hash == p.hash for p, r in zip(rows, rows[1:], strict=False))
    result = verify(database_url)
    assert result.exit_code == 0, result.output
    assert f"{len(rows)} entries" in result.output
    assert f"head {len(rows)}:{rows[-1].hash}" in result.stdout


def test_an_altered_entry_is_found(
    api: Api, database_url: str, recorded_events: list[Event]
) -> None:
    filled(api, recorded_events)
    raw_sql(
        database_url,
        "UPDATE audit_log SET detail = replace(detail, 'allow', 'deny') "
        "WHERE seq = (SELECT min(seq) FROM audit_log WHERE detail LIKE '%allow%')",
    )
    altered = next(
        r.seq for r in entries(database_url) if "deny" in r.detail and r.action == "decision"
    )
    result = verify(database_url)
    assert result.exit_code == 1
    assert f"entry {altered}" in result.output and "altered" in result.output


def test_a_removed_entry_is_found(
    api: Api, database_url: str, recorded_events: list[Event]
) -> None:
    filled(api, recorded_events)
    raw_sql(database_url, "DELETE FROM audit_log WHERE seq = 5")
    result = verify(database_url)
    assert result.exit_code == 1
    assert "entry 5" in result.output and "missing" in result.output


def test_a_rewritten_hash_is_found(
    api: Api, database_url: str, recorded_events: list[Event]
) -> None:
    filled(api, recorded_events)
    raw_sql(database_url, "UPDATE audit_log SET hash = prev_hash WHERE seq = 7")
    result = verify(database_url)
    assert result.exit_code == 1 and "entry 7" in result.output


def test_a_cut_tail_is_found_against_a_recorded_head(
    api: Api, database_url: str, recorded_events: list[Event]
) -> None:
    filled(api, recorded_events)
    head = verify(database_url).stdout.split("head ", 1)[1].strip()
    assert verify(database_url, "--head", head).exit_code == 0
    raw_sql(database_url, "DELETE FROM audit_log WHERE seq = (SELECT max(seq) FROM audit_log)")
    assert verify(database_url).exit_code == 0  # the rest of the chain is still consistent...
    result = verify(database_url, "--head", head)  # ...but the head kept elsewhere is gone
    assert result.exit_code == 1 and f"entry {head.split(':')[0]}" in result.output
    for bad in ("²:" + "0" * 64, "7:abc", head.replace(":", "")):  # named, not a traceback
        result = verify(database_url, "--head", bad)
        assert result.exit_code == 2 and "--head is SEQ:HASH" in result.output
