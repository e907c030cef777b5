"""What ended a command, in one line that names the thing and the problem.

Every command that talks to NATS, Redis or files turns the exception that stopped it into a
message with :func:`failure_message` instead of a traceback: "cannot reach NATS" only when no
connection could be made (:class:`~brokerguard.cluster.stream.NatsUnreachable`); NATS's own
errors later on (a request that timed out, JetStream not enabled, the connection closed) as
NATS's, naming the server; Redis as Redis (unreachable, silent, or answering nonsense); any
other ``OSError`` (an unreadable input, a full disk under an output file, a missing directory)
naming the file and the system's word.
"""

from __future__ import annotations

from brokerguard.redact import shown_url

__all__ = ["failure_message", "is_failure"]


def is_failure(exc: BaseException) -> bool:
    """Whether :func:`failure_message` says ``exc`` better than a traceback would: an
    ``OSError``, a timeout, or an error of nats-py or redis-py."""
    if isinstance(exc, OSError | TimeoutError):
        return True
    module = type(exc).__module__
    return module == "nats" or module.startswith(("nats.", "redis"))


def _said(exc: BaseException) -> str:
    said = " ".join(str(exc).split())  # one line, whatever the library put in it
    if len(said) > 200:  # a protocol error quoting what a wrong server sent
        said = said[:200] + "..."
    return f"{type(exc).__name__}: {said}" if said else type(exc).__name__


def failure_message(
    exc: BaseException, nats_url: str | None = None, redis_url: str | None = None
) -> str:
    """``exc`` said in one line, naming the server (``nats_url``, ``redis_url``: the ones the
    command was given; credentials are never shown) or the file."""
    from brokerguard.cluster.stream import NatsNoTls, NatsUnreachable

    nats_at = f" at {shown_url(nats_url)}" if nats_url else ""
    redis_at = f" at {shown_url(redis_url)}" if redis_url else ""
    module = type(exc).__module__
    if isinstance(exc, NatsNoTls):  # reached, and refused: not "cannot reach"
        return f"NATS{nats_at} refused: {' '.join(str(exc).split())}"
    if isinstance(exc, NatsUnreachable):
        return f"cannot reach NATS{nats_at}: {' '.join(str(exc).split())}"
    if module == "nats" or module.startswith("nats."):
        name = type(exc).__name__
        if name in ("ServiceUnavailableError", "NoRespondersError"):
            # a JetStream request nobody answers: the server runs without JetStream
            return f"NATS{nats_at} has no JetStream (no responders; start nats-server with -js)"
        if name == "NoServersError":
            return f"cannot reach NATS{nats_at}: {' '.join(str(exc).split())}"
        if isinstance(exc, TimeoutError):
            return f"NATS{nats_at} is connected but did not answer a request in time ({name})"
        return f"NATS{nats_at} failed: {_said(exc)}"
    if module.startswith("redis"):
        name = type(exc).__name__
        if name == "TimeoutError":
            return f"Redis{redis_at} did not answer in time ({' '.join(str(exc).split())})"
        if name == "ConnectionError":
            return f"cannot reach Redis{redis_at}: {' '.join(str(exc).split())}"
        return f"Redis{redis_at} failed: {_said(exc)}"
    if isinstance(exc, OSError):
        what = exc.strerror or " ".join(str(exc).split()) or type(exc).__name__
        if exc.filename is None:
            return f"{type(exc).__name__}: {what}"
        names = f"{exc.filename} -> {exc.filename2}" if exc.filename2 is not None else exc.filename
        return f"{names}: {what}"
    if isinstance(exc, TimeoutError):
        return f"timed out ({_said(exc)})"
    return _said(exc)
