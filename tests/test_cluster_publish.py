"""``serve --nats``: the service publishes what it takes and decides, on the real NATS JetStream.

The stream must hold the events the service took, in the engine's order, on the subjects
``ingest`` would use and with the event ids as message ids (so ``ingest`` of the same events
adds nothing), the decision points carrying the service's answer in headers, and a decision
record on ``<subject>.decisions``. NATS unreachable at start, or going away (a nats-server of
the test's own, killed), must not fail or slow a decision; a full outbox counts its drops.
A worker consuming what the service published keeps the service's answer beside its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
import sqlalchemy as sa
from cluster_helpers import (
    NATS_URL,
    REDIS_URL,
    Names,
    fresh_names,
    pg_database,
    read_events,
    recorded_run,
)
from fastapi.testclient import TestClient
from servers import nats_server

from brokerguard.cluster.partition import partition_of
from brokerguard.cluster.stream import DEFAULT_EPOCH_SECONDS, EpochClock, epoch_marker, ingest
from brokerguard.cluster.worker import run_worker
from brokerguard.events import AnalystAction, Event, LoginAttempt, decode_line, encode
from brokerguard.guard import decision_point
from brokerguard.service.app import create_app
from brokerguard.service.db import make_engine, migrate, write_transaction
from brokerguard.service.keys import create_key
from brokerguard.service.models import decisions
from brokerguard.service.runtime import Settings

BG = [sys.executable, "-m", "brokerguard"]
PARTS = 4
EVENTS = 600  # events of the recorded run: market bars, sign-ins, orders, snapshots


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> list[Event]:
    """From the first account's event on (before it: only the instruments' listings)."""
    every = read_events(recorded_run(tmp_path_factory.mktemp("run"), investors=80, days=3))
    first = next(i for i, e in enumerate(every) if getattr(e, "account", None))
    return every[first : first + EVENTS]


@pytest.fixture
def names() -> Iterator[Names]:
    with fresh_names() as n:
        yield n


class Client:
    """A TestClient on ``serve --nats`` (lifespan on) with a decide and an ingest key."""

    def __init__(self, client: TestClient, keys: dict[str, str]) -> None:
        self.client = client
        self.keys = keys
        self.service: Any = client.app.state.service  # type: ignore[attr-defined]

    def decide(self, event: Event) -> Any:
        return self.client.post(
            "/v1/decide",
            content=encode(event),
            headers={"Authorization": f"Bearer {self.keys['decide']}"},
        )

    def ingest(self, events: list[Event]) -> Any:
        return self.client.post(
            "/v1/events",
            content=b"".join(encode(e) + b"\n" for e in events),
            headers={
                "Authorization": f"Bearer {self.keys['ingest']}",
                "content-type": "application/x-ndjson",
            },
        )

    def feed(self, events: list[Event]) -> list[dict]:
        """Decision points through /v1/decide, the events between them as /v1/events batches."""
        answers = []
        batch: list[Event] = []
        for event in events:
            if decision_point(event) is None:
                batch.append(event)
                continue
            if batch:
                assert self.ingest(batch).status_code == 200
                batch = []
            response = self.decide(event)
            assert response.status_code == 200, response.text
            answers.append(response.json())
        if batch:
            assert self.ingest(batch).status_code == 200
        return answers

    def drained(self, timeout: float = 10.0) -> dict:
        publisher = self.service.publisher
        deadline = time.monotonic() + timeout
        while publisher.outbox and time.monotonic() < deadline:
            time.sleep(0.02)
        return publisher.stats()

    def health(self) -> dict:
        return self.client.get("/healthz").json()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Client]]:
    opened: list[TestClient] = []

    def make(url: str, n: Names, database: str | None = None, **kw: Any) -> Client:
        db = database or f"sqlite:///{tmp_path / f'service{len(opened)}.db'}"
        engine = make_engine(db)
        migrate(engine)
        keys = {}
        with write_transaction(engine) as conn:
            for scope in ("decide", "ingest", "admin"):
                keys[scope] = create_key(conn, [scope], name="test")[1]
        engine.dispose()
        settings = Settings(
            nats_url=url,
            nats_stream=n.stream,
            nats_subject=n.subject,
            nats_partitions=PARTS,
            drain_seconds=kw.pop("drain_seconds", 2.0),
            **kw,
        )
        client = TestClient(create_app(db, settings=settings))
        client.__enter__()
        opened.append(client)
        return Client(client, keys)

    yield make
    for client in opened:
        client.__exit__(None, None, None)


def stream_messages(n: Names) -> list[tuple[str, dict[str, str], bytes]]:
    """(subject, headers, body) of every message of the stream, in stream order."""

    async def read() -> list[tuple[str, dict[str, str], bytes]]:
        nc = await nats.connect(NATS_URL)
        try:
            js = nc.jetstream()
            info = await js.stream_info(n.stream)
            out = []
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                msg = await js.get_msg(n.stream, seq)
                out.append((msg.subject, dict(msg.headers or {}), msg.data))
            return out
        finally:
            await nc.close()

    return asyncio.run(read())


def expected_messages(events: list[Event], n: Names) -> list[tuple[str, str]]:
    """(subject, message id) as ingest publishes them, plus the decision records."""
    out = []
    clock = EpochClock(DEFAULT_EPOCH_SECONDS)
    for event in events:
        opened = clock.opens(event)  # an epoch marker to every partition first
        if opened is not None:
            out += [(f"{n.subject}.{q}", f"epoch-{opened}/{q}") for q in range(PARTS)]
        p = partition_of(event, PARTS)
        if p is None:
            out += [(f"{n.subject}.{q}", f"{event.id}/{q}") for q in range(PARTS)]
            continue
        out.append((f"{n.subject}.{p}", event.id))
        if decision_point(event) is not None:
            out.append((f"{n.subject}.decisions", f"{event.id}/decision"))
    return out


def test_serve_publishes_events_in_order_with_its_decisions(
    serve: Callable[..., Client], names: Names, events: list[Event]
) -> None:
    api = serve(NATS_URL, names)
    answers = api.feed(events)
    stats = api.drained()
    assert stats["outbox"] == 0 and stats["dropped"] == 0 and stats["connected"]
    health = api.health()
    assert health["status"] == "ok" and health["publish"]["published"] == stats["published"]

    messages = stream_messages(names)
    assert [(s, h["Nats-Msg-Id"]) for s, h, _ in messages] == expected_messages(events, names)
    by_event = {a["event_id"]: a for a in answers}
    assert len(by_event) == sum(decision_point(e) is not None for e in events) > 10
    bodies = {e.id: encode(e) for e in events}
    guard = api.service.host.name
    records = 0
    for subject, headers, body in messages:
        msg_id = headers["Nats-Msg-Id"]
        if subject.endswith(".decisions"):
            record = json.loads(body)
            answer = by_event[msg_id.removesuffix("/decision")]
            assert record["decision_id"] == answer["decision_id"]
            assert (record["action"], record["score"]) == (answer["action"], answer["score"])
            assert record["guard"] == guard
            records += 1
            continue
        if epoch_marker(headers) is not None:
            assert not body and msg_id.startswith("epoch-")
            continue
        event_id = msg_id.split("/")[0]
        assert body == bodies[event_id]
        answer = by_event.get(msg_id)
        if answer is None:
            assert "Bg-Action" not in headers
            continue
        assert headers["Bg-Action"] == answer["action"]
        assert float(headers["Bg-Score"]) == answer["score"]
        assert headers["Bg-Decision-Id"] == answer["decision_id"]
        assert headers["Bg-Guard"] == guard
        assert headers["Bg-Point"] == answer["point"]
    assert records == len(by_event)

    # the same events published again by ingest (a broker that also streams them): no new message
    # but the marker that closes the file's last epoch, one to each partition
    lines = [encode(e) for e in events]
    asyncio.run(ingest(lines, NATS_URL, names.stream, names.subject, PARTS))
    assert len(stream_messages(names)) == len(messages) + PARTS


def test_analyst_conclusions_are_published_to_the_partitions_that_need_them(
    serve: Callable[..., Client], names: Names, events: list[Event]
) -> None:
    """A forced re-verification goes to its account's partition, after the events before it."""
    api = serve(NATS_URL, names)
    api.feed(events[:200])
    account = next(e.account for e in events[:200] if isinstance(e, LoginAttempt))
    acted = api.client.post(
        f"/v1/accounts/{account}/actions",
        json={"action": "force_reverify", "note": "called the customer"},
        headers={"Authorization": f"Bearer {api.keys['admin']}"},
    )
    assert acted.status_code == 201, acted.text
    assert api.drained()["outbox"] == 0
    last_subject, headers, body = stream_messages(names)[-1]
    heard = decode_line(body)
    assert isinstance(heard, AnalystAction) and heard.action == "force_reverify"
    assert heard.account == account and headers["Nats-Msg-Id"] == heard.id
    assert last_subject == f"{names.subject}.{partition_of(heard, PARTS)}"
    assert heard.ts == max(e.ts for e in events[:200])  # the engine's time, not the wall clock


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_nats_unreachable_at_start_fails_nothing_and_counts_drops(
    serve: Callable[..., Client], names: Names, events: list[Event]
) -> None:
    api = serve(f"nats://127.0.0.1:{unused_port()}", names, outbox=50, drain_seconds=0.2)
    points = [e for e in events if decision_point(e) is not None][:40]
    slowest = 0.0
    for event in points:
        t0 = time.perf_counter()
        response = api.decide(event)
        slowest = max(slowest, time.perf_counter() - t0)
        assert response.status_code == 200, response.text
    # a decision takes milliseconds; one that waited on NATS would take its 1 s connect timeout
    # (0.25 s here failed on a loaded 2-core machine: 0.43 s, no NATS wait in it)
    assert slowest < 1.0
    health = api.health()
    publish = health["publish"]
    assert health["status"] == "degraded"
    assert not publish["connected"] and publish["last_error"]
    assert publish["outbox"] == 50  # two messages per decision point, and epoch markers
    assert publish["dropped"] == len(expected_messages(points, names)) - 50
    assert publish["published"] == 0


def test_a_tls_url_to_a_nats_without_tls_publishes_nothing_in_plain_text(
    serve: Callable[..., Client], names: Names, events: list[Event]
) -> None:
    """``serve --nats tls://...`` against the machine's NATS, which has no TLS: nats-py
    upgrades only when the server requires it, so the service published customers' events in
    plain text. It must refuse the connection, say why in ``/healthz``, and go on deciding."""
    api = serve(NATS_URL.replace("nats://", "tls://"), names, drain_seconds=0.2)
    points = [e for e in events if decision_point(e) is not None][:5]
    for event in points:
        assert api.decide(event).status_code == 200
    publisher = api.service.publisher
    deadline = time.monotonic() + 10
    while publisher.retries == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    publish = api.health()["publish"]
    assert not publish["connected"] and publish["published"] == 0, publish
    assert "does not offer TLS" in (publish["last_error"] or ""), publish

    async def exists() -> bool:
        nc = await nats.connect(NATS_URL)
        try:
            await nc.jetstream().stream_info(names.stream)
        except nats.js.errors.NotFoundError:
            return False
        finally:
            await nc.close()
        return True

    assert not asyncio.run(exists())  # not even the stream was made


def test_nats_going_away_fails_nothing_and_publishing_resumes(
    serve: Callable[..., Client], names: Names, events: list[Event], tmp_path: Path
) -> None:
    port = unused_port()
    url = f"nats://127.0.0.1:{port}"
    points = [e for e in events if decision_point(e) is not None]
    with nats_server(port, tmp_path / "js"):
        api = serve(url, names)
        for event in points[:5]:
            assert api.decide(event).status_code == 200
        assert api.drained()["published"] == len(expected_messages(points[:5], names))
    # the server is gone
    t0 = time.perf_counter()
    for event in points[5:15]:
        assert api.decide(event).status_code == 200
    assert time.perf_counter() - t0 < 1.0
    assert api.service.publisher.outbox  # waiting for NATS
    with nats_server(port, tmp_path / "js"):  # back, with its stored stream
        stats = api.drained(timeout=10)
        assert stats["outbox"] == 0 and stats["dropped"] == 0
        expected = len(expected_messages(points[:15], names))
        assert stats["published"] >= expected  # a retried window may count a message twice

        async def count() -> int:
            nc = await nats.connect(url)
            info = await nc.jetstream().stream_info(names.stream)
            await nc.close()
            return int(info.state.messages)

        assert asyncio.run(count()) == expected  # nothing lost, nothing doubled
        api.client.__exit__(None, None, None)  # shut down while NATS is still there


def test_worker_keeps_the_service_answer_beside_its_own(
    serve: Callable[..., Client], names: Names, events: list[Event], tmp_path: Path
) -> None:
    """The worker decides every event itself (its file has both answers), and writes no
    decision row for what the service answered inline: the database the two share holds one
    decision per decision point, the service's."""
    with pg_database() as db:
        api = serve(NATS_URL, names, database=db)
        answers = {a["event_id"]: a for a in api.feed(events)}
        assert api.drained()["outbox"] == 0
        api.service.recorder.wait_idle(10)
        out = tmp_path / "decisions.ndjson"
        stats = asyncio.run(
            run_worker(
                NATS_URL,
                REDIS_URL,
                prefix=names.prefix,
                stream=names.stream,
                subject=names.subject,
                partitions=PARTS,
                durable=names.durable,
                decisions=out,
                idle_exit=0.5,
                lease_ttl=1.5,
                database=db,
            )
        )
        engine = make_engine(db)
        with engine.connect() as conn:
            rows = conn.execute(sa.select(decisions.c.id, decisions.c.event_id)).all()
        engine.dispose()
        api.client.__exit__(None, None, None)
    assert sorted(r.event_id for r in rows) == sorted(answers)
    assert {r.id for r in rows} == {a["decision_id"] for a in answers.values()}
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert {line["event"] for line in lines} == set(answers)
    for line in lines:
        answer = answers[line["event"]]
        assert line["inline"]["action"] == answer["action"]
        assert line["inline"]["decision_id"] == answer["decision_id"]
        assert line["inline"]["score"] == answer["score"]
    assert stats.inline == len(answers)
    assert stats.inline_differ == sum(line["inline"]["action"] != line["action"] for line in lines)


def test_nats_started_after_the_service_gets_what_was_queued(
    serve: Callable[..., Client], names: Names, events: list[Event], tmp_path: Path
) -> None:
    port = unused_port()
    api = serve(f"nats://127.0.0.1:{port}", names)
    points = [e for e in events if decision_point(e) is not None][:5]
    for event in points:
        assert api.decide(event).status_code == 200
    time.sleep(0.3)
    assert api.service.publisher.stats()["retries"] >= 1  # connecting, backing off
    with nats_server(port, tmp_path / "js"):
        stats = api.drained(timeout=10)  # the back-off is at most 5 s
        assert stats["outbox"] == 0 and stats["connected"] and stats["dropped"] == 0
        assert api.health()["status"] == "ok"
        api.client.__exit__(None, None, None)


def test_serve_command_publishes_with_the_workers_environment(
    names: Names, events: list[Event], tmp_path: Path
) -> None:
    """``brokerguard serve`` takes BROKERGUARD_NATS/STREAM/SUBJECT/PARTITIONS as the worker
    does, and what it decided before a SIGTERM is in the stream after it stopped."""
    db = f"sqlite:///{tmp_path / 'serve.db'}"
    engine = make_engine(db)
    migrate(engine)
    with write_transaction(engine) as conn:
        key = create_key(conn, ["decide"], name="test")[1]
    engine.dispose()
    port = unused_port()
    env = {
        **os.environ,
        "BROKERGUARD_NATS": NATS_URL,
        "BROKERGUARD_STREAM": names.stream,
        "BROKERGUARD_SUBJECT": names.subject,
        "BROKERGUARD_PARTITIONS": str(PARTS),
    }
    proc = subprocess.Popen(
        [*BG, "serve", "--port", str(port), "--database", db],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    point = next(e for e in events if decision_point(e) is not None)
    try:
        deadline = time.monotonic() + 15
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            assert time.monotonic() < deadline, "serve did not start"
            time.sleep(0.05)
        response = httpx.post(
            f"http://127.0.0.1:{port}/v1/decide",
            content=encode(point),
            headers={"Authorization": f"Bearer {key}"},
            timeout=5,
        )
        assert response.status_code == 200, response.text
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
    messages = stream_messages(names)
    assert [(s, h["Nats-Msg-Id"]) for s, h, _ in messages] == expected_messages([point], names)
    published = next(h for _, h, _ in messages if h["Nats-Msg-Id"] == point.id)
    assert published["Bg-Decision-Id"] == response.json()["decision_id"]
