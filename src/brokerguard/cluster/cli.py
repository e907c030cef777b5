"""``brokerguard ingest`` and ``brokerguard worker``: the scale-out commands.

Mounted on the ``brokerguard`` command by :func:`mount`. URLs also come from the environment
(``BROKERGUARD_NATS``, ``BROKERGUARD_REDIS``). User errors exit with status 2 and a message.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

__all__ = ["ingest", "mount", "worker"]

console = Console(stderr=True)

NatsOpt = Annotated[str, typer.Option("--nats", envvar="BROKERGUARD_NATS", help="NATS server URL.")]
RedisOpt = Annotated[
    str, typer.Option("--redis", envvar="BROKERGUARD_REDIS", help="Redis URL for the state.")
]
StreamOpt = Annotated[str, typer.Option("--stream", help="JetStream stream name.")]
SubjectOpt = Annotated[
    str, typer.Option("--subject", help="Subject prefix (<prefix>.<partition>).")
]


PartitionsOpt = Annotated[
    int,
    typer.Option(
        min=1, envvar="BROKERGUARD_PARTITIONS", help="Partitions (by account) of the stream."
    ),
]


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}", soft_wrap=True, highlight=False)
    return typer.Exit(code=2)


def ingest(
    source: Annotated[str, typer.Argument(help="An events.ndjson file, or - for standard input.")],
    nats_url: NatsOpt = "nats://127.0.0.1:4222",
    stream: StreamOpt = "BG_EVENTS",
    subject: SubjectOpt = "bg.events",
    partitions: PartitionsOpt = 16,
) -> None:
    """Publish events to the JetStream stream, partitioned by account."""
    from brokerguard.cluster.stream import PartitionMismatch
    from brokerguard.cluster.stream import ingest as publish
    from brokerguard.events import EventError

    if source == "-":
        lines = sys.stdin.buffer
    else:
        path = Path(source)
        if path.is_dir():
            path = path / "events.ndjson"
        if not path.is_file():
            raise _fail(f"{source}: no such events file")
        lines = open(path, "rb")  # noqa: SIM115 - closed below
    try:
        count = asyncio.run(publish(lines, nats_url, stream, subject, partitions))
    except EventError as exc:
        raise _fail(f"{source}: {exc}") from None
    except PartitionMismatch as exc:
        raise _fail(str(exc)) from None
    except (OSError, TimeoutError) as exc:
        raise _fail(f"cannot publish to {nats_url}: {exc}") from None
    finally:
        if lines is not sys.stdin.buffer:
            lines.close()
    console.print(f"published {count:,} events to {stream} ({partitions} partitions)")


def worker(
    nats_url: NatsOpt = "nats://127.0.0.1:4222",
    redis_url: RedisOpt = "redis://127.0.0.1:6379/0",
    prefix: Annotated[str, typer.Option(help="Key prefix of the state in Redis.")] = "bg",
    stream: StreamOpt = "BG_EVENTS",
    subject: SubjectOpt = "bg.events",
    partitions: PartitionsOpt = 16,
    durable: Annotated[
        str, typer.Option(help="Durable consumer names: <durable>-<partition>.")
    ] = "bg-worker",
    batch: Annotated[int, typer.Option(min=1, help="Events fetched per batch.")] = 500,
    idle_exit: Annotated[
        float, typer.Option(help="Stop after this many seconds without events (0: never).")
    ] = 0.0,
    ack_wait: Annotated[
        float, typer.Option(help="Seconds before an unacked batch is redelivered.")
    ] = 30.0,
    lease_ttl: Annotated[
        float,
        typer.Option(help="Seconds before a dead worker's partitions move to the others."),
    ] = 10.0,
    decisions: Annotated[
        Path | None, typer.Option(help="Append decisions here (JSON lines).")
    ] = None,
    campaigns: Annotated[
        Path | None, typer.Option(help="Append campaign lines here (JSON lines).")
    ] = None,
    database: Annotated[
        str | None,
        typer.Option(
            "--database",
            envvar="BROKERGUARD_DATABASE",
            help="Write decisions, alerts and campaigns to the service's tables (migrated first).",
        ),
    ] = None,
) -> None:
    """Consume the event stream and run the engine on Redis state; ack after state is written."""
    import redis

    from brokerguard.cluster.stream import PartitionMismatch
    from brokerguard.cluster.worker import run_worker

    try:
        stats = asyncio.run(
            run_worker(
                nats_url,
                redis_url,
                prefix=prefix,
                stream=stream,
                subject=subject,
                partitions=partitions,
                durable=durable,
                batch=batch,
                lease_ttl=lease_ttl,
                idle_exit=idle_exit,
                ack_wait=ack_wait,
                decisions=decisions,
                campaigns=campaigns,
                database=database,
            )
        )
    except PartitionMismatch as exc:
        raise _fail(str(exc)) from None
    except redis.exceptions.ConnectionError as exc:
        raise _fail(f"cannot reach Redis at {redis_url}: {exc}") from None
    except (OSError, TimeoutError) as exc:
        raise _fail(f"cannot reach NATS at {nats_url}: {exc}") from None
    console.print(
        f"worker: {stats.events:,} events, {stats.decisions:,} decisions, "
        f"{stats.skipped:,} redelivered events skipped, {stats.batches:,} batches, "
        f"partitions taken {stats.acquired}, handed over {stats.released}, lost {stats.lost}, "
        f"rebuilt {stats.rebuilt}"
    )


def mount(app: typer.Typer) -> None:
    """Add the scale-out commands to the ``brokerguard`` command."""
    app.command("ingest")(ingest)
    app.command("worker")(worker)
