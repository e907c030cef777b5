"""The service's publisher: every event it takes, and what it decided, onto the cluster's stream.

With ``brokerguard serve --nats URL`` the service publishes each event it feeds its engine
(``/v1/decide``, ``/v1/events``, and the out-of-band answers an analyst gives to a held order) to
the partitioned stream exactly as ``brokerguard ingest`` would (:mod:`brokerguard.cluster.stream`):
subject ``<subject>.<partition>``, ``Nats-Msg-Id`` the event id (``<id>/<p>`` for a market
event's copies), so JetStream drops the same event published again by ``ingest`` within its
duplicate window. The body is the event encoded as one NDJSON line (the fields the service
decoded, re-encoded; the message id, not the body, is what deduplicates).

A decision point's message carries the service's answer in headers — ``Bg-Action``,
``Bg-Score``, ``Bg-Decision-Id``, ``Bg-Guard``, ``Bg-Point`` — and a compact decision record
(JSON) is also published to ``<subject>.decisions`` **in the same stream** (message id
``<event id>/decision``). The same stream because its subjects are ``<subject>.*`` already: no
second stream to create, configure and retain; the workers' consumers filter on
``<subject>.<partition>`` and never see the records; an analytics job consumes
``<subject>.decisions`` with a filtered consumer of its own.

Publishing never blocks or fails a decision. :meth:`Publisher.event` only appends to a bounded
in-memory outbox (the event loop's thread, no I/O); a task on the same loop drains it in
windows of pipelined JetStream asynchronous publishes, in order, awaiting their
acknowledgements, and yielding to the loop every few messages. When NATS
is unreachable the task retries with exponential back-off (0.1 s doubling to 5 s) while the
outbox fills (and so when a ``tls://`` URL finds a server without TLS: nothing is sent in plain
text, ``/healthz`` says why); once full, new messages are dropped and counted (``dropped``),
never the decision. A failed window is published again from its first message; messages of it
already stored are dropped by JetStream as duplicates. On shutdown the task drains what it can
within ``drain_timeout`` seconds; what is left is counted as dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from typing import Any

from brokerguard.cluster.partition import partition_of
from brokerguard.cluster.stream import (
    DEFAULT_EPOCH_SECONDS,
    DEFAULT_PARTITIONS,
    DEFAULT_STREAM,
    DEFAULT_SUBJECT,
    EpochClock,
    ensure_stream,
    marker_headers,
    require_tls,
)
from brokerguard.events import Event, encode

__all__ = ["DEFAULT_OUTBOX", "Publisher", "decisions_subject"]

log = logging.getLogger("brokerguard.service.publish")
DEFAULT_OUTBOX = 100_000  # messages waiting for NATS, at most
WINDOW = 256  # publishes awaiting their acknowledgement at a time
YIELD_EVERY = 4  # publishes between two yields to the event loop (decisions go first)
BACKOFF_MIN = 0.1
BACKOFF_MAX = 5.0

Message = tuple[str, bytes, dict[str, str]]  # subject, body, headers


def decisions_subject(subject: str) -> str:
    """Where the decision records go: inside the stream's ``<subject>.*``, beside partitions."""
    return f"{subject}.decisions"


class Publisher:
    """A bounded outbox of messages for JetStream and the task that drains it.

    Every method but :meth:`start`/:meth:`stop` is synchronous and does no I/O, so the service
    calls it from the event loop's thread between decisions.
    """

    def __init__(
        self,
        url: str,
        *,
        stream: str = DEFAULT_STREAM,
        subject: str = DEFAULT_SUBJECT,
        partitions: int = DEFAULT_PARTITIONS,
        capacity: int = DEFAULT_OUTBOX,
        publish_timeout: float = 2.0,
        drain_timeout: float = 5.0,
        epoch_seconds: float = DEFAULT_EPOCH_SECONDS,
    ) -> None:
        self.url = url
        self.clock = EpochClock(epoch_seconds)
        self.stream = stream
        self.subject = subject
        self.partitions = partitions
        self.capacity = capacity
        self.publish_timeout = publish_timeout
        self.drain_timeout = drain_timeout
        self.outbox: deque[Message] = deque()
        self.published = 0  # messages JetStream acknowledged (duplicates included)
        self.duplicates = 0  # ... of which it had already stored (same message id)
        self.dropped = 0  # messages given up: the outbox was full, or left at shutdown
        self.retries = 0  # windows published again after a failure
        self.connected = False
        self.last_error: str | None = None
        self._wake: asyncio.Event | None = None  # made in start(), on the service's loop
        self._task: asyncio.Task[None] | None = None
        self._nc: Any = None
        self._stopping = False

    # --- the service's side (event loop thread, no I/O) -----------------------------------------
    def _put(self, message: Message) -> None:
        if len(self.outbox) >= self.capacity:
            self.dropped += 1
            return
        self.outbox.append(message)

    def event(self, event: Event, answer: dict[str, Any] | None = None, guard: str = "") -> None:
        """Queue ``event`` (with the service's ``answer`` when it decided it); never raises.

        ``answer`` is what :meth:`~brokerguard.service.runtime.Service.decide` returned;
        ``guard`` the name of the engine that decided.
        """
        try:
            body = encode(event)
            opened = self.clock.opens(event)
            if opened is not None:  # the campaign stage's epochs, as ingest marks them
                for q in range(self.partitions):
                    self._put((f"{self.subject}.{q}", b"", marker_headers(opened, q)))
            p = partition_of(event, self.partitions)
            if p is None:  # a market event: a copy for every partition, as ingest does
                for q in range(self.partitions):
                    self._put((f"{self.subject}.{q}", body, {"Nats-Msg-Id": f"{event.id}/{q}"}))
            else:
                headers = {"Nats-Msg-Id": event.id}
                if answer is not None:
                    headers.update(decision_headers(answer, guard))
                self._put((f"{self.subject}.{p}", body, headers))
                if answer is not None:
                    record = decision_body(answer, guard, p)
                    self._put(
                        (
                            decisions_subject(self.subject),
                            record,
                            {"Nats-Msg-Id": f"{event.id}/decision"},
                        )
                    )
            if self._wake is not None:
                self._wake.set()
        except Exception:  # a decision must never fail because of publishing
            self.dropped += 1
            log.exception("could not queue event %s for NATS", getattr(event, "id", "?"))

    def stats(self) -> dict[str, Any]:
        """For ``/healthz``: whether NATS is reached, and what waits, went, and was dropped."""
        return {
            "connected": self.connected,
            "outbox": len(self.outbox),
            "capacity": self.capacity,
            "published": self.published,
            "duplicates": self.duplicates,
            "dropped": self.dropped,
            "retries": self.retries,
            "last_error": self.last_error,
        }

    # --- the draining task ------------------------------------------------------------------------
    async def start(self) -> None:
        """Start draining (returns at once: NATS may be down, the service starts anyway)."""
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Publish what is queued within ``drain_timeout`` seconds; count the rest as dropped."""
        self._stopping = True
        if self._wake is not None:
            self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), self.drain_timeout)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._task
            self._task = None
        self.dropped += len(self.outbox)
        self.outbox.clear()
        await self._close()

    async def _close(self) -> None:
        nc, self._nc = self._nc, None
        self.connected = False
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.close()

    async def _connect(self) -> Any:
        import nats

        async def quiet(exc: Exception) -> None:  # nats-py logs every failure otherwise
            self.last_error = f"{type(exc).__name__}: {exc}"

        async def gone() -> None:
            self.connected = False

        async def back() -> None:
            self.connected = True

        # Connecting the first time fails fast (one retry) and _run backs off; once connected,
        # nats-py reconnects by itself, without end, and buffers what is published meanwhile.
        nc = await nats.connect(
            self.url,
            connect_timeout=1.0,
            allow_reconnect=True,
            max_reconnect_attempts=1,
            reconnect_time_wait=0.2,
            error_cb=quiet,
            disconnected_cb=gone,
            reconnected_cb=back,
        )
        nc.options["max_reconnect_attempts"] = -1
        nc.options["reconnect_time_wait"] = 0.5
        try:
            require_tls(nc, self.url)  # tls:// to a server without TLS: nothing in plain text
            js = nc.jetstream(timeout=self.publish_timeout)
            await ensure_stream(js, self.stream, self.subject, self.partitions)
        except BaseException:
            with contextlib.suppress(Exception):
                await nc.close()
            raise
        self._nc = nc
        self.connected = True
        return js

    async def _run(self) -> None:
        assert self._wake is not None
        backoff = BACKOFF_MIN
        js = None
        while True:
            if not self.outbox:
                if self._stopping:
                    return
                self._wake.clear()
                if not self.outbox:
                    await self._wake.wait()
                continue
            try:
                if js is None:
                    js = await self._connect()
                await self._publish_window(js)
                backoff = BACKOFF_MIN
            except Exception as exc:  # NATS down, a timeout, a stream cut differently
                self.last_error = f"{type(exc).__name__}: {exc}"
                self.retries += 1
                if self._nc is None:
                    js = None  # connecting failed: connect again next time
                if self._stopping and js is None:
                    return  # no NATS to drain into: stop() counts the rest as dropped
                # once per outage at warning level (/healthz shows it meanwhile)
                level = logging.WARNING if backoff == BACKOFF_MIN else logging.DEBUG
                log.log(level, "publishing to NATS failed (retry in %.1fs): %s", backoff, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)

    async def _publish_window(self, js: Any) -> None:
        """Publish the outbox's first messages, pipelined; remove them once all are acked.

        JetStream's asynchronous publish (one reply subscription for all acknowledgements) costs
        about two thirds of a request per message. The loop is the one that decides, so the
        window yields to it every :data:`YIELD_EVERY` messages: a request waits behind at most
        that many publishes (well under a millisecond), not behind a whole window. Futures of a
        failed window are cancelled, which gives their places back to nats-py's pending limit.
        """
        window = [self.outbox[i] for i in range(min(WINDOW, len(self.outbox)))]
        futures: list[asyncio.Future[Any]] = []
        try:
            for n, (subject, body, headers) in enumerate(window, start=1):
                futures.append(
                    await js.publish_async(
                        subject,
                        body,
                        stream=self.stream,
                        headers=headers,
                        wait_stall=self.publish_timeout,
                    )
                )
                if n % YIELD_EVERY == 0:
                    await asyncio.sleep(0)
            acks = await asyncio.wait_for(asyncio.gather(*futures), self.publish_timeout)
        except BaseException:
            for future in futures:
                future.cancel()
            raise
        for _ in window:
            self.outbox.popleft()
        self.published += len(acks)
        self.duplicates += sum(1 for ack in acks if getattr(ack, "duplicate", False))
        self.last_error = None
        self.connected = True


def decision_headers(answer: dict[str, Any], guard: str) -> dict[str, str]:
    """The service's answer on the event's own message (a worker reads it with the event)."""
    return {
        "Bg-Action": str(answer["action"]),
        "Bg-Score": repr(float(answer["score"])),
        "Bg-Decision-Id": str(answer["decision_id"]),
        "Bg-Guard": guard,
        "Bg-Point": str(answer["point"]),
    }


def decision_body(answer: dict[str, Any], guard: str, partition: int) -> bytes:
    """The compact decision record published to ``<subject>.decisions``."""
    record = {
        "event": answer["event_id"],
        "decision_id": answer["decision_id"],
        "account": answer["account"],
        "point": answer["point"],
        "action": answer["action"],
        "score": answer["score"],
        "factors": answer.get("factors", []),
        "alert_id": answer.get("alert_id"),
        "guard": guard,
        "partition": partition,
        "at": time.time(),
    }
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()
