"""Shared pieces of the authentication tests: a hand-wound clock and a notice recorder."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

from brokerguard.auth.passkeys import PasskeyConfig
from brokerguard.notify import Contact, render

BROKER = "https://www.sbisec.example"
PHISH = "https://sbisec.example-phish.top"
CONFIG = PasskeyConfig(rp_id="sbisec.example", rp_name="Example Securities", origins=(BROKER,))


class FakeClock:
    """Time that moves only when a test says so."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2025, 3, 20, 1, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


class Recorder:
    """A notifier that renders (so a missing field fails the test) and keeps what it was given."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, dict[str, str], tuple[str, ...] | None]] = []

    def notify(
        self,
        account: str,
        kind: str,
        fields: Mapping[str, str],
        *,
        channels: Sequence[str] | None = None,
        to: Contact | None = None,
    ) -> list[str]:
        render(kind, "en", {"when": "now", **fields})
        self.sent.append((account, kind, dict(fields), tuple(channels) if channels else None))
        return [str(len(self.sent))]

    def kinds(self) -> list[str]:
        return [s[1] for s in self.sent]

    def last_code(self) -> str:
        return self.sent[-1][2]["code"]
