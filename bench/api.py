"""Benchmark: ``POST /v1/decide`` over loopback, from a separate process, at fixed request rates.

    python bench/api.py [SCENARIO] [--events PATH] [--rates 250,500,1000] [--seconds 10]
                        [--database URL] [--state] [--keep DIR]

Records a run first (the scenario — default spring-2025 — simulated under allow-all into a
temporary directory) or takes ``--events``. Starts ``brokerguard serve`` (one uvicorn worker, a
fresh SQLite database in the temporary directory unless ``--database`` is given; ``--state``
also keeps the engine's state in an SQLite file) and creates an API key with the CLI.

Then it plays the log in order. Everything before the first decision point (instruments,
account and holdings snapshots) is loaded through ``/v1/events`` first, untimed. From there each
decision point is one ``POST /v1/decide``, sent on an open-loop schedule: request ``i`` of a
phase is due at ``start + i / rate`` whether or not earlier answers came back (so a slow server
cannot slow the load down and hide its own latency). The events that need no answer between two
decision points (sessions, fills, challenge answers, market bars) go to ``/v1/events`` in
batches every 50 ms, on their own connection, as a broker's event feed would.

Latency is measured from the moment a request was due to the moment its whole answer was read
(a request that waits for a free connection or for the client's own loop counts that wait). A
2-second warm-up at the lowest rate runs first and is not reported. The client is a small
asyncio HTTP/1.1 client over keep-alive connections (uvloop when installed), so that the load
generator costs little of the machine's two cores. Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
BATCH_BYTES = 900 * 1024  # under the service's 1 MiB limit
INGEST_EVERY_S = 0.05


def brokerguard() -> list[str]:
    exe = Path(sys.executable).with_name("brokerguard")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "brokerguard"]


def record(scenario: str, out: Path) -> Path:
    started = time.perf_counter()
    subprocess.run(
        [*brokerguard(), "simulate", scenario, "--out", str(out), "--guard", "allow-all"],
        check=True,
        stderr=subprocess.DEVNULL,
    )
    print(f"recorded          {scenario} under allow-all in {time.perf_counter() - started:.1f} s")
    return out / "events.ndjson"


def is_decision_point(line: bytes) -> bool:
    """The service's rule (guard.decision_point) on the raw line: cheap, no decoding."""
    head = json.loads(line)
    kind = head["type"]
    if kind == "order":
        return head.get("action", "new") == "new"
    return kind in ("login", "withdrawal", "settings")


@dataclass
class Step:
    """One decision point and the observed events that came before it in the log."""

    body: bytes
    before: list[bytes] = field(default_factory=list)


def load_log(path: Path) -> tuple[list[bytes], list[Step]]:
    preload: list[bytes] = []
    steps: list[Step] = []
    pending: list[bytes] = []
    for raw in path.read_bytes().splitlines():
        if not raw.strip():
            continue
        if is_decision_point(raw):
            if not steps:
                preload, pending = pending, []
            steps.append(Step(raw, pending))
            pending = []
        else:
            pending.append(raw)
    return preload, steps


def batches(lines: list[bytes]) -> list[bytes]:
    out: list[bytes] = []
    current: list[bytes] = []
    size = 0
    for line in lines:
        if current and size + len(line) + 1 > BATCH_BYTES:
            out.append(b"\n".join(current) + b"\n")
            current, size = [], 0
        current.append(line)
        size += len(line) + 1
    if current:
        out.append(b"\n".join(current) + b"\n")
    return out


# --- a small HTTP/1.1 client ----------------------------------------------------------------
class Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time; responses with Content-Length."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection closed"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end]).decode("latin-1")
        length = 0
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        if len(self.buffer) < end + 4 + length:
            return
        body = bytes(self.buffer[end + 4 : end + 4 + length])
        del self.buffer[: end + 4 + length]
        status = int(head.split(" ", 2)[1])
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result((status, body))

    def request(self, data: bytes) -> asyncio.Future[tuple[int, bytes]]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self.waiter


class Client:
    def __init__(self, port: int, key: str, size: int = 64) -> None:
        self.port = port
        self.key = key
        self.idle: list[Connection] = []
        self.size = size
        self.opened = 0

    async def _connection(self) -> Connection:
        while self.idle:
            conn = self.idle.pop()
            if not conn.closed:
                return conn
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(Connection, HOST, self.port)
        self.opened += 1
        return conn

    def message(self, path: str, body: bytes, media: str) -> bytes:
        return (
            f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: Bearer {self.key}\r\n"
            f"Content-Type: {media}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body

    async def post(
        self, path: str, body: bytes, media: str = "application/json"
    ) -> tuple[int, bytes]:
        conn = await self._connection()
        try:
            result = await conn.request(self.message(path, body, media))
        except BaseException:
            conn.closed = True
            raise
        self.idle.append(conn)
        return result


# --- the server -------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def start_server(
    database: str, port: int, state: Path | None, log: Path
) -> subprocess.Popen[bytes]:
    command = [*brokerguard(), "serve", "--host", HOST, "--port", str(port), "--database", database]
    if state is not None:
        command += ["--state", str(state)]
    server = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited: see {log}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.2):
            return server
        time.sleep(0.1)
    server.kill()
    raise SystemExit("the server did not start within 60 s")


def new_key(database: str) -> str:
    done = subprocess.run(
        [*brokerguard(), "keys", "create", "--scope", "decide,ingest,read", "--database", database],
        check=True,
        capture_output=True,
    )
    return done.stdout.decode().strip()


# --- the load -------------------------------------------------------------------------------------
@dataclass
class Phase:
    rate: int
    latencies: list[float]
    errors: int
    elapsed: float
    statuses: dict[int, int]
    others: float = 0.0  # cores' worth of CPU used by processes other than this benchmark's


def _ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # utime + stime


def _family(root: int) -> list[int]:
    """``root`` and its descendants (the server and its writer process)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                parents[int(entry.name)] = int(
                    (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
                )
    family, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, parent in parents.items() if parent in frontier]
        family += frontier
    return family


class CpuMeter:
    """CPU the rest of the machine used meanwhile: the benchmark shares its two cores with
    whatever else runs, and a figure taken on a busy machine should say so."""

    def __init__(self, server_pid: int) -> None:
        self.pids = [os.getpid(), *_family(server_pid)]

    def sample(self) -> tuple[int, int]:
        values = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        busy = sum(int(v) for v in values) - int(values[3]) - int(values[4])  # less idle, iowait
        return busy, sum(_ticks(pid) for pid in self.pids)

    def others(self, before: tuple[int, int], after: tuple[int, int], seconds: float) -> float:
        hz = os.sysconf("SC_CLK_TCK")
        return max(0.0, (after[0] - before[0]) - (after[1] - before[1])) / hz / seconds


class Feed:
    """Observed events, sent in order in batches on their own connection."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.pending: list[bytes] = []
        self.task: asyncio.Task[None] | None = None
        self.last = 0.0
        self.sent = 0

    def add(self, lines: list[bytes], now: float) -> None:
        self.pending.extend(lines)
        busy = self.task is not None and not self.task.done()
        if self.pending and not busy and now - self.last >= INGEST_EVERY_S:
            lines, self.pending = self.pending, []
            self.last = now
            self.task = asyncio.get_running_loop().create_task(self._send(lines))

    async def _send(self, lines: list[bytes]) -> None:
        for body in batches(lines):
            status, answer = await self.client.post("/v1/events", body, "application/x-ndjson")
            if status != 200:
                raise SystemExit(f"/v1/events answered {status}: {answer[:300]!r}")
            self.sent += body.count(b"\n")

    async def drain(self) -> None:
        if self.task is not None:
            await self.task
        if self.pending:
            lines, self.pending = self.pending, []
            await self._send(lines)


async def run_phase(
    client: Client, feed: Feed, steps: list[Step], rate: int, meter: CpuMeter | None = None
) -> Phase:
    loop = asyncio.get_running_loop()
    clock = time.perf_counter  # uvloop's loop.time() counts whole milliseconds
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0

    async def one(body: bytes, due: float) -> None:
        nonlocal errors
        try:
            status, _ = await client.post("/v1/decide", body)
        except ConnectionError:
            errors += 1
            return
        latencies.append(clock() - due)
        statuses[status] = statuses.get(status, 0) + 1
        if status != 200:
            errors += 1

    tasks = []
    cpu_before = meter.sample() if meter is not None else None
    start = clock() + 0.05
    for i, step in enumerate(steps):
        due = start + i / rate
        delay = due - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        feed.add(step.before, clock())
        tasks.append(loop.create_task(one(step.body, due)))
    await asyncio.gather(*tasks)
    elapsed = clock() - start
    phase = Phase(rate, latencies, errors, elapsed, statuses)
    if meter is not None and cpu_before is not None:
        phase.others = meter.others(cpu_before, meter.sample(), elapsed)
    return phase


def quantile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.2f}"


async def drive(
    port: int, key: str, preload: list[bytes], steps: list[Step], args, meter: CpuMeter
) -> list[Phase]:
    client = Client(port, key)
    feed_client = Client(port, key)
    started = time.perf_counter()
    for body in batches(preload):
        status, answer = await feed_client.post("/v1/events", body, "application/x-ndjson")
        if status != 200:
            raise SystemExit(f"preload: /v1/events answered {status}: {answer[:300]!r}")
    print(
        f"preloaded         {len(preload):,} events before the first decision point "
        f"in {time.perf_counter() - started:.1f} s (not measured)"
    )
    feed = Feed(feed_client)
    position = 0
    phases = []
    plan = [(min(args.rates), 2.0, False)] + [(r, args.seconds, True) for r in args.rates]
    for rate, seconds, reported in plan:
        count = int(rate * seconds)
        chunk = steps[position : position + count]
        if len(chunk) < count:
            raise SystemExit(
                f"the log has {len(steps):,} decision points, not enough for the phases "
                "(use a larger scenario or fewer --seconds)"
            )
        position += count
        phase = await run_phase(client, feed, chunk, rate, meter)
        await feed.drain()
        if reported:
            phases.append(phase)
        await asyncio.sleep(0.5)  # let the writer catch up between phases
    print(
        f"sent              {position:,} decisions and {feed.sent:,} observed events "
        f"over {client.opened} decide connections"
    )
    return phases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", nargs="?", default=str(ROOT / "scenarios/spring-2025.toml"))
    parser.add_argument("--events", type=Path, help="play this events.ndjson instead")
    parser.add_argument("--rates", default="250,500,1000", help="requests per second, per phase")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    parser.add_argument("--database", help="database URL (default: a fresh SQLite file)")
    parser.add_argument("--state", action="store_true", help="engine state in an SQLite file")
    parser.add_argument("--keep", type=Path, help="keep the server's files in this directory")
    args = parser.parse_args()
    args.rates = [int(r) for r in args.rates.split(",")]

    tmp = Path(tempfile.mkdtemp(prefix="bg-bench-api-"))
    try:
        path = args.events or record(args.scenario, tmp / "run")
        preload, steps = load_log(path)
        print(f"log               {len(steps):,} decision points in {path}")
        # The log is millions of objects: a full collection in the middle of a phase would stall
        # the load generator itself (~100 ms, seen), and be counted as the server's latency.
        gc.collect()
        gc.freeze()
        workdir = args.keep or tmp
        workdir.mkdir(parents=True, exist_ok=True)
        database = args.database or f"sqlite:///{workdir / 'service.db'}"
        key = new_key(database)
        port = free_port()
        state = workdir / "state.db" if args.state else None
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"load average      {load} before the server starts (other work on this machine)")
        server = start_server(database, port, state, workdir / "server.log")
        try:
            try:
                import uvloop

                uvloop.install()
            except ImportError:
                pass
            meter = CpuMeter(server.pid)
            phases = asyncio.run(drive(port, key, preload, steps, args, meter))
            with urllib.request.urlopen(f"http://{HOST}:{port}/healthz", timeout=10) as answer:
                health = json.loads(answer.read())
        finally:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
        records = "PostgreSQL" if "postgres" in database else "SQLite"
        engine_state = "engine state in SQLite (--state)" if state else "engine state in memory"
        print(
            f"server            1 uvicorn worker, {records} records, {engine_state}; "
            f"writer wrote {health['written']:,} records, dropped {health['dropped']}"
        )
        print()
        print(
            "  rate/s   sent  achieved/s   p50 ms   p99 ms  p99.9 ms   max ms  errors  other load"
        )
        for p in phases:
            ordered = sorted(p.latencies)
            print(
                f"{p.rate:>8} {len(p.latencies):>6} {len(p.latencies) / p.elapsed:>11,.0f} "
                f"{ms(quantile(ordered, 0.5)):>8} {ms(quantile(ordered, 0.99)):>8} "
                f"{ms(quantile(ordered, 0.999)):>9} {ms(ordered[-1] if ordered else 0):>8} "
                f"{p.errors:>7}  {p.others:>10.2f}"
            )
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        print(
            f"(cores: {os.cpu_count()}; latency from the moment each request was due; other load:"
            " cores' worth of CPU used meanwhile by processes that are not this benchmark's;"
            f" load average at the end {load})"
        )
    finally:
        if args.keep is None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
