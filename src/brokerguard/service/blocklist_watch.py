"""``serve --blocklist FILE``: the phishing block-list file, loaded at start and again whenever
it changes, so that today's export (or an analyst's approval) reaches the running guard without
a restart.

The rule is that the guard always holds a whole list: a new version replaces the old one only
when every line of it reads. So a reload that fails — a bad line, an unreadable or vanished
file — is logged (once per version of the file) and the old list stays in force; a file that is
being rewritten in place while it is read (its size, time or inode moved under the read) is
left for the next poll; and a file with no entries and without the list's header line, read
while the guard holds entries, is refused as a truncated file rather than loaded as an empty
list (``write_blocklist`` writes the header, atomically, so a deliberate empty list still
loads).

Reading happens off the event loop (:meth:`BlocklistWatch.check` is plain blocking code run
in a thread); the service then swaps the list into the engine on the loop's thread.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from brokerguard.phishing._blocklist import HEADER, Blocklist, BlocklistError, parse_blocklist

__all__ = ["BlocklistWatch"]

log = logging.getLogger("brokerguard.service.blocklist")
Signature = tuple[int, int, int]  # mtime (ns), size, inode


class _Moving(Exception):
    """The file changed while it was read: try again at the next poll."""


class BlocklistWatch:
    """The block-list file, the list last loaded from it, and when."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).resolve()
        self.blocklist: Blocklist | None = None
        self.loaded_at: datetime | None = None
        self.reloads = 0
        self.last_error: str | None = None
        self.last_error_at: datetime | None = None
        self._loaded: Signature | None = None
        self._failed: Signature | str | None = None  # the version that failed (or "missing")

    # --- reading -----------------------------------------------------------------------------
    def _signature(self) -> Signature:
        try:
            st = os.stat(self.path)
        except OSError as exc:
            raise BlocklistError(f"{self.path}: cannot read: {exc.strerror}") from None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _read(self) -> tuple[Blocklist, Signature, bool]:
        before = self._signature()
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise BlocklistError(f"{self.path}: cannot read: {exc.strerror}") from None
        if self._signature() != before or len(data) != before[1]:
            raise _Moving
        has_header = data.lstrip().startswith(HEADER.encode("utf-8"))
        return parse_blocklist(data, str(self.path)), before, has_header

    def load(self) -> Blocklist:
        """The first load (at start): a broken file raises :class:`BlocklistError`, so the
        service does not start with a list it cannot read."""
        try:
            blocklist, signature, _ = self._read()
        except _Moving:
            raise BlocklistError(f"{self.path}: changed while being read; try again") from None
        self._accept(blocklist, signature)
        return blocklist

    def check(self) -> Blocklist | None:
        """The new list when the file changed and reads whole; None when it is unchanged, is
        being written, or is broken (then the error is logged and the old list stays)."""
        try:
            signature = self._signature()
        except BlocklistError as exc:
            return self._refuse(exc, "missing")
        if signature == self._loaded:
            if self._failed is not None:  # the loaded version is back (e.g. renamed back)
                self._failed = self.last_error = self.last_error_at = None
            return None
        if signature == self._failed:
            return None
        try:
            blocklist, signature, has_header = self._read()
        except _Moving:
            return None
        except BlocklistError as exc:
            return self._refuse(exc, signature)
        held = len(self.blocklist) if self.blocklist is not None else 0
        if not len(blocklist) and held and not has_header:
            problem = BlocklistError(
                f"{self.path}: no entries and no header line ({HEADER!r}): refusing to replace "
                f"the {held} entries loaded with an empty list (a truncated file?)"
            )
            return self._refuse(problem, signature)
        self._accept(blocklist, signature)
        self.reloads += 1
        log.info("block-list %s reloaded: %d entries", self.path, len(blocklist))
        return blocklist

    # --- bookkeeping -------------------------------------------------------------------------
    def _accept(self, blocklist: Blocklist, signature: Signature) -> None:
        self.blocklist = blocklist
        self._loaded = signature
        self._failed = None
        self.loaded_at = datetime.now(UTC)
        self.last_error = None
        self.last_error_at = None

    def _refuse(self, error: BlocklistError, version: Signature | str) -> None:
        if version != self._failed:  # log each broken version once, not at every poll
            held = len(self.blocklist) if self.blocklist is not None else 0
            log.error("block-list not reloaded, keeping the %d entries loaded: %s", held, error)
        self._failed = version
        self.last_error = str(error)
        self.last_error_at = datetime.now(UTC)
        return None

    def status(self) -> dict[str, Any]:
        """For ``/healthz``: how many entries are in force, since when, and the last failure."""
        return {
            "path": str(self.path),
            "entries": len(self.blocklist) if self.blocklist is not None else 0,
            "loaded_at": self.loaded_at,
            "reloads": self.reloads,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
        }
