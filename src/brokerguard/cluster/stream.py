"""The event stream on NATS JetStream: one subject per partition, partitions chosen by account.

An event goes to ``<subject>.<partition>`` where ``partition = crc32(account) % partitions``, so
one account's events stay in order on one subject. Market events (instruments, bars) have no
account: every partition's engine needs them, so they are published to every partition, in their
place in the log (see :mod:`.partition`). The message body is the event's NDJSON line as given;
its ``Nats-Msg-Id`` header is the event id (``<id>/<partition>`` for a market event's copies), so
JetStream drops a publish of the same event within its duplicate window (an ingest re-run after a
crash does not double events). The stream's description records the number of partitions
(``partitions=16``); workers refuse a stream cut differently from what they were told.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Iterator

import nats
from nats.js.api import RetentionPolicy, StorageType, StreamConfig

from brokerguard.cluster.partition import partition_of
from brokerguard.events import Event, decode_line

__all__ = [
    "DEFAULT_PARTITIONS",
    "DEFAULT_STREAM",
    "DEFAULT_SUBJECT",
    "PartitionMismatch",
    "ensure_stream",
    "ingest",
    "partition_of",
    "stream_partitions",
]

DEFAULT_STREAM = "BG_EVENTS"
DEFAULT_SUBJECT = "bg.events"
DEFAULT_PARTITIONS = 16
WINDOW = 512  # publishes awaiting their acknowledgement at a time


class PartitionMismatch(ValueError):
    """The stream was cut into a different number of partitions."""


def stream_partitions(info) -> int | None:
    match = re.fullmatch(r"partitions=(\d+)", info.config.description or "")
    return int(match.group(1)) if match else None


async def ensure_stream(js, stream: str, subject: str, partitions: int) -> None:
    """Create the stream (file storage, limits retention) unless it exists; check its partitions."""
    try:
        info = await js.stream_info(stream)
    except nats.js.errors.NotFoundError:
        await js.add_stream(
            StreamConfig(
                name=stream,
                description=f"partitions={partitions}",
                subjects=[f"{subject}.*"],
                retention=RetentionPolicy.LIMITS,
                storage=StorageType.FILE,
                duplicate_window=120.0,
            )
        )
        return
    found = stream_partitions(info)
    if found is not None and found != partitions:
        raise PartitionMismatch(
            f"stream {stream} has {found} partitions, not {partitions} (--partitions)"
        )


def _lines(lines: Iterable[bytes]) -> Iterator[tuple[int, bytes, Event]]:
    for n, raw in enumerate(lines, start=1):
        line = raw.strip()
        if line:
            yield n, line, decode_line(line, line=n)


async def ingest(
    lines: Iterable[bytes],
    url: str,
    stream: str = DEFAULT_STREAM,
    subject: str = DEFAULT_SUBJECT,
    partitions: int = DEFAULT_PARTITIONS,
    window: int = WINDOW,
) -> int:
    """Publish every event line; returns how many events (not copies) the stream acknowledged.

    A bad line raises :class:`~brokerguard.events.EventError` naming the line; what was published
    before it stays published. Publishes are pipelined ``window`` at a time and sent in file order.
    """
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await ensure_stream(js, stream, subject, partitions)
        count = 0
        pending: list = []
        for _, line, event in _lines(lines):
            p = partition_of(event, partitions)
            if p is None:  # a market event: a copy for every partition
                for q in range(partitions):
                    copy = {"Nats-Msg-Id": f"{event.id}/{q}"}
                    pending.append(js.publish(f"{subject}.{q}", line, stream=stream, headers=copy))
                count -= partitions - 1
            else:
                headers = {"Nats-Msg-Id": event.id}
                pending.append(js.publish(f"{subject}.{p}", line, stream=stream, headers=headers))
            if len(pending) >= window:
                count += len(await asyncio.gather(*pending))
                pending = []
        if pending:
            count += len(await asyncio.gather(*pending))
        return count
    finally:
        await nc.close()
