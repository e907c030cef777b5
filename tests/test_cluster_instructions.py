"""A worker writes the engine's instructions to the service's feed, once each."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from instruction_helpers import doubtful_session_sells_then_buys, lenient_orders, rig_with_customer

from brokerguard.cluster.records import RecordSink
from brokerguard.service import queries


def test_a_redelivered_batch_does_not_write_an_instruction_twice(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'records.db'}"
    sink = RecordSink(url)
    for _ in range(2):  # the same stream, processed again after a worker died before acking
        r = rig_with_customer(lenient_orders())
        session, sell, held = doubtful_session_sells_then_buys(r)
        r.challenge("A1", held, "oob", "failed", session=session)
        sink.queue_instructions(r.engine)
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
