"""The schema comes from Alembic, up from an empty database, on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from conftest import create_pg_database, drop_pg_database, pg_database_url

from brokerguard.service.db import current_revision, head_revision, make_engine, migrate
from brokerguard.service.models import instructions, metadata


def check_upgrade_from_empty(url: str) -> None:
    engine = make_engine(url)
    try:
        assert current_revision(engine) is None
        with engine.connect() as conn:
            assert sa.inspect(conn).get_table_names() == []
        migrate(engine)
        assert current_revision(engine) == head_revision()
        with engine.connect() as conn:
            tables = set(sa.inspect(conn).get_table_names())
            assert {t.name for t in metadata.sorted_tables} | {"alembic_version"} == tables
            # the migrations and the models describe the same schema
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, metadata) == []
        migrate(engine)  # a second upgrade is a no-op
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_sqlite_upgrades_from_empty(tmp_path: Path) -> None:
    check_upgrade_from_empty(f"sqlite:///{tmp_path / 'empty.db'}")


def test_postgresql_upgrades_from_empty() -> None:
    name = create_pg_database()
    try:
        check_upgrade_from_empty(pg_database_url(name))
    finally:
        drop_pg_database(name)


def test_a_plain_path_is_an_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "plain.db"
    engine = make_engine(str(path))
    migrate(engine)
    engine.dispose()
    assert path.is_file()


def check_instructions_keep_their_rows_across_0006(url: str) -> None:
    """0006 lets one cause raise two kinds for a session; rows written before it are kept."""
    engine = make_engine(url)
    row = {
        "kind": "cancel_orders",
        "ts": datetime(2025, 4, 1, tzinfo=UTC),
        "account": "A1",
        "session": "s1",
        "orders": ["o1"],
        "cause": "c1",
        "reasons": [],
        "guard": "brokerguard",
        "created_at": datetime(2025, 4, 1, tzinfo=UTC),
    }
    try:
        migrate(engine, "0005")
        with engine.begin() as conn:
            conn.execute(instructions.insert(), row)
        migrate(engine)
        with engine.begin() as conn:
            conn.execute(instructions.insert(), {**row, "kind": "end_session", "orders": []})
        with engine.connect() as conn:
            kept = conn.execute(sa.select(instructions).order_by(instructions.c.seq)).all()
        assert [(r.seq, r.kind, r.orders) for r in kept] == [
            (1, "cancel_orders", ["o1"]),
            (2, "end_session", []),
        ]
        try:
            with engine.begin() as conn:  # the same kind again is still refused
                conn.execute(instructions.insert(), {**row, "kind": "end_session"})
        except sa.exc.IntegrityError:
            pass
        else:
            raise AssertionError("a second end_session for the same cause was stored")
    finally:
        engine.dispose()


def test_sqlite_instructions_keep_their_rows_across_0006(tmp_path: Path) -> None:
    check_instructions_keep_their_rows_across_0006(f"sqlite:///{tmp_path / 'old.db'}")


def test_postgresql_instructions_keep_their_rows_across_0006() -> None:
    name = create_pg_database()
    try:
        check_instructions_keep_their_rows_across_0006(pg_database_url(name))
    finally:
        drop_pg_database(name)
