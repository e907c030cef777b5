"""What a persisted store must write at a flush, and which cached records it may forget.

Shared by :mod:`brokerguard.stores.sqlite` and :mod:`brokerguard.stores.redis`: both keep live
records in a :class:`~brokerguard.engine.state.MemoryState`, remember what was put, deleted or
handed out (detectors change records in place), and write only the records whose bytes changed.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

from brokerguard.engine.state import MemoryState
from brokerguard.stores.codec import encode

__all__ = ["HELD", "Key", "changed_records", "forget_least_recent", "pending"]

HELD = ("population",)
"""Kinds a detector keeps a reference to across events: never evicted, checked at every flush."""

Key = tuple[str, str]


def pending(state: MemoryState, handed: set[Key]) -> tuple[list[Key], list[Key]]:
    """(records to write, records to delete) since the last flush, each in a stable order."""
    changed = state.dirty | handed
    changed.update((kind, key) for kind in HELD for key in state.records[kind])
    live = sorted(k for k in changed if k[1] in state.records[k[0]])
    gone = sorted(changed.difference(live))
    return live, gone


def changed_records(
    records: dict[str, dict[str, Any]], stored: dict[Key, int], live: list[Key]
) -> Iterator[tuple[str, str, bytes, int]]:
    """(kind, key, bytes, digest) of the live records whose bytes differ from what was stored."""
    for kind, key in live:
        data = encode(records[kind][key])
        digest = hash(data)  # 64 bits: a collision skipping a write is not a real risk
        if stored.get((kind, key)) != digest:
            yield kind, key, data, digest


def forget_least_recent(
    state: MemoryState,
    recent: dict[Key, None],
    stored: dict[Key, int],
    live: list[Key],
    gone: list[Key],
    max_cached: int,
) -> None:
    """Keep at most ``max_cached`` clean records in memory; the least recently written go first."""
    for k in gone:
        recent.pop(k, None)
    for k in live:
        if k[0] not in HELD:
            recent.pop(k, None)
            recent[k] = None
    excess = len(recent) - max_cached
    for kind, key in list(itertools.islice(recent, max(0, excess))):
        del recent[kind, key]
        state.records[kind].pop(key, None)
        stored.pop((kind, key), None)
