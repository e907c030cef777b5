"""The demo's last step: load a run into the service and open the console on it.

``brokerguard demo`` ends here. The BrokerGuard run's events go through the same
:class:`~.runtime.Service` that ``brokerguard serve`` runs — decided and recorded exactly as a
broker's systems would send them over ``/v1/events`` — into a database and an engine state file
of their own. Then a console user is made, and a server is started in the background on that
database and state, so the address printed at the end shows alerts, campaigns, timelines, cases
and the run's reports. The engine replays the closed-loop run's events in order, so it reaches
the same decisions the run recorded (the guard is deterministic) and its held orders still wait
for an analyst.

The server outlives the command on purpose (``make demo`` returns, the console stays up); its
process id is kept in ``console.pid`` and :func:`stop_console` ends it (``brokerguard demo
--stop-console``, or the next demo run).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from brokerguard.events import Event, read_ndjson

__all__ = ["ConsoleInfo", "load_run", "start_console", "stop_console"]

DATABASE_FILE = "console.db"
STATE_FILE = "console-state.db"
PID_FILE = "console.pid"
LOG_FILE = "console.log"
USERNAME = "demo"
CHUNK = 5000
_started: dict[int, subprocess.Popen[bytes]] = {}  # servers this process started, by pid


@dataclass(frozen=True)
class ConsoleInfo:
    url: str
    username: str
    password: str
    database_url: str
    pid: int
    log: Path


def _database_url(out: Path) -> str:
    return f"sqlite:///{(out / DATABASE_FILE).resolve()}"


def load_run(
    run_dir: Path,
    out: Path,
    progress: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """Decide and record ``run_dir/events.ndjson`` into a fresh database and state under ``out``.

    Returns the ingest counts (accepted, observed, decided, alerts). ``progress`` is called
    with the number of events done after each chunk.
    """
    from brokerguard.service.runtime import Service, Settings

    out.mkdir(parents=True, exist_ok=True)
    for name in (DATABASE_FILE, STATE_FILE):
        for suffix in ("", "-wal", "-shm"):
            (out / f"{name}{suffix}").unlink(missing_ok=True)
    svc = Service(Settings(database_url=_database_url(out), state_path=out / STATE_FILE))
    totals = {"accepted": 0, "observed": 0, "decided": 0, "alerts": 0}

    async def run() -> None:
        await svc.start()
        try:
            chunk: list[Event] = []
            with (run_dir / "events.ndjson").open("rb") as stream:
                for event in read_ndjson(stream):
                    chunk.append(event)
                    if len(chunk) == CHUNK:
                        await _ingest(svc, chunk, totals, progress)
                        chunk = []
            if chunk:
                await _ingest(svc, chunk, totals, progress)
            svc.tick()  # campaign snapshots and the state file, now
            await asyncio.to_thread(svc.recorder.wait_idle, 600.0)
        finally:
            await svc.stop()

    asyncio.run(run())
    return totals


async def _ingest(
    svc: object, chunk: list[Event], totals: dict[str, int], progress: Callable[[int], None] | None
) -> None:
    answer = await svc.ingest(chunk, caller="demo")  # type: ignore[attr-defined]
    for key in totals:
        totals[key] += int(answer[key])
    if progress is not None:
        progress(totals["accepted"])


def _make_user(database_url: str) -> str:
    from brokerguard.service import audit
    from brokerguard.service.db import make_engine, migrate, write_transaction
    from brokerguard.service.users import create_user

    password = secrets.token_urlsafe(12)
    engine = make_engine(database_url)
    migrate(engine)
    with write_transaction(engine) as conn:
        create_user(conn, USERNAME, password, "admin")
        audit.append(conn, [audit.AuditEntry("demo", "user.create", USERNAME, {"role": "admin"})])
    engine.dispose()
    return password


def stop_console(out: Path) -> bool:
    """End the console server a previous demo started from ``out``; True if one was running."""
    pid_file = out / PID_FILE
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return False
    pid_file.unlink(missing_ok=True)
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        cmdline = b""
    if b"serve" not in cmdline:  # not ours any more (the process ended and the id was reused)
        return False
    ours = _started.pop(pid, None)
    if ours is not None:  # started by this process: end it and collect its exit status
        ours.terminate()
        try:
            ours.wait(10)
        except subprocess.TimeoutExpired:
            ours.kill()
            ours.wait()
        return True
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            time.sleep(0.1)
            os.kill(pid, 0)
        os.kill(pid, signal.SIGKILL)
    return True


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def start_console(
    run_dir: Path, out: Path, host: str = "127.0.0.1", port: int = 8000
) -> ConsoleInfo:
    """Start ``brokerguard serve`` in the background on what :func:`load_run` wrote.

    Raises RuntimeError (with the server's log) when it does not answer within 60 seconds, and
    OSError when the port is taken by another program.
    """
    stop_console(out)
    url = f"http://{host}:{port}"
    if _answers(url):
        raise OSError(f"port {port} is taken by another server; pass --console-port")
    database_url = _database_url(out)
    password = _make_user(database_url)
    log = out / LOG_FILE
    env = {**os.environ, "BROKERGUARD_CONSOLE_RUN": str(run_dir.resolve())}
    command = [
        sys.executable,
        "-m",
        "brokerguard",
        "serve",
        "--host",
        host,
        "--port",
        str(port),
        "--database",
        database_url,
        "--state",
        str((out / STATE_FILE).resolve()),
    ]
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # the console stays up after the demo command returns
        )
    _started[process.pid] = process
    (out / PID_FILE).write_text(f"{process.pid}\n")
    deadline = time.monotonic() + 60
    while not _answers(url):
        if process.poll() is not None or time.monotonic() > deadline:
            stop_console(out)
            tail = log.read_text(encoding="utf-8", errors="replace")[-2000:]
            raise RuntimeError(f"the console server did not start:\n{tail}")
        time.sleep(0.2)
    return ConsoleInfo(f"{url}/console/", USERNAME, password, database_url, process.pid, log)
