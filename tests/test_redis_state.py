"""RedisState: every kind round trips, in-place changes land, a replay equals the in-memory one."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import redis.client
from cluster_helpers import (
    cut_point,
    drop_prefix,
    fresh_prefix,
    read_events,
    recorded_run,
    redis_client,
    replay,
)
from engine_helpers import OCN, T0, device, ip_in
from test_stores import samples

from brokerguard.cluster.worker import wanted
from brokerguard.engine import BrokerGuard
from brokerguard.engine.state import KINDS, AccountState, EntityState, MemoryState
from brokerguard.events import Event, LoginAttempt
from brokerguard.stores import encode
from brokerguard.stores.redis import RedisState, RedisStateError


@pytest.fixture
def prefix() -> Iterator[str]:
    client = redis_client()
    name = fresh_prefix()
    yield name
    drop_prefix(client, name)
    client.close()


@pytest.fixture(scope="module")
def stream(tmp_path_factory) -> list[Event]:
    return read_events(recorded_run(tmp_path_factory.mktemp("run")))


def test_every_kind_round_trips(prefix: str) -> None:
    records = samples()
    assert set(records) == set(KINDS)
    with RedisState(prefix=prefix) as state:
        for kind, by_key in records.items():
            for key, record in by_key.items():
                state.put(kind, key, record)
    with RedisState(prefix=prefix) as state:
        for kind, by_key in records.items():
            assert sorted(state.keys(kind)) == sorted(by_key)
            for key, record in by_key.items():
                loaded = state.get(kind, key)
                assert type(loaded) is KINDS[kind]
                assert loaded == record
                assert encode(loaded) == encode(record)
        assert state.get("pending", "l1").login.ts.utcoffset() == timedelta(hours=9)


def test_keys_get_and_delete_see_pending_changes(prefix: str) -> None:
    with RedisState(prefix=prefix) as state:
        for name in ("a", "b", "c"):
            state.put("account", name, AccountState())
    with RedisState(prefix=prefix) as state:
        state.put("account", "d", AccountState())
        state.delete("account", "b")
        assert sorted(state.keys("account")) == ["a", "c", "d"]
        assert state.get("account", "b") is None
        state.flush()
        assert sum(len(r) for r in state.records.values()) == 0  # the batch cache is dropped
        assert state.get("account", "a") == AccountState()
        assert state.count("account") == 3
    assert sorted(redis_client().hkeys(f"{prefix}:account")) == [b"a", b"c", b"d"]


def test_changes_made_in_place_are_written(prefix: str) -> None:
    with RedisState(prefix=prefix) as state:
        state.put("entity", "ip:1", EntityState())
    with RedisState(prefix=prefix) as state:
        state.get("entity", "ip:1").logins = 5
    with RedisState(prefix=prefix) as state:
        assert state.get("entity", "ip:1").logins == 5


def test_unchanged_records_are_not_written_again(prefix: str) -> None:
    with RedisState(prefix=prefix, max_cached=None) as state:
        state.put("account", "a", AccountState(n=1))
        assert state.flush() == 1
        state.get("account", "a")
        assert state.flush() == 0


def test_flush_is_one_transaction(prefix: str, monkeypatch) -> None:
    """A failing EXEC leaves Redis as the previous flush left it and keeps the changes pending."""
    state = RedisState(prefix=prefix)
    state.put("account", "a", AccountState(n=1))
    state.flush()
    state.get("account", "a").n = 2
    state.put("account", "b", AccountState(n=3))

    def broken(self, *a, **kw):
        raise ConnectionError("server gone")

    monkeypatch.setattr(redis.client.Pipeline, "execute", broken)
    with pytest.raises(ConnectionError):
        state.flush()
    monkeypatch.undo()
    other = RedisState(prefix=prefix)
    assert other.get("account", "a").n == 1 and other.get("account", "b") is None
    state.flush()
    other = RedisState(prefix=prefix)
    assert other.get("account", "a").n == 2 and other.get("account", "b").n == 3


def test_undecodable_record_names_kind_and_key(prefix: str) -> None:
    redis_client().hset(f"{prefix}:account", "A9", b"\xc1 not msgpack")
    with pytest.raises(RedisStateError, match=r"account record 'A9'"):
        RedisState(prefix=prefix).get("account", "A9")


def test_replay_on_redis_equals_memory_with_a_restart(stream: list[Event], prefix: str) -> None:
    in_memory = replay(BrokerGuard(state=MemoryState()), stream)
    state = RedisState(prefix=prefix + "-whole")
    try:
        whole = replay(BrokerGuard(state=state), stream, flush_every=200)
        state.flush()
        assert whole == in_memory
    finally:
        drop_prefix(redis_client(), prefix + "-whole")

    cut = cut_point(stream)
    state = RedisState(prefix=prefix)
    first = replay(BrokerGuard(state=state), stream[:cut], flush_every=200)
    state.close()
    state = RedisState(prefix=prefix)  # a new engine on the same Redis: a restarted worker
    second = replay(BrokerGuard(state=state), stream[cut:], flush_every=200)
    state.close()
    assert len(first) > 50 and len(second) > 50
    assert first + second == in_memory


def test_redelivered_chunk_changes_nothing_twice(stream: list[Event], prefix: str) -> None:
    """Events whose ids are in the processed set are skipped: replaying a chunk twice is a no-op."""
    in_memory = replay(BrokerGuard(state=MemoryState()), stream)
    state = RedisState(prefix=prefix, seen_limit=10_000)
    guard = BrokerGuard(state=state)
    decisions: list[tuple] = []
    chunk = 150

    def process(batch: list[Event]) -> None:
        done = state.seen("p0", [e.id for e in batch])
        fresh = [e for e in batch if e.id not in done]
        decisions.extend(replay(guard, fresh))
        state.mark("p0", [e.id for e in fresh])
        state.flush()

    starts = list(range(0, len(stream), chunk))
    for n, start in enumerate(starts):
        process(stream[start : start + chunk])
        if n % 3 == 1:  # redelivered: the chunk again, and a window straddling two chunks
            process(stream[start : start + chunk])
            process(stream[max(0, start - chunk // 2) : start + chunk // 2])
    assert decisions == in_memory
    assert redis_client().zcard(f"{prefix}:seen:p0") == min(len(stream), 10_000)


def test_processed_set_is_bounded(prefix: str) -> None:
    state = RedisState(prefix=prefix, seen_limit=5)
    for n in range(4):
        state.mark("p1", [f"e{n}a", f"e{n}b"])
        state.flush()
    assert redis_client().zrange(f"{prefix}:seen:p1", 0, -1) == [
        f"e{n}".encode() for n in ("1b", "2a", "2b", "3a", "3b")
    ]
    assert state.seen("p1", ["e0a", "e3b", "e9"]) == {"e3b"}
    state.mark("p2", ["e3b", "f1"])  # not flushed yet: still counts as processed
    found = state.seen_in({"p1": ["e0a", "e3b", "f1"], "p2": ["e3b", "f1", "f2"], "p3": []})
    assert found == {("p1", "e3b"), ("p2", "e3b"), ("p2", "f1")}


def test_unreachable_redis_is_an_error(tmp_path: Path) -> None:
    state = RedisState(url="redis://127.0.0.1:1/0")
    with pytest.raises(Exception, match="(?i)connect"):
        state.get("account", "a")


def test_records_read_ahead_and_not_used_are_not_kept_beyond_max_cached(prefix: str) -> None:
    """A worker reads ahead what a batch may need (prefetch); what no event took must not stay
    in memory beyond ``max_cached`` (it was never among the recently used, so never evicted)."""
    with RedisState(prefix=prefix) as state:
        for i in range(50):
            state.put("account", f"a{i}", AccountState(n=i))
    state = RedisState(prefix=prefix, max_cached=5)
    try:
        assert state.prefetch(("account", f"a{i}") for i in range(50)) == 50
        state.get("account", "a0").n += 100
        state.flush()
        assert sum(len(records) for records in state.records.values()) <= 5
        assert state.get("account", "a0").n == 100 and state.get("account", "a7").n == 7
    finally:
        state.redis.close()


def test_a_batch_of_sign_ins_reads_nothing_of_their_sessions_beyond_what_was_read_ahead(
    prefix: str,
) -> None:
    """Opening a session, the engine looks for the orders kept under its id (of a session the
    idle sweep forgot: see ``BrokerGuard._after``). A worker reads those records ahead with the
    rest of its batch: otherwise each sign-in cost two round trips to Redis (the record under
    its session key, and under the key state written before it)."""
    events = [
        LoginAttempt(
            id=f"login{i}",
            ts=T0 + timedelta(minutes=i),
            account=f"A{i}",
            session=f"s{i}",
            ip=ip_in(OCN, i),
            user_agent=device(i),
            device=f"ck-{i}",
            factors=["password"],
            success=True,
        )
        for i in range(5)
    ]
    with RedisState(prefix=prefix) as state:
        guard = BrokerGuard(state=state)
        state.prefetch(wanted(events))
        missed: list[str] = []
        read = state.get

        def get(kind: str, key: str) -> object:
            trips = state.round_trips
            record = read(kind, key)
            if state.round_trips > trips:
                missed.append(kind)
            return record

        state.get = get  # type: ignore[method-assign]
        for event in events:
            guard.decide(event)
        assert "ended" not in missed and "session" not in missed, missed
