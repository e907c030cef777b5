"""A worker writes the engine's instructions to the service's feed, once each, or to a file."""

from __future__ import annotations

import asyncio
from pathlib import Path

import sqlalchemy as sa
from cluster_helpers import NATS_URL, REDIS_URL, fresh_names, lines
from engine_helpers import Rig
from instruction_helpers import (
    Recorder,
    doubtful_session_sells_then_buys,
    lenient_orders,
    rig_with_customer,
)

from brokerguard.cluster.records import RecordSink
from brokerguard.cluster.stream import ingest
from brokerguard.cluster.worker import run_worker
from brokerguard.events import encode
from brokerguard.service import queries


def test_a_redelivered_batch_does_not_write_an_instruction_twice(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'records.db'}"
    sink = RecordSink(url)
    for _ in range(2):  # the same stream, processed again after a worker died before acking
        r = rig_with_customer(lenient_orders())
        session, sell, held = doubtful_session_sells_then_buys(r)
        r.challenge("A1", held, "oob", "failed", session=session)
        sink.queue_instructions(r.engine.take_instructions(), r.engine.name)
        sink.write()
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = queries.list_instructions(conn)
    engine.dispose()
    sink.close()
    assert [(row["kind"], row["session"], row["orders"]) for row in rows] == [
        ("cancel_orders", session, [sell]),
        ("end_session", session, []),
    ]


def test_a_worker_without_a_database_appends_its_instructions_to_a_file(tmp_path: Path) -> None:
    r = Rig(lenient_orders())
    recorder = Recorder(r.engine)
    r.engine = recorder  # type: ignore[assignment]
    rig_with_customer(r=r)
    session, sell, held = doubtful_session_sells_then_buys(r)
    r.challenge("A1", held, "oob", "failed", session=session)
    log = tmp_path / "events.ndjson"
    log.write_bytes(b"".join(encode(e) + b"\n" for e in recorder.log))
    out = tmp_path / "instructions.ndjson"
    with fresh_names() as n:
        with open(log, "rb") as f:
            asyncio.run(ingest(f, NATS_URL, n.stream, n.subject, 1))
        stats = asyncio.run(
            run_worker(
                NATS_URL,
                REDIS_URL,
                prefix=n.prefix,
                stream=n.stream,
                subject=n.subject,
                durable=n.durable,
                partitions=1,
                idle_exit=1.0,
                policy=lenient_orders(),
                instructions=out,
            )
        )
    assert stats.events == len(recorder.log)
    assert [(row["kind"], row["session"], row["orders"]) for row in lines(out)] == [
        ("cancel_orders", session, [sell]),
        ("end_session", session, []),
    ]
