"""The watch feed: read host names, URLs or certificate-log lines one at a time and raise an
alert for every name that imitates a registered brand.

Feeds are long-running and dirty. A line that is binary, huge, empty or not a name becomes a
:class:`LineError` naming the line number and the problem, and the stream goes on; memory stays
bounded however long a line is. Each name is scored once (repeats in certificate logs are
skipped).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from brokerguard.phishing._brands import BrandRegistry, default_registry
from brokerguard.phishing._score import THRESHOLD, Finding, score_url
from brokerguard.phishing._url import MAX_URL_LENGTH, URLError

__all__ = ["Alert", "LineError", "Watcher", "bounded_lines", "names_in_line", "watch_lines"]

MAX_LINE_BYTES = 1 << 20  # certificate-log JSON lines with many SANs stay far below 1 MiB
_JSON_NAME_KEYS = ("all_domains", "domains", "dns_names", "san", "domain", "url", "host", "name")


@dataclass(frozen=True, slots=True)
class Alert:
    """A name on line ``line_no`` scored as phishing (or above ``min_score``)."""

    line_no: int
    name: str
    finding: Finding


@dataclass(frozen=True, slots=True)
class LineError:
    """Line ``line_no`` could not be used; ``message`` says why."""

    line_no: int
    message: str


def bounded_lines(
    stream: BinaryIO, limit: int = MAX_LINE_BYTES, first_line: int = 1
) -> Iterator[str | LineError]:
    """Decoded lines of a byte stream; a line longer than ``limit`` bytes is skipped (read in
    chunks, never held whole) and given as a :class:`LineError` instead. Lines are numbered
    from ``first_line`` (a feed of several messages numbers its lines throughout)."""
    line_no = first_line - 1
    while True:
        chunk = stream.readline(limit + 1)
        if not chunk:
            return
        line_no += 1
        if len(chunk) > limit and not chunk.endswith(b"\n"):
            size = len(chunk)
            while chunk and not chunk.endswith(b"\n"):
                chunk = stream.readline(limit)
                size += len(chunk)
            size -= 1 if chunk.endswith(b"\n") else 0
            yield LineError(line_no, f"line {line_no}: {size:,} bytes long; at most {limit:,}")
            continue
        if b"\x00" in chunk:
            yield LineError(line_no, f"line {line_no}: binary data (NUL bytes), skipped")
            continue
        try:
            yield chunk.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            yield LineError(line_no, f"line {line_no}: not UTF-8 text, skipped")


def _json_names(obj: object) -> list[str]:
    found: list[str] = []
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key in _JSON_NAME_KEYS and isinstance(value, str):
                found.append(value)
            elif key in _JSON_NAME_KEYS and isinstance(value, list):
                found.extend(v for v in value if isinstance(v, str))
            elif isinstance(value, dict | list):
                found.extend(_json_names(value))
    elif isinstance(obj, list):
        for value in obj:
            found.extend(_json_names(value))
    return found


def names_in_line(line: str) -> list[str]:
    """The host names or URLs in one feed line: a bare name or URL, a certstream-style JSON
    object (``all_domains`` and the like), or a CSV/whitespace line whose fields include names.
    Wildcards (``*.example.com``) lose their ``*.``. Raises :class:`URLError` if there is none."""
    text = line.strip()
    if not text:
        raise URLError("empty line")
    if len(text) > MAX_URL_LENGTH and not text.startswith("{"):
        raise URLError(
            f"{len(text):,} characters with no JSON object; a name is at most {MAX_URL_LENGTH:,}"
        )
    if text.startswith("{"):
        try:
            names = _json_names(json.loads(text))
        except json.JSONDecodeError as exc:
            raise URLError(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
        except (ValueError, RecursionError):
            # a number of more than 4,300 digits (ValueError) or nesting deeper than the
            # interpreter's recursion limit, in json.loads or in _json_names
            raise URLError("JSON too deeply nested or with a number too long to read") from None
        if not names:
            raise URLError(
                "JSON line has no domain or URL field (all_domains, domains, domain, url)"
            )
    else:
        fields = [f for f in text.replace(",", " ").replace(";", " ").split() if f]
        names = [f for f in fields if "." in f and not f[0].isdigit() or f.count(".") == 3]
        if not names:
            raise URLError(f"{text[:60]!r}: no host name or URL in the line")
    return [n[2:] if n.startswith("*.") else n for n in names]


class Watcher:
    """The watch's judgement of one feed, a line at a time, for any source (a file, standard
    input, a NATS subject).

    A name is scored once: certificate logs repeat names (renewals, many logs), and an alert a
    second time is noise. The memory of names seen is bounded (``remember`` names, the oldest
    forgotten first), so a feed that runs for months does not grow without end; a name seen again
    after that long is judged again.
    """

    def __init__(
        self,
        registry: BrandRegistry | None = None,
        *,
        min_score: float | None = None,
        brands_only: bool = True,
        remember: int = 1_000_000,
    ) -> None:
        self.registry = registry or default_registry()
        self.min_score = min_score
        self.brands_only = brands_only
        self.remember = remember
        self._seen: dict[str, None] = {}  # insertion order: the oldest first

    def _first_time(self, name: str) -> bool:
        key = name.lower()
        if key in self._seen:
            return False
        self._seen[key] = None
        if len(self._seen) > self.remember:
            del self._seen[next(iter(self._seen))]
        return True

    def feed(self, line_no: int, line: str | LineError) -> list[Alert | LineError]:
        """Alerts and errors of one line (an error never stops the feed)."""
        if isinstance(line, LineError):
            return [line]
        try:
            names = names_in_line(line)
        except URLError as exc:
            return [LineError(line_no, f"line {line_no}: {exc}")]
        out: list[Alert | LineError] = []
        for name in names:
            if not self._first_time(name):
                continue
            try:
                finding = score_url(name, self.registry, THRESHOLD)
            except URLError as exc:
                out.append(LineError(line_no, f"line {line_no}: {exc}"))
                continue
            if self.min_score is not None:
                hit = finding.score >= self.min_score
            else:
                hit = finding.is_phishing
            if hit and (finding.brand is not None or not self.brands_only):
                if finding.reasons and finding.reasons[0].code == "official_domain":
                    continue
                out.append(Alert(line_no, name, finding))
        return out

    def feed_lines(self, lines: Iterable[str | LineError]) -> Iterator[Alert | LineError]:
        """Alerts and per-line errors of a whole feed, in order (lines numbered from 1)."""
        for line_no, line in enumerate(lines, start=1):
            yield from self.feed(line_no, line)


def watch_lines(
    lines: Iterable[str | LineError],
    registry: BrandRegistry | None = None,
    *,
    min_score: float | None = None,
    brands_only: bool = True,
) -> Iterator[Alert | LineError]:
    """Alerts and per-line errors for a feed, in order. By default a name alerts when it is
    scored phishing *and* attributed to a registered brand (lookalike monitoring); with
    ``brands_only=False`` any phishing verdict alerts; ``min_score`` overrides the threshold."""
    return Watcher(registry, min_score=min_score, brands_only=brands_only).feed_lines(lines)
