"""Analyst conclusions reach the workers of the scale-out mode, in stream order.

The service writes an analyst's conclusion as an ``analyst`` event (see
:class:`brokerguard.events.AnalystAction`) and publishes it like any other: an account's own to
the account's partition, a confirmed fraud or a dismissed campaign (which concern every account)
to every partition. Here a recorded run gets such events mid-stream; real workers on NATS and
Redis (with the campaign stage, for a dismissal of a stage's campaign) must decide exactly what
``replay --partitions 4`` decides from the same file, and that must differ from the run without
them.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from cluster_helpers import (
    Names,
    decisions,
    fresh_names,
    read_events,
    recorded_run,
    redis_client,
    stop_when_drained,
)

from brokerguard.cluster.partition import PartitionedGuard, partition_of
from brokerguard.cluster.staged import StagedGuard
from brokerguard.cluster.stream import WITH_ANALYST_HINT, _lines
from brokerguard.events import (
    ANALYST_EVENT_REFUSED,
    AnalystAction,
    Event,
    EventError,
    LoginAttempt,
    write_ndjson,
)

BG = [sys.executable, "-m", "brokerguard"]
PARTS = 4
EPOCH = 600.0


@pytest.fixture(scope="module")
def events(tmp_path_factory) -> list[Event]:
    return read_events(recorded_run(tmp_path_factory.mktemp("run"), investors=200))


@pytest.fixture(scope="module")
def plain(events: list[Event], tmp_path_factory) -> tuple[Path, list[tuple]]:
    """The recorded run's file and its replay's decisions on the partitions, made once."""
    out = tmp_path_factory.mktemp("plain")
    path = written(events, out / "events.ndjson")
    return path, replay(path, out / "ref")


def in_process(guard, events: list[Event]) -> dict[str, tuple]:
    """Decisions of a reference guard run in this process (event id -> action, score)."""
    out: dict[str, tuple] = {}
    guard.trace = lambda e, signals, d: out.__setitem__(e.id, (d.action, d.score))
    for e in events:
        guard.decide(e) if hasattr(e, "account") else guard.observe(e)
    return out


def with_dismissal(events: list[Event], make: Callable[[], object]) -> list[Event]:
    """The run with a dismissal, 20 minutes after it was raised, of the first campaign (of the
    reference ``make`` builds) whose dismissal changes a decision."""
    plain = in_process(make(), events)
    guard = make()
    in_process(guard, events)
    for camp in sorted(guard.campaign_records(), key=lambda c: c["raised_at"]):
        raised = datetime.fromisoformat(camp["raised_at"])
        i = next(i for i, e in enumerate(events) if e.ts >= raised + timedelta(minutes=20))
        dismissal = AnalystAction(
            id=f"analyst-d-{camp['id']}",
            ts=events[i - 1].ts,
            action="dismiss_campaign",
            campaign=camp["id"],
        )
        changed = [*events[:i], dismissal, *events[i:]]
        if in_process(make(), changed) != plain:
            return changed
    raise AssertionError("no campaign of the recorded run whose dismissal changes a decision")


def replay(source: Path, out: Path, *extra: str) -> list[tuple]:
    subprocess.run(
        [*BG, "replay", str(source), "--partitions", str(PARTS), "--out", str(out), *extra],
        check=True,
        capture_output=True,
    )
    return decisions(out / "decisions.ndjson")


def written(events: list[Event], path: Path) -> Path:
    with open(path, "wb") as f:
        write_ndjson(f, events)
    return path


def worker_args(names: Names, out: Path) -> list[str]:
    return [
        *BG,
        "worker",
        *names.cli(PARTS),
        "--prefix",
        names.prefix,
        "--durable",
        names.durable,
        "--idle-exit",
        "3",
        "--decisions",
        str(out),
    ]


def work(names: Names, out: Path) -> str:
    """A worker on the stream until every message is acknowledged; its standard error."""
    worker = subprocess.Popen(
        worker_args(names, out), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )
    return stop_when_drained([worker], names, PARTS)[0]


def with_conclusions(events: list[Event]) -> tuple[list[Event], set[str]]:
    """The run with a confirmed fraud on the first sign-in whose address later signs in to an
    account of another partition, and a forced re-verification of that later account; returns
    the events and the ids of the later sign-ins from that address in other partitions."""
    logins = [(i, e) for i, e in enumerate(events) if isinstance(e, LoginAttempt)]
    by_ip: dict[str, list[tuple[int, LoginAttempt]]] = defaultdict(list)
    for i, e in logins:
        by_ip[e.ip].append((i, e))
    for i, first in logins:
        p = partition_of(first, PARTS)
        later = [(j, e) for j, e in by_ip[first.ip] if j > i and partition_of(e, PARTS) != p]
        if later:
            break
    else:
        raise AssertionError("the recorded run has no address shared across partitions")
    fraud = AnalystAction(id="analyst-1", ts=first.ts, action="confirm_fraud", login=first)
    other = later[0][1].account
    reverify = AnalystAction(id="analyst-2", ts=first.ts, action="force_reverify", account=other)
    out = [*events[: i + 1], fraud, reverify, *events[i + 1 :]]
    return out, {e.id for _, e in later}


def test_ingest_refuses_an_analyst_line_in_the_words_of_the_service() -> None:
    """The one refusal (field ``type``, the analyst API and the console named) that
    ``/v1/events`` and ``/v1/decide`` give, with ingest's own way out after it."""
    trust = (
        b'{"type":"analyst","id":"a1","ts":"2025-03-20T10:00:00+09:00",'
        b'"action":"trust_device","account":"A1","device":"ck-1"}'
    )
    with pytest.raises(EventError) as refused:
        list(_lines([b"", trust], analyst=False))
    assert (refused.value.field, refused.value.line) == ("type", 2)
    assert str(refused.value) == f"line 2: {ANALYST_EVENT_REFUSED}; {WITH_ANALYST_HINT}"
    assert [n for n, _, _ in _lines([b"", trust], analyst=True)] == [2]


def test_a_worker_hears_analyst_events_as_replay_does(
    events: list[Event], plain: tuple[Path, list[tuple]], tmp_path: Path
) -> None:
    concluded, later = with_conclusions(events)
    concluded = with_dismissal(concluded, lambda: PartitionedGuard(PARTS))
    path = written(concluded, tmp_path / "with-analyst.ndjson")
    expected = replay(path, tmp_path / "ref")
    without = plain[1]
    changed = {row[0] for row in set(expected) ^ set(without)}
    assert changed & later  # the confirmed address counts in another partition

    with fresh_names() as names:
        feed = subprocess.run(
            [*BG, "ingest", str(path), *names.cli(PARTS)], capture_output=True, text=True
        )
        assert feed.returncode == 2  # a feed may not carry analysts' conclusions ...
        said = " ".join(feed.stderr.split())
        assert f"{ANALYST_EVENT_REFUSED}; {WITH_ANALYST_HINT}" in said and "line " in said
        subprocess.run(  # ... an export of the service's records may
            [*BG, "ingest", str(path), *names.cli(PARTS), "--with-analyst"],
            check=True,
            capture_output=True,
        )
        work(names, tmp_path / "d.ndjson")
    assert decisions(tmp_path / "d.ndjson") == expected


def test_a_dismissal_reaches_the_campaign_stage_as_in_the_staged_replay(
    events: list[Event], tmp_path: Path
) -> None:
    """Two stage shards (ids ``K0-``/``K1-``): the dismissal goes to both, frees the campaign's
    keys from the next epoch, and the workers see it through the stage's output in Redis."""
    dismissed = with_dismissal(events, lambda: StagedGuard(PARTS, shards=2, epoch_seconds=EPOCH))
    path = written(dismissed, tmp_path / "dismissed.ndjson")
    staged = ["--campaign-stage", "--stage-shards", "2", "--epoch-seconds", str(EPOCH)]
    expected = replay(path, tmp_path / "ref", *staged)
    assert expected != replay(written(events, tmp_path / "plain.ndjson"), tmp_path / "r0", *staged)

    with fresh_names() as names:
        subprocess.run(
            [*BG, "ingest", str(path), *names.cli(PARTS), "--epoch-seconds", str(EPOCH)]
            + ["--with-analyst"],
            check=True,
            capture_output=True,
        )
        stage_args = ["--partitions", str(PARTS), "--prefix", names.prefix, "--stage-shards", "2"]
        stage_args += ["--facts-stream", names.facts_stream, "--facts-subject", names.facts_subject]
        stage_args += ["--stage-durable", f"st{names.durable}", "--lease-ttl", "1.5"]
        stages = [
            subprocess.Popen(
                [*BG, "campaign-stage", *stage_args, "--shard", str(s)],
                stderr=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                text=True,
            )
            for s in range(2)
        ]
        args = worker_args(names, tmp_path / "d.ndjson")
        args += ["--facts-stream", names.facts_stream, "--facts-subject", names.facts_subject]
        args += ["--campaign-stage", "--stage-shards", "2", "--lease-ttl", "1.5"]
        worker = subprocess.Popen(
            args, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
        )
        stop_when_drained([worker], names, PARTS, stage_shards=2)
        for proc in stages:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=30)
            assert proc.returncode == 0, err
        # the containment the dismissal lifted is no longer kept: only one release of the
        # campaign stays (the partitions' view must still know it was dismissed)
        (cid,) = [e.campaign for e in dismissed if isinstance(e, AnalystAction)]
        changes = redis_client().hgetall(f"{names.prefix}:stage:changes")
        kept = [v.decode() for v in changes.values() if v.decode().rpartition("|")[0] == cid]
        assert changes and kept == [f"{cid}|-"], kept
    assert decisions(tmp_path / "d.ndjson") == expected


def test_a_message_that_is_no_event_is_passed_over_not_stopped_at(
    plain: tuple[Path, list[tuple]], tmp_path: Path
) -> None:
    """Something other than ``ingest`` or the service published junk into a partition: the
    worker logs it, acknowledges it and goes on; it does not stop the partition for good."""
    import asyncio

    import nats
    from cluster_helpers import NATS_URL

    path, expected = plain
    with fresh_names() as names:
        subprocess.run(
            [*BG, "ingest", str(path), *names.cli(PARTS)], check=True, capture_output=True
        )

        async def junk() -> None:
            nc = await nats.connect(NATS_URL)
            js = nc.jetstream()
            await js.publish(f"{names.subject}.1", b'{"type":"login","id":"x"}')
            await js.publish(f"{names.subject}.2", b"\x00 not json")
            await nc.close()

        asyncio.run(junk())
        stderr = work(names, tmp_path / "d.ndjson")
    assert "2 unreadable messages passed over" in " ".join(stderr.split())
    assert "not an event, passed over" in stderr and "stream sequence" in stderr
    assert decisions(tmp_path / "d.ndjson") == expected
