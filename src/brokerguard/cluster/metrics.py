"""The worker's Prometheus metrics (``brokerguard worker --metrics-port PORT``: ``/metrics``).

- ``brokerguard_worker_events_total{partition}``: events processed (redelivered ones skipped are
  not counted); its rate is the events/s;
- ``brokerguard_worker_decisions_total``: decisions made;
- ``brokerguard_worker_decision_latency_seconds``: per decision, from the event's publication on
  the stream to the acknowledgement of its batch (what the stream's clock and this host's agree
  on: keep them within milliseconds by NTP);
- ``brokerguard_worker_batch_seconds``: per batch, from its arrival to its acknowledgement;
- ``brokerguard_worker_lag_events{partition}``: messages waiting in the partition's consumer
  after the last batch;
- ``brokerguard_worker_redeliveries_total``: messages delivered more than once;
- ``brokerguard_worker_partitions``: partitions this worker holds;
- ``brokerguard_worker_stage_waits_total``: batches cut at an epoch to wait for the campaign stage.

``brokerguard campaign-stage --metrics-port PORT`` (:class:`StageMetrics`):

- ``brokerguard_stage_facts_total``, ``brokerguard_stage_epochs_total``: facts and epochs
  processed; ``brokerguard_stage_duplicates_total``: facts sent again and dropped;
- ``brokerguard_stage_done_below_epoch``: every epoch below it is done (the workers wait on it);
- ``brokerguard_stage_lag_facts``: messages waiting in the shard's consumer;
- ``brokerguard_stage_holding``: 1 while this process holds the shard, 0 as a standby.

Each process has a registry of its own (several workers in one process, as in tests, do not mix).
"""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

__all__ = ["StageMetrics", "WorkerMetrics"]

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class WorkerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events = Counter(
            "brokerguard_worker_events", "Events processed.", ["partition"], registry=r
        )
        self.decisions = Counter("brokerguard_worker_decisions", "Decisions made.", registry=r)
        self.latency = Histogram(
            "brokerguard_worker_decision_latency_seconds",
            "From the event's publication to the acknowledgement of its decision.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_seconds = Histogram(
            "brokerguard_worker_batch_seconds",
            "From a batch's arrival to its acknowledgement.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.lag = Gauge(
            "brokerguard_worker_lag_events",
            "Messages waiting in the partition's consumer after the last batch.",
            ["partition"],
            registry=r,
        )
        self.redeliveries = Counter(
            "brokerguard_worker_redeliveries", "Messages delivered more than once.", registry=r
        )
        self.partitions = Gauge(
            "brokerguard_worker_partitions", "Partitions this worker holds.", registry=r
        )
        self.stage_waits = Counter(
            "brokerguard_worker_stage_waits",
            "Batches cut at an epoch to wait for the campaign stage.",
            registry=r,
        )
        self._owned: list[int] = []

    def serve(self, port: int, addr: str = "0.0.0.0") -> None:
        start_http_server(port, addr=addr, registry=self.registry)

    def owned(self, partitions: list[int]) -> None:
        for p in set(self._owned) - set(partitions):
            with contextlib.suppress(KeyError):  # never reported
                self.lag.remove(str(p))  # another worker reports it now
        self._owned = list(partitions)
        self.partitions.set(len(partitions))

    def batch(
        self,
        partition: int,
        events: int,
        latencies: list[float],
        seconds: float,
        redelivered: int,
        pending: int,
        waits: int = 0,
    ) -> None:
        label = str(partition)
        self.stage_waits.inc(waits)
        self.events.labels(label).inc(events)
        self.decisions.inc(len(latencies))
        for x in latencies:
            self.latency.observe(max(0.0, x))
        self.batch_seconds.observe(seconds)
        self.redeliveries.inc(redelivered)
        self.lag.labels(label).set(pending)


class StageMetrics:
    """One campaign-stage shard's figures (see the module's docstring)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.facts = Counter("brokerguard_stage_facts", "Facts processed.", registry=r)
        self.epochs = Counter("brokerguard_stage_epochs", "Epochs processed.", registry=r)
        self.duplicates = Counter(
            "brokerguard_stage_duplicates", "Facts sent again and dropped.", registry=r
        )
        self.below = Gauge(
            "brokerguard_stage_done_below_epoch",
            "Every epoch below this one is done.",
            registry=r,
        )
        self.lag = Gauge(
            "brokerguard_stage_lag_facts",
            "Messages waiting in the shard's consumer.",
            registry=r,
        )
        self.holding = Gauge(
            "brokerguard_stage_holding", "1 while this process holds the shard.", registry=r
        )

    def serve(self, port: int, addr: str = "0.0.0.0") -> None:
        start_http_server(port, addr=addr, registry=self.registry)
