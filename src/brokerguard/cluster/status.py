"""``brokerguard status``: the cluster as NATS and Redis see it — workers, owners, lag.

For each partition: the worker holding its lease, and its durable consumer's figures — messages
not yet delivered (``lag``), delivered and not yet acknowledged (``ack_pending``), redelivered,
the stream sequence acknowledged so far (``ack_floor``) — and whether its state is in Redis.
Healthy means: every partition with lag or unacknowledged messages has an owner, and every owner
is a live member.

With a campaign stage (its facts stream exists): for each shard, the process holding it, its
consumer's lag, and the epoch below which it is done — the epoch every worker waits for at the
next boundary. A shard with facts waiting and no holder is unhealthy: the workers stop at the
next epoch.
"""

from __future__ import annotations

from typing import Any

import nats
import redis

from brokerguard.cluster.leases import Leases
from brokerguard.cluster.stream import connect, stream_partitions

__all__ = ["cluster_status"]


async def cluster_status(
    nats_url: str,
    redis_url: str,
    *,
    prefix: str,
    stream: str,
    durable: str,
    partitions: int | None = None,
    facts_stream: str = "BG_FACTS",
    stage_durable: str = "bg-stage",
    stage_shards: int = 1,
) -> dict[str, Any]:
    """The status as a JSON-ready dict; raises ``nats.js.errors.NotFoundError`` for no stream."""
    nc = await connect(nats_url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        parts = partitions or stream_partitions(info) or 16
        consumers: dict[int, Any] = {}
        for p in range(parts):
            try:
                consumers[p] = await js.consumer_info(stream, f"{durable}-{p}")
            except nats.js.errors.NotFoundError:
                consumers[p] = None
        shards: dict[int, Any] | None = None
        try:
            await js.stream_info(facts_stream)
            shards = {}
        except nats.js.errors.NotFoundError:
            pass
        if shards is not None:
            for s in range(stage_shards):
                try:
                    shards[s] = await js.consumer_info(facts_stream, f"{stage_durable}-{s}")
                except nats.js.errors.NotFoundError:
                    shards[s] = None
    finally:
        await nc.close()
    client = redis.Redis.from_url(redis_url)
    try:
        leases = Leases(client, prefix, "status", parts, ttl=0)
        members = leases.members()
        owners = leases.owners()
        pipe = client.pipeline(transaction=False)
        for p in range(parts):
            pipe.exists(f"{prefix}:{p}:meta")
        has_state = pipe.execute()
        stage_rows = _stage_rows(client, prefix, shards) if shards is not None else None
    finally:
        client.close()
    rows = []
    healthy = True
    for p in range(parts):
        c = consumers[p]
        owner = owners[p]
        row: dict[str, Any] = {
            "partition": p,
            "owner": owner,
            "owner_alive": owner is not None and members.get(owner, -1.0) > 0,
            "state_in_redis": bool(has_state[p]),
            "consumer": c is not None,
            "lag": c.num_pending if c else None,
            "ack_pending": c.num_ack_pending if c else None,
            "redelivered": c.num_redelivered if c else None,
            "delivered": c.delivered.stream_seq if c else None,
            "ack_floor": c.ack_floor.stream_seq if c else None,
        }
        busy = c is None or (c.num_pending or 0) > 0 or (c.num_ack_pending or 0) > 0
        row["healthy"] = not busy or row["owner_alive"]
        healthy = healthy and row["healthy"]
        rows.append(row)
    if stage_rows is not None:
        healthy = healthy and all(r["healthy"] for r in stage_rows)
    return {
        "stream": stream,
        "messages": info.state.messages,
        "last_seq": info.state.last_seq,
        "partitions": parts,
        "workers": {m: round(left, 1) for m, left in sorted(members.items())},
        "lag": sum(r["lag"] or 0 for r in rows),
        "healthy": healthy,
        "partition": rows,
        "stage": stage_rows,
    }


def _stage_rows(client: redis.Redis, prefix: str, shards: dict[int, Any]) -> list[dict[str, Any]]:
    pipe = client.pipeline(transaction=False)
    for s in shards:
        pipe.get(f"{prefix}:stage:{s}:owner")
        pipe.get(f"{prefix}:stage:{s}:below")
    got = pipe.execute()
    rows = []
    for i, (s, c) in enumerate(shards.items()):
        owner, below = got[2 * i], got[2 * i + 1]
        row: dict[str, Any] = {
            "shard": s,
            "owner": owner.decode() if owner else None,
            "done_below_epoch": int(below) if below else None,
            "consumer": c is not None,
            "lag": c.num_pending if c else None,
            "ack_pending": c.num_ack_pending if c else None,
        }
        waiting = c is not None and ((c.num_pending or 0) > 0 or (c.num_ack_pending or 0) > 0)
        row["healthy"] = not waiting or row["owner"] is not None
        rows.append(row)
    return rows
