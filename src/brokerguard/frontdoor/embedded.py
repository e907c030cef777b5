"""An embedded BrokerGuard service for ``brokerguard demo-site`` when no guard URL is given.

It is the real service (:func:`~brokerguard.service.app.create_app`) on its own SQLite file,
served by uvicorn on a free loopback port in a background thread of the same process, with an
API key made for the site (scopes ``decide``, ``ingest``, ``admin``: the freeze and its lifting
are account actions). The site still talks to it only over HTTP, exactly as it would to a
guard on another machine.

The demo's policy is the shipped one with one change: a risky order is *challenged* (a passkey,
or a code to the registered contact) instead of held for the security team — what a broker
whose customers have passkeys would choose, and what lets the demo show the whole step-up.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from pathlib import Path

import httpx

from brokerguard.engine.policy import default_policy_path, parse_policy
from brokerguard.service.db import make_engine, migrate, write_transaction
from brokerguard.service.keys import create_key

__all__ = ["EmbeddedGuard", "demo_policy_text", "free_port"]

ORDER_RULES = """rules = [
  { min_score = 0.5, action = "challenge", factors = ["passkey", "oob"] },
]"""


def demo_policy_text() -> str:
    """The shipped policy with orders stepped up by passkey or out-of-band code."""
    source = default_policy_path().read_text(encoding="utf-8")
    pattern = re.compile(r"(^\[order\]\n(?:(?!^\[).*\n)*?)^rules = \[\n(?:.*\n)*?^\]", re.M)
    changed, count = pattern.subn(lambda m: m.group(1) + ORDER_RULES, source, count=1)
    if count != 1:
        raise RuntimeError("the shipped policy has no [order] rules block to replace")
    changed = changed.replace('name = "default"', 'name = "demo-site"', 1)
    parse_policy(changed, "demo-site policy")  # fails loudly if the edit broke it
    return changed


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedGuard:
    """Start with :meth:`start`; ``url`` and ``key`` are then what a GuardClient needs."""

    def __init__(
        self, directory: str | Path, port: int | None = None, policy_text: str | None = None
    ) -> None:
        """``policy_text``: the policy TOML to run (default :func:`demo_policy_text`)."""
        self.directory = Path(directory)
        self.policy_text = policy_text
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.key = ""
        self._server = None
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 60.0) -> EmbeddedGuard:
        import uvicorn

        from brokerguard.service.app import create_app

        self.directory.mkdir(parents=True, exist_ok=True)
        database = f"sqlite:///{self.directory / 'guard.db'}"
        policy = self.directory / "demo-site-policy.toml"
        policy.write_text(self.policy_text or demo_policy_text(), encoding="utf-8")
        engine = make_engine(database)
        migrate(engine)
        with write_transaction(engine) as conn:
            _info, self.key = create_key(
                conn, ("decide", "ingest", "admin"), name="demo-site", created_by="demo-site"
            )
        engine.dispose()
        app = create_app(database, policy)
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False
        )
        server = uvicorn.Server(config)
        self._server = server
        self._thread = threading.Thread(target=server.run, name="embedded-guard", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if not self._thread.is_alive():
                break
            time.sleep(0.05)
        raise RuntimeError(f"the embedded guard did not start on {self.url}")

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(30)
