"""The service's moving parts: the writer process, the engine's state file, the one thread, the
database away."""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import Api, audit
from pg_helpers import database_away, database_back

from brokerguard.events import Event
from brokerguard.guard import decision_point
from brokerguard.service import audit as audit_log
from brokerguard.service.db import make_engine
from brokerguard.service.models import decisions
from brokerguard.service.runtime import Settings
from brokerguard.stores.sqlite import SqliteState


def decided(url: str) -> int:
    engine = make_engine(url)
    with engine.connect() as conn:
        n = conn.scalar(sa.select(sa.func.count()).select_from(decisions))
    engine.dispose()
    return int(n or 0)


def test_a_dead_writer_process_is_replaced(
    make_api: Callable[..., Api], sqlite_url: str, recorded_events: list[Event]
) -> None:
    api = make_api(sqlite_url)
    points = [e for e in recorded_events if decision_point(e) is not None][:40]
    for event in points[:20]:
        assert api.decide(event).status_code == 200
    api.settle()
    assert decided(sqlite_url) == 20
    writer = api.service.recorder._process
    os.kill(writer.pid, signal.SIGKILL)
    writer.join(10)
    for event in points[20:]:
        assert api.decide(event).status_code == 200
    api.settle()
    assert decided(sqlite_url) == 40
    assert api.service.recorder._process.pid != writer.pid
    health = api.client.get("/healthz").json()
    assert (health["status"], health["writer_restarts"]) == ("ok", 1)


def test_the_engine_state_survives_a_restart(
    make_api: Callable[..., Api], sqlite_url: str, recorded_events: list[Event], tmp_path: Path
) -> None:
    state = tmp_path / "state.db"
    head = recorded_events[:4000]
    api = make_api(sqlite_url, state_path=state)
    assert api.ingest(head).status_code == 200
    api.client.__exit__(None, None, None)  # shutdown flushes the state file
    with SqliteState(state) as stored:
        accounts = stored.count("account")
    assert accounts > 100
    again = make_api(sqlite_url, state_path=state)
    count = again.service.host.guard.state.count  # the state lives on the loop's thread
    assert again.client.portal.call(count, "account") == accounts


def test_the_engine_is_only_called_on_the_event_loop_thread(
    api: Api, recorded_events: list[Event]
) -> None:
    import threading

    seen: set[int] = set()
    guard = api.service.host.guard
    original_decide, original_observe = guard.decide, guard.observe

    def decide(event):  # type: ignore[no-untyped-def]
        seen.add(threading.get_ident())
        return original_decide(event)

    def observe(event):  # type: ignore[no-untyped-def]
        seen.add(threading.get_ident())
        return original_observe(event)

    guard.decide, guard.observe = decide, observe
    head = recorded_events[:3000]
    assert api.ingest(head, batch=500).status_code == 200
    for event in [e for e in head if decision_point(e) is not None][:50]:
        api.decide(event)
    assert len(seen) == 1 and threading.get_ident() not in seen


def test_while_the_database_is_away_records_wait_up_to_the_bound_and_none_is_dropped(
    outage_db: tuple[str, str], make_api: Callable[..., Api], recorded_events: list[Event]
) -> None:
    """At most ``max_backlog`` records wait in memory for a database that is away; past that no
    decision is taken (503 ``recorder_full``), so every decision answered is recorded, none
    dropped, and ``/healthz`` says the writer is failing and how many records wait."""
    url, name = outage_db
    settings = Settings(max_backlog=10, write_pause=0.005, write_pause_max=0.02)
    api = make_api(url, settings=settings)
    points = [e for e in recorded_events if decision_point(e) is not None][:40]
    assert api.ingest(recorded_events[:5]).status_code == 200  # its key checked while up
    api.settle()
    for event in points[:5]:
        assert api.decide(event).status_code == 200
    api.settle()
    database_away(name)
    answers = [api.decide(event) for event in points[5:15]]  # 2 records each, and campaigns
    codes = [a.status_code for a in answers]
    first = codes.index(503)
    assert first > 0 and set(codes[first:]) == {503}, codes
    assert answers[-1].json()["error"]["code"] == "recorder_full"
    refused = api.ingest(points[15:20])
    assert (refused.status_code, refused.json()["error"]["code"]) == (503, "recorder_full")

    def health() -> dict[str, Any]:
        return api.client.get("/healthz").json()  # type: ignore[no-any-return]

    deadline = time.monotonic() + 60
    while health()["write_failures"] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    seen = health()
    assert (seen["status"], seen["dropped"], seen["max_backlog"]) == ("degraded", 0, 10)
    assert seen["backlog"] >= 10 and seen["write_failures"] > 0 and seen["failing_since"]
    assert seen["last_error"].startswith("OperationalError"), seen["last_error"]
    # an analyst's action is refused at once, not left waiting for the database: nothing done
    account = points[0].account
    url_actions = f"/v1/accounts/{account}/actions"
    lock = api.client.post(url_actions, json={"action": "lock"}, headers=api.auth("admin"))
    assert (lock.status_code, lock.json()["error"]["code"]) == (503, "database_away")
    assert account not in api.service.host.locked

    database_back(name)
    api.settle()
    lock = api.client.post(url_actions, json={"action": "lock"}, headers=api.auth("admin"))
    assert lock.status_code == 201 and account in api.service.host.locked
    for event in points[20:25]:
        assert api.decide(event).status_code == 200
    api.settle()
    seen = health()
    assert (seen["status"], seen["dropped"], seen["write_failures"]) == ("ok", 0, 0)
    answered = 5 + first + 5
    assert decided(url) == answered
    assert [entry[1] for entry in audit(url)].count("decision") == answered
    engine = make_engine(url)
    with engine.connect() as conn:
        assert audit_log.verify(conn).problem is None  # the chain has no hole
    engine.dispose()


class _OnLog(logging.Handler):
    """Calls ``then`` at the first record whose message starts with ``prefix``."""

    def __init__(self, prefix: str, then: Callable[[], None]) -> None:
        super().__init__(logging.WARNING)
        self.prefix, self.then, self.seen = prefix, then, 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith(self.prefix):
            self.seen += 1
            if self.seen == 1:
                self.then()


def _locked_state_at_stop(
    make_api: Callable[..., Api], sqlite_url: str, recorded_events: list[Event], state: Path
) -> tuple[Api, int, int, sqlite3.Connection]:
    """A service on ``state`` that has learned and decided, stopped while another program holds
    the state file's write lock: (api, accounts in the engine, decisions, the lock's holder)."""
    api = make_api(sqlite_url, state_path=state, settings=Settings(tick_seconds=3600))
    head = recorded_events[:3000]
    assert api.ingest(head).status_code == 200
    host = api.service.host
    accounts = api.client.portal.call(host.guard.state.count, "account")
    assert accounts > 100

    def quick() -> None:  # the state connection's busy wait, 5 s by default: 50 ms
        host.state_file.db.execute("PRAGMA busy_timeout = 50")

    api.client.portal.call(quick)
    holder = sqlite3.connect(state, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")  # another program writes the file: the flush must wait
    return api, accounts, sum(decision_point(e) is not None for e in head), holder


def test_a_failed_last_state_flush_is_tried_again_and_loses_nothing(
    make_api: Callable[..., Api], sqlite_url: str, recorded_events: list[Event], tmp_path: Path
) -> None:
    """The last flush at shutdown used to run once: when it raised (the state file locked), the
    stop ended there — the engine's state unsaved, and the recorder never stopped, so the
    records still queued died with the process. Now it is tried again; here the lock is
    released when the first failure is logged, and the second try saves everything."""
    state = tmp_path / "state.db"
    api, accounts, decisions_made, holder = _locked_state_at_stop(
        make_api, sqlite_url, recorded_events, state
    )
    watch = _OnLog("the engine state's last flush failed", holder.rollback)
    logging.getLogger("brokerguard.service").addHandler(watch)
    try:
        api.client.__exit__(None, None, None)  # the stop: must neither raise nor lose
    finally:
        logging.getLogger("brokerguard.service").removeHandler(watch)
        holder.close()
    assert watch.seen == 1
    assert api.service.stop_problems == []
    with SqliteState(state) as stored:
        assert stored.count("account") == accounts
    assert decided(sqlite_url) == decisions_made
    assert api.service.recorder.backlog == 0


def test_a_last_state_flush_that_keeps_failing_is_reported_and_the_records_are_written(
    make_api: Callable[..., Api],
    sqlite_url: str,
    recorded_events: list[Event],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A state file that stays locked: the stop gives up on it after its tries, says so (an
    error line, ``stop_problems``), and still writes every queued record and stops the
    writer."""
    state = tmp_path / "state.db"
    api, _accounts, decisions_made, holder = _locked_state_at_stop(
        make_api, sqlite_url, recorded_events, state
    )
    caplog.set_level(logging.WARNING, logger="brokerguard.service")
    try:
        api.client.__exit__(None, None, None)
    finally:
        holder.rollback()
        holder.close()
    problems = api.service.stop_problems
    assert len(problems) == 1 and problems[0].startswith("engine state not saved"), problems
    assert "database is locked" in problems[0]
    said = [r.getMessage() for r in caplog.records if r.name == "brokerguard.service"]
    assert sum(m.startswith("the engine state's last flush failed") for m in said) == 2
    assert any(m.startswith("stopped, but not everything was saved: engine state") for m in said)
    assert decided(sqlite_url) == decisions_made
    assert api.service.recorder.backlog == 0 and api.service.recorder._process is None
    with SqliteState(state) as stored:  # the file is whole: what the last run left in it
        assert stored.count("account") == 0
