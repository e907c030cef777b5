"""``brokerguard worker --blocklist FILE`` on the real NATS JetStream and Redis, as a process: the
list is loaded at start (a broken one stops the start), and a new version of the file reaches
the running worker's engines without a restart.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cluster_helpers import Names, fresh_names
from engine_helpers import OCN, device, ip_in

from brokerguard.events import LoginAttempt, encode
from brokerguard.phishing._blocklist import HEADER

BG = [sys.executable, "-m", "brokerguard"]
PARTS = 2
KIT = "secure-login.verify-acc.xyz"


@pytest.fixture
def names() -> Iterator[Names]:
    with fresh_names() as n:
        yield n


def login(n: int, referrer: str) -> LoginAttempt:
    """A first sign-in of a new account from a home line (allowed unless something speaks)."""
    return LoginAttempt(
        id=f"wbl-{n}",
        ts=datetime(2025, 4, 1, 9, tzinfo=UTC) + timedelta(minutes=n),
        account=f"WBL{n}",
        session=f"wbl-s{n}",
        ip=ip_in(OCN, 100 + n),
        user_agent=device(100 + n),
        device=None,
        factors=["password"],
        success=True,
        referrer=referrer,
    )


def ingest(names: Names, tmp: Path, *events: LoginAttempt) -> None:
    path = tmp / f"{events[0].id}.ndjson"
    path.write_bytes(b"".join(encode(e) + b"\n" for e in events))
    subprocess.run([*BG, "ingest", str(path), *names.cli(PARTS)], check=True, capture_output=True)


def actions(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    return {d["event"]: d["action"] for d in map(json.loads, path.read_text().splitlines())}


def wait_for(path: Path, count: int, timeout: float = 60.0) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while len(actions(path)) < count:
        assert time.monotonic() < deadline, f"{count} decisions not written in {timeout} s"
        time.sleep(0.05)
    return actions(path)


def test_a_running_worker_takes_a_new_list_and_keeps_the_old_one_when_broken(
    names: Names, tmp_path: Path
) -> None:
    bl = tmp_path / "bl.txt"
    bl.write_text("ok.example\nnot a host\n", encoding="utf-8")
    refused = subprocess.run(
        [*BG, "worker", *names.cli(PARTS), "--blocklist", str(bl)], capture_output=True, text=True
    )
    assert refused.returncode == 2 and "bl.txt:2: host" in refused.stderr

    bl.write_text(f"{HEADER}\nother.example\n", encoding="utf-8")
    out = tmp_path / "decisions.ndjson"
    args = [*names.cli(PARTS), "--prefix", names.prefix, "--durable", names.durable]
    args += ["--lease-ttl", "1.5", "--idle-exit", "20", "--decisions", str(out)]
    args += ["--blocklist", str(bl), "--blocklist-poll", "0.2"]
    worker = subprocess.Popen([*BG, "worker", *args], stderr=subprocess.PIPE, text=True)
    try:
        kit = f"https://{KIT}/signin"
        ingest(names, tmp_path, login(1, kit), login(2, "https://other.example/"))
        first = wait_for(out, 2)
        assert first["wbl-1"] == "allow"  # not listed yet
        assert first["wbl-2"] != "allow"  # listed from the start

        bl.write_text(f"{HEADER}\n{KIT}\n", encoding="utf-8")  # today's export
        time.sleep(1.0)
        ingest(names, tmp_path, login(3, kit), login(4, "https://other.example/"))
        second = wait_for(out, 4)
        assert second["wbl-3"] != "allow"  # the new list is in force
        assert second["wbl-4"] == "allow"  # and the old one is gone

        bl.write_text(f"{HEADER}\n{KIT}\nhttps://broken line/\n", encoding="utf-8")
        time.sleep(1.0)
        ingest(names, tmp_path, login(5, kit))
        assert wait_for(out, 5)["wbl-5"] != "allow"  # a broken version keeps the list in force
    finally:
        worker.terminate()
        _, stderr = worker.communicate(timeout=60)
    assert "block-list not reloaded" in stderr and "bl.txt:3: host" in stderr
