"""The block-list the guard reads: phishing hosts, so that a login whose referrer (or clone-page
canary hit) names one of them can be challenged or denied.

Format (UTF-8 text, one entry a line, ``#`` starts a comment)::

    # brokerguard phishing block-list v1
    sbisec-jp.example-phish.top<TAB>sbi<TAB>2025-07-01T09:00:00Z<TAB>0.98
    *.example-phish.top<TAB>-<TAB>2025-07-01T09:00:00Z<TAB>0.90

Fields: host (``*.`` = the domain and every subdomain), brand id (``-`` if none), first seen
(ISO 8601), score. Only the host is required. A bad line is an error naming the file and line,
so that a broken list is never half-loaded.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from brokerguard.files import write_text
from brokerguard.phishing._score import Finding
from brokerguard.phishing._url import URLError, parse_url

__all__ = [
    "HEADER",
    "BlockEntry",
    "Blocklist",
    "BlocklistError",
    "load_blocklist",
    "parse_blocklist",
    "write_blocklist",
]

HEADER = "# brokerguard phishing block-list v1"


class BlocklistError(ValueError):
    """A block-list file that cannot be read; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class BlockEntry:
    host: str
    brand: str | None = None
    first_seen: str | None = None
    score: float | None = None
    wildcard: bool = False

    def line(self) -> str:
        host = f"*.{self.host}" if self.wildcard else self.host
        score = "" if self.score is None else f"{self.score:.4f}"
        return "\t".join([host, self.brand or "-", self.first_seen or "", score]).rstrip("\t")


def _as_url(text: str) -> str:
    """A bare IPv6 address (a finding's host, a hop's host: ``2001:db8::1``) in brackets, so
    that :func:`parse_url` reads it as a host and not as ``host:port``; other text unchanged."""
    try:
        return f"[{text}]" if ipaddress.ip_address(text).version == 6 else text
    except ValueError:
        return text


class Blocklist:
    """Exact hosts and wildcard domains; ``match`` takes a URL, a referrer or a bare host."""

    def __init__(self, entries: Iterable[BlockEntry] = ()) -> None:
        self.exact: dict[str, BlockEntry] = {}
        self.wild: dict[str, BlockEntry] = {}
        for e in entries:
            (self.wild if e.wildcard else self.exact)[e.host] = e

    def __len__(self) -> int:
        return len(self.exact) + len(self.wild)

    def entries(self) -> list[BlockEntry]:
        return sorted(
            [*self.exact.values(), *self.wild.values()], key=lambda e: (e.host, e.wildcard)
        )

    def match(self, url_or_host: str) -> BlockEntry | None:
        """The entry naming this URL's host (or a parent domain for wildcards), or None; text
        that is not a URL never matches."""
        try:
            host = parse_url(_as_url(url_or_host)).host
        except URLError:
            return None
        if host in self.exact:
            return self.exact[host]
        labels = host.split(".")
        for i in range(len(labels) - 1):
            hit = self.wild.get(".".join(labels[i:]))
            if hit:
                return hit
        return None


def _parse_line(text: str, where: str) -> BlockEntry:
    fields = text.split("\t")
    raw = fields[0].strip().lower()
    wildcard = raw.startswith("*.")
    host = raw[2:] if wildcard else raw
    try:
        parsed = parse_url(_as_url(host))
    except URLError as exc:
        raise BlocklistError(f"{where}: host: {exc}") from None
    if parsed.host != host or parsed.path != "/":
        raise BlocklistError(f"{where}: host: {raw!r} must be a bare host name (no scheme or path)")
    brand = fields[1].strip() if len(fields) > 1 and fields[1].strip() not in ("", "-") else None
    seen = fields[2].strip() if len(fields) > 2 and fields[2].strip() else None
    if seen:
        try:
            datetime.fromisoformat(seen.replace("Z", "+00:00"))
        except ValueError:
            raise BlocklistError(f"{where}: first_seen: {seen!r} is not an ISO 8601 time") from None
    score = None
    if len(fields) > 3 and fields[3].strip():
        try:
            score = float(fields[3])
        except ValueError:
            raise BlocklistError(f"{where}: score: {fields[3]!r} is not a number") from None
        if not 0.0 <= score <= 1.0:
            raise BlocklistError(f"{where}: score: {score} is not between 0 and 1")
    if len(fields) > 4:
        raise BlocklistError(
            f"{where}: {len(fields)} fields; at most 4 (host, brand, first_seen, score)"
        )
    return BlockEntry(host=host, brand=brand, first_seen=seen, score=score, wildcard=wildcard)


def parse_blocklist(data: bytes, where: str) -> Blocklist:
    """Parse a block-list file's bytes (``where`` names it in errors); any bad line raises
    :class:`BlocklistError`, so a list is used whole or not at all.

    A leading UTF-8 byte-order mark (Windows editors write one) is dropped: it made line 1 a bad
    host and refused the list. Lines end at a line feed only (a carriage return before it is
    dropped), not at every break ``str.splitlines`` knows (vertical tab, U+001C, U+2028...), so
    the line numbers in errors are the ones an editor shows."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BlocklistError(f"{where}: not UTF-8 text") from None
    entries = []
    for n, line in enumerate(text.split("\n"), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        entries.append(_parse_line(line.removesuffix("\r"), f"{where}:{n}"))
    return Blocklist(entries)


def load_blocklist(path: str | Path) -> Blocklist:
    """Read a block-list file; any bad line raises :class:`BlocklistError` (nothing half-read)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise BlocklistError(f"{p}: cannot read: {exc.strerror}") from None
    return parse_blocklist(data, str(p))


def write_blocklist(
    path: str | Path, findings: Iterable[Finding], *, merge: bool = True
) -> Blocklist:
    """Write the phishing findings' hosts to ``path`` (keeping existing entries when ``merge``),
    atomically: the old file stays whole until the new one is complete."""
    p = Path(path)
    current = load_blocklist(p) if merge and p.exists() else Blocklist()
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    for f in findings:
        if not f.is_phishing or not f.host:
            continue
        if f.host not in current.exact:
            current.exact[f.host] = BlockEntry(
                host=f.host, brand=f.brand, first_seen=now, score=f.score
            )
    write_text(p, HEADER + "\n" + "".join(e.line() + "\n" for e in current.entries()))
    return current
