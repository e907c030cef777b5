"""Real local servers for the tests: SMTP (aiosmtpd), HTTP, a hanging socket, a private NATS
(with or without JetStream), a NATS that never replies."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from aiosmtpd.controller import Controller


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def nats_server(
    port: int, store: Path, jetstream: bool = True, extra: list[str] | None = None
) -> Iterator[subprocess.Popen]:
    """A JetStream nats-server of the test's own (killed at the end): one a test may stop,
    unlike the machine's shared server. ``jetstream=False``: a plain NATS server, up and
    answering, without JetStream. ``extra``: more of nats-server's options (``--tls`` ...)."""
    js = ["-js", "-sd", str(store)] if jetstream else []
    proc = subprocess.Popen(
        ["nats-server", *js, "-a", "127.0.0.1", "-p", str(port), *(extra or [])],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.1):
                break
            time.sleep(0.02)
        yield proc
    finally:
        proc.kill()
        proc.wait()


class Inbox:
    """An aiosmtpd handler that keeps every message; ``replies`` scripts answers to DATA."""

    def __init__(self, replies: list[str] | None = None) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.replies = list(replies or [])
        self.arrived = threading.Event()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        if self.replies:
            reply = self.replies.pop(0)
            if not reply.startswith("250"):
                return reply
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        self.arrived.set()
        return "250 OK"

    def parsed(self, i: int = -1) -> EmailMessage:
        return message_from_bytes(self.messages[i][2], policy=policy.default)  # type: ignore[return-value]


@contextmanager
def smtp_server(replies: list[str] | None = None) -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox(replies)
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


class HangingServer:
    """Accepts TCP connections and says nothing until released: a relay that is 'up' but dead."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.accepted = threading.Event()
        self.release = threading.Event()
        self.connections = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            self.accepted.set()
            self.release.wait()
            conn.close()  # the client sees the connection drop without a greeting

    def close(self) -> None:
        self.release.set()
        self.sock.close()


class DeafNats:
    """Speaks NATS's greeting (INFO) and answers PING with PONG, so a client connects; then
    never answers anything else: a server that is there and never replies to a request."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.url = f"nats://127.0.0.1:{self.port}"
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        info = {"server_id": "deaf", "version": "2.10.0", "headers": True, "proto": 1}
        info |= {"host": "127.0.0.1", "port": self.port, "max_payload": 1 << 20}
        buf = b""
        with contextlib.suppress(OSError):
            conn.sendall(b"INFO " + json.dumps(info).encode() + b"\r\n")
            while data := conn.recv(65536):
                buf += data
                while b"\r\n" in buf:
                    line, buf = buf.split(b"\r\n", 1)
                    if line.startswith(b"PING"):
                        conn.sendall(b"PONG\r\n")

    def close(self) -> None:
        self.sock.close()
        for conn in self._conns:
            conn.close()


class Hooks:
    """A local HTTP endpoint that records POSTs and answers with scripted statuses."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.statuses = list(statuses or [])
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hooks.requests.append((dict(self.headers), body))
                status = hooks.statuses.pop(0) if hooks.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/notify"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def payload(self, i: int = -1) -> dict:
        return json.loads(self.requests[i][1])

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
