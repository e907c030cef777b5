"""Scale-out on the real NATS JetStream and Redis: the cluster decides as the embedded engine does.

A recorded run is published with ``ingest`` and consumed by workers; their decisions must equal
a replay of the same events on in-memory engines, one per partition (``PartitionedGuard``; with
one partition that is the plain embedded engine) — with one worker, with a worker that stops
before acknowledging a batch, a failed state write and a SIGTERM. Several workers (and a SIGKILL)
are in ``test_cluster_workers.py``.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster_helpers import (
    NATS_URL,
    REDIS_URL,
    Names,
    fresh_names,
    pg_database,
    read_events,
    recorded_run,
    replay,
    run_until_drained,
)

from brokerguard.cluster import worker as worker_module
from brokerguard.cluster.partition import PartitionedGuard, partition_of
from brokerguard.cluster.stream import ingest
from brokerguard.cluster.worker import run_worker
from brokerguard.engine import BrokerGuard
from brokerguard.engine.state import MemoryState
from brokerguard.events import decode_line
from brokerguard.stores.redis import RedisState

BG = [sys.executable, "-m", "brokerguard"]


PARTS = 2  # partitions of the streams these tests publish


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, list[tuple]]:
    """The recorded run's events file and the embedded engines' decisions on it (8 partitions)."""
    path = recorded_run(tmp_path_factory.mktemp("run"))
    return path, replay(PartitionedGuard(PARTS), read_events(path))  # type: ignore[arg-type]


@pytest.fixture
def names() -> Iterator[Names]:
    with fresh_names() as n:
        yield n


@pytest.fixture(scope="module")
def published(run) -> Iterator[Names]:
    """The recorded run published once for the module, on ``PARTS`` partitions."""
    with fresh_names() as n:
        publish(run[0], n)
        yield n


@pytest.fixture
def on_published(published) -> Iterator[Names]:
    """Names of the test's own (Redis prefix, durable consumers) on the module's stream."""
    with fresh_names(published) as n:
        yield n


def publish(path: Path, n: Names, partitions: int = PARTS) -> int:
    with open(path, "rb") as f:
        return asyncio.run(ingest(f, NATS_URL, n.stream, n.subject, partitions))


def work(n: Names, out: Path, **kw) -> object:
    """A worker in this process; with an ``idle_exit`` it is stopped as soon as every
    partition's state stands for the partition's last message (the idle exit is a backstop)."""
    kw.setdefault("partitions", PARTS)
    kw.setdefault("lease_ttl", 1.5)

    def make(stop: asyncio.Event | None = None):
        return run_worker(
            NATS_URL,
            REDIS_URL,
            prefix=n.prefix,
            stream=n.stream,
            subject=n.subject,
            durable=n.durable,
            decisions=out,
            stop=stop,
            **kw,
        )

    if kw.get("idle_exit"):
        return run_until_drained(make, n, kw["partitions"])
    return asyncio.run(make())


def decided(out: Path) -> list[tuple]:
    """Decisions in file order, one per event id; a repeated line must repeat the same decision."""
    first: dict[str, tuple] = {}
    for line in out.read_text().splitlines():
        d = json.loads(line)
        row = (d["event"], d["action"], d["score"])
        assert first.setdefault(d["event"], row) == row
    return list(first.values())


def test_partitions_are_stable_and_keep_an_account_together(run) -> None:
    events = read_events(run[0])
    by_account: dict[str, set[int | None]] = {}
    for e in events:
        if hasattr(e, "account"):
            by_account.setdefault(e.account, set()).add(partition_of(e, 8))
        else:
            assert partition_of(e, 8) is None  # market events go to every partition
    assert all(len(p) == 1 for p in by_account.values())
    assert len({next(iter(p)) for p in by_account.values()}) == 8  # every partition used
    # crc32, not the salted hash(): another interpreter puts an event in the same partition
    line = next(x for x in run[0].read_bytes().splitlines() if b'"account"' in x)
    probe = (
        "import sys; from brokerguard.cluster.stream import partition_of;"
        "from brokerguard.events import decode_line;"
        "print(partition_of(decode_line(sys.stdin.buffer.read()), 8))"
    )
    other = subprocess.run([sys.executable, "-c", probe], input=line, capture_output=True)
    assert int(other.stdout) == partition_of(decode_line(line), 8)


def test_one_partition_decides_what_the_embedded_engine_does(run, names, tmp_path) -> None:
    path, _ = run
    events = read_events(path)
    embedded = replay(BrokerGuard(state=MemoryState()), events)
    assert publish(path, names, partitions=1) == len(events)
    stats = work(names, tmp_path / "d.ndjson", idle_exit=1.0, partitions=1)
    assert stats.events == len(events) and stats.skipped == 0
    assert decided(tmp_path / "d.ndjson") == embedded
    # publishing the same file again within the duplicate window adds nothing
    publish(path, names, partitions=1)
    again = work(names, tmp_path / "d.ndjson", idle_exit=1.0, partitions=1)
    assert again.events == 0


def test_a_slow_start_is_not_idleness(run, names, tmp_path, monkeypatch) -> None:
    """The idle clock started before the worker took its partitions: where opening them took
    the whole ``idle_exit`` (a busy machine) and their first fetch came back empty, the worker
    left with nothing read (seen in the suite, where a worker run by the CLI decided 0 events)."""
    path, _ = run
    events = read_events(path)
    assert publish(path, names, partitions=1) == len(events)
    read_meta = RedisState.read_meta

    def slow_read_meta(self: RedisState) -> dict:
        time.sleep(1.2)  # longer than the idle exit below
        return read_meta(self)

    fetches: list[int] = []
    real_pull = worker_module.pull

    async def pull(*args, **kw) -> list:
        fetches.append(1)
        if len(fetches) == 1:
            return []  # the first fetch timed out
        return await real_pull(*args, **kw)

    monkeypatch.setattr(RedisState, "read_meta", slow_read_meta)
    monkeypatch.setattr(worker_module, "pull", pull)
    stats = work(names, tmp_path / "d.ndjson", idle_exit=1.0, partitions=1)
    assert stats.events == len(events)


def test_one_worker_on_two_partitions_decides_what_two_embedded_engines_do(
    run, names, tmp_path
) -> None:
    path, embedded = run
    events = read_events(path)
    market = sum(1 for e in events if partition_of(e, PARTS) is None)
    assert publish(path, names) == len(events)
    stats = work(names, tmp_path / "d.ndjson", idle_exit=1.0)
    assert stats.events == len(events) + market * (PARTS - 1)  # market events in every partition
    assert sorted(stats.partitions) == list(range(PARTS))
    assert sorted(decided(tmp_path / "d.ndjson")) == sorted(embedded)
    # a stream cut into 2 partitions refuses a worker told 4
    from brokerguard.cluster.stream import PartitionMismatch

    with pytest.raises(PartitionMismatch):
        work(names, tmp_path / "d.ndjson", idle_exit=1.0, partitions=2 * PARTS)


def test_a_batch_never_acknowledged_is_redelivered_and_processed_once(run, on_published, tmp_path):
    path, embedded = run
    names = on_published  # the module's stream, read through consumers of its own
    out = tmp_path / "d.ndjson"
    first = work(names, out, batch=100, ack_wait=1.0, max_events=3030)  # stops mid-batch
    assert first.events == 3030
    second = work(names, out, batch=100, ack_wait=1.0, idle_exit=2.5)
    events = read_events(path)
    copies = len(events) + sum(1 for e in events if partition_of(e, PARTS) is None) * (PARTS - 1)
    # every message processed once: the cut batch's events were never flushed, so the second
    # worker processes them (anything it skips was redelivered after its own slow ack)
    assert sum(first.partitions.values()) + second.events == copies
    assert sorted(decided(out)) == sorted(embedded)


# --- records in PostgreSQL ----------------------------------------------------------------------


@pytest.fixture
def pg_url() -> Iterator[str]:
    with pg_database() as url:
        yield url


def table_decisions(url: str) -> list[tuple]:
    import sqlalchemy as sa

    from brokerguard.service.db import make_engine

    engine = make_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT event_id, action, score FROM decisions")).all()
        alerts = conn.execute(sa.text("SELECT count(*) FROM alerts")).scalar_one()
    engine.dispose()
    assert alerts > 0
    return [tuple(r) for r in rows]


def test_records_land_in_postgresql_once_even_when_the_state_write_fails(
    run, on_published, tmp_path, pg_url, monkeypatch
) -> None:
    """A batch whose records were written but whose state flush failed is redelivered; the
    second pass adds no decision row twice, and the table equals the embedded decisions."""
    from brokerguard.stores.redis import RedisState

    path, embedded = run
    names = on_published  # the module's stream, read through consumers of its own
    real_flush = RedisState.flush
    calls = {"n": 0}

    def flaky(self):
        calls["n"] += 1
        if calls["n"] == 7 and (self.dirty or self.handed):
            raise ConnectionError("Redis went away after the records were written")
        return real_flush(self)

    monkeypatch.setattr(RedisState, "flush", flaky)
    out = tmp_path / "d.ndjson"
    with pytest.raises(ConnectionError):
        work(names, out, batch=200, ack_wait=1.0, database=pg_url)
    monkeypatch.setattr(RedisState, "flush", real_flush)
    work(names, out, batch=200, ack_wait=1.0, idle_exit=2.5, database=pg_url)
    rows = table_decisions(pg_url)
    assert len(rows) == len({r[0] for r in rows})  # no event decided twice in the table
    assert sorted(rows) == sorted(embedded)


def test_sigterm_finishes_the_batch_and_acknowledges_it(run, on_published, tmp_path) -> None:
    path, embedded = run
    names = on_published  # the module's stream, read through consumers of its own
    out = tmp_path / "d.ndjson"
    common = [*names.cli(PARTS), "--prefix", names.prefix, "--durable", names.durable]
    common += ["--batch", "100", "--ack-wait", "30", "--decisions", str(out)]
    common += ["--lease-ttl", "2"]
    worker = subprocess.Popen([*BG, "worker", *common], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not out.exists() or len(out.read_text()) < 4000):
        time.sleep(0.02)
    worker.send_signal(signal.SIGTERM)
    _, err = worker.communicate(timeout=30)
    assert worker.returncode == 0 and "worker:" in err
    before = len(out.read_text().splitlines())
    assert 0 < before < len(embedded)
    # ack_wait is 30 s: finishing within a few seconds shows nothing was left unacknowledged
    rest = subprocess.run(
        [*BG, "worker", *common, "--idle-exit", "2"], capture_output=True, text=True, timeout=25
    )
    assert "0 redelivered events skipped" in rest.stderr
    lines = out.read_text().splitlines()
    assert len(lines) == len(embedded)  # no line twice: the stopped worker acked what it wrote
    assert sorted(decided(out)) == sorted(embedded)


def test_ingest_reads_stdin_and_names_a_bad_line(run, names) -> None:
    path, _ = run
    head = b"".join(path.read_bytes().splitlines(keepends=True)[:5])
    ok = subprocess.run(
        [*BG, "ingest", "-", *names.cli(4)],
        input=head,
        capture_output=True,
        check=True,
    )
    assert b"published 5 events" in ok.stderr
    bad = head + b'{"type":"login","id":"x"}\n'
    failed = subprocess.run([*BG, "ingest", "-", *names.cli(4)], input=bad, capture_output=True)
    assert failed.returncode == 2 and b"line 6" in failed.stderr
    other = subprocess.run([*BG, "ingest", "-", *names.cli(16)], input=head, capture_output=True)
    assert other.returncode == 2 and b"has 4 partitions, not 16" in other.stderr
    missing = subprocess.run([*BG, "ingest", "/nonexistent.ndjson"], capture_output=True)
    assert missing.returncode == 2 and b"no such events file" in missing.stderr


def stream_messages(stream: str) -> int | None:
    """How many messages the stream holds; None when there is no such stream."""
    import nats

    async def look() -> int | None:
        nc = await nats.connect(NATS_URL)
        try:
            info = await nc.jetstream().stream_info(stream)
        except nats.js.errors.NotFoundError:
            return None
        finally:
            await nc.close()
        return info.state.messages

    return asyncio.run(look())


def test_a_refused_file_creates_no_stream_and_publishes_nothing(run, names, tmp_path) -> None:
    """``ingest`` created the stream, then read the file: a file refused at a bad line left an
    empty stream behind (the name taken, with its partitions), and with more lines before the
    bad one than its publishing window (512), those published. Now a file is read and checked
    whole first: a refused file creates nothing, and adds nothing to a stream that exists. A
    pipe is published as it comes (see the next test): a bad first line creates nothing."""
    path, _ = run
    rows = path.read_bytes().splitlines(keepends=True)
    assert len(rows) > 700
    bad = b"".join(rows[:600]) + b'{"type":"login","id":"x"}\n' + b"".join(rows[600:700])
    (tmp_path / "bad.ndjson").write_bytes(bad)
    failed = subprocess.run(
        [*BG, "ingest", str(tmp_path / "bad.ndjson"), *names.cli(4)], capture_output=True
    )
    assert failed.returncode == 2 and b"line 601" in failed.stderr, failed.stderr
    assert stream_messages(names.stream) is None  # it was created (and held the first 512)
    piped = subprocess.run(
        [*BG, "ingest", "-", *names.cli(4)],
        input=bad[bad.index(b'{"type":"login","id":"x"}') :],
        capture_output=True,
    )
    assert piped.returncode == 2 and b"line 1" in piped.stderr, piped.stderr
    assert stream_messages(names.stream) is None

    head = b"".join(rows[:3])
    subprocess.run([*BG, "ingest", "-", *names.cli(4)], input=head, check=True, capture_output=True)
    held = stream_messages(names.stream)
    assert held  # the three events and the epoch markers
    again = subprocess.run(
        [*BG, "ingest", str(tmp_path / "bad.ndjson"), *names.cli(4)], capture_output=True
    )
    assert again.returncode == 2 and b"line 601" in again.stderr
    assert stream_messages(names.stream) == held


def test_a_pipe_is_published_as_it_comes_not_when_it_ends(run, names) -> None:
    """``ingest -`` is how a log shipper feeds the stream, a pipe that may never end: its events
    must reach the workers while it is open. (Checking the whole input before publishing held a
    pipe's events until it closed.) A bad line stops it there; what came before stays."""
    path, _ = run
    rows = path.read_bytes().splitlines(keepends=True)[:600]
    shipper = subprocess.Popen(
        [*BG, "ingest", "-", *names.cli(4)], stdin=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert shipper.stdin is not None
        shipper.stdin.write(b"".join(rows))
        shipper.stdin.flush()
        deadline = time.monotonic() + 30
        while not stream_messages(names.stream) and time.monotonic() < deadline:
            time.sleep(0.2)
        published = stream_messages(names.stream)
        assert published and published >= 512  # the first window, with the pipe still open
        assert shipper.poll() is None
        shipper.stdin.write(b'{"type":"login","id":"x"}\n')
        shipper.stdin.close()
        assert shipper.wait(timeout=30) == 2
        assert shipper.stderr is not None and b"line 601" in shipper.stderr.read()
        assert stream_messages(names.stream) >= 600  # what came before the bad line stays
    finally:
        if shipper.poll() is None:
            shipper.kill()
            shipper.wait()
        if shipper.stderr is not None:
            shipper.stderr.close()


def test_a_file_that_cannot_be_written_or_read_is_named_not_taken_for_nats(
    run, names, tmp_path
) -> None:
    """Any ``OSError`` of a whole worker run was reported as "cannot reach NATS at ...": a full
    disk under the ``--decisions`` file, or its directory missing, sent the operator to look
    at NATS. Only a failure to reach NATS says so now; any other names what failed (the file
    and the system's word), still exit status 2 and no traceback. ``ingest`` too."""
    path, _ = run
    head = b"".join(path.read_bytes().splitlines(keepends=True)[:2100])  # decisions from 2032
    subprocess.run(
        [*BG, "ingest", "-", *names.cli(PARTS)], input=head, check=True, capture_output=True
    )
    common = [*names.cli(PARTS), "--prefix", names.prefix, "--durable", names.durable]
    common += ["--idle-exit", "1", "--lease-ttl", "1.5"]
    missing = tmp_path / "no-such-dir" / "d.ndjson"
    for out, said in (("/dev/full", "No space left on device"), (str(missing), "No such file")):
        done = subprocess.run(
            [*BG, "worker", *common, "--decisions", out],
            capture_output=True,
            text=True,
            timeout=120,
        )
        err = " ".join(done.stderr.split())
        assert done.returncode == 2, done.stderr[-2000:]
        assert "NATS" not in err and "Traceback" not in err, err
        assert f"{out}: " in err and said in err, err
    # a source that cannot be read (procfs: reading a process's memory at 0 fails with EIO)
    unreadable = subprocess.run(
        [*BG, "ingest", "/proc/self/mem", *names.cli(PARTS)], capture_output=True, text=True
    )
    err = " ".join(unreadable.stderr.split())
    assert unreadable.returncode == 2 and "Traceback" not in err, err
    assert "NATS" not in err and "cannot publish" not in err, err
    assert "/proc/self/mem: " in err and "Input/output error" in err, err


@pytest.mark.parametrize("command", [["status"], ["ingest", "-"], ["worker", "--idle-exit", "1"]])
def test_a_scale_out_command_with_no_nats_server_there_exits_2_at_once(command, run) -> None:
    """Named at an address where no server listens, a command says so and exits: it retried
    for two minutes, a traceback per attempt (a monitoring check with ``status`` hung)."""
    path, _ = run
    head = b"".join(path.read_bytes().splitlines(keepends=True)[:5])
    done = subprocess.run(
        [*BG, *command, "--nats", "nats://127.0.0.1:1"],
        input=head,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr[-500:]
    assert b"nats://127.0.0.1:1" in done.stderr  # the server named
    assert b"Traceback" not in done.stderr


def test_a_batch_decided_from_state_lost_mid_batch_writes_no_record(
    run, on_published, tmp_path, pg_url, monkeypatch
) -> None:
    """Redis loses a partition's keys in the middle of a batch: the batch is decided from the
    missing state, the check before its records fails and it is given back, and the partition is
    rebuilt from the stream. None of the lost batch's decisions may reach PostgreSQL (another
    partition's next batch wrote them, and the rebuilt partition's were then dropped as known)."""
    from brokerguard.cluster import worker as worker_module
    from brokerguard.stores.redis import RedisState

    path, embedded = run
    names = on_published  # the module's stream, read through consumers of its own
    monkeypatch.setattr(worker_module, "PARTITION_CACHE", 1)  # records read again every batch
    real_prefetch = RedisState.prefetch
    calls = {"n": 0, "lost": 0}

    def losing(self, wanted):
        wanted = list(wanted)
        if self.prefix == f"{names.prefix}:0":
            calls["n"] += 1
            accounts = sum(1 for kind, _ in wanted if kind == "account")
            if calls["n"] > 60 and accounts >= 10 and not calls["lost"]:
                # mid-run, a batch of account events: partition 0's keys are gone from Redis
                calls["lost"] = 1
                self.redis.delete(*self.redis.scan_iter(match=f"{self.prefix}:*"))
        return real_prefetch(self, wanted)

    monkeypatch.setattr(RedisState, "prefetch", losing)
    stats = work(names, tmp_path / "d.ndjson", batch=100, idle_exit=2.5, database=pg_url)
    assert calls["lost"] and stats.lost >= 1 and stats.rebuilt == 1
    rows = table_decisions(pg_url)
    assert len(rows) == len({r[0] for r in rows})
    assert sorted(rows) == sorted(embedded)


def test_a_partition_taken_again_leaves_no_old_state_in_memory(
    run, on_published, tmp_path, monkeypatch
):
    """Each time a worker takes a partition it opens a new state, with a cache of up to
    ``PARTITION_CACHE`` records; the state of a partition it gave back must be freed, or every
    handover (a rebalance, a lapsed lease) leaves a cache behind for good."""
    import gc
    import weakref

    from brokerguard.stores.redis import RedisState

    path, embedded = run
    names = on_published  # the module's stream, read through consumers of its own
    opened: list[weakref.ref] = []
    live: list[int] = []  # partition 0's states alive, looked at before its batches
    real_init, real_prefetch = RedisState.__init__, RedisState.prefetch
    batches = {"n": 0}

    def init(self, *args, **kw):
        real_init(self, *args, **kw)
        opened.append(weakref.ref(self))

    def prefetch(self, wanted):
        wanted = list(wanted)
        if self.prefix == f"{names.prefix}:0" and ("population", "all") in wanted:
            batches["n"] += 1
            if batches["n"] % 5 == 0 and len(live) < 6:
                gc.collect()
                live.append(sum(1 for r in opened if (s := r()) and s.prefix == self.prefix))
                self.redis.delete(f"{names.prefix}:lease:0")  # the lease lapses mid-batch
        return real_prefetch(self, wanted)

    monkeypatch.setattr(RedisState, "__init__", init)
    monkeypatch.setattr(RedisState, "prefetch", prefetch)
    out = tmp_path / "d.ndjson"
    stats = work(names, out, batch=100, idle_exit=2.5)
    assert stats.lost >= 6 and len(live) == 6
    assert max(live) == 1, live  # only the state open now
    assert sorted(decided(out)) == sorted(embedded)


def test_a_long_running_worker_keeps_its_figures_bounded(run, on_published, tmp_path, monkeypatch):
    """The per-decision latencies and per-batch times are kept for the final figures: a worker
    that runs for weeks keeps only the latest ``FIGURES_KEPT`` (here 40), not every decision's."""
    from brokerguard.cluster import worker as worker_module

    path, embedded = run
    names = on_published  # the module's stream, read through consumers of its own
    monkeypatch.setattr(worker_module, "FIGURES_KEPT", 40, raising=False)
    stats = work(names, tmp_path / "d.ndjson", batch=20, idle_exit=1.0)
    assert stats.decisions == len(embedded) > 200 and stats.batches > 200
    assert 40 <= len(stats.latencies) <= 80 and 40 <= len(stats.batch_seconds) <= 80
