"""The campaign stage on the real NATS, Redis and PostgreSQL: the staged cluster decides, and raises
the campaigns, that ``replay --partitions N --campaign-stage`` does in one process.

Workers send facts to the second stream and wait for the stage at each epoch; the stage (one or
two shards, by symbol) raises the campaigns over all partitions. A stage killed with SIGKILL and
started again changes nothing.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from cluster_helpers import (
    Names,
    decisions,
    final_campaigns,
    fresh_names,
    lines,
    pg_database,
    read_events,
    recorded_run,
    run_until_drained,
    stop_when_drained,
)
from servers import free_port

from brokerguard.cluster.partition import PartitionedGuard
from brokerguard.cluster.staged import StagedGuard
from brokerguard.engine import BrokerGuard
from brokerguard.engine.policy import load_policy
from brokerguard.engine.stage import CampaignStage, Containment, Fact, StageLink
from brokerguard.engine.state import MemoryState

BG = [sys.executable, "-m", "brokerguard"]
PARTS = 4
EPOCH = 600.0  # seconds of event time: fewer waits on this short recorded run


@pytest.fixture(scope="module")
def events_path(tmp_path_factory) -> Path:
    return recorded_run(tmp_path_factory.mktemp("run"))


def reference(path: Path, out: Path, shards: int) -> Path:
    subprocess.run(
        [
            *BG,
            "replay",
            str(path),
            "--partitions",
            str(PARTS),
            "--campaign-stage",
            "--stage-shards",
            str(shards),
            "--epoch-seconds",
            str(EPOCH),
            "--out",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    return out


@pytest.fixture(scope="module")
def references(events_path, tmp_path_factory):
    """The staged replay's output by the number of shards, each made once for the module (the
    tests only read it)."""
    made: dict[int, Path] = {}

    def get(shards: int) -> Path:
        if shards not in made:
            made[shards] = reference(events_path, tmp_path_factory.mktemp("ref"), shards)
        return made[shards]

    return get


@pytest.fixture(scope="module")
def ingested(events_path) -> Iterator[Names]:
    """The recorded run ingested once for the module: every test reads it through consumers
    of its own (its own Redis prefix, durable names and facts stream)."""
    with fresh_names() as n:
        ingest(events_path, n)
        yield n


@pytest.fixture
def names(ingested) -> Iterator[Names]:
    with fresh_names(ingested) as n:
        yield n


def campaign_lines(*paths: Path) -> list[tuple]:
    """(id, instant, first instant, symbols by then) of each line: each time a campaign took on
    a symbol.

    Times are compared as instants: the stage writes them in UTC, the replay in the events' zone.
    The accounts a line lists are those known when it was written (at the end of the replay,
    after each epoch on the cluster), so they are compared in PostgreSQL instead.
    """
    return sorted(
        {
            (
                c["id"],
                datetime.fromisoformat(c["raised_at"]).timestamp(),
                datetime.fromisoformat(c["first_raised_at"]).timestamp(),
                json.dumps(c["symbols"]),
            )
            for c in lines(*paths)
        }
    )


def start_worker(
    names: Names, tmp: Path, tag: str, *extra: str, shards: int = 1
) -> subprocess.Popen:
    args = [*names.cli(PARTS), "--prefix", names.prefix, "--facts-stream", names.facts_stream]
    args += ["--facts-subject", names.facts_subject, "--durable", names.durable]
    args += ["--campaign-stage", "--stage-shards", str(shards), "--batch", "100"]
    args += ["--lease-ttl", "1.5", "--idle-exit", "4", "--decisions", str(tmp / f"d-{tag}.ndjson")]
    return subprocess.Popen(
        [*BG, "worker", *args, *extra], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )


def start_stage(names: Names, tmp: Path, shard: int, shards: int, *extra: str):
    args = ["--partitions", str(PARTS), "--prefix", names.prefix, "--shard", str(shard)]
    args += ["--stage-shards", str(shards), "--facts-stream", names.facts_stream]
    args += ["--facts-subject", names.facts_subject, "--stage-durable", f"st{names.durable}"]
    args += ["--lease-ttl", "1.5"]  # no idle exit: stopped when the workers are done
    args += ["--campaigns", str(tmp / f"c-{shard}.ndjson")]
    return subprocess.Popen(
        [*BG, "campaign-stage", *args, *extra],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )


def ingest(path: Path, names: Names) -> None:
    subprocess.run(
        [*BG, "ingest", str(path), *names.cli(PARTS), "--epoch-seconds", str(EPOCH)],
        check=True,
        capture_output=True,
    )


def finish(
    names: Names, workers: list[subprocess.Popen], stages: list[subprocess.Popen], shards: int = 1
) -> None:
    """Once every event and fact is acknowledged, the workers are stopped, then the stages
    (SIGTERM); each must exit with status 0."""
    if workers:
        stop_when_drained(workers, names, PARTS, stage_shards=shards)
    for proc in stages:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err


# --- the stage alone -----------------------------------------------------------------------------


def test_buyers_in_different_partitions_make_one_campaign_that_contains_from_the_next_epoch():
    """Three doubtful first-time buyers of one symbol, each alone in its partition: no
    partition sees a campaign; the stage, which sees all three, raises it once."""
    policy = load_policy()
    stage = CampaignStage(MemoryState(), policy.detectors)
    need = policy.detectors.campaign.min_accounts
    facts = [
        Fact(
            kind="buy",
            epoch=7,
            order=10 + i,
            partition=i,
            at=1000.0 + i,
            account=f"A{i}",
            symbol="TSE:2929",
        )
        for i in range(need)
    ]
    assert stage.process(facts[:-1], 7) == []  # one buyer short
    found = stage.process(facts[-1:], 7)
    assert [(c.kind, c.key, c.epoch) for c in found] == [("symbol", "TSE:2929", 7)]
    (record,) = stage.records(lambda t: str(t))
    assert sorted(record["accounts"]) == [f"A{i}" for i in range(need)]
    # a fact sent again (a worker redid its batch) is the same fact: the set is unchanged
    assert stage.process(facts[:1], 8) == []


def test_a_shard_taken_over_numbers_its_campaigns_as_one_that_ran_on() -> None:
    """With two shards, shard 1 keeps a copy of shard 0's campaign once a thin buy is linked to
    it. A process that takes the shard over (after a restart, or its lock lapsing) starts from
    the state in Redis: its next campaign must get the id the process that ran on gives it, and
    a replay from empty (the reference, one process) — not one counted past the copy."""
    policy = load_policy()
    need = policy.detectors.campaign.min_accounts

    def buyers(symbol: str, order: int, epoch: int) -> list[Fact]:
        at = epoch * 100.0
        return [
            Fact(
                kind="buy",
                epoch=epoch,
                order=order + i,
                partition=i,
                at=at + i,
                account=f"{symbol}-{i}",
                symbol=symbol,
            )
            for i in range(need)
        ]

    linked = Fact(
        kind="buy",
        epoch=1,
        order=1,
        at=100.0,
        account="V0",
        symbol="HK:8371",
        thin=True,
        campaign="K0-C0001",
    )

    def run(taken_over: bool) -> list[str]:
        state = MemoryState()
        stage = CampaignStage(state, policy.detectors, 1, 2)
        stage.process([linked], 1)  # shard 1 starts its copy of K0-C0001
        stage.process(buyers("TSE:1111", 10, 2), 2)
        if taken_over:
            stage = CampaignStage(state, policy.detectors, 1, 2)
        stage.process(buyers("TSE:2222", 30, 3), 3)
        return sorted(state.keys("campaign"))

    assert run(taken_over=False) == ["K0-C0001", "K1-C0001", "K1-C0002"]
    assert run(taken_over=True) == run(taken_over=False)


def test_the_staged_reference_raises_each_campaign_once_across_partitions(events_path):
    events = read_events(events_path)

    def run(guard) -> set[str]:
        for e in events:
            guard.decide(e) if hasattr(e, "account") else guard.observe(e)
        return {r["id"] for r in guard.campaign_records()}

    plain = run(PartitionedGuard(PARTS))
    staged = run(StagedGuard(PARTS, epoch_seconds=EPOCH))
    one = run(StagedGuard(1, epoch_seconds=EPOCH))
    assert staged and all(not i.startswith("P") for i in staged)
    assert len(staged) < len(plain)  # partitions no longer raise the same campaign again
    assert len(staged) == len(one)


# --- the cluster ---------------------------------------------------------------------------------


def test_two_workers_and_the_stage_decide_and_raise_what_the_staged_replay_does(
    references, names, tmp_path
) -> None:
    ref = references(1)
    with pg_database() as db:
        port = free_port()
        stage = start_stage(names, tmp_path, 0, 1, "--database", db, "--metrics-port", str(port))
        a = start_worker(names, tmp_path, "a", "--database", db)
        b = start_worker(names, tmp_path, "b", "--database", db)
        finish(names, [a, b], [])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            metrics = r.read().decode()
        assert "brokerguard_stage_holding 1.0" in metrics
        facts = re.search(r"^brokerguard_stage_facts_total (\S+)$", metrics, re.M)
        assert facts and float(facts.group(1)) > 0
        finish(names, [], [stage])
        assert decisions(tmp_path / "d-a.ndjson", tmp_path / "d-b.ndjson") == decisions(
            ref / "decisions.ndjson"
        )
        status = subprocess.run(
            [*BG, "status", "--json", "--stream", names.stream, "--prefix", names.prefix]
            + ["--durable", names.durable, "--facts-stream", names.facts_stream]
            + ["--stage-durable", f"st{names.durable}"],
            capture_output=True,
            text=True,
        )
        (shard,) = json.loads(status.stdout)["stage"]
        assert shard["lag"] == 0 and shard["ack_pending"] == 0 and shard["healthy"]
        assert shard["done_below_epoch"] is not None and shard["owner"] is None  # handed over
        expected = campaign_lines(ref / "campaigns.ndjson")
        assert expected and campaign_lines(tmp_path / "c-0.ndjson") == expected

        import sqlalchemy as sa

        from brokerguard.service.db import make_engine

        engine = make_engine(db)
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT engine_id, symbols, accounts, infrastructure FROM campaigns")
            )
            camps = {i: (sorted(s), sorted(a), sorted(n)) for i, s, a, n in rows}
        engine.dispose()
        assert camps == final_campaigns(ref / "campaigns.ndjson")


def test_a_stage_killed_mid_run_and_started_again_changes_nothing(
    references, names, tmp_path
) -> None:
    ref = references(2)
    worker = start_worker(names, tmp_path, "a", shards=2)
    first = start_stage(names, tmp_path, 0, 2)
    other = start_stage(names, tmp_path, 1, 2)
    deadline = time.monotonic() + 60
    out = tmp_path / "d-a.ndjson"
    while time.monotonic() < deadline and (not out.exists() or out.stat().st_size < 3000):
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=10)
    again = start_stage(names, tmp_path, 0, 2)
    finish(names, [worker], [other, again], shards=2)
    assert decisions(out) == decisions(ref / "decisions.ndjson")
    got = campaign_lines(tmp_path / "c-0.ndjson", tmp_path / "c-1.ndjson")
    assert got == campaign_lines(ref / "campaigns.ndjson")


def test_a_campaign_two_shards_grow_is_one_row_with_both_shares(tmp_path) -> None:
    """Infrastructure stays on shard 0; a thin buy from a session on that infrastructure is
    linked on its symbol's shard under the same id. The row joins what each shard knows."""
    import sqlalchemy as sa

    from brokerguard.cluster.records import RecordSink
    from brokerguard.service.db import make_engine

    policy = load_policy()
    infra = CampaignStage(MemoryState(), policy.detectors, 0, 2)
    symbols = CampaignStage(MemoryState(), policy.detectors, 1, 2)
    need = policy.detectors.campaign.infrastructure_accounts
    risky = [
        Fact(
            kind="risky", epoch=1, order=i, at=100.0 + i, account=f"V{i}", keys=("ip:203.0.113.9",)
        )
        for i in range(need)
    ]
    (contained,) = infra.process(risky, 1)
    campaign = contained.campaign
    assert contained.kind == "entity" and campaign.startswith("K0-")
    buy = Fact(
        kind="buy",
        epoch=2,
        order=50,
        at=300.0,
        account="V0",
        symbol="HK:8371",
        thin=True,
        campaign=campaign,
    )
    assert symbols.process([buy], 2) == [Containment("symbol", "HK:8371", campaign, 2)]
    url = f"sqlite:///{tmp_path / 'records.db'}"
    sink = RecordSink(url)
    for stage in (infra, symbols):
        sink.campaigns(stage, merge=True)
        sink.write()
    sink.close()
    engine = make_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT engine_id, symbols, accounts, infrastructure FROM campaigns")
        ).all()
    engine.dispose()
    assert len(rows) == 1
    engine_id, syms, accounts, infrastructure = rows[0]
    if isinstance(syms, str):  # JSON text on SQLite
        syms, accounts, infrastructure = (json.loads(x) for x in (syms, accounts, infrastructure))
    assert engine_id == campaign
    assert syms == ["HK:8371"] and infrastructure == ["ip:203.0.113.9"]
    assert sorted(accounts) == [f"V{i}" for i in range(need)]


WIPE = "for _, k in ipairs(redis.call('keys', ARGV[1])) do redis.call('del', k) end return 1"


def test_redis_losing_everything_mid_run_the_stage_replays_its_facts(
    references, names, tmp_path
) -> None:
    """Documented behaviour: the shard whose state is gone replays its facts from the start of
    the facts stream (the workers replay their partitions); the results are unchanged."""
    from cluster_helpers import redis_client

    ref = references(1)
    stage = start_stage(names, tmp_path, 0, 1, "--stats", str(tmp_path / "stage.json"))
    worker = start_worker(names, tmp_path, "a")
    out = tmp_path / "d-a.ndjson"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not out.exists() or out.stat().st_size < 4000):
        time.sleep(0.02)
    client = redis_client()
    assert client.exists(f"{names.prefix}:stage:0:meta")
    client.eval(WIPE, 0, f"{names.prefix}:*")  # at once, as a Redis that lost its data
    finish(names, [worker], [stage])
    assert decisions(out) == decisions(ref / "decisions.ndjson")
    got = campaign_lines(tmp_path / "c-0.ndjson")
    assert got == campaign_lines(ref / "campaigns.ndjson")
    stats = json.loads((tmp_path / "stage.json").read_text())
    assert stats["rebuilt"] >= 1 and stats["lost"] >= 1


def test_a_dismissed_campaign_takes_on_nothing_new_in_any_shard() -> None:
    """The partitions hear of a dismissal one epoch after the stage: meanwhile a session still
    linked to the campaign can send a thin buy naming it. No shard may start or grow the
    campaign again, whether it held a copy (shard 0) or not (shard 1), and a partition's view
    takes no containment of a campaign it saw released."""
    policy = load_policy()
    infra = CampaignStage(MemoryState(), policy.detectors, 0, 2)
    symbols = CampaignStage(MemoryState(), policy.detectors, 1, 2)
    need = policy.detectors.campaign.infrastructure_accounts
    risky = [
        Fact(kind="risky", epoch=1, order=i, at=100.0 + i, account=f"V{i}", keys=("ip:1.2.3.4",))
        for i in range(need)
    ]
    (raised,) = infra.process(risky, 1)
    cid = raised.campaign
    dismiss = Fact(kind="dismiss", epoch=2, order=60, at=200.0, campaign=cid)

    def buy(symbol: str, order: int) -> Fact:
        return Fact(
            kind="buy",
            epoch=2,
            order=order,
            at=210.0,
            account="V0",
            symbol=symbol,
            thin=True,
            campaign=cid,
        )

    out0 = infra.process([dismiss, buy("X:ABC", 61)], 2)
    out1 = symbols.process([dismiss, buy("X:DEF", 62)], 2)
    assert out0 == [Containment("entity", "ip:1.2.3.4", cid, 2, True)]
    assert out1 == []  # shard 1 never had it, and does not start it now
    link = StageLink(0)
    link.see_only([raised, *out0, Containment("symbol", "X:GHI", cid, 2)])
    assert link.symbols == {} and link.entities == {} and link.released == {cid}


def test_the_containment_store_keeps_each_change_in_order_and_reads_again_only_on_progress():
    """Changes of two shards, a dismissal among them: read back in the stage's order; a read
    with no progress returns the same list (the partitions then rebuild nothing)."""
    from cluster_helpers import drop_prefix, fresh_prefix, redis_client

    from brokerguard.cluster.facts import ContainmentStore

    client = redis_client()
    prefix = fresh_prefix()
    store = ContainmentStore(client, prefix, 2)
    try:
        assert store.read() == (None, [])
        first = [Containment("entity", "ip:1.2.3.4", "K0-C0001", 3)]
        later = [
            Containment("symbol", "X:ABC", "K0-C0001", 5),
            Containment("entity", "ip:1.2.3.4", "K0-C0001", 5, True),
        ]
        other = [Containment("symbol", "X:DEF", "K1-C0001", 4)]
        for shard, updates, below in ((0, first, 4), (1, other, 5), (0, later, 6), (0, later, 6)):
            pipe = client.pipeline(transaction=True)
            store.queue(pipe, shard, updates, below)
            pipe.execute()
        below, read = store.read()
        assert below == 5 and read == [*first, *other, *later]  # a rerun added nothing
        again = store.read()[1]
        assert again is read
        pipe = client.pipeline(transaction=True)
        store.queue(pipe, 1, [], 7)
        pipe.execute()
        assert store.read() == (6, read) and store.read()[1] is not read
    finally:
        drop_prefix(client, prefix)


def test_junk_on_the_facts_stream_is_passed_over_by_the_stage(references, names, tmp_path) -> None:
    """Only workers publish facts; a message that is neither a fact nor an announcement is
    logged and passed over, and the run decides what the staged replay does."""
    import asyncio

    import nats
    from cluster_helpers import NATS_URL

    ref = references(1)

    async def junk() -> None:
        nc = await nats.connect(NATS_URL)
        js = nc.jetstream()
        from brokerguard.cluster.facts import ensure_facts_stream

        await ensure_facts_stream(js, names.facts_stream, names.facts_subject)
        await js.publish(f"{names.facts_subject}.0", b'{"kind":"nonsense"}')
        await js.publish(f"{names.facts_subject}.0", b"[1,", headers={"Bg-Announce": "1"})
        await nc.close()

    asyncio.run(junk())
    stage = start_stage(names, tmp_path, 0, 1)
    worker = start_worker(names, tmp_path, "a")
    finish(names, [worker], [])
    stage.send_signal(signal.SIGTERM)
    _, err = stage.communicate(timeout=30)
    assert stage.returncode == 0, err
    assert "2 unreadable messages passed over" in " ".join(err.split())
    assert decisions(tmp_path / "d-a.ndjson") == decisions(ref / "decisions.ndjson")


def test_facts_of_a_batch_decided_from_lost_state_never_reach_the_stage(
    ingested, tmp_path, monkeypatch
) -> None:
    """Redis loses everything while a worker is in the middle of a batch: the rest of the batch is
    decided from empty state and its facts are wrong. The check before its records fails and
    the batch is given back; its facts must not have been published, for the rebuilt
    partition's right facts carry the same message ids and JetStream (or the stage) would drop
    them as duplicates. The facts stream must hold exactly what a run without the loss sends.

    No stage runs here: its progress is set far ahead in Redis, so the workers never wait."""
    import asyncio

    import nats
    from cluster_helpers import NATS_URL, REDIS_URL, redis_client

    from brokerguard.cluster import worker as worker_module
    from brokerguard.cluster.worker import run_worker
    from brokerguard.stores.redis import RedisState

    client = redis_client()
    monkeypatch.setattr(worker_module, "PARTITION_CACHE", 1)  # records read again every batch

    def work(n: Names, out: Path):
        client.set(f"{n.prefix}:stage:0:below", 10**9)  # the stage is always done
        return run_until_drained(  # stopped once the run is done (idle exit: a backstop)
            lambda stop: run_worker(
                NATS_URL,
                REDIS_URL,
                prefix=n.prefix,
                stream=n.stream,
                subject=n.subject,
                partitions=PARTS,
                durable=n.durable,
                decisions=out,
                batch=100,
                idle_exit=2.5,
                lease_ttl=1.5,
                campaign_stage=True,
                facts_stream=n.facts_stream,
                facts_subject=n.facts_subject,
                stop=stop,
            ),
            n,
            PARTS,
        )

    async def facts_sent(n: Names) -> dict[str, bytes]:
        """The facts in the stream by message id (announcements name their state: left out)."""
        nc = await nats.connect(NATS_URL)
        js = nc.jetstream()
        info = await js.stream_info(n.facts_stream)
        out = {}
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg(n.facts_stream, seq)
            if "Bg-Announce" not in (msg.headers or {}):
                out[msg.headers["Nats-Msg-Id"]] = msg.data
        await nc.close()
        return out

    with fresh_names(ingested) as clean, fresh_names(ingested) as lossy:
        work(clean, tmp_path / "clean.ndjson")
        expected = asyncio.run(facts_sent(clean))

        real_prefetch = RedisState.prefetch
        calls = {"n": 0, "lost": 0}

        def losing(self, wanted):
            wanted = list(wanted)
            if self.prefix == f"{lossy.prefix}:0":
                calls["n"] += 1
                logins = sum(1 for kind, _ in wanted if kind == "entity")
                if calls["n"] > 150 and logins >= 2 and not calls["lost"]:
                    # late in the run, a batch with sign-ins: without the accounts' history
                    # they look risky, and the facts say so
                    calls["lost"] = 1
                    self.redis.eval(WIPE, 0, f"{lossy.prefix}:*")
                    self.redis.set(f"{lossy.prefix}:stage:0:below", 10**9)
            return real_prefetch(self, wanted)

        monkeypatch.setattr(RedisState, "prefetch", losing)
        stats = work(lossy, tmp_path / "lossy.ndjson")
        monkeypatch.setattr(RedisState, "prefetch", real_prefetch)
        assert calls["lost"] and stats.lost >= 1 and stats.rebuilt >= 1
        got = asyncio.run(facts_sent(lossy))
        assert expected
        wrong = sorted(k for k in {*expected, *got} if got.get(k) != expected.get(k))
        extra = [k for k in wrong if k not in expected]
        assert not wrong, f"{len(wrong)} facts differ ({len(extra)} sent only here): {wrong[:4]}"
        assert decisions(tmp_path / "lossy.ndjson") == decisions(tmp_path / "clean.ndjson")


def test_the_shard_lock_is_taken_renewed_and_released_only_by_its_holder() -> None:
    """The campaign-stage lock: a holder that lost it (it lapsed and another stage took it)
    cannot renew or release it, even when the lapse falls between the calls its renewal or
    release makes — else it would go on as holder, extending or deleting the other's lock, and
    two processes would run the shard."""
    import redis
    from cluster_helpers import REDIS_URL, fresh_prefix, redis_client

    from brokerguard.cluster.leases import Lock

    client = redis_client()
    key = f"{fresh_prefix()}:stage:0:owner"
    theirs_ms = 60_000  # the other stage's TTL: longer than ours, so a renewal of it shows

    class Lapsing(redis.Redis):
        """Before its ``at``-th command, the lock lapses and stage B takes it."""

        at = 0
        sent = 0

        def execute_command(self, *args, **options):
            self.sent += 1
            if self.sent == self.at:
                client.delete(key)
                client.set(key, "B", px=theirs_ms)
            return super().execute_command(*args, **options)

    def held_by() -> tuple[bytes | None, int]:
        return client.get(key), client.pttl(key)

    try:
        a, b = Lock(client, key, "A", 5.0), Lock(client, key, "B", 60.0)
        assert a.hold() and a.hold() and not b.hold()  # taken, renewed; B waits
        assert held_by()[0] == b"A" and 4000 < held_by()[1] <= 5000
        client.delete(key)  # A's lock lapsed ...
        assert b.hold()  # ... and B took it
        assert not a.hold()  # A renews: it is no longer A's
        a.release()
        assert held_by()[0] == b"B" and held_by()[1] > 5000  # untouched
        b.release()
        assert held_by()[0] is None

        for action in ("hold", "release"):
            at = 2  # the lapse before the 2nd, 3rd, ... call A makes, while it makes more
            while True:
                client.delete(key)
                assert Lock(client, key, "A", 5.0).hold()
                lapsing = Lapsing.from_url(REDIS_URL)
                lapsing.at = at
                ok = getattr(Lock(lapsing, key, "A", 5.0), action)()
                owner, ttl = held_by()
                lapsing.close()
                if lapsing.sent < at:
                    break  # A made fewer calls: no lapse between them to try
                assert owner == b"B", (action, at)  # B took it, and nobody took it from B
                assert ttl > 5000, (action, at)  # A did not renew B's lock as its own
                assert not ok, (action, at)  # A does not go on as holder
                at += 1
    finally:
        client.delete(key)


def test_containment_a_dismissal_lifted_is_pruned_and_every_later_view_stays_the_same():
    """The containment hash would keep every change for good. What a dismissal lifted goes
    once no reader can be before the horizon; what is contained now, the campaign's first
    release (sessions linked to it must still see it dismissed) and recent epochs stay, and a
    partition's view at any epoch from the horizon on is what it was with everything kept."""
    from cluster_helpers import drop_prefix, fresh_prefix, redis_client

    from brokerguard.cluster.facts import ContainmentStore

    client = redis_client()
    prefix = fresh_prefix()
    store = ContainmentStore(client, prefix, 2)
    c1, c2, c3, k1 = "K0-C0001", "K0-C0002", "K0-C0003", "K1-C0001"

    def e(key: str, campaign: str, epoch: int, released: bool = False) -> Containment:
        return Containment("entity", key, campaign, epoch, released)

    def s(key: str, campaign: str, epoch: int, released: bool = False) -> Containment:
        return Containment("symbol", key, campaign, epoch, released)

    written = [  # (shard, changes, below), as the shards write them
        (0, [e("ip:1", c1, 3), e("ip:2", c1, 3)], 4),
        (1, [s("X:A", c1, 4)], 5),  # a thin buy linked to it
        (0, [e("ip:1", c1, 5, True), e("ip:2", c1, 5, True)], 6),  # the dismissal ...
        (1, [s("X:A", c1, 5, True)], 6),  # ... in both shards
        (0, [e("ip:1", c2, 6), e("ip:9", c2, 6)], 7),
        (1, [s("X:B", k1, 7)], 8),  # contained, never lifted
        (0, [e("ip:1", c2, 8, True)], 9),  # ip:9 was not freed (a campaign lists 500 keys)
        (0, [e("ip:1", c3, 9)], 10),  # the address again, under another campaign
        (1, [], 10),
    ]

    def views(changes: list[Containment]) -> list[tuple]:
        out = []
        for k in range(8, 12):
            link = StageLink(0)
            link.see_only(u for u in changes if u.epoch < k)
            out.append((k, link.symbols, link.entities, link.released))
        return out

    try:
        for shard, updates, below in written:
            pipe = client.pipeline(transaction=True)
            store.queue(pipe, shard, updates, below)
            pipe.execute()
        _, everything = store.read()
        before = views(everything)
        assert before[-1][1:] == ({"X:B": k1}, {"ip:1": c3, "ip:9": c2}, {c1, c2})
        fields = len(client.hgetall(store.key))
        assert fields == 11

        for horizon, gone in ((8, 5), (9, 1)):  # c2's release of ip:1 falls at epoch 8
            dropped = store.lifted(horizon)
            assert len(dropped) == gone, dropped
            pipe = client.pipeline(transaction=True)  # as the stage does, with its progress
            store.queue_prune(pipe, dropped)
            store.queue(pipe, 0, [], 10 + horizon)  # (progress: readers read the hash again)
            pipe.execute()
            _, pruned = store.read()
            assert [v for v in views(pruned) if v[0] >= horizon] == [
                v for v in before if v[0] >= horizon
            ]
            fields -= gone
            assert len(client.hgetall(store.key)) == fields
        assert sorted(client.hgetall(store.key).items()) == [
            (b"e|ip:1|5|0", c1.encode() + b"|-"),  # c1's first release
            (b"e|ip:1|8|0", c2.encode() + b"|-"),
            (b"e|ip:1|9|0", c3.encode() + b"|+"),
            (b"e|ip:9|6|1", c2.encode() + b"|+"),
            (b"s|X:B|7|0", k1.encode() + b"|+"),
        ]
        assert store.lifted(100) == []  # nothing more to prune
    finally:
        drop_prefix(client, prefix)


def _epoch_a_lost_state_misleads(events_path: Path) -> tuple[int, set[str]]:
    """The first epoch at which the shard, had Redis lost its state just before it, would raise
    a campaign the staged replay never raises; and the replay's campaign ids.

    A shard reads its records from Redis at each advance and keeps only the population counts
    (and the number of campaigns it raised) in memory: from empty records, buyers of a symbol
    already under a campaign start a new one, under the next id. Beside running workers an
    advance is one epoch (a partition goes on into epoch ``k + 1`` only once the stage is done
    with ``k``), so a loss before an epoch's records are read is a loss just before it."""
    import copy

    events = read_events(events_path)
    staged = StagedGuard(PARTS, epoch_seconds=EPOCH)
    epochs: list[tuple[int, list[Fact]]] = []
    process = staged.stages[0].process

    def taking(facts, epoch):
        facts = list(facts)
        epochs.append((epoch, facts))
        return process(facts, epoch)

    staged.stages[0].process = taking  # type: ignore[method-assign]
    for e in events:
        staged.decide(e) if hasattr(e, "account") else staged.observe(e)
    raised = {r["id"] for r in staged.campaign_records()}
    policy = load_policy()
    clean = CampaignStage(MemoryState(), policy.detectors)
    for epoch, facts in epochs:
        lost = CampaignStage(MemoryState(), policy.detectors)
        lost.watch._count, lost.next_sweep = clean.watch._count, clean.next_sweep
        pop = clean.state.get("population", "all")
        if pop is not None:
            lost.state.put("population", "all", copy.deepcopy(pop))
        lost.process(facts, epoch)
        if {r["id"] for r in lost.records(str)} - raised:
            return epoch, raised
        clean.process(facts, epoch)
        list(clean.records(str))
    raise AssertionError("no epoch where a lost state raises a campaign of its own")


@pytest.mark.parametrize("event", ["state lost", "lock taken"])
def test_an_advance_the_stage_loses_midway_writes_no_campaign(
    events_path, references, names, tmp_path, monkeypatch, event
) -> None:
    """The stage checked its lock and state only when an advance began, and wrote the campaign
    lines and rows before its fenced flush. Here, in the middle of an advance (before its
    epoch's records are read), Redis loses the stage's keys — its state and lock — or another
    stage takes the lock. The advance must be given back with nothing written: the lines file
    and the campaigns table hold exactly the staged replay's campaigns (each line once when the
    lock was taken; a shard rebuilt from empty writes its earlier lines again).

    Before the fix, the lost state raised a campaign under an id the replay gives no campaign
    (``C0006``, on a symbol already under ``C0003``): a stray line and a stray row, for a
    row's id is the engine id and the moment it was raised. With the lock taken, the advance's
    line went out twice; and with the check alone, the campaign the advance given back had
    queued for the table counted as written, so the advance done again did not write it: the
    row of the last campaign raised was missing."""
    from collections import Counter

    import sqlalchemy as sa
    from cluster_helpers import NATS_URL, REDIS_URL, redis_client

    from brokerguard.cluster import stage as stage_module
    from brokerguard.cluster.stage import run_campaign_stage
    from brokerguard.service.db import make_engine

    ref = references(1)
    if event == "state lost":
        at, raised = _epoch_a_lost_state_misleads(events_path)
    else:  # the epoch of the last campaign raised (no later epoch writes its row)
        last = max(datetime.fromisoformat(c["raised_at"]) for c in lines(ref / "campaigns.ndjson"))
        at, raised = int(last.timestamp() // EPOCH), set()
    client = redis_client()
    lock = f"{names.prefix}:stage:0:owner"
    hit = {"n": 0}
    wanted = stage_module._wanted

    def midway(facts):
        facts = list(facts)
        if not hit["n"] and any(f.epoch == at for f in facts):
            hit["n"] += 1
            if event == "state lost":  # one atomic delete, as a Redis that lost its data
                client.eval(WIPE, 0, f"{names.prefix}:stage:0:*")
            else:  # another stage takes the lock; it lapses soon and this one takes it back
                client.set(lock, "another-stage", px=400)
        return wanted(facts)

    decided: list[str] = []  # the ids of the lines each advance decided, written or not
    records = CampaignStage.records

    def noting(self, iso):
        for r in records(self, iso):
            decided.append(r["id"])
            yield r

    monkeypatch.setattr(stage_module, "_wanted", midway)
    monkeypatch.setattr(CampaignStage, "records", noting)
    with pg_database() as db:
        worker = start_worker(names, tmp_path, "a", "--database", db)

        stats = run_until_drained(  # stopped once the run is done (idle exit: a backstop)
            lambda stop: run_campaign_stage(
                NATS_URL,
                REDIS_URL,
                partitions=PARTS,
                prefix=names.prefix,
                facts_stream=names.facts_stream,
                facts_subject=names.facts_subject,
                durable=f"st{names.durable}",
                lease_ttl=1.5,
                idle_exit=6,
                campaigns=tmp_path / "c-0.ndjson",
                database=db,
                stop=stop,
            ),
            names,
            PARTS,
            1,
        )
        finish(names, [worker], [])
        engine = make_engine(db)
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT id, engine_id, symbols, accounts, infrastructure FROM campaigns")
            ).all()
        engine.dispose()
    assert hit["n"] == 1 and stats.lost >= 1
    if event == "state lost":
        assert stats.rebuilt >= 1
        # the advance given back did decide a campaign of its own (the injection bit) ...
        assert set(decided) - raised
    assert decisions(tmp_path / "d-a.ndjson") == decisions(ref / "decisions.ndjson")
    # ... and none of it reached the file or the table
    assert campaign_lines(tmp_path / "c-0.ndjson") == campaign_lines(ref / "campaigns.ndjson")
    if event == "lock taken":  # (a shard rebuilt from empty writes every line again)
        written = Counter(json.dumps(c, sort_keys=True) for c in lines(tmp_path / "c-0.ndjson"))
        twice = [line for line, n in written.items() if n > 1]
        assert not twice, f"{len(twice)} campaign lines written twice: {twice[:1]}"
    camps = {i: (sorted(s), sorted(a), sorted(n)) for _, i, s, a, n in rows}
    assert len(rows) == len(camps), sorted(r[0] for r in rows)  # no stray row beside a right one
    assert camps == final_campaigns(ref / "campaigns.ndjson")


def test_the_staged_and_the_embedded_watch_agree_on_each_bar_end() -> None:
    """A bar's end is ``markets.price_known``'s, in the embedded engine and in the stage alike
    (the stage used to compute ``at + minutes * 60`` itself): the same bars — one departing,
    one delivered late, of different lengths — leave the symbol's bar state the same in both."""
    from brokerguard.events import Instrument, MarketBar
    from brokerguard.markets import JST, price_known

    policy = load_policy()
    start = datetime(2025, 4, 1, 9, 0, tzinfo=JST)
    instrument = Instrument(
        id="i1",
        ts=start,
        symbol="2929",
        market="TSE",
        segment="growth",
        currency="JPY",
        lot_size=100,
        price=100.0,
        avg_daily_volume=50_000,
        market_cap_jpy=5e9,
    )

    def bar(i: int, minute: int, minutes: int, volume: int, close: float) -> MarketBar:
        ts = start.replace(minute=minute)
        return MarketBar(
            id=f"b{i}",
            ts=ts,
            symbol="2929",
            market="TSE",
            minutes=minutes,
            open=100.0,
            high=max(100.0, close),
            low=min(100.0, close),
            close=close,
            volume=volume,
        )

    bars = [
        bar(1, 0, 5, 1000, 101.0),
        bar(2, 5, 5, 1100, 100.0),
        bar(3, 10, 15, 40_000, 130.0),  # far above the usual volume, rising: a departure
        bar(4, 1, 1, 900, 100.0),  # delivered late: ended before the latest
        bar(5, 25, 5, 1000, 129.0),
    ]
    embedded = BrokerGuard(policy)
    staged = StagedGuard(1, epoch_seconds=EPOCH, policy=policy)
    for event in [instrument, *bars]:
        embedded.observe(event)
        staged.observe(event)
    staged.close_epoch()

    def bar_state(state) -> tuple[float, int, float]:
        sym = state.get("symbol", "TSE:2929")
        return sym.bar_at, sym.bars, sym.bar_volume

    seen = bar_state(embedded.state)
    assert seen == bar_state(staged.stages[0].state)
    # the latest end is the last bar's, as the markets' rule says
    assert seen[0] == price_known("TSE", bars[-1].ts, bars[-1].minutes).timestamp()
