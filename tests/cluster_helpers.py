"""Shared by the scale-out tests: a small recorded run, replay with flushes, the real servers."""

from __future__ import annotations

import uuid
from pathlib import Path

import msgspec
import redis

from brokerguard.engine import BrokerGuard
from brokerguard.events import ChallengeResult, Event, LoginAttempt, read_ndjson
from brokerguard.guard import decision_point
from brokerguard.guards import load_guard
from brokerguard.sim.scenario import load_scenario
from brokerguard.sim.world import simulate

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = "redis://127.0.0.1:6379/0"
NATS_URL = "nats://127.0.0.1:4222"


def recorded_run(out: Path, investors: int = 300, days: int = 3) -> Path:
    """scenarios/tiny.toml, small, under allow-all: returns the path of its events.ndjson."""
    scenario = load_scenario(ROOT / "scenarios" / "tiny.toml")
    broker = msgspec.structs.replace(scenario.broker, investors=investors)
    scenario = msgspec.structs.replace(scenario, days=days, broker=broker)
    simulate(scenario, load_guard("allow-all"), out)
    return out / "events.ndjson"


def read_events(path: Path) -> list[Event]:
    with open(path, "rb") as f:
        return list(read_ndjson(f))


def replay(guard: BrokerGuard, events: list[Event], flush_every: int = 0) -> list[tuple]:
    """(event id, action, score) of every decision point, flushing every ``flush_every`` events."""
    decisions = []
    for i, event in enumerate(events, start=1):
        if decision_point(event):
            decision = guard.decide(event)
            decisions.append((event.id, decision.action, decision.score))
        else:
            guard.observe(event)
        if flush_every and i % flush_every == 0:
            guard.state.flush()  # type: ignore[attr-defined]
    return decisions


def cut_point(events: list[Event]) -> int:
    """Past the middle, just after a sign-in whose challenge is answered after the cut."""
    answered = {e.ref for e in events if isinstance(e, ChallengeResult)}
    for i in range(len(events) // 2, len(events)):
        event = events[i]
        if isinstance(event, LoginAttempt) and event.id in answered:
            return i + 1
    return len(events) // 2


def redis_client() -> redis.Redis:
    client = redis.Redis.from_url(REDIS_URL)
    client.ping()  # never skip: .ci/run starts Redis when it does not answer
    return client


def fresh_prefix() -> str:
    return f"bgtest-{uuid.uuid4().hex[:10]}"


def drop_prefix(client: redis.Redis, prefix: str) -> None:
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
