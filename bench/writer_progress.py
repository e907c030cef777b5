"""Benchmark: what advancing ``writer_progress`` costs the writer process's transactions.

    python bench/writer_progress.py [--batches 1,10,100] [--transactions 300] [--postgres URL]

Each writer transaction writes its records and, in the same transaction, moves the writer's row
in ``writer_progress`` to the last record written (``recorder._insert_marking``), so that a batch
spilled after the writer died is known to be written. This measures that extra upsert: the same
transactions (events with their decisions, every other one alerted, with its audit entry) are
written with and without it, alternately, on a fresh SQLite file and on a fresh PostgreSQL
database (created on ``--postgres``'s server and dropped afterwards). Prints the median time per
transaction and per record of each; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import sqlalchemy as sa
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from brokerguard.service.audit import AuditEntry
from brokerguard.service.db import make_engine, migrate, write_transaction
from brokerguard.service.recorder import (
    DecisionRecord,
    EventRecord,
    Record,
    insert_records,
    mark_written,
)

T0 = datetime(2025, 4, 1, 0, 30, tzinfo=UTC)
REASONS = [{"code": "first_in_symbol", "en": "A first buy", "ja": "初めての銘柄"}]


def batch(first: int, n: int, writer: str) -> list[Record]:
    """``n`` orders and their decisions, numbered from ``first`` (ids unique across batches),
    each placed in what ``writer`` was handed, as the writer process places them."""
    out: list[Record] = []
    for i in range(first, first + n):
        ts = T0 + timedelta(seconds=i)
        body = msgspec.json.encode({"type": "order", "id": f"o{i}", "qty": 100}).decode()
        event = {"event_id": f"o{i}", "type": "order", "ts": ts, "account": f"A{i % 997}"}
        out.append(EventRecord({**event, "session": "s1", "body": body}))
        held = i % 2 == 1
        decision = {
            "id": f"d{i}",
            "event_id": f"o{i}",
            "ts": ts,
            "account": event["account"],
            "session": "s1",
            "point": "order",
            "guard": "brokerguard",
            "action": "hold" if held else "allow",
            "score": 0.5,
            "factors": ["passkey"] if held else [],
            "reasons": REASONS if held else [],
            "caller": "key:bench",
            "decided_at": ts,
        }
        alert = None
        if held:
            alert = {
                **{k: decision[k] for k in ("event_id", "ts", "account", "point", "action")},
                "id": f"d{i}",
                "score": 0.5,
                "severity": "medium",
                "detector": "trading",
                "detectors": ["trading"],
                "campaign": None,
                "reasons": REASONS,
                "signals": [{"code": "first_in_symbol", "llr": 1.2, "evidence": {}}],
                "status": "open",
                "updated_at": ts,
            }
        entry = AuditEntry("key:bench", "decision", event["account"], {"decision": f"d{i}"})
        out.append(DecisionRecord(decision, alert, entry))
    for place, record in enumerate(out, start=first * 2 + 1):
        record.at = (writer, place)
    return out


def measure(
    url: str, sizes: list[int], transactions: int, progress: Progress
) -> dict[int, tuple[float, float]]:
    """Median seconds per transaction, (records only, records and mark), for each batch size:
    the two kinds alternate, so that a slower moment of the machine falls on both."""
    engine = make_engine(url)
    migrate(engine)
    writer = uuid.uuid4().hex
    result: dict[int, tuple[float, float]] = {}
    next_id = 0
    for size in sizes:
        plain: list[float] = []
        marked: list[float] = []
        task = progress.add_task(f"{engine.dialect.name} batch {size}", total=transactions)
        for t in range(transactions):
            records = batch(next_id, size, writer)
            next_id += size
            started = time.perf_counter()
            with write_transaction(engine) as conn:
                insert_records(conn, records)
                if t % 2:
                    mark_written(conn, records)
            (marked if t % 2 else plain).append(time.perf_counter() - started)
            progress.advance(task)
        result[size] = (statistics.median(plain), statistics.median(marked))
    engine.dispose()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--batches", default="1,10,100", help="records' events per transaction")
    ap.add_argument("--transactions", type=int, default=300, help="per batch size, both kinds")
    ap.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = ap.parse_args()
    sizes = [int(s) for s in args.batches.split(",")]

    console = Console()
    name = f"bg_bench_{uuid.uuid4().hex[:10]}"
    server = make_engine(args.postgres, isolation_level="AUTOCOMMIT")
    with server.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    pg_url = args.postgres.rsplit("/", 1)[0] + f"/{name}"
    figures: dict[str, dict[int, tuple[float, float]]] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp, Progress(console=console) as progress:
            sqlite_url = f"sqlite:///{Path(tmp) / 'bench.db'}"
            figures["sqlite"] = measure(sqlite_url, sizes, args.transactions, progress)
            figures["postgresql"] = measure(pg_url, sizes, args.transactions, progress)
    finally:
        with server.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        server.dispose()

    table = Table(title="writer transaction, median (records: an event and its decision each)")
    for heading in ("database", "events", "records only", "with writer_progress", "cost"):
        table.add_column(heading, justify="right")
    for database, by_size in figures.items():
        for size, (plain, marked) in by_size.items():
            table.add_row(
                database,
                str(size),
                f"{plain * 1e3:.2f} ms",
                f"{marked * 1e3:.2f} ms",
                f"{(marked - plain) * 1e6:+.0f} µs ({(marked / plain - 1) * 100:+.1f}%)",
            )
    console.print(table)


if __name__ == "__main__":
    main()
