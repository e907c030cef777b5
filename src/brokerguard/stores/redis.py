"""The engine's state in Redis, for the scale-out mode: the same records, the same bytes.

:class:`RedisState` is :class:`~brokerguard.engine.state.State` with a Redis server behind it. It
works like :class:`~brokerguard.stores.sqlite.SqliteState`: records live in memory while the
engine works on them, a ``get`` that misses reads the record from Redis (one round trip), and
:meth:`RedisState.flush` writes every record that changed — put, deleted, or handed out by a
``get`` and changed in place — in one ``MULTI``/``EXEC`` transaction, so Redis holds either all of
a batch's changes or none of them.

Layout: one hash per kind, ``<prefix>:<kind>``, field = the record's key, value = the record
encoded by :mod:`brokerguard.stores.codec`. One hash per kind (rather than one Redis key per
record) makes ``keys(kind)`` one ``HGETALL`` instead of a scan of the whole keyspace, and costs less
memory per record (``bench/redis_state.py`` measures both).

Idempotency: :meth:`RedisState.seen` tells which event ids of a batch were already processed,
:meth:`RedisState.mark` adds ids to the processed set of a partition; marked ids are written in the
same transaction as the state changes they caused, so a redelivered event is recognised exactly
when its effect is in Redis. The set is a sorted set per partition, ``<prefix>:seen:<partition>``
(score: when it was marked), trimmed to its ``seen_limit`` most recent ids.

Cache: by default (``max_cached=0``) every flush forgets the records it wrote — the cache lives
for one batch, and the next batch reads from Redis what another worker may have changed. Kinds in
``HELD`` (the population counts the login detector keeps a reference to) are never forgotten.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import msgspec
import redis

from brokerguard.engine.state import KINDS, MemoryState
from brokerguard.stores.changes import HELD, changed_records, forget_least_recent, pending
from brokerguard.stores.codec import decode

__all__ = ["HELD", "LeaseLost", "RedisState", "RedisStateError"]

SEEN_LIMIT = 20_000  # per partition: redelivery comes within ack_wait, long before 20,000 more


class RedisStateError(ValueError):
    """A record in Redis that cannot be read, or a Redis server that cannot be reached."""


class LeaseLost(RuntimeError):
    """The fence key no longer names this writer: another worker owns the partition now."""


class RedisState(MemoryState):
    """Records in memory with Redis behind them; :meth:`flush` writes changes in one transaction.

    Round trips: one per ``get`` that misses the cache, one per :meth:`flush`, one per
    :meth:`seen`, :meth:`prefetch` and :meth:`keys`. ``round_trips`` counts them (benchmarks).
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        prefix: str = "bg",
        max_cached: int | None = 0,
        seen_limit: int = SEEN_LIMIT,
        client: redis.Redis | None = None,
    ) -> None:
        super().__init__()
        self.url = url
        self.prefix = prefix
        self.max_cached = max_cached
        self.seen_limit = seen_limit
        self.redis = client if client is not None else redis.Redis.from_url(url)
        self.handed: set[tuple[str, str]] = set()
        self.round_trips = 0
        self._stored: dict[tuple[str, str], int] = {}  # hash of the bytes Redis holds
        self._recent: dict[tuple[str, str], None] = {}
        self._absent: set[tuple[str, str]] = set()  # prefetched and not found, until the flush
        self._loaded: set[tuple[str, str]] = set()  # read ahead (prefetch, keys), until the flush
        self._marks: dict[str, list[str]] = {}  # partition -> ids to add at the next flush
        self._hash = {kind: f"{prefix}:{kind}" for kind in KINDS}
        self.meta: dict[str, str] = {}
        """Written to ``<prefix>:meta`` with the next flush (the worker keeps its sweep clock)"""
        self.fence: tuple[str, str] | None = None
        """(key, value): flush only while Redis holds that value there (a partition's lease)."""
        self.also: list[Callable[[Any], None]] = []
        """Called with the flush's transaction (a pipeline) to add commands of their own: they
        are written with the records, under the same fence, or not at all."""

    # --- the State interface -------------------------------------------------------------------
    def get(self, kind: str, key: str) -> Any | None:
        record = self.records[kind].get(key)
        if record is None:
            if (kind, key) in self.dirty or (kind, key) in self._absent:
                return None  # deleted since the last flush, or known not to be in Redis
            self.round_trips += 1
            data = self.redis.hget(self._hash[kind], key)
            if data is None:
                return None
            record = self._decode(kind, key, data)
            self.records[kind][key] = record
            self._stored[kind, key] = hash(data)
        self.handed.add((kind, key))
        return record

    def delete(self, kind: str, key: str) -> None:
        self.records[kind].pop(key, None)
        self.dirty.add((kind, key))

    def keys(self, kind: str) -> Iterator[str]:
        """Every key of ``kind``; the records in Redis are read with them (one HGETALL).

        The engine lists keys only to visit every record (the hourly sweep), so reading them in
        the same round trip saves one ``get`` round trip per record.
        """
        live = self.records[kind]
        before = list(live)
        self.round_trips += 1
        stored = []
        for raw, data in self.redis.hgetall(self._hash[kind]).items():
            key = raw.decode()
            if key in live or (kind, key) in self.dirty:
                continue
            live[key] = self._decode(kind, key, data)
            self._stored[kind, key] = hash(data)
            self._loaded.add((kind, key))
            stored.append(key)
        return iter([*before, *stored])

    def count(self, kind: str) -> int:
        return sum(1 for _ in self.keys(kind))

    def prefetch(self, wanted: Iterable[tuple[str, str]]) -> int:
        """Read the records a batch will need in one round trip (one HMGET per kind).

        Records already in memory, or put or deleted since the last flush, are not read. Keys not
        in Redis are remembered as absent until the next flush, so their ``get`` costs nothing.
        Returns how many records were read.
        """
        by_kind: dict[str, list[str]] = {}
        for kind, key in set(wanted):
            if key not in self.records[kind] and (kind, key) not in self.dirty:
                by_kind.setdefault(kind, []).append(key)
        if not by_kind:
            return 0
        pipe = self.redis.pipeline(transaction=False)
        for kind, keys in by_kind.items():
            pipe.hmget(self._hash[kind], keys)
        self.round_trips += 1
        read = 0
        for (kind, keys), values in zip(by_kind.items(), pipe.execute(), strict=True):
            for key, data in zip(keys, values, strict=True):
                if data is None:
                    self._absent.add((kind, key))
                else:
                    self.records[kind][key] = self._decode(kind, key, data)
                    self._stored[kind, key] = hash(data)
                    self._loaded.add((kind, key))
                    read += 1
        return read

    def forget(self, kind: str) -> None:
        """Drop the cached records of ``kind`` (clean ones only): the next ``get`` reads Redis.

        For the kinds in ``HELD`` when another process may have written them since: a worker
        that lost its partition without knowing it yet must not decide from its old copy.
        """
        live = self.records[kind]
        for key in [k for k in live if (kind, k) not in self.dirty]:
            del live[key]
            self._stored.pop((kind, key), None)
            self.handed.discard((kind, key))

    def count_stored(self, kind: str) -> int:
        """How many records of ``kind`` Redis holds (one HLEN)."""
        self.round_trips += 1
        return int(self.redis.hlen(self._hash[kind]))

    # --- idempotency -----------------------------------------------------------------------------
    def seen(self, partition: str, ids: Iterable[str]) -> set[str]:
        """The ids among ``ids`` already processed in ``partition`` (stored or marked)."""
        ids = list(ids)
        if not ids:
            return set()
        marked = set(self._marks.get(partition, ()))
        self.round_trips += 1
        scores = self.redis.zmscore(self._seen_key(partition), ids)
        return {i for i, s in zip(ids, scores, strict=True) if s is not None or i in marked}

    def seen_in(self, ids_by_partition: dict[str, list[str]]) -> set[tuple[str, str]]:
        """(partition, id) pairs already processed, for several partitions in one round trip."""
        if not any(ids_by_partition.values()):
            return set()
        pipe = self.redis.pipeline(transaction=False)
        self.queue_seen(pipe, ids_by_partition)
        self.round_trips += 1
        return self.take_seen(ids_by_partition, pipe.execute())

    def queue_seen(self, pipe: Any, ids_by_partition: dict[str, list[str]]) -> int:
        """Add :meth:`seen_in`'s reads to ``pipe`` (a round trip of the caller's); returns how
        many replies they make, for :meth:`take_seen`."""
        parts = [(p, ids) for p, ids in ids_by_partition.items() if ids]
        for p, ids in parts:
            pipe.zmscore(self._seen_key(p), ids)
        return len(parts)

    def take_seen(
        self, ids_by_partition: dict[str, list[str]], replies: list
    ) -> set[tuple[str, str]]:
        """:meth:`seen_in`'s answer from the replies of :meth:`queue_seen`."""
        parts = [(p, ids) for p, ids in ids_by_partition.items() if ids]
        found = set()
        for (p, ids), scores in zip(parts, replies, strict=True):
            marked = set(self._marks.get(p, ()))
            found.update((p, i) for i, sc in zip(ids, scores, strict=True) if sc is not None)
            found.update((p, i) for i in ids if i in marked)
        return found

    def mark(self, partition: str, ids: Iterable[str]) -> None:
        """Record ``ids`` as processed; written with the next :meth:`flush`."""
        ids = list(ids)
        if ids:
            self._marks.setdefault(partition, []).extend(ids)

    def _seen_key(self, partition: str) -> str:
        return f"{self.prefix}:seen:{partition}"

    # --- persistence ---------------------------------------------------------------------------
    def read_meta(self) -> dict[str, str]:
        """What the last flush wrote to ``<prefix>:meta`` (empty: nothing was ever flushed)."""
        self.round_trips += 1
        raw = self.redis.hgetall(f"{self.prefix}:meta")
        return {k.decode(): v.decode() for k, v in raw.items()}

    def flush(self) -> int:
        """Write every change since the last flush in one MULTI/EXEC; returns the records written.

        On an error nothing of the batch is in Redis and the changes stay pending. With a
        :attr:`fence`, the transaction runs only while the fence key holds its value (WATCH), and
        :class:`LeaseLost` is raised otherwise: a worker that lost its partition writes nothing.
        """
        live, gone = pending(self, self.handed)
        written: dict[tuple[str, str], int] = {}
        puts: dict[str, dict[str, bytes]] = {}
        for kind, key, data, digest in changed_records(self.records, self._stored, live):
            written[kind, key] = digest
            puts.setdefault(kind, {})[key] = data
        dels: dict[str, list[str]] = {}
        for kind, key in gone:
            dels.setdefault(kind, []).append(key)
        if puts or dels or self._marks or self.meta or self.also:
            pipe = self.redis.pipeline(transaction=True)
            if self.fence is not None:
                fence_key, owner = self.fence
                pipe.watch(fence_key)
                self.round_trips += 1
                if pipe.get(fence_key) != owner.encode():
                    pipe.reset()
                    raise LeaseLost(f"{fence_key} is no longer held by {owner}")
                pipe.multi()
            for add in self.also:
                add(pipe)
            if self.meta:
                pipe.hset(f"{self.prefix}:meta", mapping=self.meta)
            for kind, mapping in puts.items():
                pipe.hset(self._hash[kind], mapping=mapping)
            for kind, keys in dels.items():
                pipe.hdel(self._hash[kind], *keys)
            now = time.time()
            for partition, ids in self._marks.items():
                key = self._seen_key(partition)
                # score: when it was marked (ties broken by order), so trimming keeps the newest
                pipe.zadd(key, {i: now + n * 1e-6 for n, i in enumerate(ids)})
                pipe.zremrangebyrank(key, 0, -self.seen_limit - 1)
            try:
                pipe.execute()
            except redis.exceptions.WatchError:
                raise LeaseLost(f"{self.fence[0] if self.fence else ''} changed hands") from None
            finally:
                pipe.reset()
            self.round_trips += 1
        self.meta = {}
        self.also = []
        self._stored.update(written)
        for k in gone:
            self._stored.pop(k, None)
        self.dirty.clear()
        self.handed.clear()
        self._marks.clear()
        self._absent.clear()
        if self.max_cached is not None:
            self._evict(live, gone)
        self._loaded.clear()
        return len(written) + len(gone)

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self.redis.close()

    def __enter__(self) -> RedisState:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def clear(self) -> None:
        """Delete everything under this prefix (tests, benchmarks)."""
        keys = list(self.redis.scan_iter(match=f"{self.prefix}:*", count=1000))
        if keys:
            self.redis.delete(*keys)
        for kind in KINDS:
            self.records[kind].clear()
        self._stored.clear()
        self._recent.clear()
        self.dirty.clear()
        self.handed.clear()
        self._marks.clear()
        self._absent.clear()
        self._loaded.clear()

    def _evict(self, live: list[tuple[str, str]], gone: list[tuple[str, str]]) -> None:
        if not self.max_cached:  # the cache lives for one batch: forget every record
            for kind in self.records:
                if kind not in HELD:
                    self.records[kind].clear()
            self._stored = {k: v for k, v in self._stored.items() if k[0] in HELD}
            self._recent.clear()
            return
        forget_least_recent(self, self._recent, self._stored, live, gone, self.max_cached)
        # Records read ahead that no event took are not among the recently used: forgotten now,
        # or they would stay beyond ``max_cached`` until some later batch happened to use them.
        for kind, key in self._loaded.difference(live):
            if kind not in HELD and (kind, key) not in self._recent:
                self.records[kind].pop(key, None)
                self._stored.pop((kind, key), None)

    def _decode(self, kind: str, key: str, data: bytes) -> Any:
        try:
            return decode(kind, data)
        except msgspec.MsgspecError as exc:
            message = (
                f"{self.url} {self._hash[kind]}: the {kind} record {key!r} cannot be read: {exc}"
            )
            raise RedisStateError(message) from None
