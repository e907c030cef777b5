"""Partitions: what one partition's engine sees, and the embedded reference for the cluster.

The cluster runs **one engine per partition**: partition ``p`` has its own state (in Redis under
``<prefix>:<p>:``), its own processed-id set and its own durable consumer, and sees

- every event of the accounts whose ``crc32(account) % partitions == p``, in stream order;
- every market event (instruments, bars), which ``ingest`` publishes to every partition.

A partition never reads or writes another partition's state, so who processes it — one worker,
two, a worker that took it over from a dead one — cannot change what it decides: the cluster with
any number of workers decides exactly what :class:`PartitionedGuard` (the same engines in one
process, ``brokerguard replay --partitions N``) decides. With ``partitions = 1`` that is the
embedded engine itself.

The price is in the cross-account detectors: the shared-infrastructure records of addresses,
networks and user agents, the population counts of the login detector, the symbols' suspicious
buyers and the campaigns are per partition. A campaign is raised in partition ``p`` only from the
accounts of ``p``: thresholds ("N accounts from one address", "N first-time buyers of one thin
symbol") count accounts of one partition, so a campaign spread over many partitions is seen later,
or not at all, the more partitions there are. The README's "Scale-out" section gives the figures.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

from brokerguard.engine import BrokerGuard
from brokerguard.engine.signals import Signal
from brokerguard.events import Event
from brokerguard.guard import Decision, Instruction

__all__ = ["EngineGroup", "PartitionedGuard", "campaign_tag", "partition_key", "partition_of"]


def partition_key(event: Event) -> str | None:
    """The account of an event; None for market events (they go to every partition)."""
    return getattr(event, "account", None)


def partition_of(event: Event, partitions: int) -> int | None:
    """Stable across processes and machines (crc32, not Python's salted ``hash``)."""
    key = partition_key(event)
    if key is None:
        return None
    return zlib.crc32(key.encode()) % partitions


def campaign_tag(partition: int, partitions: int) -> str:
    """Prefix of a partition's campaign ids (engine ids restart at C0001 in every partition)."""
    return "" if partitions == 1 else f"P{partition:03d}-"


def tag_records(records: list[dict[str, Any]], tag: str) -> list[dict[str, Any]]:
    if tag:
        for record in records:
            record["id"] = tag + record["id"]
    return records


class EngineGroup:
    """Several engines that ``replay`` treats as one: one ``trace`` for them all."""

    engines: list[BrokerGuard]
    _trace: Callable[[Event, list[Signal], Decision], None] | None = None

    @property
    def trace(self) -> Callable[[Event, list[Signal], Decision], None] | None:
        return self._trace

    @trace.setter
    def trace(self, fn: Callable[[Event, list[Signal], Decision], None] | None) -> None:
        self._trace = fn
        for engine in self.engines:
            engine.trace = fn

    def take_instructions(self) -> list[Instruction]:
        """Every engine's instructions raised since the last call (an event reaches one
        partition, or all of them alike, so there is no order among them to keep)."""
        return [i for engine in self.engines for i in engine.take_instructions()]


class PartitionedGuard(EngineGroup):
    """``partitions`` engines in one process, routed like the cluster: the cluster's reference.

    Has the engine's interface as ``replay`` uses it (``decide``, ``observe``, ``trace``,
    ``name``, ``campaign_records``).
    """

    def __init__(self, partitions: int, make: Callable[[], BrokerGuard] | None = None) -> None:
        make = make or BrokerGuard
        self.partitions = partitions
        self.engines = [make() for _ in range(partitions)]
        for p, engine in enumerate(self.engines):
            engine.campaign_tag = campaign_tag(p, partitions)  # an analyst names its ids so
        self.name = self.engines[0].name

    def decide(self, event: Event) -> Decision:
        p = partition_of(event, self.partitions)
        if p is None:
            for engine in self.engines:
                engine.observe(event)
            return Decision(action="allow")
        return self.engines[p].decide(event)

    def observe(self, event: Event) -> None:
        p = partition_of(event, self.partitions)
        targets = self.engines if p is None else [self.engines[p]]
        for engine in targets:
            engine.observe(event)

    def campaign_records(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for p, engine in enumerate(self.engines):
            out += tag_records(engine.campaign_records(), campaign_tag(p, self.partitions))
        return out
