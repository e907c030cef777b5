"""``brokerguard status``: the cluster as NATS and Redis see it — workers, owners, lag.

For each partition: the worker holding its lease, and its durable consumer's figures — messages
not yet delivered (``lag``), delivered and not yet acknowledged (``ack_pending``), redelivered,
the stream sequence acknowledged so far (``ack_floor``) — and whether its state is in Redis.
Healthy means: every partition with lag or unacknowledged messages has an owner, and every owner
is a live member.
"""

from __future__ import annotations

from typing import Any

import nats
import redis

from brokerguard.cluster.leases import Leases
from brokerguard.cluster.stream import stream_partitions

__all__ = ["cluster_status"]


async def cluster_status(
    nats_url: str,
    redis_url: str,
    *,
    prefix: str,
    stream: str,
    durable: str,
    partitions: int | None = None,
) -> dict[str, Any]:
    """The status as a JSON-ready dict; raises ``nats.js.errors.NotFoundError`` for no stream."""
    nc = await nats.connect(nats_url)
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
    return {
        "stream": stream,
        "messages": info.state.messages,
        "last_seq": info.state.last_seq,
        "partitions": parts,
        "workers": {m: round(left, 1) for m, left in sorted(members.items())},
        "lag": sum(r["lag"] or 0 for r in rows),
        "healthy": healthy,
        "partition": rows,
    }
