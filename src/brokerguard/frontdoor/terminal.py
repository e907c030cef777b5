"""A notice channel that prints to the terminal, for ``brokerguard demo-site`` without SMTP.

Without it a demo started with no mail relay could never deliver the confirmation codes its
step-ups send (adding a passkey always needs one), and the person trying the site would be
stuck. It stands in for the ``email`` channel only when no relay and no webhook are given.
"""

from __future__ import annotations

import sys
import threading
from typing import TextIO

from brokerguard.notify.templates import Rendered

__all__ = ["TerminalChannel"]


class TerminalChannel:
    name = "email"

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream
        self._lock = threading.Lock()

    def send(self, to: str, notice: Rendered) -> None:
        stream = self.stream or sys.stdout
        rule = "-" * 72
        with self._lock:
            stream.write(f"\n{rule}\nmail to {to}: {notice.subject}\n\n{notice.body}\n{rule}\n")
            stream.flush()
