"""The event stream on NATS JetStream: one subject per partition, partitions chosen by account.

An event goes to ``<subject>.<partition>`` where ``partition = crc32(key) % partitions`` and the
key is the event's account (market events — instruments, bars — use ``MARKET:SYMBOL``), so one
account's events stay in order on one subject. The message body is the event's NDJSON line as
given; its ``Nats-Msg-Id`` header is the event id, so JetStream drops a publish of the same event
within its duplicate window (an ingest re-run after a crash does not double events).
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Iterable, Iterator

import nats
from nats.js.api import RetentionPolicy, StorageType, StreamConfig

from brokerguard.events import CanaryHit, Event, decode_line

__all__ = [
    "DEFAULT_PARTITIONS",
    "DEFAULT_STREAM",
    "DEFAULT_SUBJECT",
    "ensure_stream",
    "ingest",
    "partition_of",
]

DEFAULT_STREAM = "BG_EVENTS"
DEFAULT_SUBJECT = "bg.events"
DEFAULT_PARTITIONS = 16
WINDOW = 512  # publishes awaiting their acknowledgement at a time


def partition_key(event: Event) -> str:
    account = getattr(event, "account", None)
    if account is not None:
        return account
    if isinstance(event, CanaryHit):
        return f"ip:{event.ip}"
    return f"{event.market}:{event.symbol}"  # type: ignore[union-attr]


def partition_of(event: Event, partitions: int) -> int:
    """Stable across processes and machines (crc32, not Python's salted ``hash``)."""
    return zlib.crc32(partition_key(event).encode()) % partitions


async def ensure_stream(js, stream: str, subject: str) -> None:
    """Create the stream (file storage, limits retention) unless it exists."""
    try:
        await js.stream_info(stream)
    except nats.js.errors.NotFoundError:
        await js.add_stream(
            StreamConfig(
                name=stream,
                subjects=[f"{subject}.*"],
                retention=RetentionPolicy.LIMITS,
                storage=StorageType.FILE,
                duplicate_window=120.0,
            )
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
) -> int:
    """Publish every event line; returns how many the stream acknowledged.

    A bad line raises :class:`~brokerguard.events.EventError` naming the line; what was published
    before it stays published. Publishes are pipelined ``WINDOW`` at a time and sent in file order.
    """
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await ensure_stream(js, stream, subject)
        count = 0
        window: list = []
        for _, line, event in _lines(lines):
            target = f"{subject}.{partition_of(event, partitions)}"
            headers = {"Nats-Msg-Id": event.id}
            window.append(js.publish(target, line, stream=stream, headers=headers))
            if len(window) >= WINDOW:
                count += len(await asyncio.gather(*window))
                window = []
        if window:
            count += len(await asyncio.gather(*window))
        return count
    finally:
        await nc.close()
