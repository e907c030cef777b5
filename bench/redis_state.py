"""Benchmark: the engine's state in Redis — events/s, round trips per event, memory per account.

    python bench/redis_state.py [--investors N] [--days N] [--flush-every N] [--redis URL]

Records a run (scenarios/tiny.toml, open loop under allow-all), replays its events through the
engine on :class:`~brokerguard.stores.redis.RedisState` flushed every ``--flush-every`` events,
then reads ``MEMORY USAGE`` of each kind's hash. It also copies the account records to one Redis
key each, to compare that layout's memory. Prints figures; asserts nothing. Uses, then deletes,
keys under a prefix of its own.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from pathlib import Path

import msgspec
import redis

from brokerguard.engine import BrokerGuard
from brokerguard.engine.state import KINDS
from brokerguard.events import read_ndjson
from brokerguard.guard import decision_point
from brokerguard.guards import load_guard
from brokerguard.sim.scenario import load_scenario
from brokerguard.sim.world import simulate
from brokerguard.stores.redis import RedisState

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--investors", type=int, default=2000)
    parser.add_argument("--days", type=int, default=5)
    parser.add_argument("--flush-every", type=int, default=500)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()

    scenario = load_scenario(ROOT / "scenarios" / "tiny.toml")
    broker = msgspec.structs.replace(scenario.broker, investors=args.investors)
    scenario = msgspec.structs.replace(scenario, days=args.days, broker=broker)
    with tempfile.TemporaryDirectory() as tmp:
        simulate(scenario, load_guard("allow-all"), Path(tmp))
        with open(Path(tmp) / "events.ndjson", "rb") as f:
            events = list(read_ndjson(f))

    prefix = f"bgbench-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(args.redis)
    state = RedisState(args.redis, prefix=prefix)
    guard = BrokerGuard(state=state)
    try:
        started = time.perf_counter()
        for i, event in enumerate(events, start=1):
            if decision_point(event):
                guard.decide(event)
            else:
                guard.observe(event)
            if i % args.flush_every == 0:
                state.flush()
        state.flush()
        seconds = time.perf_counter() - started
        print(
            f"events {len(events):,}, accounts {args.investors:,}, flush every {args.flush_every}"
        )
        print(f"  {len(events) / seconds:,.0f} events/s on RedisState (one process, loopback)")
        print(f"  Redis round trips per event: {state.round_trips / len(events):.2f}")
        total = 0
        for kind in KINDS:
            n = client.hlen(f"{prefix}:{kind}")
            usage = client.memory_usage(f"{prefix}:{kind}", samples=0) or 0
            total += usage
            if n:
                print(f"  {kind:<10} {n:>8,} records {usage / n:>8,.0f} B/record in the hash")
        print(f"  all state: {total / args.investors:,.0f} B per account (every kind, hashes)")
        # the other layout: one key per account record
        accounts = client.hgetall(f"{prefix}:account")
        pipe = client.pipeline(transaction=False)
        for key, value in accounts.items():
            pipe.set(f"{prefix}:k:account:{key.decode()}", value)
        pipe.execute()
        per_key = sum(
            client.memory_usage(f"{prefix}:k:account:{k.decode()}", samples=0) or 0
            for k in accounts
        )
        hashed = client.memory_usage(f"{prefix}:account", samples=0) or 0
        print(
            f"  account records: {hashed / len(accounts):,.0f} B each in one hash, "
            f"{per_key / len(accounts):,.0f} B each as one key per record "
            f"(plus the keyspace's own dict entry)"
        )
    finally:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)


if __name__ == "__main__":
    main()
