"""A PostgreSQL statement that hangs (a lock wait) must not stall a writer for ever.

Every statement of the service's writer process and of the scale-out ``RecordSink`` runs under
``statement_timeout`` (``Settings.statement_timeout``, 30 s by default; ``--statement-timeout``):
a write stuck behind a lock another session holds fails with ``QueryCanceled``, which the
writer treats as the database away — it keeps the records, says so (``last_error``,
``write_failures``), and writes them once the lock is gone. Migrations are exempt: a worker
starting while another migrates waits for it, however long. The service's readers (and
analysts' jobs) run under the same timeout: a read behind a lock answers 503
``statement_timeout``; the report tables' reads under ``report_timeout``.

Real PostgreSQL; a second session of the test's own holds the lock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from brokerguard.cli import app
from brokerguard.cluster.records import MIGRATE_LOCK, RecordSink
from brokerguard.service.db import DatabaseError, make_engine, write_transaction
from brokerguard.service.models import events
from brokerguard.service.recorder import EventRecord
from brokerguard.service.runtime import DEFAULT_STATEMENT_TIMEOUT_S, Service, Settings


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


def libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


@contextmanager
def table_locked(url: str, table: str = "events") -> Iterator[None]:
    """Another session holds ``table`` in ACCESS EXCLUSIVE mode (a stuck migration, a
    VACUUM FULL, a forgotten transaction): every write to it waits."""
    with psycopg.connect(libpq(url)) as holder:
        holder.execute(f'LOCK TABLE "{table}" IN ACCESS EXCLUSIVE MODE')
        yield
        holder.rollback()


def wait_for(condition: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(0.02)


def shown(engine: sa.Engine) -> str:
    with engine.connect() as conn:
        return str(conn.scalar(sa.text("SHOW statement_timeout")))


def test_the_setting_reaches_the_server_on_every_connection(
    outage_db: tuple[str, str],
) -> None:
    url, _ = outage_db
    engine = make_engine(url, statement_timeout=1.5)
    try:
        assert shown(engine) == "1500ms"
        with engine.connect() as a, engine.connect() as b:  # a second, new connection too
            assert a.scalar(sa.text("SHOW statement_timeout")) == "1500ms"
            assert b.scalar(sa.text("SHOW statement_timeout")) == "1500ms"
        with write_transaction(engine) as conn:  # inside the writer's own transactions
            assert conn.scalar(sa.text("SHOW statement_timeout")) == "1500ms"
    finally:
        engine.dispose()
    plain = make_engine(url)  # no timeout given: the server's own setting
    try:
        assert shown(plain) == "0"
    finally:
        plain.dispose()
    assert Settings().statement_timeout == DEFAULT_STATEMENT_TIMEOUT_S == 30.0


def test_a_bad_timeout_is_refused_naming_the_field(outage_db: tuple[str, str]) -> None:
    url, _ = outage_db
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="statement_timeout"):
            Settings(statement_timeout=bad)
        with pytest.raises(DatabaseError, match="statement_timeout"):
            make_engine(url, statement_timeout=bad)
    for command in (["serve"], ["worker"], ["campaign-stage"]):
        result = CliRunner().invoke(app, [*command, "--statement-timeout", "-1"])
        assert result.exit_code == 2, (command, result.output)
        assert "--statement-timeout" in result.output and "No such option" not in result.output


def test_a_write_stuck_behind_a_lock_errors_out_and_is_written_once_the_lock_goes(
    outage_db: tuple[str, str], tmp_path: Path
) -> None:
    """Before, the writer process waited on the lock for ever: no failure counted, nothing
    in /healthz, and a stop could only give up on it."""
    url, _ = outage_db
    settings = Settings(
        database_url=url,
        statement_timeout=0.3,
        write_pause=0.005,
        write_pause_max=0.05,
        spill_dir=tmp_path,
    )
    service = Service(settings)
    recorder = service.recorder
    recorder.start()
    try:
        recorder.record(row(0))
        assert recorder.wait_idle(30)
        with table_locked(url):
            t0 = time.monotonic()
            recorder.record(row(1))
            wait_for(lambda: recorder.write_failures >= 2, seconds=20)
            assert time.monotonic() - t0 < 10
            assert "statement timeout" in (recorder.last_error or ""), recorder.last_error
            assert recorder.dropped == 0 and recorder.backlog == 1
        assert recorder.wait_idle(30)
    finally:
        recorder.stop()
        service.db.dispose()
    assert stored_ids(url) == ["e0", "e1"]
    assert (recorder.written, recorder.dropped, recorder.write_failures) == (2, 0, 0)


def test_the_cluster_sink_times_out_but_waits_for_another_workers_migration(
    outage_db: tuple[str, str],
) -> None:
    url, _ = outage_db
    # another worker migrating: the new one waits for it (longer than its statement timeout)
    with psycopg.connect(libpq(url), autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (MIGRATE_LOCK,))
        release = threading.Timer(1.0, lambda: other.execute("SELECT pg_advisory_unlock_all()"))
        release.start()
        try:
            t0 = time.monotonic()
            sink = RecordSink(url, statement_timeout=0.2)
            assert time.monotonic() - t0 >= 0.9
        finally:
            release.join()
    try:
        assert shown(sink.engine) == "200ms"
        with table_locked(url):
            t0 = time.monotonic()
            with (
                pytest.raises(sa.exc.OperationalError, match="statement timeout"),
                write_transaction(sink.engine) as conn,
            ):
                conn.execute(events.insert(), [row(9).row])
            assert time.monotonic() - t0 < 5
    finally:
        sink.close()
    assert stored_ids(url) == []


# --- the readers ----------------------------------------------------------------------------------
# The service's own engine serves every read (API lists and timelines, console pages, key and
# session look-ups, reports) and the analysts' jobs; it used to have no statement timeout at all,
# so a read behind a lock (or a query that never ends) held its thread and its client for ever.

WITHDRAWAL = (
    b'{"type":"withdrawal","id":"w1","ts":"2025-03-20T10:00:00+09:00","account":"A1",'
    b'"session":"s1","amount_jpy":50000}'
)


def test_a_read_stuck_behind_a_lock_answers_503_naming_the_timeout_and_loses_nothing(
    outage_db: tuple[str, str], make_api: Callable[..., Any], tmp_path: Path
) -> None:
    url, _ = outage_db
    api = make_api(url, settings=Settings(statement_timeout=0.5, spill_dir=tmp_path))
    assert shown(api.service.db) == "500ms"  # the readers' connections
    assert api.decide(WITHDRAWAL).status_code == 200
    api.settle()
    with table_locked(url):
        t0 = time.monotonic()
        answer = api.get("/v1/accounts/A1/timeline")
        assert time.monotonic() - t0 < 10
    assert answer.status_code == 503, answer.text
    error = answer.json()["error"]
    assert error["code"] == "statement_timeout"
    assert "statement timeout" in error["message"] and "0.5 s" in error["message"]
    assert error["message_ja"]
    # nothing stored is lost: the read after the lock sees the event, the writer wrote it once
    answer = api.get("/v1/accounts/A1/timeline")
    assert answer.status_code == 200, answer.text
    assert [item["event_id"] for item in answer.json()["items"]] == ["w1"]
    assert stored_ids(url) == ["w1"]
    assert api.service.recorder.dropped == 0


def test_a_read_that_never_ends_is_cancelled_and_a_report_has_its_own_timeout(
    outage_db: tuple[str, str], tmp_path: Path
) -> None:
    url, _ = outage_db
    service = Service(
        Settings(database_url=url, statement_timeout=0.3, report_timeout=1.2, spill_dir=tmp_path)
    )
    try:
        with service.read() as conn:
            t0 = time.monotonic()
            with pytest.raises(sa.exc.OperationalError, match="statement timeout"):
                conn.execute(sa.text("SELECT pg_sleep(5)"))
            assert time.monotonic() - t0 < 3
        with service.read(report=True) as conn:  # a report's scan may take longer ...
            assert conn.scalar(sa.text("SHOW statement_timeout")) == "1200ms"
            conn.execute(sa.text("SELECT pg_sleep(0.5)"))
        with service.read() as conn:  # ... only its own transaction: the pool's next reader
            assert conn.scalar(sa.text("SHOW statement_timeout")) == "300ms"
    finally:
        service.db.dispose()
    for bad in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="report_timeout"):
            Settings(report_timeout=bad)


def test_a_console_page_stuck_behind_a_lock_is_a_page_naming_the_timeout(
    outage_db: tuple[str, str], make_api: Callable[..., Any], tmp_path: Path
) -> None:
    """A console page whose read timed out came to the browser as the service's raw JSON (the
    database errors were not among those the console renders as pages): now the error page, in
    the reader's language, says the database did not answer in time. Scripts keep the JSON."""
    from conftest import add_user
    from console_helpers import login

    url, _ = outage_db
    add_user(url, "sup", "supervisor")
    api = make_api(url, settings=Settings(statement_timeout=0.5, spill_dir=tmp_path))
    login(api.client, "sup")
    browser = {"accept": "text/html,application/xhtml+xml"}
    with table_locked(url, "alerts"):
        pages = {
            lang: api.client.get(f"/console/alerts?lang={lang}", headers=browser)
            for lang in ("ja", "en")
        }
        script = api.client.get("/console/alerts")
    for lang, page in pages.items():
        assert page.status_code == 503, page.text[:300]
        assert page.headers["content-type"].startswith("text/html")
        assert f'lang="{lang}"' in page.text
    assert "データベースが制限時間内に応答しなかった" in pages["ja"].text
    assert "statement timeout (0.5 s" in pages["en"].text
    assert script.status_code == 503 and script.json()["error"]["code"] == "statement_timeout"
    assert api.client.get("/console/alerts?lang=en", headers=browser).status_code == 200
