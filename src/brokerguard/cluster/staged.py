"""The staged cluster in one process: account partitions plus the campaign stage, in stream order.

:class:`StagedGuard` is to the cluster with a campaign stage (``brokerguard worker
--campaign-stage`` and ``brokerguard campaign-stage``) what
:class:`~brokerguard.cluster.partition.PartitionedGuard` is to the plain cluster: the same
engines, the same routing, the same epoch rule (:mod:`brokerguard.engine.stage`), run over the
stream in its order. Because the rule makes the outcome independent of scheduling, the cluster
must decide exactly what this decides, and raise the same campaigns.

``brokerguard replay --partitions N --campaign-stage`` runs it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, tzinfo
from typing import Any

from brokerguard.cluster.partition import EngineGroup, partition_of
from brokerguard.engine import BrokerGuard, Policy
from brokerguard.engine.policy import load_policy
from brokerguard.engine.stage import (
    CampaignStage,
    Fact,
    StageLink,
    decode_entity,
    shards_of,
)
from brokerguard.engine.state import MemoryState
from brokerguard.events import Event
from brokerguard.guard import Decision

__all__ = ["DEFAULT_EPOCH_SECONDS", "StagedGuard", "epoch_of"]

DEFAULT_EPOCH_SECONDS = 60.0


def epoch_of(ts: datetime, epoch_seconds: float) -> int:
    return int(ts.timestamp() // epoch_seconds)


class StagedGuard(EngineGroup):
    """``partitions`` account engines and ``shards`` campaign stages, in stream order.

    Has the engine's interface as ``replay`` uses it (``decide``, ``observe``, ``trace``,
    ``name``, ``campaign_records``).
    """

    def __init__(
        self,
        partitions: int,
        shards: int = 1,
        epoch_seconds: float = DEFAULT_EPOCH_SECONDS,
        policy: Policy | None = None,
        make: Callable[[StageLink], BrokerGuard] | None = None,
    ) -> None:
        policy = policy if policy is not None else load_policy()
        make = make or (lambda link: BrokerGuard(policy, stage=link))
        self.partitions = partitions
        self.shards = shards
        self.epoch_seconds = epoch_seconds
        self.links = [StageLink(p, emit_market=p == 0) for p in range(partitions)]
        self.engines = [make(link) for link in self.links]
        self.stages = [
            CampaignStage(MemoryState(track_changes=False), policy.detectors, s, shards)
            for s in range(shards)
        ]
        self.name = self.engines[0].name
        self.epoch: int | None = None
        self.order = 0
        self._facts: list[list[Fact]] = [[] for _ in range(shards)]
        self._tz: tzinfo = UTC

    # --- the epoch rule -----------------------------------------------------------------------
    def _advance(self, event: Event) -> None:
        """Move to the event's epoch; at a new one the stages take the finished epochs' facts."""
        self.order += 1
        k = epoch_of(event.ts, self.epoch_seconds)
        if self.epoch is None:
            self.epoch = k
            self._tz = event.ts.tzinfo or UTC
        elif k > self.epoch:
            self.close_epoch()
            self.epoch = k
        else:
            return
        for link in self.links:
            link.epoch = self.epoch

    def close_epoch(self) -> None:
        """Run the stages on the facts sent so far (all of epochs before the current one)."""
        for link in self.links:
            for fact in link.take():
                for s in shards_of(fact, self.shards):
                    self._facts[s].append(fact)
        if self.epoch is None:
            return
        for s, stage in enumerate(self.stages):
            facts, self._facts[s] = self._facts[s], []
            for update in stage.process(facts, self.epoch):
                for link in self.links:
                    link.contain(update)
            if stage.population_changed:  # the counts over all partitions, for the next epoch
                stage.population_changed = False
                shared = stage.population()
                for engine in self.engines:
                    engine.login.take_population(shared)
            for key, data in stage.changed_entities().items():  # ... and the infrastructure
                for engine in self.engines:
                    engine.login.take_entity(key, decode_entity(data))

    # --- the engine's interface ---------------------------------------------------------------
    def decide(self, event: Event) -> Decision:
        self._advance(event)
        p = partition_of(event, self.partitions)
        if p is None:
            self.observe_market(event)
            return Decision(action="allow")
        self.links[p].order = self.order
        return self.engines[p].decide(event)

    def observe(self, event: Event) -> None:
        self._advance(event)
        p = partition_of(event, self.partitions)
        if p is None:
            self.observe_market(event)
        else:
            self.links[p].order = self.order
            self.engines[p].observe(event)

    def observe_market(self, event: Event) -> None:
        """A market event goes to every partition (only partition 0 sends its facts)."""
        self.links[0].order = self.order
        for engine in self.engines:
            engine.observe(event)

    def campaign_records(self) -> list[dict[str, Any]]:
        """Closes the current epoch (the end of the stream) and returns the stages' lines."""
        self.close_epoch()
        tz = self._tz

        def iso(t: float) -> str:
            return datetime.fromtimestamp(t, tz).isoformat()

        out: list[dict[str, Any]] = []
        for stage in self.stages:
            out += stage.records(iso)
        return out
