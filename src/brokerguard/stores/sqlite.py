"""The engine's state in one SQLite file, so that a restart continues where the engine stopped.

Everything the engine has learned — each account's usual networks, devices and trading habits,
open sessions, shared infrastructure, symbols, campaigns, decisions awaiting a challenge's answer —
is a record in its :class:`~brokerguard.engine.state.State`. :class:`SqliteState` is that state
with a file behind it: records live in memory while the engine works on them, a ``get`` that
misses reads the record from the file, and :meth:`SqliteState.flush` writes what changed in one
transaction. The detectors never know which store they talk to; a Redis store does the same with
the same bytes (:mod:`brokerguard.stores.codec`).

The file holds two tables: ``state(kind, key, value)``, one encoded record per row, and ``meta``,
which marks the file as BrokerGuard's and holds its schema version. One engine writes a file at a
time.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from brokerguard.engine.state import MemoryState
from brokerguard.stores.changes import changed_records, forget_least_recent, pending
from brokerguard.stores.codec import decode

__all__ = ["SCHEMA_VERSION", "FlushJob", "SqliteState", "StateFileError"]

FORMAT = "brokerguard-state"
SCHEMA_VERSION = 1

"""Kinds whose records the engine holds on to between events (the login detector keeps the
population's counts): they are never evicted and are checked at every flush."""

_SCHEMA = (
    "CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE state (kind TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,"
    " PRIMARY KEY (kind, key)) WITHOUT ROWID",
)
_GET = "SELECT value FROM state WHERE kind = ? AND key = ?"
_KEYS = "SELECT key FROM state WHERE kind = ?"
_UPSERT = (
    "INSERT INTO state (kind, key, value) VALUES (?, ?, ?)"
    " ON CONFLICT (kind, key) DO UPDATE SET value = excluded.value"
)
_DELETE = "DELETE FROM state WHERE kind = ? AND key = ?"
_SET_META = "INSERT OR REPLACE INTO meta VALUES (?, ?)"
_OWN_META = ("format", "schema_version")  # the file's own marks; never the engine's


class StateFileError(ValueError):
    """A state file that cannot be used: not BrokerGuard's, another schema version, unreadable."""


@dataclass
class FlushJob:
    """A flush taken apart (see :meth:`SqliteState.begin_flush`): what to write and delete, and
    the bytes encoded so far."""

    live: list[tuple[str, str]]
    gone: list[tuple[str, str]]
    rows: list[tuple[str, str, bytes]] = field(default_factory=list)
    digests: dict[tuple[str, str], int] = field(default_factory=dict)
    done: int = 0  # records of ``live`` looked at
    meta: list[tuple[str, str]] = field(default_factory=list)  # written with the records


class SqliteState(MemoryState):
    """Records in memory with an SQLite file behind them; :meth:`flush` makes changes durable.

    A flush writes every record put or deleted since the last one, and also every record a
    ``get`` handed out since then: detectors change the records they get in place, and writing
    back what was handed out does not depend on each such change being followed by a ``put``.

    Nothing reaches the file before :meth:`flush` or :meth:`close`; whoever drives the engine
    flushes between events (every second, every N events). A crash loses the changes made since
    the last flush, never what a flush wrote.

    ``max_cached`` bounds the records kept in memory: after a flush, when there are more than
    that, the least recently used are dropped (all are clean then) and read again when needed.
    """

    def __init__(self, path: str | Path, max_cached: int | None = None) -> None:
        super().__init__()
        self.path = Path(path)
        self.max_cached = max_cached
        self.handed: set[tuple[str, str]] = set()
        self._stored: dict[tuple[str, str], int] = {}  # hash of the bytes the file holds
        self._recent: dict[tuple[str, str], None] = {}  # flushed keys, least recently used first
        self._in_flight: set[tuple[str, str]] = set()  # deleted, in a flush not committed yet
        self._writer: sqlite3.Connection | None = None  # the sliced flush's, for another thread
        self._writer_lock = threading.Lock()
        self.db = _open(self.path)
        self.meta: dict[str, str] = {}
        """Written to the file's ``meta`` table with the next flush, in its transaction (the
        engine's sweep clock: see :meth:`saved_meta`)."""

    def saved_meta(self) -> dict[str, str]:
        """What earlier runs wrote through :attr:`meta` (the file's own marks left out)."""
        rows = self.db.execute("SELECT name, value FROM meta").fetchall()
        return {name: value for name, value in rows if name not in _OWN_META}

    def _meta_rows(self) -> list[tuple[str, str]]:
        return [(k, v) for k, v in self.meta.items() if k not in _OWN_META]

    # --- the State interface -------------------------------------------------------------------
    def get(self, kind: str, key: str) -> Any | None:
        record = self.records[kind].get(key)
        if record is None:
            if (kind, key) in self.dirty or (kind, key) in self._in_flight:
                return None  # deleted since the last flush (or in one still being written)
            row = self.db.execute(_GET, (kind, key)).fetchone()
            if row is None:
                return None
            record = self._decode(kind, key, row[0])
            self.records[kind][key] = record
            self._stored[kind, key] = hash(row[0])
        self.handed.add((kind, key))
        return record

    def delete(self, kind: str, key: str) -> None:
        self.records[kind].pop(key, None)
        self.dirty.add((kind, key))

    def keys(self, kind: str) -> Iterator[str]:
        live = self.records[kind]
        stored = [
            key
            for (key,) in self.db.execute(_KEYS, (kind,))
            if key not in live
            and (kind, key) not in self.dirty
            and (kind, key) not in self._in_flight
        ]
        return iter([*live, *stored])

    def count(self, kind: str) -> int:
        return sum(1 for _ in self.keys(kind))

    # --- persistence ---------------------------------------------------------------------------
    def flush(self) -> int:
        """Write every change since the last flush in one transaction; returns the rows written.

        Either all of it lands or none: on an error the transaction is rolled back, the file keeps
        what the previous flush wrote, and the changes stay pending for the next flush. A record
        handed out but left as it was is not written again.
        """
        live, gone = pending(self, self.handed)
        written: dict[tuple[str, str], int] = {}

        def rows() -> Iterator[tuple[str, str, bytes]]:
            for kind, key, data, digest in changed_records(self.records, self._stored, live):
                written[kind, key] = digest
                yield kind, key, data

        self.db.execute("BEGIN")
        try:
            self.db.executemany(_UPSERT, rows())
            self.db.executemany(_DELETE, gone)
            self.db.executemany(_SET_META, self._meta_rows())
            self.db.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise
        self._stored.update(written)
        for k in gone:
            self._stored.pop(k, None)
        self.dirty.clear()
        self.handed.clear()
        if self.max_cached is not None:
            self._evict(live, gone)
        return len(written) + len(gone)

    # --- the same flush in slices, for a server that must keep answering meanwhile ----------------
    def begin_flush(self) -> FlushJob:
        """Start a flush whose work can be spread out: :meth:`encode_some` on this thread between
        events, :meth:`write` on any thread, :meth:`end_flush` back here.

        What changes from now on goes to the next flush. The snapshot is therefore spread over
        the slices: each record is written as it was when its slice encoded it (a crash restores
        every record as of some moment of the flush, not all of them as of one instant). Use
        :meth:`flush` where one instant matters (at the end of a replay, on shutdown).
        """
        live, gone = pending(self, self.handed)
        self.dirty, self.handed = set(), set()
        self._in_flight = set(gone)
        return FlushJob(live, gone, meta=self._meta_rows())

    def encode_some(self, job: FlushJob, count: int) -> bool:
        """Encode the next ``count`` records of the job; True once every record is encoded."""
        chunk = job.live[job.done : job.done + count]
        job.done += len(chunk)
        present = [k for k in chunk if k[1] in self.records[k[0]]]  # deleted since: next flush
        for kind, key, data, digest in changed_records(self.records, self._stored, present):
            job.rows.append((kind, key, data))
            job.digests[kind, key] = digest
        return job.done >= len(job.live)

    def write(self, job: FlushJob) -> None:
        """Write an encoded job in one transaction (any thread; its own connection)."""
        with self._writer_lock:
            if self._writer is None:
                self._writer = sqlite3.connect(
                    self.path, isolation_level=None, check_same_thread=False
                )
            db = self._writer
            db.execute("BEGIN")
            try:
                db.executemany(_UPSERT, job.rows)
                db.executemany(_DELETE, job.gone)
                db.executemany(_SET_META, job.meta)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    def end_flush(self, job: FlushJob, written: bool) -> int:
        """Finish a job on this thread; a job not written leaves its changes for the next flush.

        Returns the rows written. A sliced flush evicts nothing: records may have changed again
        while it ran; the next :meth:`flush` applies ``max_cached``.
        """
        self._in_flight = set()
        if not written:
            self.dirty.update(job.live)
            self.dirty.update(job.gone)
            return 0
        self._stored.update(job.digests)
        for k in job.gone:
            self._stored.pop(k, None)
        return len(job.rows) + len(job.gone)

    def close(self, flush: bool = True) -> None:
        """Flush (unless ``flush`` is false: the changes since the last flush are then lost)
        and close the file; the state cannot be used afterwards."""
        try:
            if flush:
                self.flush()
        finally:
            self.db.close()
            with self._writer_lock:
                if self._writer is not None:
                    self._writer.close()

    def __enter__(self) -> SqliteState:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _evict(self, live: list[tuple[str, str]], gone: list[tuple[str, str]]) -> None:
        forget_least_recent(self, self._recent, self._stored, live, gone, self.max_cached or 0)

    def _decode(self, kind: str, key: str, data: bytes) -> Any:
        try:
            return decode(kind, data)
        except msgspec.MsgspecError as exc:
            message = f"{self.path}: the {kind} record {key!r} cannot be read: {exc}"
            raise StateFileError(message) from None


def _open(path: Path) -> sqlite3.Connection:
    """Connect to ``path``, creating the schema in a new file and checking it in an old one."""
    try:
        db = sqlite3.connect(path, isolation_level=None)
    except sqlite3.Error as exc:
        raise StateFileError(f"cannot open the state file {path}: {exc}") from None
    try:
        tables = {n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if tables:
            _check(path, db, tables)
        db.execute("PRAGMA journal_mode = WAL")  # only once the file is known to be ours
        if not tables:
            db.execute("BEGIN")
            for statement in _SCHEMA:
                db.execute(statement)
            db.executemany(
                "INSERT INTO meta VALUES (?, ?)",
                [("format", FORMAT), ("schema_version", str(SCHEMA_VERSION))],
            )
            db.execute("COMMIT")
    except sqlite3.DatabaseError as exc:
        db.close()
        raise StateFileError(f"{path} is not a BrokerGuard state file ({exc})") from None
    except StateFileError:
        db.close()
        raise
    return db


def _check(path: Path, db: sqlite3.Connection, tables: set[str]) -> None:
    if not {"meta", "state"} <= tables:
        raise StateFileError(f"{path} is not a BrokerGuard state file (no meta and state tables)")
    meta = dict(db.execute("SELECT name, value FROM meta"))
    if meta.get("format") != FORMAT:
        raise StateFileError(f"{path} is not a BrokerGuard state file (meta names no {FORMAT})")
    version = meta.get("schema_version")
    if version != str(SCHEMA_VERSION):
        raise StateFileError(
            f"{path} is a BrokerGuard state file of schema version {version}; "
            f"this BrokerGuard reads version {SCHEMA_VERSION}"
        )
