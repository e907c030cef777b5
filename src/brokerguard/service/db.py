"""Connecting to the service's database and bringing its schema up to date.

The default is an embedded SQLite file (``sqlite:///brokerguard.db``), so ``brokerguard serve``
needs no server; ``postgresql://...`` uses PostgreSQL through psycopg 3. Either way the schema is
Alembic's (:func:`migrate`), never ``create_all``, so a database made today can be upgraded by a
later release.

SQLite needs three things set per connection: WAL (readers never wait for the writer), a busy
timeout (a second process — ``brokerguard keys create`` beside a running server — waits instead of
failing) and foreign keys. Its driver's own transaction handling is switched off so that
SQLAlchemy's ``begin()`` really begins one, and :func:`write_transaction` can take the write lock
up front (``BEGIN IMMEDIATE``): a transaction that reads the audit chain's head and then appends
to it must not find the head moved by another process in between. On PostgreSQL the same
guarantee comes from a transaction-scoped advisory lock.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = [
    "DEFAULT_DATABASE",
    "DEFAULT_REPORT_TIMEOUT_S",
    "DEFAULT_STATEMENT_TIMEOUT_S",
    "DatabaseError",
    "check_statement_timeout",
    "current_revision",
    "database_away",
    "statement_timed_out",
    "statement_timeout_ms",
    "head_revision",
    "make_engine",
    "migrate",
    "normalize_url",
    "write_transaction",
]

DEFAULT_DATABASE = "sqlite:///brokerguard.db"
WRITE_LOCK_KEY = 0x6267_5752  # "bgWR": the advisory lock that serializes writers on PostgreSQL
SQLITE_BUSY_TIMEOUT_MS = 30_000
DEFAULT_STATEMENT_TIMEOUT_S = 30.0  # every statement on PostgreSQL (a lock wait), reads too
DEFAULT_REPORT_TIMEOUT_S = 600.0  # the report tables' reads, which scan the records
PG_CONNECT_TIMEOUT_S = 10  # a PostgreSQL address that accepts and never answers: an error after
# this long, unless the URL says otherwise (``?connect_timeout=N``); libpq waits for ever


class DatabaseError(RuntimeError):
    """A database URL that cannot be used, or a schema that cannot be brought up to date."""


def normalize_url(url: str) -> str:
    """The URL SQLAlchemy needs: ``postgresql://`` means psycopg 3; a bare path means SQLite."""
    if "://" not in url:  # a plain file path
        return f"sqlite:///{Path(url)}"
    scheme, rest = url.split("://", 1)
    if scheme in ("postgresql", "postgres", "postgresql+psycopg2"):
        return f"postgresql+psycopg://{rest}"
    return url


def check_statement_timeout(seconds: float | None, name: str = "statement_timeout") -> None:
    """:class:`ValueError` naming ``name`` unless ``seconds`` is None or finite and >= 0."""
    if seconds is None:
        return
    if not isinstance(seconds, int | float) or not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{name}: {seconds!r} is not a number of seconds (0 or more; 0: none)")


def make_engine(url: str, *, statement_timeout: float | None = None, **kwargs: Any) -> sa.Engine:
    """An Engine for ``url`` with the per-connection settings this service relies on.

    ``statement_timeout`` (seconds; None or 0: the server's own, by default none): on
    PostgreSQL every statement of every connection of the engine is cancelled after this long
    (``QueryCanceled``, an ``OperationalError`` :func:`database_away` takes as the database
    away). For the writers: a write stuck behind a lock another session holds fails, is
    reported and tried again, instead of stalling the writer for ever; for the service's
    readers: the read fails (503 ``statement_timeout``) instead of holding its thread and its
    client for ever. :func:`migrate` is exempt. SQLite has its busy timeout (30 s) instead."""
    try:
        check_statement_timeout(statement_timeout)
    except ValueError as exc:
        raise DatabaseError(str(exc)) from None
    url = normalize_url(url)
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise DatabaseError(f"not a database URL: {url!r} ({exc})") from None
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:":
            parent = Path(database).parent
            if not parent.is_dir():
                raise DatabaseError(f"{url}: the directory {parent} does not exist")
        engine = sa.create_engine(
            parsed,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
            **kwargs,
        )
        _sqlite_settings(engine)
        return engine
    if parsed.get_backend_name() == "postgresql":
        if "connect_timeout" not in parsed.query:
            connect_args = {
                "connect_timeout": PG_CONNECT_TIMEOUT_S,
                **kwargs.pop("connect_args", {}),
            }
            kwargs["connect_args"] = connect_args
        engine = sa.create_engine(parsed, pool_pre_ping=True, **kwargs)
        if statement_timeout:
            _pg_statement_timeout(engine, statement_timeout_ms(statement_timeout))
        return engine
    raise DatabaseError(
        f"unsupported database {parsed.get_backend_name()!r}: use sqlite or postgresql"
    )


def statement_timeout_ms(seconds: float) -> int:
    """PostgreSQL's ``statement_timeout`` for ``seconds``: 0 is none, so a positive timeout
    below half a millisecond is 1 ms, not no limit."""
    return max(1, round(seconds * 1000)) if seconds else 0


def _pg_statement_timeout(engine: sa.Engine, milliseconds: int) -> None:
    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"SET statement_timeout = {int(milliseconds)}")  # the session's
        cursor.close()
        dbapi_connection.commit()


def _sqlite_settings(engine: sa.Engine) -> None:
    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy says BEGIN, not the driver
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")  # WAL: durable at checkpoints, never corrupt
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        immediate = conn.get_execution_options().get("bg_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


@contextmanager
def write_transaction(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A transaction that holds the database's write lock from its first statement.

    Every append to the audit log runs in one, so the chain's head read at the start is still
    the head at the commit, whichever process writes.
    """
    with engine.connect() as conn:
        conn = conn.execution_options(bg_write=True)
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": WRITE_LOCK_KEY})
            yield conn


def _alembic_config(conn: sa.Connection) -> Config:
    from alembic.config import Config

    config = Config()
    location = resources.files("brokerguard.service").joinpath("migrations")
    config.set_main_option("script_location", str(location))
    config.attributes["connection"] = conn
    return config


def head_revision() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    location = resources.files("brokerguard.service").joinpath("migrations")
    config.set_main_option("script_location", str(location))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def current_revision(engine: sa.Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def migrate(engine: sa.Engine, revision: str = "head") -> None:
    """Upgrade the schema to ``revision`` (the latest by default); a no-op when it is there."""
    from alembic import command

    try:
        with engine.connect() as conn, conn.begin():
            if conn.dialect.name == "postgresql":  # an engine's statement_timeout: not here
                conn.execute(sa.text("SET LOCAL statement_timeout = 0"))
            command.upgrade(_alembic_config(conn), revision)
    except sa.exc.OperationalError as exc:
        said = " ".join(str(exc.orig).split())  # one line: libpq's message has a hint below
        raise DatabaseError(f"cannot reach the database {engine.url!r}: {said}") from None


# OperationalErrors that say the database cannot take this write however long one waits:
# PostgreSQL's class 54 (a program limit exceeded), SQLite's schema and limit errors (any of its
# OperationalErrors but a lock, a busy file, an I/O or open failure, a read-only file, a full
# disk: freed space mends that, as PostgreSQL's disk full, class 53, is waited for).
PERMANENT_SQLSTATE_CLASSES = frozenset({"54"})
SQLITE_PASSING = ("locked", "busy", "disk i/o", "unable to open", "readonly", "disk is full")


QUERY_CANCELED = "57014"  # PostgreSQL's query_canceled: statement_timeout, or a cancel request


def statement_timed_out(exc: sa.exc.OperationalError) -> bool:
    """Whether PostgreSQL cancelled the statement because of its ``statement_timeout``."""
    orig = exc.orig
    return getattr(orig, "sqlstate", None) == QUERY_CANCELED and "statement timeout" in str(orig)


def database_away(exc: sa.exc.OperationalError) -> bool:
    """Whether a write failed because the database is away (down, restarting, unreachable,
    locked), so the same write will succeed once it is back.

    Most of what drivers call operational is that; not all. A record over one of PostgreSQL's
    limits, or an SQLite table that is missing, fails the same way for ever: waited for, one
    such record would hold every record behind it, fill the backlog and refuse every decision.
    A failure to connect, or a connection lost, is always the database away."""
    if exc.connection_invalidated or exc.statement is None:
        return True
    orig = exc.orig
    state = getattr(orig, "sqlstate", None)
    if isinstance(state, str) and state:
        return state[:2] not in PERMANENT_SQLSTATE_CLASSES
    if isinstance(orig, sqlite3.OperationalError):
        text = str(orig).lower()
        return any(word in text for word in SQLITE_PASSING)
    return True
