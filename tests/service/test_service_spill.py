"""Spill files: the records a stopping service could not write, and ``records load-spill``.

The format round-trips every kind of record exactly; a load writes them with the writer's code
(audit entries chained after the head), goes on where an interrupted load stopped and writes
nothing twice; a file that is not one, of an unknown version, changed, cut short or with a line
that does not read is refused whole, naming the file and the problem. The service says at start
and in ``/healthz`` that spill files wait. The outages are real: a PostgreSQL database of the
test's own refusing connections (``pg_helpers.database_away``).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import msgspec
import pytest
import sqlalchemy as sa
from conftest import Api
from pg_helpers import database_away, database_back
from typer.testing import CliRunner

from brokerguard.cli import app
from brokerguard.events import Event
from brokerguard.guard import decision_point
from brokerguard.service import audit, spill
from brokerguard.service.audit import AuditEntry
from brokerguard.service.db import make_engine, migrate, write_transaction
from brokerguard.service.models import (
    alerts,
    audit_log,
    campaigns,
    decisions,
    events,
    instructions,
    spill_loads,
)
from brokerguard.service.recorder import (
    Backoff,
    CampaignRecord,
    DecisionRecord,
    EventRecord,
    InstructionRecord,
    Record,
    _insert_marking,
    insert_records,
)
from brokerguard.service.runtime import Settings

runner = CliRunner()
JST = timezone(timedelta(hours=9))
T0 = datetime(2025, 4, 1, 9, 30, 0, 123456, tzinfo=JST)


def records(n: int, first: int = 0) -> list[Record]:
    """``n`` events with their decisions (every other one alerted), a campaign snapshot and an
    instruction: every kind of record, times in JST and UTC, nested JSON, floats."""
    out: list[Record] = []
    reasons = [{"code": "first_in_symbol", "en": "A first buy", "ja": "初めての銘柄"}]
    for i in range(first, first + n):
        ts = T0 + timedelta(seconds=i)
        decided_at = datetime(2026, 11, 28, 1, 2, 3, 456789, tzinfo=UTC) + timedelta(seconds=i)
        body = msgspec.json.encode({"type": "order", "id": f"o{i}", "note": "注文"}).decode()
        out.append(
            EventRecord(
                {
                    "event_id": f"o{i}",
                    "type": "order",
                    "ts": ts,
                    "account": "A1",
                    "session": "s1",
                    "body": body,
                }
            )
        )
        decision = {
            "id": f"d{i}",
            "event_id": f"o{i}",
            "ts": ts,
            "account": "A1",
            "session": "s1",
            "point": "order",
            "guard": "brokerguard",
            "action": "hold" if i % 2 else "allow",
            "score": 0.1 + i / 3,
            "factors": ["passkey"] if i % 2 else [],
            "reasons": reasons if i % 2 else [],
            "caller": "key:bgk_test",
            "decided_at": decided_at,
        }
        alert = None
        if i % 2:
            signal = {"code": "first_in_symbol", "llr": 1.2346, "evidence": {"symbol": "2999"}}
            alert = {
                "id": f"d{i}",
                "event_id": f"o{i}",
                "ts": ts,
                "account": "A1",
                "point": "order",
                "action": "hold",
                "score": decision["score"],
                "severity": "medium",
                "detector": "trading",
                "detectors": ["trading"],
                "campaign": None,
                "reasons": reasons,
                "signals": [signal],
                "status": "open",
                "updated_at": decided_at,
            }
        detail = {"decision": f"d{i}", "event": f"o{i}", "point": "order", "score": 0.1 + i / 3}
        entry = AuditEntry("key:bgk_test", "decision", "A1", detail)
        out.append(DecisionRecord(decision, alert, entry))
    raised = datetime(2025, 4, 1, 0, 0, tzinfo=UTC)
    out.append(
        CampaignRecord(
            {
                "id": "c1-20250401T000000Z",
                "engine_id": "c1",
                "raised_at": raised,
                "updated_at": raised + timedelta(minutes=first + n),
                "symbols": ["2999"],
                "accounts": ["A1", "A2"],
                "infrastructure": ["asn:64500"],
                "counterparties": [],
                "timeline": [{"at": raised.isoformat(), "what": "raised", "detail": {"n": 2}}],
                "status": "active",
            }
        )
    )
    out.append(
        InstructionRecord(
            {
                "kind": "cancel_orders",
                "ts": T0,
                "account": "A1",
                "session": "s1",
                "orders": [f"o{first}"],
                "cause": f"step-{first}",
                "reasons": reasons,
                "guard": "brokerguard",
                "created_at": raised,
            }
        )
    )
    return out


def counts(url: str) -> dict[str, int]:
    engine = make_engine(url)
    with engine.connect() as conn:
        found = {
            t.name: int(conn.scalar(sa.select(sa.func.count()).select_from(t)) or 0)
            for t in (events, decisions, alerts, campaigns, instructions, audit_log)
        }
    engine.dispose()
    return found


def verified(url: str) -> audit.AuditReport:
    engine = make_engine(url)
    with engine.connect() as conn:
        report = audit.verify(conn)
    engine.dispose()
    return report


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'service.db'}"
    engine = make_engine(url)
    migrate(engine)
    engine.dispose()
    return url


def load(path: Path, url: str, *more: str) -> Any:
    return runner.invoke(app, ["records", "load-spill", str(path), "--database", url, *more])


def test_a_spill_file_reads_back_every_record_as_it_was_written(tmp_path: Path) -> None:
    written = records(6)
    path = spill.write(tmp_path, written, reason="stop", database="sqlite:///service.db")
    assert path.name.startswith("brokerguard-spill-") and path.name.endswith(".ndjson")
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left
    assert path.stat().st_mode & 0o777 == 0o600  # customers' records: the service's user only
    read = spill.read(path)
    assert read.records == written
    assert (read.header.version, read.header.records, read.header.reason) == (2, 14, "stop")
    assert read.header.database == f"sqlite:///{Path('service.db').resolve()}"
    # the times are the same instants, and the decision's audit entry is unchained
    assert read.records[0].row["ts"] == T0  # type: ignore[union-attr]
    first = msgspec.json.decode(path.read_bytes().splitlines()[2])
    assert first["kind"] == "decision" and set(first["audit"]) == {
        "actor",
        "action",
        "subject",
        "detail",
    }


def test_load_spill_writes_every_kind_keeps_the_chain_and_writes_nothing_twice(
    url: str, tmp_path: Path
) -> None:
    engine = make_engine(url)
    with write_transaction(engine) as conn:  # records of its own: the chain goes on after them
        insert_records(conn, records(2, first=100)[:4])
    engine.dispose()
    path = spill.write(tmp_path, records(6), reason="stop", database=url)

    result = load(path, url)
    assert result.exit_code == 0, result.output
    assert "14 records written, 0 already stored, 0 refused" in result.output
    assert counts(url) == {
        "events": 8,
        "decisions": 8,
        "alerts": 4,
        "campaigns": 1,
        "instructions": 1,
        "audit_log": 2 + 6 + 1,  # the earlier decisions, the spilled ones, the load's entry
    }
    report = verified(url)
    assert report.problem is None and report.entries == 9
    engine = make_engine(url)
    with engine.connect() as conn:
        row = conn.execute(sa.select(decisions).where(decisions.c.id == "d3")).one()
        assert row.ts == T0 + timedelta(seconds=3) and row.factors == ["passkey"]
        last = conn.execute(sa.select(audit_log).order_by(audit_log.c.seq.desc())).first()
        assert last is not None and last.action == spill.LOAD_ACTION
        assert msgspec.json.decode(last.detail)["records"] == "1-14 of 14"
        progress = conn.execute(sa.select(spill_loads)).one()
        assert (progress.through, progress.written, progress.records) == (14, 14, 14)
    engine.dispose()

    loaded = spill.loaded_name(path)
    assert loaded.is_file() and not path.exists()
    before = counts(url)
    again = load(loaded, url)
    assert again.exit_code == 0 and "already loaded, nothing written" in again.output
    assert counts(url) == before


def test_an_interrupted_load_goes_on_where_it_stopped(
    outage_db: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database goes away after the first transaction of a load: the load stops (exit 1,
    saying how far it got); the next load writes the rest, and the first part once."""
    url, name = outage_db
    path = spill.write(tmp_path, records(10), reason="stop", database=url)
    calls = 0

    def going_away(conn: sa.Connection, batch: list[Record]) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:  # the second transaction: its connection is cut, no new one is let in
            database_away(name)
        insert_records(conn, batch)

    monkeypatch.setattr(spill, "insert_records", going_away)
    engine = make_engine(url)
    try:
        with pytest.raises(spill.LoadInterrupted) as stopped:
            quick = Backoff(pause=0.01, pause_max=0.01, attempts=2)
            spill.load(engine, spill.read(path), chunk=8, backoff=quick)
        assert "the first 8 of 22 records are loaded" in str(stopped.value)
        database_back(name)
        assert counts(url)["events"] == 4  # the first 8 records: 4 events and their decisions
        monkeypatch.undo()
        result = spill.load(engine, spill.read(path), chunk=8)
    finally:
        engine.dispose()
    assert (result.written, result.already) == (14, False)
    assert counts(url) == {
        "events": 10,
        "decisions": 10,
        "alerts": 5,
        "campaigns": 1,
        "instructions": 1,
        "audit_log": 10 + 3,
    }
    assert verified(url).problem is None


def test_records_already_stored_are_skipped_and_refused_ones_reported(
    url: str, tmp_path: Path
) -> None:
    """A decision already stored (a writer that died between its write and saying so) is
    skipped with its alert and audit entry; a campaign snapshot older than the stored one
    too; a record the database refuses for good is named by its line, the rest written."""
    spilled = records(4)
    engine = make_engine(url)
    with write_transaction(engine) as conn:
        insert_records(conn, [spilled[1]])  # d0 made it before the writer died
        insert_records(conn, records(0, first=50)[:1])  # a newer snapshot of the campaign
    engine.dispose()
    bad = EventRecord({**spilled[4].row, "type": None})  # type: ignore[union-attr]
    spilled[4] = bad  # line 6: events.type is NOT NULL
    path = spill.write(tmp_path, spilled, reason="stop", database=url)
    result = load(path, url)
    assert result.exit_code == 0, result.output
    assert "7 records written, 2 already stored, 1 refused by the database" in result.output
    assert "line 6: IntegrityError: NOT NULL constraint failed: events.type" in result.output
    found = counts(url)
    assert (found["events"], found["decisions"], found["alerts"]) == (3, 4, 2)
    report = verified(url)
    assert report.problem is None and report.entries == 1 + 3 + 1  # d0, d1-d3, the load
    engine = make_engine(url)
    with engine.connect() as conn:
        stored = conn.execute(sa.select(campaigns.c.updated_at)).scalar_one()
        assert stored.replace(tzinfo=UTC) == datetime(2025, 4, 1, 0, 50, tzinfo=UTC)
        progress = conn.execute(sa.select(spill_loads)).one()
        assert (progress.through, progress.skipped, progress.rejected) == (10, 2, 1)
    engine.dispose()


def placed(spilled: list[Record], writer: str, first: int) -> list[Record]:
    """``spilled`` with the places a writer process ``writer`` had given them, from ``first``
    (as the recorder spills the batches a lost writer had taken)."""
    for n, record in enumerate(spilled, start=first):
        record.at = (writer, n)
    return spilled


def test_records_a_lost_writer_had_written_are_skipped_whole_events_too(
    outage_db: tuple[str, str], tmp_path: Path
) -> None:
    """A writer process that dies between committing a batch and acknowledging it: the server
    spills the batch (``writer_lost``). Loading it skipped the decisions already stored but
    wrote their event rows again (no key to know them by): every such crash doubled events.
    The writer's transaction now also advances ``writer_progress`` (what it does, here with
    its own code; the second commit moves the row the first made), the spill names each
    record's place, and the load skips what was written. Loaded again, or a copy of it,
    nothing more. Real PostgreSQL."""
    url, _ = outage_db
    spilled = placed(records(6), "w" * 32, first=41)  # 14 records, places 41..54
    engine = make_engine(url)
    _insert_marking(engine, spilled[:4])  # an earlier commit of the writer: its row is made
    _insert_marking(engine, spilled[4:9])  # the dead writer's last commit: its row moves to 9
    engine.dispose()
    before = counts(url)
    assert (before["events"], before["decisions"]) == (5, 4)
    path = spill.write(tmp_path, spilled, reason="writer_lost", database=url)
    copy = tmp_path / "copy-of-the-spill.ndjson"
    copy.write_bytes(path.read_bytes())

    result = load(path, url)
    assert result.exit_code == 0, result.output
    assert "5 records written, 9 already stored, 0 refused" in result.output
    after = counts(url)
    assert after == {
        "events": 6,  # each once
        "decisions": 6,
        "alerts": 3,
        "campaigns": 1,
        "instructions": 1,
        "audit_log": 6 + 1,  # the decisions, the load's entry
    }
    report = verified(url)
    assert report.problem is None and report.entries == 7
    for again in (spill.loaded_name(path), copy):  # the same file again, and a copy of it
        result = load(again, url)
        assert result.exit_code == 0 and "already loaded, nothing written" in result.output
        assert counts(url) == after


def test_a_version_1_spill_file_still_loads(outage_db: tuple[str, str], tmp_path: Path) -> None:
    """Files written before the records had places (format version 1) load as they did; a
    place in such a file is refused, naming the line."""
    url, _ = outage_db
    path = spill.write(tmp_path, records(3), reason="stop", database=url)
    rewrite(path, header_version(1))
    assert spill.read(path).header.version == 1
    result = load(path, url)
    assert result.exit_code == 0, result.output
    assert "8 records written, 0 already stored, 0 refused" in result.output
    found = counts(url)
    assert (found["events"], found["decisions"], found["audit_log"]) == (3, 3, 3 + 1)
    assert verified(url).problem is None

    odd = spill.write(tmp_path, placed(records(1), "w" * 32, 1), reason="stop", database=url)
    rewrite(odd, header_version(1))
    refused = load(odd, url)
    assert refused.exit_code == 2
    assert "line 2: a record's place (at) in a version-1 file" in " ".join(refused.output.split())


def rewrite(path: Path, change: Callable[[list[bytes]], list[bytes]]) -> None:
    path.write_bytes(b"\n".join(change(path.read_bytes().split(b"\n"))))


def with_checksum(lines: list[bytes]) -> list[bytes]:
    """The lines with the end line's checksum made right again (a well-formed bad file)."""
    body = b"".join(line + b"\n" for line in lines[1:-2])
    end = msgspec.json.decode(lines[-2])
    end["sha256"] = hashlib.sha256(body).hexdigest()
    return [*lines[:-2], msgspec.json.encode(end), b""]


def header_version(version: Any) -> Callable[[list[bytes]], list[bytes]]:
    def change(lines: list[bytes]) -> list[bytes]:
        header = msgspec.json.decode(lines[0])
        header["version"] = version
        return [msgspec.json.encode(header), *lines[1:]]

    return change


def extra_column(lines: list[bytes]) -> list[bytes]:
    line = msgspec.json.decode(lines[1])
    line["row"]["colour"] = "red"
    return with_checksum([lines[0], msgspec.json.encode(line), *lines[2:]])


def bad_time(lines: list[bytes]) -> list[bytes]:
    line = msgspec.json.decode(lines[2])
    line["decision"]["decided_at"] = "yesterday"
    return with_checksum([*lines[:2], msgspec.json.encode(line), *lines[3:]])


def unknown_kind(lines: list[bytes]) -> list[bytes]:
    return with_checksum([lines[0], b'{"kind":"memo","text":"hi"}', *lines[2:]])


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (header_version(3), "spill format version 3 is not known to this BrokerGuard"),
        (header_version("1"), "spill format version '1' is not known"),
        (lambda lines: [b"hello", *lines[1:]], "not a BrokerGuard spill file (its first line is"),
        (
            lambda lines: [b'{"format":"other"}', *lines[1:]],
            'not a BrokerGuard spill file (its first line has no "format"',
        ),
        (lambda lines: lines[:-3], "cut short: its last line is not the end line"),
        (
            lambda lines: [lines[0], lines[1].replace(b"o0", b"o9"), *lines[2:]],
            "its records do not match the checksum of its end line",
        ),
        (lambda lines: with_checksum([lines[0], *lines[2:]]), "the header says 6 records"),
        (extra_column, "line 2: colour is not a column of events"),
        (bad_time, "line 3: decisions.decided_at: 'yesterday' is not an RFC 3339 time"),
        (unknown_kind, "line 2: Invalid value 'memo' - at `$.kind`"),
    ],
    ids=[
        "later-version",
        "version-text",
        "not-json",
        "not-spill",
        "cut-short",
        "changed",
        "count",
        "column",
        "time",
        "kind",
    ],
)
def test_a_file_that_cannot_be_read_is_refused_whole_naming_it_and_the_problem(
    url: str, tmp_path: Path, change: Callable[[list[bytes]], list[bytes]], problem: str
) -> None:
    path = spill.write(tmp_path, records(2), reason="stop", database=url)
    rewrite(path, change)
    before = counts(url)
    result = load(path, url)
    assert result.exit_code == 2, result.output
    output = " ".join(result.output.split())  # as printed, wrapped
    assert f"error: {path}: " in output and problem in output, output
    assert counts(url) == before  # nothing written
    assert path.exists()  # nor renamed


def test_a_file_meant_for_another_database_is_loaded_there_only_when_asked(
    url: str, tmp_path: Path
) -> None:
    path = spill.write(tmp_path, records(1), reason="stop", database="postgresql://u:pw@db/guard")
    assert spill.read(path).header.database == "postgresql+psycopg://db/guard"  # no password
    refused = load(path, url)
    assert refused.exit_code == 2
    assert "its records are for postgresql+psycopg://db/guard, not sqlite:///" in refused.output
    assert counts(url)["events"] == 0
    done = load(path, url, "--any-database")
    assert done.exit_code == 0, done.output
    assert counts(url)["events"] == 1


def test_the_service_names_waiting_spill_files_at_start_and_in_healthz(
    make_api: Callable[..., Api], url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spills = tmp_path / "spill"
    spills.mkdir()
    path = spill.write(spills, records(3), reason="stop", database=url)
    caplog.set_level(logging.ERROR, logger="brokerguard.service")
    api = make_api(url, settings=Settings(spill_dir=spills))
    said = [r.getMessage() for r in caplog.records]
    assert any(m.startswith(f"1 spill files in {spills} hold 8 records") for m in said), said
    assert any(str(path) in m and "8 records, stop" in m for m in said), said
    health = api.client.get("/healthz").json()
    assert health["status"] == "degraded" and health["spill_dir"] == str(spills)
    [waiting] = health["spill_files"]
    assert (waiting["path"], waiting["records"], waiting["reason"]) == (str(path), 8, "stop")
    assert load(path, url).exit_code == 0  # beside the running service
    health = api.client.get("/healthz").json()
    assert (health["status"], health["spill_files"]) == ("ok", [])


def test_a_spill_directory_that_cannot_be_used_stops_the_start(url: str, tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["serve", "--database", url, "--spill-dir", str(tmp_path / "missing")]
    )
    assert result.exit_code == 2
    assert f"spill directory {tmp_path / 'missing'}: not a directory" in result.output


def test_a_service_stopped_during_an_outage_keeps_its_decisions_for_the_next_start(
    outage_db: tuple[str, str],
    make_api: Callable[..., Api],
    recorded_events: list[Event],
    tmp_path: Path,
) -> None:
    """The whole way: decisions answered while the database is away, the service stopped
    before it is back; the stop saves them and says where; the next start says they wait;
    ``load-spill`` writes them, the chain verifies, and every answered decision is there."""
    url, name = outage_db
    spills = tmp_path / "spill"
    spills.mkdir()
    settings = Settings(write_pause=0.005, write_pause_max=0.02, stop_outage=0.2, spill_dir=spills)
    api = make_api(url, settings=settings)
    points = [e for e in recorded_events if decision_point(e) is not None][:30]
    assert api.ingest(recorded_events[:5]).status_code == 200  # its key checked while up
    for event in points[:10]:
        assert api.decide(event).status_code == 200
    api.settle()
    database_away(name)
    for event in points[10:]:
        assert api.decide(event).status_code == 200
    api.client.__exit__(None, None, None)  # the stop, the database still away
    saved = api.service.recorder.spill_file
    assert saved is not None and saved.parent == spills
    [problem] = api.service.stop_problems
    assert f"records not written (saved to {saved}: `brokerguard records load-spill" in problem
    database_back(name)

    again = make_api(url, settings=settings)
    health = again.client.get("/healthz").json()
    assert health["status"] == "degraded"
    assert [f["path"] for f in health["spill_files"]] == [str(saved)]
    result = load(saved, url)
    assert result.exit_code == 0, result.output
    health = again.client.get("/healthz").json()
    assert (health["status"], health["spill_files"]) == ("ok", [])
    engine = make_engine(url)
    with engine.connect() as conn:
        ids = set(conn.scalars(sa.select(decisions.c.event_id)))
        report = audit.verify(conn)
        actions = list(conn.scalars(sa.select(audit_log.c.action)))
    engine.dispose()
    assert ids == {e.id for e in points}
    assert report.problem is None and actions.count("decision") == 30
