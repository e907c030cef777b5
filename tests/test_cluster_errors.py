"""The scale-out commands against servers that are there but wrong: a NATS without JetStream, a
NATS that never replies, a socket that never greets, a Redis that says nothing or is not Redis.

Each must end with exit status 2 and one line naming the server and the problem — no
traceback, and no "cannot reach NATS" for a server that was reached.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import nats
import pytest
from cluster_helpers import NATS_URL, fresh_names
from servers import DeafNats, HangingServer, free_port, nats_server

from brokerguard.cluster.stream import NatsNoTls, connect

BG = [sys.executable, "-m", "brokerguard"]


def run(*args: str, timeout: float = 90) -> tuple[int, str]:
    done = subprocess.run([*BG, *args], capture_output=True, text=True, timeout=timeout)
    return done.returncode, done.stderr


def run_all(*commands: list[str], timeout: float = 90) -> list[tuple[int, str]]:
    """Like :func:`run` for each command, all at once: each waits out its own server's silence
    (seconds each) side by side instead of one after the other. In the order given."""
    procs = [
        subprocess.Popen([*BG, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for args in commands
    ]
    done = []
    try:
        for proc in procs:
            _, stderr = proc.communicate(timeout=timeout)
            done.append((proc.returncode, stderr))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return done


def one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr and "──" not in stderr, stderr[-3000:]
    lines = [x for x in stderr.splitlines() if x.startswith("error:")]
    assert len(lines) == 1, stderr[-3000:]
    return lines[0]


def test_a_nats_server_without_jetstream_is_named_as_such(tmp_path: Path) -> None:
    """A plain NATS server answers every JetStream request with "no responders": ``status``
    printed a traceback (``ServiceUnavailableError``), the others "failed:
    ServiceUnavailableError: ... description='None'"."""
    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    empty = tmp_path / "events.ndjson"
    empty.write_bytes(b"")
    commands = (
        ["status"],
        ["ingest", str(empty)],
        ["worker", "--idle-exit", "1", "--instructions", str(tmp_path / "i.ndjson")],
        ["campaign-stage", "--idle-exit", "1"],
    )
    with nats_server(port, tmp_path / "js", jetstream=False):
        done = run_all(*([*command, "--nats", url] for command in commands))
    for command, (code, stderr) in zip(commands, done, strict=True):
        assert code == 2, (command, stderr[-3000:])
        line = one_error_line(stderr)
        assert f"NATS at {url} has no JetStream" in line and "-js" in line, line


def test_a_nats_that_never_replies_or_never_greets_is_not_unreachable() -> None:
    """A server that greets and then never answers a request was "cannot reach NATS ...:
    nats: timeout" from ``status``; a socket that accepts and never greets was "nats: no
    servers available for connection", which says neither."""
    deaf, mute = DeafNats(), HangingServer()
    url = f"nats://127.0.0.1:{mute.port}"
    try:  # nats-py's 5 s request timeout and the 3 s greeting wait, side by side
        (code, stderr), (mute_code, mute_err), (refused_code, refused_err) = run_all(
            ["status", "--nats", deaf.url],
            ["status", "--nats", url],
            ["status", "--nats", "nats://127.0.0.1:1"],
        )
    finally:
        deaf.close()
        mute.close()
    assert code == 2, stderr[-3000:]
    line = one_error_line(stderr)
    assert f"NATS at {deaf.url} is connected but did not answer a request in time" in line
    assert mute_code == 2, mute_err[-3000:]
    line = one_error_line(mute_err)
    assert f"cannot reach NATS at {url}: no NATS greeting within 3 s" in line, line
    assert refused_code == 2
    assert "nats://127.0.0.1:1: Connection refused" in one_error_line(refused_err)


def test_a_redis_that_says_nothing_or_is_not_redis_is_named(tmp_path: Path) -> None:
    """With the stream there, ``status`` reads Redis: a Redis that never answers, or a server
    there that is not Redis, ended in a traceback (redis-py's ``TimeoutError``,
    ``InvalidResponse``: neither is the ``ConnectionError`` it caught)."""
    import nats

    from brokerguard.cluster.stream import ensure_stream

    port = free_port()
    url = f"nats://127.0.0.1:{port}"

    async def create() -> None:
        nc = await nats.connect(url)
        await ensure_stream(nc.jetstream(), "BG_EVENTS", "bg.events", 2)
        await nc.close()

    mute, deaf = HangingServer(), DeafNats()
    try:
        with nats_server(port, tmp_path / "js"):
            asyncio.run(create())
            silent = f"redis://127.0.0.1:{mute.port}/0"
            other = f"redis://127.0.0.1:{deaf.port}/0"
            (code, stderr), (other_code, other_err) = run_all(
                ["status", "--nats", url, "--redis", silent],
                ["status", "--nats", url, "--redis", other],
            )
            assert code == 2, stderr[-3000:]
            assert f"Redis at {silent} did not answer in time" in one_error_line(stderr)
            assert other_code == 2, other_err[-3000:]
            line = one_error_line(other_err)
            assert f"Redis at {other} failed: InvalidResponse" in line, line
    finally:
        mute.close()
        deaf.close()


LOGIN = (
    b'{"type":"login","id":"tls-1","ts":"2025-04-01T09:00:00Z","account":"a1","session":"s1",'
    b'"ip":"192.0.2.1","user_agent":"ua","factors":["password"],"success":true}\n'
)


def stream_exists(stream: str) -> bool:
    async def look() -> bool:
        nc = await nats.connect(NATS_URL)
        try:
            await nc.jetstream().stream_info(stream)
        except nats.js.errors.NotFoundError:
            return False
        finally:
            await nc.close()
        return True

    return asyncio.run(look())


def test_a_tls_url_to_a_nats_without_tls_is_refused_not_spoken_in_plain_text(
    tmp_path: Path,
) -> None:
    """``tls://`` asks for an encrypted connection; nats-py upgrades only when the server
    requires TLS, so against the machine's plain NATS every command connected in plain text
    and ``ingest`` published customers' events unencrypted. It must stop at once: exit 2, one
    line saying the server offers no TLS, nothing published."""
    url = NATS_URL.replace("nats://", "tls://")
    events = tmp_path / "events.ndjson"
    events.write_bytes(LOGIN)
    with fresh_names() as n:
        for command in (
            ["status", "--stream", n.stream],
            ["ingest", str(events), *n.cli(4)],
            ["worker", "--idle-exit", "1", "--instructions", str(tmp_path / "i.ndjson"), *n.cli(4)],
        ):
            t0 = time.monotonic()
            code, stderr = run(*command, "--nats", url, timeout=60)
            assert code == 2, (command, stderr[-3000:])
            assert time.monotonic() - t0 < 20, command  # fails fast, not after retries
            line = one_error_line(stderr)
            assert url in line and "does not offer TLS" in line, line
        assert not stream_exists(n.stream)  # nothing went out in plain text


def test_connect_refuses_a_tls_url_the_server_answers_without_tls() -> None:
    async def attempt() -> None:
        await connect(NATS_URL.replace("nats://", "tls://"))

    with pytest.raises(NatsNoTls, match="does not offer TLS"):
        asyncio.run(attempt())
    # the same server by nats:// is fine
    nc = asyncio.run(_connect_and_close(NATS_URL))
    assert nc.is_closed


async def _connect_and_close(url: str) -> Any:
    nc = await connect(url)
    await nc.close()
    return nc


def test_a_tls_url_to_a_nats_with_tls_connects(tmp_path: Path) -> None:
    """The refusal above must not refuse a server that does speak TLS: a nats-server of the
    test's own with a self-signed certificate (trusted through ``SSL_CERT_FILE``)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"]
        + ["-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )
    port = free_port()
    tls = ["--tls", "--tlscert", str(cert), "--tlskey", str(key)]
    with nats_server(port, tmp_path / "js", extra=tls):
        done = subprocess.run(
            [*BG, "status", "--nats", f"tls://127.0.0.1:{port}", "--stream", "BGT_NONE"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "SSL_CERT_FILE": str(cert)},
        )
    # connected over TLS: the stream is missing, not the server's TLS
    assert "no stream BGT_NONE" in done.stderr and "TLS" not in done.stderr, done.stderr
