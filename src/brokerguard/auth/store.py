"""Where authentication records live: a tiny key-value interface with a memory and SQLite twin.

Every module of :mod:`brokerguard.auth` keeps its records (passkeys, TOTP secrets, hashed
codes, password hashes, lock states, unlock requests, rate-limit windows, pending ceremonies)
as msgspec Structs in one :class:`AuthStore`, each kind in its own namespace. The interface is
four methods so that a PostgreSQL or Redis twin is a page of code; :class:`Records` gives each
module a typed view of its kind.

>>> import msgspec
>>> class Note(msgspec.Struct):
...     text: str
>>> notes = Records(MemoryStore(), "note", Note)
>>> notes.put("a", Note("hello"))
>>> notes.get("a")
Note(text='hello')
>>> notes.take("a"), notes.get("a")
(Note(text='hello'), None)
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Generic, Protocol, TypeVar, runtime_checkable

import msgspec

__all__ = ["AuthStore", "MemoryStore", "Records", "SqliteStore"]

T = TypeVar("T")


@runtime_checkable
class AuthStore(Protocol):
    """Bytes by (kind, key). Implementations are safe to call from several threads."""

    def get(self, kind: str, key: str) -> bytes | None: ...

    def put(self, kind: str, key: str, value: bytes) -> None: ...

    def delete(self, kind: str, key: str) -> bool:
        """Remove a record; True when it existed (so a single-use record is taken once)."""
        ...

    def keys(self, kind: str, prefix: str = "") -> list[str]:
        """Keys of ``kind`` starting with ``prefix``, sorted."""
        ...

    def values(self, kind: str, prefix: str = "") -> list[bytes]:
        """The records of ``kind`` whose keys start with ``prefix``, in key order, read at once
        (one read however many there are: the unlock page reads an account's requests so,
        and a read per request would make an account with requests slower to answer)."""
        ...


class MemoryStore:
    """Records in a dict: for tests, the simulator and single-process demos."""

    def __init__(self) -> None:
        self._data: dict[tuple[str, str], bytes] = {}
        self._lock = threading.Lock()

    def get(self, kind: str, key: str) -> bytes | None:
        return self._data.get((kind, key))

    def put(self, kind: str, key: str, value: bytes) -> None:
        with self._lock:
            self._data[(kind, key)] = value

    def delete(self, kind: str, key: str) -> bool:
        with self._lock:
            return self._data.pop((kind, key), None) is not None

    def keys(self, kind: str, prefix: str = "") -> list[str]:
        with self._lock:
            return sorted(k for (c, k) in self._data if c == kind and k.startswith(prefix))

    def values(self, kind: str, prefix: str = "") -> list[bytes]:
        with self._lock:
            found = sorted(
                (k, v) for (c, k), v in self._data.items() if c == kind and k.startswith(prefix)
            )
        return [v for _k, v in found]


class SqliteStore:
    """Records in one SQLite file (the embedded default); every write is its own transaction.

    Authentication records change rarely and must survive a crash at once (a used TOTP step
    that is forgotten could be replayed), so there is no write-behind cache here, unlike the
    engine's state.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        if self.path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS auth_records (kind TEXT NOT NULL, key TEXT NOT NULL,"
            " value BLOB NOT NULL, PRIMARY KEY (kind, key)) WITHOUT ROWID"
        )

    def get(self, kind: str, key: str) -> bytes | None:
        with self._lock:
            row = self._db.execute(
                "SELECT value FROM auth_records WHERE kind = ? AND key = ?", (kind, key)
            ).fetchone()
        return None if row is None else bytes(row[0])

    def put(self, kind: str, key: str, value: bytes) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO auth_records (kind, key, value) VALUES (?, ?, ?)"
                " ON CONFLICT (kind, key) DO UPDATE SET value = excluded.value",
                (kind, key, value),
            )

    def delete(self, kind: str, key: str) -> bool:
        with self._lock:
            cur = self._db.execute(
                "DELETE FROM auth_records WHERE kind = ? AND key = ?", (kind, key)
            )
        return cur.rowcount > 0

    def keys(self, kind: str, prefix: str = "") -> list[str]:
        # Range scan instead of LIKE: keys may contain % and _.
        with self._lock:
            rows = self._db.execute(
                "SELECT key FROM auth_records WHERE kind = ? AND key >= ? AND key < ? ORDER BY key",
                (kind, prefix, prefix + "\U0010ffff"),
            ).fetchall()
        return [r[0] for r in rows]

    def values(self, kind: str, prefix: str = "") -> list[bytes]:
        with self._lock:
            rows = self._db.execute(
                "SELECT value FROM auth_records WHERE kind = ? AND key >= ? AND key < ?"
                " ORDER BY key",
                (kind, prefix, prefix + "\U0010ffff"),
            ).fetchall()
        return [bytes(r[0]) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()


class Records(Generic[T]):
    """A typed view of one kind in a store: msgspec Structs in, msgspec Structs out."""

    def __init__(self, store: AuthStore, kind: str, type_: type[T]) -> None:
        self.store = store
        self.kind = kind
        self._encoder = msgspec.msgpack.Encoder()
        self._decoder = msgspec.msgpack.Decoder(type_)

    def get(self, key: str) -> T | None:
        raw = self.store.get(self.kind, key)
        return None if raw is None else self._decoder.decode(raw)

    def put(self, key: str, record: T) -> None:
        self.store.put(self.kind, key, self._encoder.encode(record))

    def delete(self, key: str) -> bool:
        return self.store.delete(self.kind, key)

    def take(self, key: str) -> T | None:
        """Get and delete; only one of two concurrent takers gets the record."""
        raw = self.store.get(self.kind, key)
        if raw is None or not self.store.delete(self.kind, key):
            return None
        return self._decoder.decode(raw)

    def keys(self, prefix: str = "") -> list[str]:
        return self.store.keys(self.kind, prefix)

    def values(self, prefix: str = "") -> list[T]:
        """The records whose keys start with ``prefix``, in key order, in one read."""
        return [self._decoder.decode(raw) for raw in self.store.values(self.kind, prefix)]
