"""The auth store's twins behave alike; the docstring examples of the new modules run."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import msgspec
import pytest

from brokerguard.auth.store import MemoryStore, Records, SqliteStore


class Note(msgspec.Struct):
    text: str


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path):
    return MemoryStore() if request.param == "memory" else SqliteStore(tmp_path / "a.db")


def test_records_round_trip_take_once_and_list_by_prefix(store) -> None:
    notes = Records(store, "note", Note)
    others = Records(store, "other", Note)
    for key in ("a\x1f1", "a\x1f2", "a%_\x1f3", "b\x1f1"):
        notes.put(key, Note(key))
    others.put("a\x1f9", Note("x"))
    assert notes.keys("a\x1f") == ["a\x1f1", "a\x1f2"]  # % and _ are not wildcards
    assert [n.text for n in notes.values("a%_")] == ["a%_\x1f3"]
    assert notes.take("a\x1f1") == Note("a\x1f1")
    assert notes.take("a\x1f1") is None
    assert notes.delete("b\x1f1") and not notes.delete("b\x1f1")
    assert others.get("a\x1f9") == Note("x")


def test_values_are_read_at_once_in_key_order(store) -> None:
    """Records.values read the keys, then each record (1 + N reads): the unlock page's answer
    took longer for an account with unlock requests than for a made-up ID. One read now."""
    notes = Records(store, "note", Note)
    for key in ("a\x1f2", "a\x1f1", "a_\x1f3", "b\x1f1"):
        notes.put(key, Note(key))
    assert store.values("note", "a\x1f") == [
        msgspec.msgpack.encode(Note(k)) for k in ("a\x1f1", "a\x1f2")
    ]
    assert store.values("note", "zz") == [] and store.values("other") == []
    reads: list[str] = []
    real_get = store.get
    store.get = lambda kind, key: reads.append(key) or real_get(kind, key)
    assert [n.text for n in notes.values("a")] == ["a\x1f1", "a\x1f2", "a_\x1f3"]
    assert reads == []  # no read per record


def test_sqlite_records_survive_reopening(tmp_path: Path) -> None:
    Records(SqliteStore(tmp_path / "a.db"), "note", Note).put("k", Note("kept"))
    assert Records(SqliteStore(tmp_path / "a.db"), "note", Note).get("k") == Note("kept")


@pytest.mark.parametrize(
    "module",
    [
        "brokerguard.auth.store",
        "brokerguard.notify.templates",
        "brokerguard.notify.contacts",
    ],
)
def test_docstring_examples(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("package", ["brokerguard.auth", "brokerguard.notify"])
def test_the_public_surface_is_exactly_all(package: str) -> None:
    module = importlib.import_module(package)
    public = {n for n in vars(module) if not n.startswith("_")}
    submodules = {n for n, v in vars(module).items() if type(v).__name__ == "module"}
    assert public - submodules == set(module.__all__)
    assert list(module.__all__) == sorted(module.__all__, key=lambda n: (not n.isupper(), n))
