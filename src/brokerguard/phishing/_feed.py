"""The watch on a NATS subject: a broker's feed of newly observed domains or certificate-log
lines, already on its message bus, judged as it arrives.

A message carries one feed line or several (newline-separated); each line is judged exactly as a
line of a file (:class:`~brokerguard.phishing._watch.Watcher`: the same limits, the same errors
that never stop the feed). Alerts go to the caller and, with ``alerts_subject``, back onto the
bus as the JSON objects ``phish watch --json`` prints, for the SOC's own consumers. Several
watchers on one subject share it with a queue group. Core NATS: a message published while no
watcher listens is not judged (use a JetStream stream behind the subject to keep them).

Once connected, the watch rides out the server going away: it says so (``on_status``, one short
line when the server is lost, one when it is back, and each distinct error once per outage, not
a line per reconnection attempt) and goes on.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from brokerguard.phishing._watch import Alert, LineError, Watcher, bounded_lines
from brokerguard.redact import shown_url

__all__ = ["ConnectionReport", "FeedStats", "alert_json", "watch_subject"]


@dataclass
class FeedStats:
    messages: int = 0
    lines: int = 0
    alerts: int = 0
    errors: int = 0


class ConnectionReport:
    """nats-py's connection callbacks, told to a person in short lines.

    ``disconnected`` and ``reconnected`` say that the server at ``url`` was lost and is back;
    ``error`` says each distinct error once per outage (the same refused connection on every
    reconnection attempt is one line, not one a second). A close that the watch asked for is
    not a loss (nats-py calls the disconnected callback on close too).
    """

    def __init__(self, url: str, say: Callable[[str], None]) -> None:
        self.url = shown_url(url)
        self.say = say
        self.closing = False
        self.lost = False
        self._told: set[tuple[str, str]] = set()

    async def disconnected(self) -> None:
        if self.closing or self.lost:
            return
        self.lost = True
        self.say(f"phish watch: lost the NATS server at {self.url}; reconnecting")

    async def reconnected(self) -> None:
        self.lost = False
        self._told.clear()  # the next outage tells its errors again
        self.say(f"phish watch: reconnected to the NATS server at {self.url}")

    async def error(self, exc: Exception) -> None:
        if self.closing:
            return
        key = (type(exc).__name__, str(exc))
        if key in self._told:
            return
        self._told.add(key)
        detail = f"{key[0]}: {key[1]}" if key[1] else key[0]
        self.say(f"phish watch: NATS at {self.url}: {detail}")


def alert_json(alert: Alert) -> bytes:
    """An alert as ``phish watch --json`` writes it: the line, the name and the finding."""
    return msgspec.json.encode(
        {"line": alert.line_no, "name": alert.name, **msgspec.to_builtins(alert.finding)}
    )


async def watch_subject(
    nats_url: str,
    subject: str,
    watcher: Watcher,
    on_event: Callable[[Alert | LineError], None],
    *,
    alerts_subject: str | None = None,
    queue: str = "",
    idle_exit: float | None = None,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[], None] | None = None,
    on_status: Callable[[str], None] | None = None,
) -> FeedStats:
    """Judge every message of ``subject`` until ``stop`` is set or, with ``idle_exit``, no
    message came for that many seconds. Returns what was seen. ``on_status`` hears the
    connection's losses, returns and errors (:class:`ConnectionReport`)."""
    from brokerguard.cluster.stream import connect

    stats = FeedStats()
    stop = stop or asyncio.Event()
    inbox: asyncio.Queue[Any] = asyncio.Queue(maxsize=10_000)  # back-pressure on a burst

    report = ConnectionReport(nats_url, on_status or (lambda line: None))
    # Fails at once when the server is not there (a clear error, not two minutes of retries);
    # once connected, rides out a server restart however long it takes.
    nc = await connect(
        nats_url,
        name="brokerguard-phish-watch",
        max_reconnect_attempts=-1,
        error_cb=report.error,  # nats-py's default logs a traceback per attempt
        disconnected_cb=report.disconnected,
        reconnected_cb=report.reconnected,
    )
    try:

        async def take(msg: Any) -> None:
            await inbox.put(msg)

        await nc.subscribe(subject, queue=queue, cb=take)
        await nc.flush()
        if on_ready is not None:
            on_ready()
        last = time.monotonic()
        while not stop.is_set():
            try:
                msg = await asyncio.wait_for(inbox.get(), timeout=0.2)
            except TimeoutError:
                if idle_exit is not None and time.monotonic() - last >= idle_exit:
                    break
                continue
            last = time.monotonic()
            stats.messages += 1
            for line in bounded_lines(io.BytesIO(msg.data), first_line=stats.lines + 1):
                stats.lines += 1
                for event in watcher.feed(stats.lines, line):
                    if isinstance(event, LineError):
                        stats.errors += 1
                    else:
                        stats.alerts += 1
                        if alerts_subject:
                            await nc.publish(alerts_subject, alert_json(event))
                    on_event(event)
        await nc.flush()
    finally:
        report.closing = True
        await nc.close()
    return stats
