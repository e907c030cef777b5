"""The second stream: what account partitions tell the campaign stage, keyed by symbol.

Subjects ``<facts subject>.<shard>`` in the stream ``BG_FACTS``; a fact goes to the shard of its
symbol (:func:`~brokerguard.engine.stage.shard_of`). Two kinds of message:

- a **fact** (:class:`~brokerguard.engine.stage.Fact` as JSON), message id
  ``f-<order>-<n>``: a worker that processes a batch again after a crash sends the very same
  facts, and JetStream (or, beyond its duplicate window, the stage) drops them;
- an **epoch announcement**, ``{"partition": p, "epoch": k}`` with the header ``Bg-Announce``,
  to every shard, message id ``e-<p>-<k>/<shard>``: partition ``p`` passed the marker of epoch
  ``k``, so every fact it will ever send for an earlier epoch is in the stream before it.

Containment flows back through Redis (:class:`ContainmentStore`): the stage writes each key that
came under a campaign, or was freed by a dismissal, with the epoch it was found in, then how far
it got (every epoch below ``below`` is done). Readers rebuild their view from the whole list;
what a dismissal lifted long enough ago that no reader can need it again is pruned
(:func:`lifted`).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec
import nats
from nats.js.api import RetentionPolicy, StorageType, StreamConfig

from brokerguard.engine.stage import Containment, Fact, shards_of
from brokerguard.engine.state import PopulationState

__all__ = [
    "ANNOUNCE_HEADER",
    "DEFAULT_FACTS_STREAM",
    "DEFAULT_FACTS_SUBJECT",
    "ContainmentStore",
    "ensure_facts_stream",
    "fact_messages",
    "lifted",
    "progress_subject",
]

DEFAULT_FACTS_STREAM = "BG_FACTS"
DEFAULT_FACTS_SUBJECT = "bg.facts"
ANNOUNCE_HEADER = "Bg-Announce"
KEEP_POPULATIONS = 16  # a restarted partition needs the counts of an epoch or two back
PRUNE_CHUNK = 1000  # fields per HDEL when lifted containment is pruned

_encode = msgspec.json.Encoder().encode


async def ensure_facts_stream(js, stream: str, subject: str) -> None:
    try:
        await js.stream_info(stream)
    except nats.js.errors.NotFoundError:
        await js.add_stream(
            StreamConfig(
                name=stream,
                subjects=[f"{subject}.*"],
                retention=RetentionPolicy.LIMITS,
                storage=StorageType.FILE,
                duplicate_window=120.0,
            )
        )


def progress_subject(facts_subject: str, shard: int | str) -> str:
    """Where a stage shard says it got further (core NATS, outside the facts stream, whose
    subjects are one token deeper): a waiting worker looks at Redis at once instead of
    polling. The word is only a hint; Redis holds the progress."""
    return f"{facts_subject}.done.{shard}"


def fact_messages(
    facts: Iterable[Fact],
    announce: Iterable[tuple[int, int]],
    subject: str,
    shards: int,
    token: str = "",
) -> list[tuple[str, bytes, dict[str, str]]]:
    """(subject, body, headers) of a batch's facts, then its epoch announcements, in order.

    ``token`` names the partition's state since it was last built from empty: after Redis
    lost it, the rebuilt partition's announcements are new (the stage counts only those of the
    state Redis holds now), while its facts, the same again, are dropped as duplicates.
    """
    out: list[tuple[str, bytes, dict[str, str]]] = []
    for fact in facts:
        body = _encode(fact)
        for s in shards_of(fact, shards):  # one shard, or every shard for a dismissal
            suffix = f"/{s}" if fact.kind == "dismiss" else ""
            headers = {"Nats-Msg-Id": f"f-{fact.order}-{fact.n}{suffix}"}
            out.append((f"{subject}.{s}", body, headers))
    for partition, epoch in announce:
        said = {"partition": partition, "epoch": epoch, "token": token}
        body = json.dumps(said).encode()
        for s in range(shards):
            # one stream holds every shard's subject: the id names the shard too
            msg_id = f"e-{partition}-{epoch}-{token}/{s}"
            out.append((f"{subject}.{s}", body, {"Nats-Msg-Id": msg_id, ANNOUNCE_HEADER: "1"}))
    return out


def lifted(changes: Mapping[bytes, bytes], horizon: int) -> list[bytes]:
    """The fields of ``changes`` (the containment hash) that no reader at ``horizon`` or later
    needs: what a dismissal lifted before ``horizon``.

    A reader at epoch ``k`` applies every change of an epoch before ``k`` in order
    (:meth:`~brokerguard.engine.stage.StageLink.see_only`). A key's changes alternate: it comes
    under a campaign (``+``) and only that campaign's dismissal frees it (``-``), before it can
    come under another. A ``+`` followed by the ``-`` of the same campaign, both before
    ``horizon``, therefore leaves nothing in the view of any reader at ``horizon`` or later,
    except that the campaign is dismissed (which keeps sessions linked to it from counting it,
    and keeps it from containing anything again): so both go, but the campaign's earliest
    ``-`` stays, which says that much where it said it before. A ``+`` with no ``-`` (a key
    still contained) and anything of an epoch from ``horizon`` on stays.
    """
    keys: dict[tuple[str, str], list[tuple[tuple[int, int, bytes], str, str]]] = defaultdict(list)
    first: dict[str, tuple[int, int, bytes]] = {}  # campaign -> where its first release is
    for field, value in changes.items():
        kind, rest = field.decode().split("|", 1)
        key, epoch, n = rest.rsplit("|", 2)
        campaign, _, sign = value.decode().rpartition("|")
        at = (int(epoch), int(n), field)
        keys[kind, key].append((at, campaign, sign))
        if sign == "-" and (campaign not in first or at < first[campaign]):
            first[campaign] = at
    out = []
    for seq in keys.values():
        seq.sort()
        for (at, campaign, sign), (at2, campaign2, sign2) in zip(seq, seq[1:], strict=False):
            if sign == "+" and sign2 == "-" and campaign == campaign2 and at2[0] < horizon:
                out.append(at[2])
                if at2 != first[campaign2]:
                    out.append(at2[2])
    return sorted(out)


class ContainmentStore:
    """Containment in Redis: ``<prefix>:stage:changes`` and each shard's ``below``.

    ``changes`` has one field per change: ``s|<symbol>|<epoch>|<n>`` or ``e|<infrastructure
    key>|<epoch>|<n>`` (``n``: its place among the shard's changes of that epoch) maps to
    ``<campaign>|+`` (came under the campaign) or ``<campaign>|-`` (freed by a dismissal). A
    key belongs to one shard, so the order of a key's changes is (epoch, n). What a dismissal
    lifted is pruned once no reader can need it (:func:`lifted`), so the hash holds what is
    contained now, one release per dismissed campaign and the changes of recent epochs.
    """

    def __init__(self, client, prefix: str, shards: int) -> None:
        self.redis = client
        self.prefix = prefix
        self.shards = shards
        # one field per change; the earlier `stage:contain` (first campaign wins) is not read:
        # a stage upgraded from it replays its facts (README, "Scale-out")
        self.key = f"{prefix}:stage:changes"
        self.pop_key = f"{prefix}:stage:population"  # epoch -> the counts after it
        self.pop_index = f"{prefix}:stage:population-epochs"
        self.ent_index = f"{prefix}:stage:entity-epochs"  # epochs that changed infrastructure
        self.round_trips = 0
        self._below_keys = [self.below_key(s) for s in range(shards)]
        self._read_at: tuple | None = None  # the shards' progress when last read ...
        self._read: list[Containment] = []  # ... and the containment then

    def below_key(self, shard: int) -> str:
        return f"{self.prefix}:stage:{shard}:below"

    def queue(
        self,
        pipe,
        shard: int,
        updates: list[Containment],
        below: int,
        populations: list[tuple[int, bytes]] | None = None,
        entities: list[tuple[int, dict[str, bytes]]] | None = None,
    ) -> None:
        """Add to ``pipe`` the stage's output for the epochs below ``below``: containment, the
        population counts after each epoch that changed them and the infrastructure records
        each epoch changed, then progress (the stage adds them to its fenced state flush)."""
        within: dict[int, int] = {}
        for u in updates:  # one field per change, named by its place: a rerun adds nothing
            n = within[u.epoch] = within.get(u.epoch, -1) + 1
            sign = "-" if u.released else "+"
            pipe.hsetnx(self.key, f"{u.kind[0]}|{u.key}|{u.epoch}|{n}", f"{u.campaign}|{sign}")
        for epoch, encoded in populations or ():
            pipe.hset(self.pop_key, str(epoch), encoded)
            pipe.zadd(self.pop_index, {str(epoch): epoch})
        for epoch, records in entities or ():
            pipe.delete(self.entity_key(epoch))  # a rerun of the epoch writes it whole again
            pipe.hset(self.entity_key(epoch), mapping=records)
            pipe.zadd(self.ent_index, {str(epoch): epoch})
        pipe.set(self.below_key(shard), below)

    def lifted(self, horizon: int) -> list[bytes]:
        """The changes no reader at ``horizon`` or later needs (:func:`lifted`): one read of
        the whole hash, done only after a dismissal (and once when a stage takes its shard)."""
        self.round_trips += 1
        return lifted(self.redis.hgetall(self.key), horizon)

    def queue_prune(self, pipe: Any, fields: list[bytes]) -> None:
        """Add the deletion of ``fields`` (from :meth:`lifted`) to ``pipe``."""
        for at in range(0, len(fields), PRUNE_CHUNK):
            pipe.hdel(self.key, *fields[at : at + PRUNE_CHUNK])

    def entity_key(self, epoch: int) -> str:
        return f"{self.prefix}:stage:entities:{epoch}"

    def prune(self, keep: int = KEEP_POPULATIONS) -> None:
        """Drop the snapshots of all but the last ``keep`` epochs."""
        old = self.redis.zrange(self.pop_index, 0, -keep - 1)
        gone = self.redis.zrange(self.ent_index, 0, -keep - 1)
        pipe = self.redis.pipeline(transaction=True)
        if old:
            pipe.hdel(self.pop_key, *old)
            pipe.zrem(self.pop_index, *old)
        if gone:
            pipe.delete(*(self.entity_key(int(e)) for e in gone))
            pipe.zrem(self.ent_index, *gone)
        pipe.execute()

    def entities(self, after: int | None, upto: int) -> list[dict[bytes, bytes]]:
        """The infrastructure records changed in each epoch after ``after`` up to ``upto``, in
        epoch order (a partition takes them in that order)."""
        low = "-inf" if after is None else f"({after}"
        epochs = self.redis.zrangebyscore(self.ent_index, low, upto)
        self.round_trips += 1
        if not epochs:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for e in epochs:
            pipe.hgetall(self.entity_key(int(e)))
        self.round_trips += 1
        return pipe.execute()

    def population(self, upto: int) -> PopulationState | None:
        """The counts over all partitions after the last epoch up to ``upto`` that changed them."""
        found = self.redis.zrevrangebyscore(self.pop_index, upto, "-inf", start=0, num=1)
        self.round_trips += 1
        if not found:
            return None
        data = self.redis.hget(self.pop_key, found[0])
        self.round_trips += 1
        return msgspec.msgpack.decode(data, type=PopulationState) if data else None

    def below(self) -> int | None:
        """How far every shard got: each epoch below this is done (None: a shard never wrote)."""
        values = self.redis.mget(self._below_keys)
        self.round_trips += 1
        if any(v is None for v in values):
            return None
        return min(int(v) for v in values)

    def queue_progress(self, pipe: Any) -> int:
        """Add the read of every shard's progress to ``pipe`` (a round trip of the caller's,
        taken before :meth:`read`, which is given its reply); returns the replies it makes."""
        pipe.mget(self._below_keys)
        return 1

    def read(self, progress: list | None = None) -> tuple[int | None, list[Containment]]:
        """Progress (read here, or given: the reply of :meth:`queue_progress`), then every
        containment written (read in that order: none is missed).

        A shard writes its containment and its progress in one transaction, so while no
        shard's progress moved the containment is the one read last time: it is not read again
        (the same list is returned, which tells the partitions there is nothing new to see).
        """
        if progress is None:
            progress = self.redis.mget(self._below_keys)
            self.round_trips += 1
        values = progress
        below = None if any(v is None for v in values) else min(int(v) for v in values)
        if tuple(values) == self._read_at:
            return below, self._read
        raw = self.redis.hgetall(self.key)
        self.round_trips += 1
        out = []
        for field, value in raw.items():
            kind, rest = field.decode().split("|", 1)
            key, epoch, n = rest.rsplit("|", 2)
            campaign, _, sign = value.decode().rpartition("|")
            update = Containment(
                "symbol" if kind == "s" else "entity", key, campaign, int(epoch), sign == "-"
            )
            out.append(((int(epoch), int(n)), update))
        out.sort(key=lambda item: item[0])  # the stage's own order (each shard's keys apart)
        self._read_at, self._read = tuple(values), [update for _, update in out]
        return below, self._read
