"""The SQLite state file: records survive a restart exactly, and a failed flush loses nothing."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import timedelta
from pathlib import Path

import msgspec
import pytest
from engine_helpers import cut_point, replay

from brokerguard.engine import BrokerGuard
from brokerguard.engine.state import (
    KINDS,
    AccountState,
    CampaignState,
    EndedSessionState,
    EntityState,
    KeptOrders,
    MemoryState,
    Move,
    PendingState,
    PopulationState,
    SessionState,
    SymbolState,
)
from brokerguard.events import Event, decode_line, read_ndjson
from brokerguard.guards import load_guard
from brokerguard.sim.scenario import load_scenario
from brokerguard.sim.world import simulate
from brokerguard.stores import SqliteState, StateFileError, encode
from brokerguard.stores import changes as store_changes  # where a flush encodes records
from brokerguard.stores.codec import decode

ROOT = Path(__file__).resolve().parent.parent
JST_LOGIN = (
    b'{"type":"login","id":"l1","ts":"2025-03-18T21:05:00+09:00","account":"A1","session":"s1",'
    b'"ip":"203.0.113.9","user_agent":"Mozilla/5.0","device":"d1","factors":["password","sms"],'
    b'"success":true}'
)
JST_ORDER = (
    b'{"type":"order","id":"o1","ts":"2025-03-18T21:06:00+09:00","account":"A1","session":"s1",'
    b'"order_id":"x1","symbol":"7203","market":"TSE","side":"buy","quantity":100,'
    b'"price_type":"limit","limit_price":2500.0}'
)


def samples() -> dict[str, dict[str, msgspec.Struct]]:
    """Records of every kind, with fields away from their defaults."""
    login = decode_line(JST_LOGIN)
    order = decode_line(JST_ORDER)
    return {
        "account": {
            "A1": AccountState(
                opened=1.7e9,
                passkey=True,
                n=3,
                seen={"n:isp": 3, "i:203.0.113.9": 2},
                distinct=[1, 0, 0, 2, 0, 0, 0, 0, 0],
                hours=bytearray([0] * 20 + [3, 0, 0, 0]),
                failures=(1.7e9 + 0.25,),
                positions={"TSE:7203": 200.0},
                holdings_at=1.7e9,
                moves=(
                    Move(1.7e9 + 5, "TSE:7203", -100.0, 250000.0),
                    Move(1.7e9 + 9, "", 0.0, -5e4),
                ),
                moves_lost=1.7e9 + 1,
                bought=("TSE:7203",),
                markets=("TSE",),
                order_log_mean=5.5,
                order_log_m2=0.125,
            )
        },
        "session": {
            "s1": SessionState(
                account="A1",
                started=1.7e9,
                last=1.7e9 + 60,
                ip="203.0.113.9",
                asn="AS64500",
                country="JP",
                net_kind="isp",
                ua="1a2b3c4d",
                llr=-1.5,
                sensitive=[1.7e9 + 30],
                pending={"l1": "login"},
            ),
            "2:A1:2": SessionState(  # an id given again: the session before kept in it
                account="A1",
                started=1.7e9 + 900,
                last=1.7e9 + 960,
                ip="203.0.113.9",
                asn="AS64500",
                country="JP",
                net_kind="isp",
                ua="1a2b3c4d",
                trusted=True,
                follows=1.7e9 + 600,
                before=(
                    SessionState(
                        account="A1",
                        started=1.7e9,
                        last=1.7e9 + 300,
                        ip="198.51.100.7",
                        asn="AS64501",
                        country="TW",
                        net_kind="hosting",
                        ua="5e6f7a8b",
                        llr=3.25,
                        orders=("n1", "n2"),
                        doubtful=("n2",),
                        ended=1.7e9 + 600,
                    ),
                ),
            ),
        },
        "entity": {"ip:203.0.113.9": EntityState(risky={"A1": 1.7e9, "A2": 1.7e9 + 1}, logins=2)},
        "symbol": {
            "TSE:7203": SymbolState(market="TSE", symbol="7203", lot=100, ref_price=2500.0, bars=-1)
        },
        "population": {"all": PopulationState(n=9, counts={"n:isp": 9}, hours=[1] * 24)},
        "campaign": {
            "C0001": CampaignState(
                id="C0001",
                raised_at=1.7e9,
                updated_at=1.7e9 + 5,
                symbols=["HK:8001"],
                timeline=[(1.7e9, "symbol", "HK:8001")],
                written=1,
            )
        },
        "pending": {
            "l1": PendingState(point="login", account="A1", session="s1", at=1.7e9, login=login),
            "o1": PendingState(
                point="order",
                account="A1",
                session="s1",
                at=1.7e9,
                order=order,
                value=250000.0,
                doubtful=("n1", "n2"),
            ),
        },
        "ended": {
            "s9": EndedSessionState(account="A1", ended=1.7e9, orders=("n1", "n2")),
            "2:A1:2": EndedSessionState(  # an id given again: each session's orders its own
                account="A1",
                ended=1.7e9 + 960,
                orders=("n3",),
                follows=1.7e9 + 600,
                earlier=(KeptOrders(follows=0.0, ended=1.7e9 + 300, orders=("n1", "n2")),),
            ),
        },
    }


def test_every_kind_round_trips(tmp_path: Path) -> None:
    records = samples()
    assert set(records) == set(KINDS), "add a sample for every new kind of record"
    with SqliteState(tmp_path / "state.db") as state:
        for kind, by_key in records.items():
            for key, record in by_key.items():
                state.put(kind, key, record)
    with SqliteState(tmp_path / "state.db") as state:
        for kind, by_key in records.items():
            assert sorted(state.keys(kind)) == sorted(by_key)
            for key, record in by_key.items():
                loaded = state.get(kind, key)
                assert type(loaded) is KINDS[kind]
                assert loaded == record
                assert encode(loaded) == encode(record)  # equal bytes: nothing lost, not even tz
        # Aware datetimes compare equal across offsets; the local hour needs the offset itself.
        assert state.get("pending", "l1").login.ts.utcoffset() == timedelta(hours=9)
        assert state.get("campaign", "C0001").timeline == [(1.7e9, "symbol", "HK:8001")]


def test_the_orders_kept_of_one_session_encode_as_before_sessions_under_one_id_were_told_apart(
    tmp_path: Path,
) -> None:
    """``follows`` and ``earlier`` are written only for an id given again: the ended record of
    one session is the same bytes as before they existed, and those bytes read back."""
    record = EndedSessionState(account="A1", ended=1.7e9, orders=("n1",))
    before = msgspec.msgpack.encode({"account": "A1", "ended": 1.7e9, "orders": ["n1"]})
    assert encode(record) == before
    assert decode("ended", before) == record


def test_keys_are_stored_and_live_minus_deleted(tmp_path: Path) -> None:
    with SqliteState(tmp_path / "state.db") as state:
        for name in ("a", "b", "c"):
            state.put("account", name, AccountState())
    with SqliteState(tmp_path / "state.db", max_cached=1) as state:
        state.put("account", "d", AccountState())
        state.delete("account", "b")
        assert sorted(state.keys("account")) == ["a", "c", "d"]
        assert state.get("account", "b") is None
        state.flush()
        assert sum(len(r) for r in state.records.values()) <= 1  # the rest were evicted
        assert state.get("account", "a") == AccountState()  # and read back on demand
        assert state.count("account") == 3


def test_changes_made_in_place_are_written(tmp_path: Path) -> None:
    """Detectors change what they get; the change lands even when no put follows it."""
    with SqliteState(tmp_path / "state.db") as state:
        state.put("entity", "ip:1", EntityState())
    with SqliteState(tmp_path / "state.db") as state:
        state.get("entity", "ip:1").logins = 5
    with SqliteState(tmp_path / "state.db") as state:
        assert state.get("entity", "ip:1").logins == 5


# --- restart continuity -----------------------------------------------------------------------


@pytest.fixture(scope="module", params=["allow-all", "brokerguard"])
def stream(request, tmp_path_factory) -> list[Event]:
    """A small recorded run: open loop under allow-all, closed loop (with challenges) under ours."""
    scenario = load_scenario(ROOT / "scenarios" / "tiny.toml")
    broker = msgspec.structs.replace(scenario.broker, investors=600)
    scenario = msgspec.structs.replace(scenario, days=4, broker=broker)
    out = tmp_path_factory.mktemp("run")
    simulate(scenario, load_guard(request.param), out)
    with open(out / "events.ndjson", "rb") as f:
        return list(read_ndjson(f))


def test_restart_continues_where_it_stopped(stream: list[Event], tmp_path: Path) -> None:
    in_memory = replay(BrokerGuard(state=MemoryState()), stream)
    state = SqliteState(tmp_path / "whole.db")
    whole = replay(BrokerGuard(state=state), stream, flush_every=500)
    state.close()
    assert whole == in_memory

    cut = cut_point(stream)
    state = SqliteState(tmp_path / "restart.db", max_cached=300)
    first = replay(BrokerGuard(state=state), stream[:cut], flush_every=500)
    state.close()
    state = SqliteState(tmp_path / "restart.db", max_cached=300)
    second = replay(BrokerGuard(state=state), stream[cut:], flush_every=500)
    state.close()
    assert len(first) > 100 and len(second) > 100
    assert first + second == whole


# --- failures -------------------------------------------------------------------------------


def test_failed_flush_keeps_what_was_stored(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "state.db"
    state = SqliteState(path)
    for i in range(10):
        state.put("account", f"A{i}", AccountState(orders=1))
    state.flush()
    for i in range(10):
        state.get("account", f"A{i}").orders = 2
    state.delete("account", "A9")
    state.put("symbol", "TSE:1", SymbolState(market="TSE", symbol="1"))

    calls = 0

    def failing(record: msgspec.Struct) -> bytes:
        nonlocal calls
        calls += 1
        if calls == 6:
            raise OSError("disk on fire")
        return encode(record)

    monkeypatch.setattr(store_changes, "encode", failing)
    with pytest.raises(OSError, match="disk on fire"):
        state.flush()
    assert calls == 6  # five rows were written inside the transaction before the failure

    with SqliteState(path) as other:  # a second reader sees the file as the first flush left it
        assert sorted(other.keys("account")) == [f"A{i}" for i in range(10)]
        assert {other.get("account", f"A{i}").orders for i in range(10)} == {1}
        assert other.get("symbol", "TSE:1") is None

    monkeypatch.setattr(store_changes, "encode", encode)
    state.close()  # the changes stayed pending and land now
    with SqliteState(path) as again:
        assert sorted(again.keys("account")) == [f"A{i}" for i in range(9)]
        assert {again.get("account", f"A{i}").orders for i in range(9)} == {2}
        assert again.get("symbol", "TSE:1") is not None


def test_foreign_files_are_refused_by_name(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a database at all, just some notes that happen to be long enough\n" * 20)
    with pytest.raises(StateFileError, match=r"notes\.txt is not a BrokerGuard state file"):
        SqliteState(text)

    other = tmp_path / "other.db"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    db.commit()
    db.close()
    with pytest.raises(StateFileError, match=r"other\.db is not a BrokerGuard state file"):
        SqliteState(other)
    db = sqlite3.connect(other)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # left as it was
    db.close()

    newer = tmp_path / "newer.db"
    SqliteState(newer).close()
    db = sqlite3.connect(newer)
    db.execute("UPDATE meta SET value = '99' WHERE name = 'schema_version'")
    db.commit()
    db.close()
    with pytest.raises(StateFileError, match=r"newer\.db is a BrokerGuard state file of schema"):
        SqliteState(newer)


def test_undecodable_record_names_file_kind_and_key(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    SqliteState(path).close()
    db = sqlite3.connect(path)
    db.execute("INSERT INTO state VALUES ('account', 'A1', x'c0')")
    db.commit()
    db.close()
    with (
        SqliteState(path) as state,
        pytest.raises(StateFileError, match=r"state\.db: the account record 'A1' cannot be read"),
    ):
        state.get("account", "A1")


# --- the sliced flush (a server's) -----------------------------------------------------------


def test_sliced_flush_interleaved_with_events_restarts_like_the_whole_run(
    stream: list[Event], tmp_path: Path
) -> None:
    """Events keep coming between the slices of a flush and while it is written: what they change
    goes to the next flush, and a restart from the file continues exactly."""
    whole = replay(BrokerGuard(state=MemoryState()), stream)
    cut = cut_point(stream)
    path = tmp_path / "sliced.db"
    state = SqliteState(path)
    guard = BrokerGuard(state=state)
    first: list[tuple] = []
    job = None
    for i, event in enumerate(stream[:cut], start=1):
        first += replay(guard, [event])
        if job is None and i % 400 == 0:
            job = state.begin_flush()
        elif job is not None and state.encode_some(job, 50):
            state.write(job)  # (another thread, in the service)
            assert state.end_flush(job, True) > 0
            job = None
    if job is not None:
        state.end_flush(job, False)  # abandoned: its changes stay pending
    state.close()  # the final flush: everything else
    with SqliteState(path) as again:
        second = replay(BrokerGuard(state=again), stream[cut:], flush_every=500)
    assert first + second == whole


def test_a_record_changed_or_deleted_during_a_sliced_flush(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    state = SqliteState(path)
    state.put("account", "A1", AccountState(orders=1))
    state.put("account", "A2", AccountState(orders=1))
    state.flush()
    state.get("account", "A1").orders = 2
    state.delete("account", "A2")
    job = state.begin_flush()
    assert state.get("account", "A2") is None  # deleted, though the file still has it
    assert "A2" not in list(state.keys("account"))
    assert state.encode_some(job, 10)
    state.get("account", "A1").orders = 3  # after its slice was encoded: the next flush's
    state.write(job)
    state.end_flush(job, True)
    with SqliteState(path) as other:
        assert other.get("account", "A1").orders == 2 and other.get("account", "A2") is None
    state.flush()
    with SqliteState(path) as other:
        assert other.get("account", "A1").orders == 3


def test_a_sliced_flush_that_fails_leaves_its_changes_pending(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    state = SqliteState(path)
    state.put("account", "A1", AccountState(orders=1))
    job = state.begin_flush()
    assert state.encode_some(job, 10)
    job.rows.append(("account", None, b""))  # type: ignore[arg-type]  # violates NOT NULL
    with pytest.raises(sqlite3.IntegrityError):
        state.write(job)
    assert state.end_flush(job, False) == 0
    with SqliteState(path) as other:
        assert other.get("account", "A1") is None  # the transaction was rolled back whole
    state.close()
    with SqliteState(path) as other:
        assert other.get("account", "A1").orders == 1


# --- the engine's clock -----------------------------------------------------------------------


def test_the_sweep_schedule_survives_a_restart(stream: list[Event], tmp_path: Path) -> None:
    """The hourly sweep's schedule is written with the records (whole and sliced flushes), and an
    engine started on the file, directly or in the service's host, continues it."""
    from brokerguard.service.host import GuardHost

    cut = len(stream) // 3
    continuous = BrokerGuard(state=MemoryState())
    replay(continuous, stream[:cut])
    assert continuous.clock()["next_sweep"] != "0.0"

    path = tmp_path / "clock.db"
    state = SqliteState(path)
    guard = BrokerGuard(state=state)
    replay(guard, stream[:cut])
    state.meta = guard.clock()
    state.close()
    with SqliteState(path) as again:
        assert again.saved_meta() == continuous.clock()  # the file's own marks are not in it
        assert BrokerGuard(state=again).clock() != continuous.clock()  # nothing restores itself
        host = GuardHost(BrokerGuard(state=again), again)
        assert host.guard.clock() == continuous.clock()
        assert host.last_ts is None  # this file was written by replay, which keeps no time
        replay(host.guard, stream[cut:])  # sweeps on: the schedule moves
        moved = host.guard.clock()
        assert moved != continuous.clock()
        assert asyncio.run(host.flush_in_slices()) > 0  # the service's sliced flush
        with sqlite3.connect(path) as reader:  # before the closing flush: the slices wrote it
            written = dict(reader.execute("SELECT name, value FROM meta"))
        assert {k: written[k] for k in moved} == moved
        assert "last_ts" not in written  # the host was given no event (replay fed its engine)
        host.last_ts = stream[-1].ts
        host.flush()
    with SqliteState(path) as fourth:  # the service's host keeps the latest event time too
        assert GuardHost(BrokerGuard(state=fourth), fourth).last_ts == stream[-1].ts


def test_the_clock_keeps_the_offset_of_a_named_zone() -> None:
    """A zone given by name (no fixed offset of its own) is kept as its offset at the time."""
    from datetime import timezone
    from zoneinfo import ZoneInfo

    guard = BrokerGuard(state=MemoryState())
    guard._tz, guard._next_sweep = ZoneInfo("Asia/Tokyo"), 1.74e9
    again = BrokerGuard(state=MemoryState())
    again.set_clock(guard.clock())
    assert again._tz == timezone(timedelta(hours=9)) and again._next_sweep == 1.74e9
    assert BrokerGuard(state=MemoryState()).clock()["tz"] == "0.0"  # a fresh engine: UTC


def test_the_clock_is_kept_after_an_event_in_the_last_hour_of_year_9999() -> None:
    """An event the decoder accepts (its time exists in UTC) schedules the next sweep an hour
    later, past what a datetime holds: the clock must still be written (the replay's state file
    and the service's flushes write it), not raise ValueError."""
    bar = decode_line(
        b'{"type":"bar","id":"b1","ts":"9999-12-31T23:30:00+00:00","symbol":"7203",'
        b'"market":"TSE","minutes":5,"open":1,"high":1,"low":1,"close":1,"volume":0}'
    )
    guard = BrokerGuard(state=MemoryState())
    guard.observe(bar)
    again = BrokerGuard(state=MemoryState())
    again.set_clock(guard.clock())
    assert again._next_sweep == guard._next_sweep == bar.ts.timestamp() + 3600
    assert again.clock() == guard.clock()
