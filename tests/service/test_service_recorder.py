"""A writer process that cannot start: restarted with growing pauses, counted, nothing lost.

The writer is made unable to start for real — its SQLite file's directory is renamed away, so
:func:`~brokerguard.service.db.make_engine` refuses in the new process — and the recorder's
pause is the only thing replaced: it notes the delay instead of sleeping, and puts the
directory back after a few restarts.

The database away, for real too: a PostgreSQL database of the test's own refuses connections
and its sessions are ended (``pg_helpers.database_away``). Records wait and none is dropped; a
stop, after its bounded wait, saves what it could not write to a spill file, and so does a
writer process lost meanwhile; ``brokerguard records load-spill`` writes them once the database
is back.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from pg_helpers import database_away, database_back
from typer.testing import CliRunner

from brokerguard.cli import app
from brokerguard.service import audit, spill
from brokerguard.service import recorder as recorder_module
from brokerguard.service.audit import AuditEntry
from brokerguard.service.db import make_engine, migrate
from brokerguard.service.errors import Unavailable
from brokerguard.service.models import audit_log, events, writer_progress
from brokerguard.service.recorder import DecisionRecord, EventRecord, Recorder


def row(i: int) -> EventRecord:
    ts = datetime(2025, 4, 1, tzinfo=UTC)
    return EventRecord(
        {"event_id": f"e{i}", "type": "login", "ts": ts, "account": "a1", "body": "{}"}
    )


def stored_ids(url: str) -> list[str]:
    engine = make_engine(url)
    with engine.connect() as conn:
        ids = list(conn.scalars(sa.select(events.c.event_id).order_by(events.c.seq)))
    engine.dispose()
    return ids


def kill_writer(recorder: Recorder) -> None:
    writer = recorder._process
    assert writer is not None and writer.pid is not None
    os.kill(writer.pid, signal.SIGKILL)
    writer.join(10)


def test_a_writer_that_cannot_start_is_retried_with_growing_pauses_and_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(recorder_module, "RESTART_MAX_S", 2.0)  # reach the cap in 3 steps
    home, away = tmp_path / "db", tmp_path / "away"
    home.mkdir()
    url = f"sqlite:///{home / 'service.db'}"
    engine = make_engine(url)
    migrate(engine)
    failing = 5  # writers that die before they are ready
    pauses: list[float] = []

    def pause(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == failing:
            away.rename(home)  # the next writer finds its database again

    recorder = Recorder(url, engine, sleep=pause)
    recorder.start()
    try:
        for i in range(10):
            recorder.record(row(i))
        assert recorder.wait_idle(30)
        home.rename(away)
        kill_writer(recorder)
        caplog.set_level(logging.ERROR, logger="brokerguard.service.recorder")
        for i in range(10, 30):  # queued while no writer can start
            recorder.record(row(i))
        assert recorder.wait_idle(120)

        assert pauses == [0.5, 1.0, 2.0, 2.0, 2.0]
        assert recorder.writer_restarts == failing
        lines = [r.getMessage() for r in caplog.records if "starting a new one" in r.getMessage()]
        assert len(lines) == 3  # the first loss and each growth of the pause, not every restart
        assert stored_ids(url) == [f"e{i}" for i in range(30)]
        assert (recorder.written, recorder.dropped, recorder.last_error) == (30, 0, None)

        kill_writer(recorder)  # a writer that wrote: the next loss starts from the short pause
        recorder.record(row(30))
        assert recorder.wait_idle(30)
        assert pauses[failing:] == [0.5]
        assert recorder.writer_restarts == failing + 1
        assert stored_ids(url)[-1] == "e30"
    finally:
        recorder.stop()
        engine.dispose()


def test_a_writer_dying_with_a_batch_is_noticed_at_once_and_the_batch_spilled_not_dropped(
    tmp_path: Path,
) -> None:
    """A writer killed while it holds a batch, and nothing more queued: the recorder noticed a
    dead writer only when it next had a batch to send, so an idle service kept the dead
    writer's batch in memory (``wait_idle`` hung, and a crash meanwhile lost it), and then
    counted it as dropped. It notices at once: the batch goes to a spill file, the backlog
    empties, a new writer is started, an analyst job runs, and ``load-spill`` writes the batch.
    """
    path = tmp_path / "service.db"
    url = f"sqlite:///{path}"
    spills = tmp_path / "spill"
    spills.mkdir()
    engine = make_engine(url)
    migrate(engine)
    pauses: list[float] = []
    recorder = Recorder(url, engine, sleep=pauses.append, spill_dir=spills)
    recorder.start()
    try:
        recorder.record(row(0))
        assert recorder.wait_idle(30)
        lock = sqlite3.connect(path, isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")  # the writer cannot write what it takes now
        taken = 5
        for i in range(1, 1 + taken):
            recorder.record(row(i))
        deadline = time.monotonic() + 60
        while recorder._sent < 1 + taken and time.monotonic() < deadline:
            time.sleep(0.01)  # until the sender has handed them over
        kill_writer(recorder)
        lock.rollback()
        lock.close()
        assert recorder.wait_idle(15)  # nothing more queued: noticed all the same
        assert (recorder.spilled, recorder.dropped, recorder.backlog) == (taken, 0, 0)
        saved = recorder.spill_file
        assert saved is not None and saved.parent == spills
        read = spill.read(saved)
        assert (read.header.reason, read.header.records) == ("writer_lost", taken)
        # each record with its place in what the dead writer was handed: e0 was its first
        places = [r.at for r in read.records]
        dead = places[0][0] if places[0] else None
        assert places == [(dead, n) for n in range(2, 2 + taken)]
        assert recorder.call(lambda conn: "job ran").result(30) == "job ran"
        recorder.record(row(99))  # the new writer writes what comes next
        assert recorder.wait_idle(60)
        assert stored_ids(url) == ["e0", "e99"]
        assert (recorder.written, recorder.dropped) == (2, 0)
        assert (pauses, recorder.writer_restarts) == ([0.5], 1)
    finally:
        recorder.stop()
        engine.dispose()
    with engine.connect() as conn:  # each writer's transactions said how far it wrote
        query = sa.select(writer_progress.c.writer, writer_progress.c.through)
        progress = {row.writer: row.through for row in conn.execute(query)}
    assert progress[dead] == 1 and sorted(progress.values()) == [1, 1]
    result = spill.load(engine, spill.read(saved))  # the dead writer wrote none of them
    assert (result.written, result.skipped, result.rejected) == (taken, 0, [])
    assert stored_ids(url) == ["e0", "e99", *(f"e{i}" for i in range(1, 1 + taken))]
    engine.dispose()


@pytest.mark.parametrize("spill_dir_there", [True, False])
def test_stop_with_no_writer_returns_in_seconds_and_spills_the_queue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spill_dir_there: bool
) -> None:
    """No writer can start (its database directory is gone) and the sender is in a long pause
    before the next: ``stop`` waits out neither the pause nor the minute of its timeout. The
    writer it starts at once dies too, the queued records are saved to a spill file (counted
    as dropped only when the spill directory is gone too), and a job queued before the stop
    gets its answer."""
    monkeypatch.setattr(recorder_module, "RESTART_FIRST_S", 30.0)
    home, away, spills = tmp_path / "db", tmp_path / "away", tmp_path / "spill"
    home.mkdir()
    spills.mkdir()
    url = f"sqlite:///{home / 'service.db'}"
    engine = make_engine(url)
    migrate(engine)
    recorder = Recorder(url, engine, spill_dir=spills)  # the real pause, which a stop ends
    recorder.start()
    try:
        recorder.record(row(0))
        assert recorder.wait_idle(30)
        home.rename(away)
        kill_writer(recorder)
        for i in range(1, 11):
            recorder.record(row(i))
        deadline = time.monotonic() + 30
        while recorder._restart_delay != 30.0 and time.monotonic() < deadline:
            time.sleep(0.05)  # until the sender has found the writer lost and pauses
        assert recorder._restart_delay == 30.0
        job = recorder.call(lambda conn: "job ran")
        if not spill_dir_there:
            spills.rmdir()
    finally:
        t0 = time.monotonic()
        recorder.stop()
        took = time.monotonic() - t0
        engine.dispose()
    assert took < 8, f"stop took {took:.1f} s"
    assert "stopped with no writer: 10 records not written" in (recorder.last_error or "")
    assert job.done()
    away.rename(home)
    assert stored_ids(url) == ["e0"]
    assert (recorder.written, recorder.backlog, recorder.lost_at_stop) == (1, 0, 10)
    if not spill_dir_there:
        assert (recorder.dropped, recorder.spilled, recorder.spill_file) == (10, 0, None)
        assert "cannot save 10 records to a spill file" in (recorder.last_error or "")
        return
    assert (recorder.dropped, recorder.spilled) == (0, 10)
    assert recorder.spill_file is not None and recorder.spill_file.parent == spills
    saved = spill.read(recorder.spill_file)
    assert [r.row["event_id"] for r in saved.records] == [f"e{i}" for i in range(1, 11)]
    assert saved.header.reason == "stop"


def test_a_record_that_cannot_be_written_leaves_no_customer_data_in_the_last_error(
    tmp_path: Path,
) -> None:
    """``last_error`` is shown by ``/healthz``, the one route without authentication: it says
    what went wrong, not the SQL statement with the record's values (account, session, key)."""
    url = f"sqlite:///{tmp_path / 'service.db'}"
    engine = make_engine(url)
    migrate(engine)
    ts = datetime(2025, 4, 1, tzinfo=UTC)
    decision = {
        "id": "d1",
        "event_id": "e1",
        "ts": ts,
        "account": "ACCOUNT-OF-A-CUSTOMER",
        "session": "SESSION-OF-A-CUSTOMER",
        "point": "login",
        "guard": "brokerguard",
        "action": "allow",
        "score": 0.1,
        "factors": [],
        "reasons": [],
        "caller": "key:bgk_0123abcd",
        "decided_at": ts,
    }
    entry = AuditEntry("key:bgk_0123abcd", "decision", "ACCOUNT-OF-A-CUSTOMER", {})
    recorder = Recorder(url, engine)
    recorder.start()
    try:
        for _ in range(2):  # the second has the first's id: it cannot be written
            recorder.record(DecisionRecord(dict(decision), None, entry))
        assert recorder.wait_idle(30)
    finally:
        recorder.stop()
        engine.dispose()
    assert (recorder.written, recorder.dropped) == (1, 1)
    error = recorder.last_error or ""
    assert "UNIQUE constraint failed" in error
    for secret in ("ACCOUNT-OF-A-CUSTOMER", "SESSION-OF-A-CUSTOMER", "bgk_0123abcd", "INSERT"):
        assert secret not in error, error


def test_an_error_that_waiting_cannot_mend_drops_only_its_record_and_never_waits(
    tmp_path: Path,
) -> None:
    """SQLite calls a missing table "operational", as it calls a lock. Waited for as an
    outage, the one record that needs the table held every record behind it for ever."""
    url = f"sqlite:///{tmp_path / 'service.db'}"
    engine = make_engine(url)
    migrate(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE alerts"))
    alerted = decision(0)
    alerted.alert = {**alerted.decision, "id": "a0", "decision_id": "d0"}
    records = [row(1), alerted, row(2)]
    backoff = recorder_module.Backoff(pause=0.0, pause_max=0.0, attempts=3)
    try:
        written, dropped, error = recorder_module.write_records(engine, records, backoff)
    finally:
        engine.dispose()
    assert (written, dropped) == (2, 1) and "no such table" in (error or "")
    assert backoff.failures == 0 and not backoff.gave_up  # never taken for an outage
    assert stored_ids(url) == ["e1", "e2"]


# --- the database away: records wait, nothing is dropped ----------------------------------------
def decision(i: int) -> DecisionRecord:
    ts = datetime(2025, 4, 1, tzinfo=UTC)
    row = {
        "id": f"d{i}",
        "event_id": f"e{i}",
        "ts": ts,
        "account": "a1",
        "session": "s1",
        "point": "login",
        "guard": "brokerguard",
        "action": "allow",
        "score": 0.1,
        "factors": [],
        "reasons": [],
        "caller": "key:test",
        "decided_at": ts,
    }
    return DecisionRecord(row, None, AuditEntry("key:test", "decision", "a1", {"id": f"d{i}"}))


def wait_for(condition: Callable[[], bool], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(0.01)


def test_records_wait_through_a_database_outage_and_none_is_dropped(
    outage_db: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """The writer used to try 8 times (about 11 s) and then drop every record of its batch:
    an outage longer than that left holes in the decisions and the audit chain. Now it keeps
    them, says so (last_error, write_failures, failing_since), and writes them once the
    database is back."""
    url, name = outage_db
    engine = make_engine(url)
    recorder = Recorder(url, engine, write_pause=0.005, write_pause_max=0.02)
    caplog.set_level(logging.WARNING, logger="brokerguard.service.recorder")
    recorder.start()
    try:
        recorder.record(row(0))
        recorder.record(decision(0))
        assert recorder.wait_idle(30)
        database_away(name)
        for i in range(1, 21):
            recorder.record(row(i))
            recorder.record(decision(i))
        # well past the 8 attempts after which the old writer dropped the batch
        tries = 3 * recorder_module.WRITE_ATTEMPTS
        wait_for(lambda: recorder.write_failures > tries or recorder.dropped > 0)
        assert (recorder.dropped, recorder.backlog) == (0, 40)
        assert (recorder.last_error or "").startswith("OperationalError")
        assert recorder.failing_since is not None
        database_back(name)
        assert recorder.wait_idle(60)
    finally:
        recorder.stop()
        engine.dispose()
    assert stored_ids(url) == [f"e{i}" for i in range(21)]
    assert (recorder.written, recorder.dropped, recorder.lost_at_stop) == (42, 0, 0)
    assert (recorder.last_error, recorder.write_failures, recorder.failing_since) == (None, 0, None)
    check = make_engine(url)
    with check.connect() as conn:
        report = audit.verify(conn)
    check.dispose()
    assert (report.entries, report.problem) == (21, None)
    said = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("cannot write records") and "records wait" in m for m in said)
    assert any(m.startswith("records are written again") for m in said)


def audit_entries(url: str) -> tuple[audit.AuditReport, list[str]]:
    """The chain's verification and the action of every entry, in order."""
    engine = make_engine(url)
    with engine.connect() as conn:
        report = audit.verify(conn)
        actions = list(conn.scalars(sa.select(audit_log.c.action).order_by(audit_log.c.seq)))
    engine.dispose()
    return report, actions


def test_a_stop_during_an_outage_spills_what_was_not_written_and_load_spill_writes_it_once(
    outage_db: tuple[str, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A stop cannot wait for ever for a database that stays away: it gives it
    ``stop_outage`` seconds. Then it used to count every record not written as dropped —
    decisions and their audit entries gone, a hole in the audit log. Now they are saved, in
    the order queued, to a spill file named in the one error line; once the database is back
    ``brokerguard records load-spill`` writes every one, the audit chain verifies, and a
    second load (or a copy of the file) adds nothing. Enough records that some are in the
    writer's hands, some in the pipe and the rest queued."""
    url, name = outage_db
    spills = tmp_path / "spill"
    spills.mkdir()
    engine = make_engine(url)
    recorder = Recorder(
        url, engine, write_pause=0.005, write_pause_max=0.02, stop_outage=0.2, spill_dir=spills
    )
    caplog.set_level(logging.ERROR, logger="brokerguard.service.recorder")
    recorder.start()
    pairs = 3 * recorder_module.MAX_BATCH // 2
    try:
        recorder.record(row(0))
        recorder.record(decision(0))
        assert recorder.wait_idle(30)
        database_away(name)
        for i in range(1, 1 + pairs):
            recorder.record(row(i))
            recorder.record(decision(i))
        wait_for(lambda: recorder.write_failures > 0)
    finally:
        recorder.stop()
        engine.dispose()
    queued = 2 * pairs
    assert (recorder.written, recorder.backlog, recorder.lost_at_stop) == (2, 0, queued)
    assert (recorder.dropped, recorder.spilled) == (0, queued)
    assert (recorder.last_error or "").startswith("OperationalError"), recorder.last_error
    saved = recorder.spill_file
    assert saved is not None and saved.parent == spills and saved.is_file()
    said = [r.getMessage() for r in caplog.records]
    line = f"recorder stopped with {queued} records not written: {queued} saved to {saved}"
    assert any(m.startswith(line) for m in said), said
    database_back(name)
    assert stored_ids(url) == ["e0"]

    runner = CliRunner()
    load = runner.invoke(app, ["records", "load-spill", str(saved), "--database", url])
    assert load.exit_code == 0, load.output
    assert f"{queued} records written, 0 already stored, 0 refused" in load.output
    assert stored_ids(url) == [f"e{i}" for i in range(1 + pairs)]
    report, actions = audit_entries(url)
    assert report.problem is None, report.problem
    assert actions.count("decision") == 1 + pairs
    assert actions.count(spill.LOAD_ACTION) == queued // recorder_module.MAX_BATCH
    loaded = spill.loaded_name(saved)
    assert loaded.is_file() and not saved.exists()

    again = runner.invoke(app, ["records", "load-spill", str(loaded), "--database", url])
    assert again.exit_code == 0 and "already loaded, nothing written" in again.output
    shutil.copy(loaded, saved)  # the file as it was: its id says it is loaded
    copy = runner.invoke(app, ["records", "load-spill", str(saved), "--database", url])
    assert copy.exit_code == 0 and "already loaded, nothing written" in copy.output
    assert stored_ids(url) == [f"e{i}" for i in range(1 + pairs)]
    assert audit_entries(url) == (report, actions)


def test_a_writer_lost_while_the_database_is_away_spills_its_batch_and_the_rest_goes_on(
    outage_db: tuple[str, str], tmp_path: Path
) -> None:
    """A writer process that dies holding a batch it could not write (the database away) had
    not written it: those records used to be counted as dropped. Now they are saved to a
    spill file at once, the next writer takes what comes after them, and nothing is lost."""
    url, name = outage_db
    spills = tmp_path / "spill"
    spills.mkdir()
    engine = make_engine(url)
    pauses: list[float] = []
    recorder = Recorder(
        url,
        engine,
        sleep=pauses.append,
        write_pause=0.005,
        write_pause_max=0.02,
        spill_dir=spills,
    )
    recorder.start()
    try:
        recorder.record(row(0))
        assert recorder.wait_idle(30)
        database_away(name)
        for i in range(1, 11):
            recorder.record(row(i))
            recorder.record(decision(i))
        wait_for(lambda: recorder.write_failures > 0 and recorder._sent == 21)
        kill_writer(recorder)
        recorder.record(row(99))  # the sender finds the writer gone and starts another
        wait_for(lambda: recorder.spilled > 0)
        assert (recorder.spilled, recorder.dropped, pauses) == (20, 0, [0.5])
        saved = recorder.spill_file
        assert saved is not None and saved.is_file()
        header = spill.read(saved).header
        assert (header.reason, header.records) == ("writer_lost", 20)
        database_back(name)
        assert recorder.wait_idle(60)
    finally:
        recorder.stop()
        engine.dispose()
    assert (recorder.written, recorder.dropped, recorder.lost_at_stop) == (2, 0, 0)
    assert stored_ids(url) == ["e0", "e99"]
    check = make_engine(url)
    try:
        result = spill.load(check, spill.read(saved))
    finally:
        check.dispose()
    assert (result.written, result.skipped, result.rejected) == (20, 0, [])
    assert stored_ids(url) == ["e0", "e99", *(f"e{i}" for i in range(1, 11))]
    report, actions = audit_entries(url)
    assert report.problem is None and actions.count("decision") == 10


def test_a_writer_killed_while_it_waits_for_the_database_does_not_hang_the_stop(
    outage_db: tuple[str, str], tmp_path: Path
) -> None:
    """Between attempts the writer waits on the server's stop signal. That was a
    ``multiprocessing.Event``, whose ``set`` waits for every waiter to wake: a writer killed
    while it waited never did, and the service's stop hung for ever. (The stop runs in a
    thread here so that the test fails instead of hanging.) What the writer held is spilled."""
    url, name = outage_db
    engine = make_engine(url)
    recorder = Recorder(
        url, engine, write_pause=0.005, write_pause_max=0.02, stop_outage=0.2, spill_dir=tmp_path
    )
    recorder.start()
    try:
        database_away(name)
        for i in range(5):
            recorder.record(row(i))
        wait_for(lambda: recorder.write_failures > 2)  # it waits between attempts
        kill_writer(recorder)
    finally:
        stopping = threading.Thread(target=recorder.stop, daemon=True)
        stopping.start()
        stopping.join(30)
        engine.dispose()
    assert not stopping.is_alive(), "the stop hung"
    assert (recorder.written, recorder.backlog) == (0, 0)
    assert (recorder.dropped, recorder.spilled) == (0, 5)
    # spilled once: at once when the writer was found lost, or by the stop if it came first
    files = sorted(tmp_path.glob("brokerguard-spill-*.ndjson"))
    assert [len(spill.read(f).records) for f in files] == [5]


def test_a_call_after_an_outage_whose_writer_was_lost_is_tried_not_refused(
    outage_db: tuple[str, str], tmp_path: Path
) -> None:
    """``call`` refused every job while ``failing_since`` was set, and only a batch the writer
    acknowledged cleared it. A writer lost during the outage never acknowledges the batch it
    held: once the database was back, every analyst's action was still refused (503
    ``database_away``) until the next decision happened to be written. Now a job is refused at
    once only while a live writer retries records (it would wait behind them for the whole
    outage); otherwise it is tried, in its own transaction: while the database is still away it
    fails and nothing is done, once it is back it is done."""
    url, name = outage_db
    engine = make_engine(url)
    recorder = Recorder(
        url,
        engine,
        sleep=lambda _s: None,
        write_pause=0.005,
        write_pause_max=0.02,
        spill_dir=tmp_path,
    )

    def note(i: int) -> Callable[[sa.Connection], None]:
        return lambda conn: conn.execute(events.insert().values(**row(i).row)) and None

    recorder.start()
    try:
        recorder.record(row(0))
        assert recorder.wait_idle(30)
        database_away(name)
        for i in range(1, 6):
            recorder.record(row(i))
        wait_for(lambda: recorder.write_failures > 0 and recorder._sent == 6)
        with pytest.raises(Unavailable, match="the database is away"):
            recorder.call(note(100))  # the writer retries its records: refused at once
        kill_writer(recorder)
        with pytest.raises((sa.exc.OperationalError, Unavailable)):  # still away: not done
            recorder.call(note(101)).result(30)
        database_back(name)
        assert stored_ids(url) == ["e0"]
        recorder.call(note(102)).result(30)  # no decision written since: it used to be refused
        assert stored_ids(url) == ["e0", "e102"]
        recorder.record(row(99))  # a new writer takes it; the lost one's batch is spilled
        assert recorder.wait_idle(60)
        assert (recorder.failing_since, recorder.write_failures) == (None, 0)
    finally:
        recorder.stop()
        engine.dispose()
    assert stored_ids(url) == ["e0", "e102", "e99"]
    assert (recorder.spilled, recorder.dropped, recorder.lost_at_stop) == (5, 0, 0)


def test_a_full_sqlite_disk_is_waited_for_as_an_outage() -> None:
    """SQLITE_FULL ("database or disk is full") mends once space is freed, as PostgreSQL's
    class 53 (disk full) does: taken for an error of the record, every record was dropped
    one by one, a hole in the audit log, instead of waiting and spilling at a stop."""
    from brokerguard.service.db import database_away

    def operational(message: str) -> sa.exc.OperationalError:
        return sa.exc.OperationalError(
            "INSERT INTO events ...", {}, sqlite3.OperationalError(message)
        )

    assert database_away(operational("database or disk is full"))
    assert database_away(operational("database is locked"))
    assert not database_away(operational("no such table: alerts"))
