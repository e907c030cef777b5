"""Two workers on the real NATS JetStream, Redis and PostgreSQL, as separate processes.

The reference is ``brokerguard replay --partitions 4`` (embedded, one engine per partition, as
the cluster runs): the two workers' decisions, alerts and campaigns — in their files and in the
service's tables — must equal it, while partitions move between the workers (the second joins
mid-run), and when one of them is killed with SIGKILL mid-run and the other finishes alone.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
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
    decisions,
    final_campaigns,
    fresh_names,
    lines,
    pg_database,
    recorded_run,
    redis_client,
    stop_when_drained,
)

from brokerguard.cluster.status import cluster_status

BG = [sys.executable, "-m", "brokerguard"]
PARTS = 4


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, Path]:
    """The recorded run's events and the embedded replay of it on 4 partitions (its directory)."""
    path = recorded_run(tmp_path_factory.mktemp("run"))
    out = tmp_path_factory.mktemp("replay")
    subprocess.run(
        [*BG, "replay", str(path), "--partitions", str(PARTS), "--out", str(out)],
        check=True,
        capture_output=True,
    )
    return path, out


@pytest.fixture(scope="module")
def ingested(reference) -> Iterator[Names]:
    """The recorded run ingested once for the module: the tests read it through consumers of
    their own (their own Redis prefix and durable names)."""
    with fresh_names() as n:
        subprocess.run(
            [*BG, "ingest", str(reference[0]), *n.cli(PARTS)], check=True, capture_output=True
        )
        yield n


@pytest.fixture
def names(ingested) -> Iterator[Names]:
    with fresh_names(ingested) as n:
        yield n


@pytest.fixture
def own_names() -> Iterator[Names]:
    """A stream of the test's own, for a test of ``ingest`` itself."""
    with fresh_names() as n:
        yield n


@pytest.fixture
def pg_url() -> Iterator[str]:
    with pg_database() as url:
        yield url


def campaigns(*paths: Path) -> list[tuple]:
    """Campaign lines: each time a campaign took on a symbol (id, when, its symbols by then).

    The accounts a line lists are those known when it was written — at the end of an embedded
    replay, after each batch on the cluster — so they are compared through PostgreSQL instead.
    """
    return sorted({(c["id"], c["raised_at"], json.dumps(c["symbols"])) for c in lines(*paths)})


def tables(url: str) -> tuple[list[tuple], list[str], dict[str, tuple]]:
    """Decisions (event, action, score), alerted events and campaigns in PostgreSQL."""
    import sqlalchemy as sa

    from brokerguard.service.db import make_engine

    engine = make_engine(url)
    with engine.connect() as conn:
        rows = [
            tuple(r) for r in conn.execute(sa.text("SELECT event_id, action, score FROM decisions"))
        ]
        alerted = list(conn.scalars(sa.text("SELECT event_id FROM alerts")))
        camps = {
            engine_id: (sorted(symbols), sorted(accounts), sorted(infrastructure))
            for engine_id, symbols, accounts, infrastructure in conn.execute(
                sa.text("SELECT engine_id, symbols, accounts, infrastructure FROM campaigns")
            )
        }
    engine.dispose()
    return rows, alerted, camps


def messages(path: Path) -> int:
    """Messages in the stream: each account event once, each market event once per partition."""
    from brokerguard.cluster.partition import partition_of
    from brokerguard.events import read_ndjson

    with open(path, "rb") as f:
        return sum(PARTS if partition_of(e, PARTS) is None else 1 for e in read_ndjson(f))


def worker(names: Names, tmp: Path, tag: str, *extra: str) -> subprocess.Popen:
    args = [*names.cli(PARTS), "--prefix", names.prefix, "--durable", names.durable]
    args += ["--batch", "50", "--ack-wait", "3", "--lease-ttl", "1.5"]
    args += [
        "--decisions",
        str(tmp / f"d-{tag}.ndjson"),
        "--campaigns",
        str(tmp / f"c-{tag}.ndjson"),
    ]
    return subprocess.Popen(
        [*BG, "worker", *args, *extra], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )


def wait_for_output(path: Path, size: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (not path.exists() or path.stat().st_size < size):
        time.sleep(0.02)
    assert path.exists() and path.stat().st_size >= size


def summary(stderr: str) -> dict[str, int]:
    text = " ".join(stderr.split())
    found = re.search(
        r"worker: ([\d,]+) events.* taken (\d+), handed over (\d+), lost (\d+), rebuilt (\d+)",
        text,
    )
    assert found, stderr
    n = [int(g.replace(",", "")) for g in found.groups()]
    return dict(zip(("events", "taken", "released", "lost", "rebuilt"), n, strict=True))


def test_two_workers_decide_what_the_partitioned_embedded_engine_does(
    reference, names, pg_url, tmp_path
) -> None:
    path, ref = reference
    db = ["--database", pg_url, "--idle-exit", "4"]
    first = worker(names, tmp_path, "a", *db)
    wait_for_output(tmp_path / "d-a.ndjson", 2000)  # the first holds every partition by now
    second = worker(names, tmp_path, "b", *db)
    a, b = (summary(err) for err in stop_when_drained([first, second], names, PARTS))
    # the second joined mid-run: the first handed partitions over, and both did work
    assert a["taken"] == PARTS and a["released"] >= PARTS // 2 and b["taken"] >= 1
    assert a["events"] > 0 and b["events"] > 0
    assert a["rebuilt"] == b["rebuilt"] == 0  # handing over is no Redis loss
    if a["lost"] == b["lost"] == 0:  # (a lease can lapse on a loaded machine: redone, legitimately)
        assert a["events"] + b["events"] == messages(path)  # nothing processed twice
    files = (tmp_path / "d-a.ndjson", tmp_path / "d-b.ndjson")
    expected = decisions(ref / "decisions.ndjson")
    assert decisions(*files) == expected
    assert campaigns(tmp_path / "c-a.ndjson", tmp_path / "c-b.ndjson") == campaigns(
        ref / "campaigns.ndjson"
    )
    rows, alerted, camps = tables(pg_url)
    assert len(rows) == len({r[0] for r in rows}) and sorted(rows) == expected
    assert sorted(alerted) == sorted(x["event"] for x in lines(ref / "alerts.ndjson"))
    assert camps == final_campaigns(ref / "campaigns.ndjson") and len(camps) > 1


def test_sigkill_one_of_two_workers_the_survivor_finishes(reference, names, tmp_path) -> None:
    path, ref = reference
    # stopped once every message is acknowledged; should it run dry before taking the dead's
    # share, its idle exit (longer than a lease and a redelivery) stops it later, and the
    # decisions miss that share
    survivor = worker(names, tmp_path, "a", "--idle-exit", "7")
    victim = worker(names, tmp_path, "b")
    wait_for_output(tmp_path / "d-b.ndjson", 3000)  # the victim holds partitions and works
    os.kill(victim.pid, signal.SIGKILL)
    victim.communicate(timeout=30)
    killed_at = len(lines(tmp_path / "d-a.ndjson", tmp_path / "d-b.ndjson"))
    expected = decisions(ref / "decisions.ndjson")
    assert 0 < killed_at < len(expected)  # killed in the middle
    s = summary(stop_when_drained([survivor], names, PARTS)[0])
    assert s["taken"] > PARTS // 2  # its own share, then the dead worker's
    assert decisions(tmp_path / "d-a.ndjson", tmp_path / "d-b.ndjson") == expected
    assert campaigns(tmp_path / "c-a.ndjson", tmp_path / "c-b.ndjson") == campaigns(
        ref / "campaigns.ndjson"
    )


def test_status_metrics_config_and_a_graceful_stop(reference, own_names, tmp_path) -> None:
    import urllib.request

    from servers import free_port

    path, _ = reference
    names = own_names  # ingest is part of the test: a stream of its own
    config = tmp_path / "cluster.toml"
    config.write_text(
        f'[cluster]\nstream = "{names.stream}"\nsubject = "{names.subject}"\n'
        f'partitions = {PARTS}\ndurable = "{names.durable}"\nprefix = "wrong-{names.prefix}"\n'
        "batch = 50\nlease_ttl = 1.5\n"
    )
    env = {**os.environ, "BROKERGUARD_CONFIG": str(config), "BROKERGUARD_PREFIX": names.prefix}
    run = {"capture_output": True, "text": True, "env": env}
    subprocess.run([*BG, "ingest", str(path)], check=True, **run)  # stream etc. from the file
    before = subprocess.run([*BG, "status", "--json"], **run)
    assert before.returncode == 1  # work waiting and nobody to do it
    st = json.loads(before.stdout)
    assert st["partitions"] == PARTS and st["workers"] == {} and not st["healthy"]
    port = free_port()
    w = subprocess.Popen(
        [*BG, "worker", "--metrics-port", str(port), "--decisions", str(tmp_path / "d.ndjson")],
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    wait_for_output(tmp_path / "d.ndjson", 2000)
    during = json.loads(subprocess.run([*BG, "status", "--json"], **run).stdout)
    (alive,) = during["workers"]  # the one worker, holding every partition
    assert {r["owner"] for r in during["partition"]} == {alive} and during["healthy"]
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    for name in (
        "brokerguard_worker_events_total",
        "brokerguard_worker_decision_latency_seconds_bucket",
        "brokerguard_worker_lag_events",
        "brokerguard_worker_redeliveries_total",
    ):
        assert name in text
    events = sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("brokerguard_worker_events_total{")
    )
    assert events > 0
    # let it finish, then SIGTERM: it acknowledges its batch and releases its partitions
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        st = asyncio.run(
            cluster_status(
                NATS_URL,
                REDIS_URL,
                prefix=names.prefix,
                stream=names.stream,
                durable=names.durable,
            )
        )
        if st["lag"] == 0 and all(r["ack_pending"] == 0 for r in st["partition"]):
            break
        time.sleep(0.2)
    w.send_signal(signal.SIGTERM)
    assert "worker:" in w.communicate(timeout=30)[1] and w.returncode == 0
    after = subprocess.run([*BG, "status"], **run)
    assert after.returncode == 0 and "healthy" in after.stdout
    st = json.loads(subprocess.run([*BG, "status", "--json"], **run).stdout)
    assert st["workers"] == {} and all(r["owner"] is None for r in st["partition"])
    assert all(r["state_in_redis"] and r["lag"] == 0 for r in st["partition"])
    assert redis_client().exists(f"{names.prefix}:0:meta")  # the environment beat the file
    # a key no command knows is an error naming it
    config.write_text("[cluster]\nbatchsize = 5\n")
    bad = subprocess.run([*BG, "worker"], **run)
    assert bad.returncode == 2 and "unknown key `batchsize`" in bad.stderr


WIPE = "for _, k in ipairs(redis.call('keys', ARGV[1])) do redis.call('del', k) end return 1"


def test_redis_losing_everything_mid_run_is_rebuilt_from_the_stream(
    reference, names, pg_url, tmp_path
) -> None:
    """Documented behaviour: a partition whose consumer delivered events but whose state is
    gone from Redis is replayed from the start of the stream; the results equal the embedded
    run, and no decision row is written twice."""
    path, ref = reference
    w = worker(names, tmp_path, "a", "--database", pg_url, "--idle-exit", "5")
    wait_for_output(tmp_path / "d-a.ndjson", 4000)
    client = redis_client()
    assert client.exists(f"{names.prefix}:0:meta")
    client.eval(WIPE, 0, f"{names.prefix}:*")  # at once, as a Redis that lost its data
    s = summary(stop_when_drained([w], names, PARTS)[0])
    expected = decisions(ref / "decisions.ndjson")
    assert decisions(tmp_path / "d-a.ndjson") == expected  # each event's lines agree
    rows, alerted, camps = tables(pg_url)
    assert len(rows) == len({r[0] for r in rows}) and sorted(rows) == expected
    assert sorted(alerted) == sorted(x["event"] for x in lines(ref / "alerts.ndjson"))
    assert camps == final_campaigns(ref / "campaigns.ndjson")
    assert s["rebuilt"] >= 1 and s["lost"] >= 1


def test_a_worker_runs_the_policy_it_is_given_like_replay_does(reference, names, tmp_path) -> None:
    from console_helpers import hold_policy

    path, _ = reference
    policy = hold_policy(tmp_path / "hold.toml")  # every new order held
    bad = tmp_path / "bad.toml"
    bad.write_text(policy.read_text().replace("[order]\nprior = 40.0", "[order]\nprior = 'x'"))
    refused = subprocess.run(
        [*BG, "worker", *names.cli(PARTS), "--policy", str(bad)], capture_output=True, text=True
    )
    assert refused.returncode == 2 and "order.prior" in refused.stderr

    ref = tmp_path / "replay"
    subprocess.run(
        [
            *BG,
            "replay",
            str(path),
            "--partitions",
            str(PARTS),
            "--policy",
            str(policy),
            "--out",
            str(ref),
        ],
        check=True,
        capture_output=True,
    )
    one = worker(names, tmp_path, "p", "--idle-exit", "3", "--policy", str(policy))
    stop_when_drained([one], names, PARTS)
    got = decisions(tmp_path / "d-p.ndjson")
    assert got == decisions(ref / "decisions.ndjson")
    default = decisions(reference[1] / "decisions.ndjson")  # the shipped policy's
    holds = sum(action == "hold" for _, action, _ in got)
    assert holds > sum(action == "hold" for _, action, _ in default)  # the policy, not the default
