"""The event stream on NATS JetStream: one subject per partition, partitions chosen by account.

An event goes to ``<subject>.<partition>`` where ``partition = crc32(account) % partitions``, so
one account's events stay in order on one subject. Market events (instruments, bars) have no
account: every partition's engine needs them, so they are published to every partition, in their
place in the log (see :mod:`.partition`). The message body is the event's NDJSON line as given;
its ``Nats-Msg-Id`` header is the event id (``<id>/<partition>`` for a market event's copies), so
JetStream drops a publish of the same event within its duplicate window (an ingest re-run after a
crash does not double events). The stream's description records the number of partitions
(``partitions=16``); workers refuse a stream cut differently from what they were told.

**Epoch markers.** Before the first event of each new epoch (``epoch_seconds`` of event time,
the running maximum, so a late event never moves it back) a marker goes to every partition: an
empty body with the header ``Bg-Epoch: <k>`` (message id ``epoch-<k>/<p>``). The campaign stage
(:mod:`brokerguard.engine.stage`) counts in these epochs; workers without it skip the markers.
At the end of a file one more marker closes the last epoch, so that its facts are processed.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import socket
import tempfile
from collections.abc import Iterable, Iterator
from typing import Any

import nats
from nats.js.api import RetentionPolicy, StorageType, StreamConfig

from brokerguard.cluster.partition import partition_of
from brokerguard.events import Event, decode_line, refuse_analyst
from brokerguard.redact import shown_url

__all__ = [
    "DEFAULT_PARTITIONS",
    "DEFAULT_STREAM",
    "DEFAULT_SUBJECT",
    "EPOCH_HEADER",
    "EpochClock",
    "NatsNoTls",
    "NatsUnreachable",
    "PartitionMismatch",
    "connect",
    "ensure_stream",
    "epoch_marker",
    "marker_headers",
    "ingest",
    "partition_of",
    "require_tls",
    "stream_partitions",
]

DEFAULT_STREAM = "BG_EVENTS"
DEFAULT_SUBJECT = "bg.events"
DEFAULT_PARTITIONS = 16
DEFAULT_EPOCH_SECONDS = 60.0
EPOCH_HEADER = "Bg-Epoch"
WINDOW = 512  # publishes awaiting their acknowledgement at a time


class PartitionMismatch(ValueError):
    """The stream was cut into a different number of partitions."""


class NatsUnreachable(OSError):
    """No connection to the NATS server could be made (:func:`connect`). An ``OSError``, as
    before; the commands tell it from every other ``OSError`` (a file that cannot be written)."""


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


def epoch_marker(headers: dict[str, str] | None) -> int | None:
    """The epoch a marker message opens; None for an event."""
    if headers and EPOCH_HEADER in headers:
        return int(headers[EPOCH_HEADER])
    return None


def marker_headers(epoch: int, partition: int) -> dict[str, str]:
    return {"Nats-Msg-Id": f"epoch-{epoch}/{partition}", EPOCH_HEADER: str(epoch)}


class EpochClock:
    """The running epoch of a stream being published; says when a marker is due."""

    def __init__(self, epoch_seconds: float) -> None:
        self.epoch_seconds = epoch_seconds
        self.epoch: int | None = None

    def opens(self, event: Event) -> int | None:
        """The epoch ``event`` opens (a marker goes before it), or None."""
        if not self.epoch_seconds:
            return None
        k = int(event.ts.timestamp() // self.epoch_seconds)
        if self.epoch is None or k > self.epoch:
            self.epoch = k
            return k
        return None


WITH_ANALYST_HINT = "an export of the service's records, which carries them, needs --with-analyst"
"""What ``ingest`` adds to the one refusal of an ``analyst`` line."""


def _lines(lines: Iterable[bytes], analyst: bool) -> Iterator[tuple[int, bytes, Event]]:
    for n, raw in enumerate(lines, start=1):
        line = raw.strip()
        if line:
            event = decode_line(line, line=n)
            if not analyst:
                refuse_analyst(event, line=n, hint=WITH_ANALYST_HINT)
            yield n, line, event


class NatsNoTls(NatsUnreachable):
    """A ``tls://`` URL whose server answered without TLS (:func:`require_tls`): no connection
    is kept, nothing is sent."""


def _encrypted(nc: Any) -> bool:
    """Whether ``nc``'s connection runs over TLS (what its transport's socket says)."""
    transport = getattr(nc, "_transport", None)
    writer = getattr(transport, "_io_writer", None)
    if writer is not None:
        return writer.get_extra_info("ssl_object") is not None
    url = nc.connected_url
    return url is not None and url.scheme == "wss"  # nats-py's websocket transport


def require_tls(nc: Any, url: str) -> None:
    """:class:`NatsNoTls` when ``nc`` was reached by a ``tls://`` URL and is not encrypted.

    nats-py takes ``tls://`` as a wish: it upgrades to TLS only when the server's greeting
    says ``tls_required``, so a server without TLS (a wrong port, TLS switched off, a
    man in the middle) was spoken to in plain text, credentials and customers' events too,
    and nothing said so."""
    connected = nc.connected_url
    if connected is not None and connected.scheme == "tls" and not _encrypted(nc):
        where = f"{connected.hostname}:{connected.port}"
        raise NatsNoTls(
            f"the server at {where} does not offer TLS, and the URL ({shown_url(url)}) asks for"
            " it: nothing was sent; use nats:// for a server without TLS, or enable TLS on it"
        )


async def connect(url: str, **options: Any) -> Any:
    """Connect to NATS, failing at once (:class:`NatsUnreachable` naming the problem) when no
    server is there, or (:class:`NatsNoTls`) when a ``tls://`` URL finds one without TLS;
    ``options`` go to the connection itself.

    nats-py's first connect retries like a reconnect, a traceback per attempt, for two minutes
    before giving up: a scale-out command run against a wrong address, or ``status`` run as a
    monitoring check, hung that long. A probe with one attempt says it in seconds; the real
    connection then rides out a server restart as its ``options`` say.
    """

    causes: list[Exception] = []

    async def quiet(exc: Exception) -> None:  # the probe's failure is raised, not logged
        causes.append(exc)

    try:
        probe = await nats.connect(
            url,
            connect_timeout=CONNECT_TIMEOUT,
            max_reconnect_attempts=1,
            reconnect_time_wait=0.2,
            # a server that accepted and never greeted is not waited for again: with
            # reconnects allowed, the probe waited CONNECT_TIMEOUT twice
            allow_reconnect=False,
            error_cb=quiet,
        )
        try:
            require_tls(probe, url)
        finally:
            await probe.close()
        nc = await nats.connect(url, **options)
    except NatsNoTls:
        raise
    except Exception as exc:  # refused, timed out, nats-py's NoServersError and the like
        raise NatsUnreachable(_unreachable(causes[-1] if causes else exc)) from None
    try:
        require_tls(nc, url)  # the real connection may have reached another server of the list
    except NatsNoTls:
        await nc.close()
        raise
    return nc


CONNECT_TIMEOUT = 3.0  # seconds :func:`connect`'s probe waits for a server's greeting


def _unreachable(cause: Exception) -> str:
    """Why no connection was made, in words: nats-py's own error says "no servers available"
    whatever happened; the probe's last error callback says what did (refused, no such host,
    a socket that accepts and never says anything)."""
    if isinstance(cause, TimeoutError) and not str(cause):
        return f"no NATS greeting within {CONNECT_TIMEOUT:g} s (is it a NATS server?)"
    if isinstance(cause, socket.gaierror):
        return f"no such host ({cause.strerror})"
    if isinstance(cause, OSError) and cause.errno and cause.errno > 0:
        return os.strerror(cause.errno)  # asyncio's "Connect call failed (...)" says less
    said = " ".join(str(cause).split())
    return said or type(cause).__name__


async def ingest(
    lines: Iterable[bytes],
    url: str,
    stream: str = DEFAULT_STREAM,
    subject: str = DEFAULT_SUBJECT,
    partitions: int = DEFAULT_PARTITIONS,
    window: int = WINDOW,
    epoch_seconds: float = DEFAULT_EPOCH_SECONDS,
    analyst: bool = False,
) -> int:
    """Publish every event line; returns how many events (not copies) the stream acknowledged.

    ``analyst``: also publish ``analyst`` events (an export of the service's records carries
    them); without it such a line is an error, as on the service's public routes.

    A file is read and checked whole before anything is done: a bad line raises
    :class:`~brokerguard.events.EventError` naming the line, and nothing is published nor any
    stream created. (The stream was created first, and the lines published as they were read:
    a refused file left an empty stream behind, or the events of its first windows.) The lines
    wait in a temporary file, in memory while small (:data:`SPOOL_IN_MEMORY`). A pipe (standard
    input from a log shipper, which may never end) is published as it comes, each line checked
    before it goes: a bad line stops it there, what came before stays published, and nothing is
    created before its first line is read and checked. Publishes are pipelined ``window`` at a
    time and sent in file order. ``epoch_seconds`` 0 publishes no epoch markers.
    """
    seekable = getattr(lines, "seekable", None)
    if seekable is None or not seekable():
        checked_lines = (line for _, line, _event in _lines(_named_reads(lines), analyst))
        first = next(checked_lines, None)
        if first is None:
            return 0
        flowing = itertools.chain([first], checked_lines)
        return await _publish(flowing, url, stream, subject, partitions, window, epoch_seconds)
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY) as checked:
        for _, line, _event in _lines(_named_reads(lines), analyst):
            try:
                checked.write(line + b"\n")
            except OSError as exc:  # a full disk under the temporary directory
                where = f"a temporary file in {tempfile.gettempdir()}"
                raise OSError(exc.errno, exc.strerror, where) from exc
        checked.seek(0)
        return await _publish(checked, url, stream, subject, partitions, window, epoch_seconds)


SPOOL_IN_MEMORY = 32 * 1024 * 1024  # checked lines kept in memory up to this; on disk beyond


def _named_reads(lines: Iterable[bytes]) -> Iterator[bytes]:
    """``lines``, whose read errors name the file (``<stdin>`` for standard input)."""
    name = getattr(lines, "name", None)
    reading = iter(lines)
    while True:
        try:
            line = next(reading)
        except StopIteration:
            return
        except OSError as exc:
            if exc.filename is None and isinstance(name, str):
                raise OSError(exc.errno, exc.strerror, name) from exc
            raise
        yield line


async def _publish(
    lines: Iterable[bytes],
    url: str,
    stream: str,
    subject: str,
    partitions: int,
    window: int,
    epoch_seconds: float,
) -> int:
    """:func:`ingest`'s publishing, of lines already checked."""
    nc = await connect(url)
    try:
        js = nc.jetstream()
        await ensure_stream(js, stream, subject, partitions)
        count = markers = 0
        pending: list = []
        clock = EpochClock(epoch_seconds)

        def mark(k: int) -> None:
            nonlocal markers
            for q in range(partitions):
                pending.append(
                    js.publish(f"{subject}.{q}", b"", stream=stream, headers=marker_headers(k, q))
                )
            markers += partitions

        for raw in lines:
            line = raw.rstrip(b"\n")
            event = decode_line(line)
            opened = clock.opens(event)
            if opened is not None:
                mark(opened)
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
        if clock.epoch is not None:
            mark(clock.epoch + 1)  # the end of the file closes its last epoch
        if pending:
            count += len(await asyncio.gather(*pending))
        return count - markers
    finally:
        await nc.close()
