"""The instructions feed commits in ``seq`` order, whichever process writes.

A reader of ``GET /v1/instructions?after=SEQ`` keeps the last ``seq`` it saw. That is safe only
if no row with a smaller ``seq`` can become visible after a larger one: two writers (the service
and a scale-out worker) each taking a number and committing in the other order would make the
reader skip a row for good. Every writer's transaction takes the database's write lock first
(``BEGIN IMMEDIATE`` on SQLite, an advisory lock on PostgreSQL), so the second writer waits for
the first to commit before it takes its number. The test holds one writer's transaction open
and watches the other wait. Only the PostgreSQL run can catch a missing lock: SQLite lets one
writer in at a time whatever the code does.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import sqlalchemy as sa

from brokerguard.guard import Instruction
from brokerguard.service.db import make_engine, migrate, write_transaction
from brokerguard.service.models import instructions
from brokerguard.service.queries import list_instructions
from brokerguard.service.recorder import write_records
from brokerguard.service.records import instruction_record

WAITED = 1.0  # seconds the second writer is given to (wrongly) commit while the first is open


def _instruction(cause: str) -> Instruction:
    return Instruction(
        kind="end_session",
        ts=datetime(2025, 4, 1, 9, 0, tzinfo=UTC),
        account="A1",
        session="s-" + cause,
        cause=cause,
        reasons=(),
    )


def _feed(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        return [row["cause"] for row in list_instructions(conn, after=0)]


def test_a_second_writer_waits_for_the_first_to_commit(database_url: str) -> None:
    engine = make_engine(database_url)
    migrate(engine)
    inserted, release = threading.Event(), threading.Event()
    first_error: list[BaseException] = []

    def first_writer() -> None:
        try:
            with write_transaction(engine) as conn:
                row = instruction_record(_instruction("first"), "service").row
                conn.execute(instructions.insert(), [row])
                inserted.set()
                release.wait(timeout=30)
        except BaseException as exc:  # reported by the test thread
            first_error.append(exc)
            inserted.set()

    first = threading.Thread(target=first_writer)
    first.start()
    assert inserted.wait(timeout=30)
    assert not first_error
    second_result: list[tuple[int, int, str | None]] = []
    second = threading.Thread(
        target=lambda: second_result.append(
            write_records(engine, [instruction_record(_instruction("second"), "worker")])
        )
    )
    second.start()
    second.join(timeout=WAITED)
    try:
        assert second.is_alive(), "the second writer committed while the first was still open"
        assert _feed(engine) == []  # nothing visible: a reader cannot move past the first's seq
    finally:
        release.set()
        first.join(timeout=30)
        second.join(timeout=60)
    assert not first_error
    assert second_result and second_result[0][:2] == (1, 0)
    with engine.connect() as conn:
        rows = list_instructions(conn, after=0)
    assert [r["cause"] for r in rows] == ["first", "second"]
    assert rows[0]["seq"] < rows[1]["seq"]
    engine.dispose()
