"""Analyst conclusions reach the workers of the scale-out mode, in stream order.

The service writes an analyst's conclusion as an ``analyst`` event (see
:class:`brokerguard.events.AnalystAction`) and publishes it like any other: an account's own to
the account's partition, a confirmed fraud (whose infrastructure concerns every account) to every
partition. Here a recorded run gets such events mid-stream; a real worker on NATS and Redis must
decide exactly what ``replay --partitions 4`` decides from the same file, and that must differ
from the run without them, also on a partition other than the victim's.
"""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from cluster_helpers import decisions, fresh_names, read_events, recorded_run

from brokerguard.cluster.partition import partition_of
from brokerguard.events import AnalystAction, Event, LoginAttempt, write_ndjson

BG = [sys.executable, "-m", "brokerguard"]
PARTS = 4


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


def test_a_worker_hears_analyst_events_as_replay_does(tmp_path: Path) -> None:
    events = read_events(recorded_run(tmp_path / "run", investors=200))
    concluded, later = with_conclusions(events)
    path = tmp_path / "with-analyst.ndjson"
    with open(path, "wb") as f:
        write_ndjson(f, concluded)

    def replay(source: Path, out: Path) -> list[tuple]:
        subprocess.run(
            [*BG, "replay", str(source), "--partitions", str(PARTS), "--out", str(out)],
            check=True,
            capture_output=True,
        )
        return decisions(out / "decisions.ndjson")

    expected = replay(path, tmp_path / "ref")
    without = replay(tmp_path / "run" / "events.ndjson", tmp_path / "ref-plain")
    changed = {row[0] for row in set(expected) ^ set(without)}
    assert changed & later  # the confirmed address counts in another partition

    with fresh_names() as names:
        subprocess.run(
            [*BG, "ingest", str(path), *names.cli(PARTS)], check=True, capture_output=True
        )
        run = subprocess.run(
            [
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
                str(tmp_path / "d.ndjson"),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, run.stderr
    assert decisions(tmp_path / "d.ndjson") == expected
