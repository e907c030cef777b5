"""``brokerguard demo-site`` removes its embedded guard's temporary folder when it is stopped.

The folder holds the guard's database (its API key's hash, every decision and audit entry of the
demo). SIGTERM — what ``kill``, ``docker stop`` and systemd send — ended the process on the
spot: uvicorn shuts down gracefully, then raises the signal again with Python's default
handler, so the command's ``finally`` never ran and every demo left a folder behind. The real
command runs here in its own process, on real ports.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from brokerguard.frontdoor.embedded import free_port


def _wait_for_site(process: subprocess.Popen[str], url: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"demo-site ended early:\n{process.stdout.read()}"
        try:
            if httpx.get(url + "/login", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"demo-site did not answer on {url}")


def test_sigterm_stops_the_demo_site_and_removes_its_guards_folder(tmp_path: Path) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    port = free_port()
    env = {**os.environ, "TMPDIR": str(scratch), "COLUMNS": "400", "NO_COLOR": "1"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "brokerguard",
            "demo-site",
            "--port",
            str(port),
            "--store",
            str(tmp_path / "site.db"),
        ],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait_for_site(process, f"http://127.0.0.1:{port}")
        (folder,) = scratch.glob("bg-demo-guard-*")
        assert (folder / "guard.db").exists()
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 143, output  # ended by SIGTERM, as a shell reports it
    assert not folder.exists(), f"{folder} left behind:\n{output}"
    assert list(scratch.iterdir()) == []
    shown = re.search(r"files in (\S+)\)", output)
    assert shown and shown.group(1) == str(folder)
    assert "Traceback" not in output, output
