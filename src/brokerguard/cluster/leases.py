"""Which worker consumes which partition: membership and partition leases in Redis.

Every worker beats (``lease_ttl / 3``) by writing its own expiry into the members set
``<prefix>:members`` (a sorted set: worker id -> time its membership lapses) and dropping members
whose time has passed. The live members, sorted by id, share the partitions round robin:
partition ``p`` belongs to ``live[p % len(live)]``. A worker then

- renews the lease of each partition it holds and still should (``<prefix>:lease:<p>``, value
  its id, expiring after ``lease_ttl``); a lease it finds gone or taken is lost at once;
- releases, after acknowledging its current batch, each partition it holds but should not;
- tries to take each partition it should hold but does not (``SET NX``): it succeeds once the
  previous holder released it or died and its lease expired.

A partition is therefore consumed by at most one worker at a time (the state writes are fenced
on the lease too, see :attr:`~brokerguard.stores.redis.RedisState.fence`), and a dead worker's
partitions move after ``lease_ttl`` at most. Membership relies on the workers' clocks agreeing to
well under ``lease_ttl`` (NTP); leases themselves expire on the Redis server's clock.
"""

from __future__ import annotations

import os
import socket
import time
import uuid

import redis

__all__ = ["Leases", "Lock", "new_worker_id"]

RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""
HOLD = """
local held = redis.call('get', KEYS[1])
if held == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
if held then return 0 end
redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""
RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


def new_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:4]}"


class Leases:
    def __init__(
        self, client: redis.Redis, prefix: str, worker: str, partitions: int, ttl: float
    ) -> None:
        self.redis = client
        self.prefix = prefix
        self.worker = worker
        self.partitions = partitions
        self.ttl = ttl
        self.members_key = f"{prefix}:members"
        self._renew = client.register_script(RENEW)
        self._release = client.register_script(RELEASE)
        self.round_trips = 0

    def key(self, partition: int) -> str:
        return f"{self.prefix}:lease:{partition}"

    def beat(self) -> list[str]:
        """Say this worker is alive; returns the live members, sorted."""
        now = time.time()
        pipe = self.redis.pipeline(transaction=False)
        pipe.zadd(self.members_key, {self.worker: now + self.ttl})
        pipe.zremrangebyscore(self.members_key, "-inf", now)
        pipe.zrange(self.members_key, 0, -1)
        self.round_trips += 1
        return sorted(m.decode() for m in pipe.execute()[2])

    def desired(self, live: list[str]) -> set[int]:
        """The partitions this worker should hold when ``live`` are the members."""
        if self.worker not in live:
            live = sorted([*live, self.worker])
        return {p for p in range(self.partitions) if live[p % len(live)] == self.worker}

    def acquire(self, partition: int) -> bool:
        self.round_trips += 1
        ok = self.redis.set(self.key(partition), self.worker, nx=True, px=int(self.ttl * 1000))
        return bool(ok)

    def renew(self, partitions: list[int]) -> set[int]:
        """Extend these leases; returns the ones no longer held by this worker."""
        if not partitions:
            return set()
        pipe = self.redis.pipeline(transaction=False)
        for p in partitions:
            self._renew(keys=[self.key(p)], args=[self.worker, int(self.ttl * 1000)], client=pipe)
        self.round_trips += 1
        return {p for p, ok in zip(partitions, pipe.execute(), strict=True) if not ok}

    def release(self, partition: int) -> None:
        self.round_trips += 1
        self._release(keys=[self.key(partition)], args=[self.worker])

    def leave(self) -> None:
        self.round_trips += 1
        self.redis.zrem(self.members_key, self.worker)

    def owners(self) -> dict[int, str | None]:
        """Each partition's lease holder (None: nobody holds it now)."""
        values = self.redis.mget([self.key(p) for p in range(self.partitions)])
        return {p: v.decode() if v else None for p, v in enumerate(values)}

    def members(self) -> dict[str, float]:
        """Members and the seconds left before each lapses (negative: lapsed, not yet dropped)."""
        now = time.time()
        return {
            m.decode(): score - now
            for m, score in self.redis.zrange(self.members_key, 0, -1, withscores=True)
        }


class Lock:
    """A lock one process holds at a time (a campaign-stage shard's), renewed by its holder.

    Taking and renewing are one script, and so is releasing: a renewal that checked the value
    and then extended the key in a second call could extend a lock that lapsed in between and
    was taken by another process, and report it held, so that two processes ran as holder; a
    release in two calls could delete the other's lock.
    """

    def __init__(self, client: redis.Redis, key: str, owner: str, ttl: float) -> None:
        self.key = key
        self.owner = owner
        self.ttl_ms = int(ttl * 1000)
        self._hold = client.register_script(HOLD)
        self._release = client.register_script(RELEASE)

    def hold(self) -> bool:
        """Take the lock if it is free, or renew it if it is ours; False if another holds it."""
        return bool(self._hold(keys=[self.key], args=[self.owner, self.ttl_ms]))

    def release(self) -> bool:
        """Let go of the lock if it is still ours (a clean stop hands over at once)."""
        return bool(self._release(keys=[self.key], args=[self.owner]))
