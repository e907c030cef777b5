"""Reading a run directory for the reports: events streamed once, decisions, labels.

A run directory is what ``brokerguard simulate`` writes, or what a broker assembles from its own
logs: ``events.ndjson`` (required), ``decisions.ndjson`` (optional) and labels (``truth.json``,
or a confirmed-cases file given apart). The files hold about a million lines, so the reports
stream them and keep only what concerns the labelled accounts.

Without ``decisions.ndjson`` every labelled event counts as having gone through: nobody asked a
guard, so the broker went ahead — the same fail-open reading as :mod:`brokerguard.evaluate`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgspec

from brokerguard.events import ChallengeResult, Event, EventError, field_of_error, read_ndjson
from brokerguard.guard import DecisionRecord
from brokerguard.reports.errors import ReportError
from brokerguard.reports.labels import FraudLabels, load_labels

__all__ = [
    "DECISIONS",
    "EVENTS",
    "TRUTH",
    "events_path",
    "let_through",
    "read_decisions",
    "read_events",
    "run_labels",
]

EVENTS = "events.ndjson"
DECISIONS = "decisions.ndjson"
TRUTH = "truth.json"


def events_path(run_dir: Path) -> Path:
    """``run_dir/events.ndjson``, or FileNotFoundError saying what a run directory holds."""
    path = Path(run_dir) / EVENTS
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: not found; a run directory needs {EVENTS} "
            f"(and {TRUTH} unless labels are given), as `brokerguard simulate` writes them"
        )
    return path


def run_labels(run_dir: Path, labels: Path | None = None) -> FraudLabels:
    """The labels given, else the run's own ``truth.json``."""
    if labels is not None:
        return load_labels(labels)
    path = Path(run_dir) / TRUTH
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: not found; give the confirmed fraud cases with --labels FILE "
            "(CSV or NDJSON: account, kind, order_id, event_id, confirmed)"
        )
    return load_labels(path)


def read_events(path: Path) -> Iterator[Event]:
    """Stream the events of an NDJSON file; a bad line is a :class:`ReportError` naming it."""
    with Path(path).open("rb") as stream:
        try:
            yield from read_ndjson(stream)
        except EventError as exc:
            problem = str(exc).split(": ", 1)[1] if exc.line is not None else str(exc)
            raise ReportError(problem, path=path, line=exc.line, field=exc.field) from None


def read_decisions(path: Path, events: frozenset[str] | set[str]) -> dict[str, DecisionRecord]:
    """The first decision on each of ``events`` from a ``decisions.ndjson``; {} if no file."""
    path = Path(path)
    if not path.is_file():
        return {}
    decoder = msgspec.json.Decoder(DecisionRecord)
    found: dict[str, DecisionRecord] = {}
    with path.open("rb") as stream:
        for line, raw in enumerate(stream, start=1):
            if not raw.strip():
                continue
            try:
                record = decoder.decode(raw)
            except msgspec.ValidationError as exc:
                message = str(exc)
                problem = message.split(" - at `", 1)[0]
                raise ReportError(
                    problem, path=path, line=line, field=field_of_error(message)
                ) from None
            except msgspec.DecodeError as exc:
                raise ReportError(f"malformed JSON: {exc}", path=path, line=line) from None
            if record.event in events:
                found.setdefault(record.event, record)
    return found


def let_through(decision: DecisionRecord | None, results: list[ChallengeResult]) -> bool:
    """Whether the broker went ahead with an event after the guard's decision on it.

    The same reading as the evaluation's: no decision means the broker went ahead; a
    challenge is passed by any passed factor, a hold only by an out-of-band confirmation;
    deny and lock stop it.
    """
    if decision is None or decision.action == "allow":
        return True
    if decision.action == "challenge":
        return any(r.outcome == "passed" for r in results)
    if decision.action == "hold":
        return any(r.outcome == "passed" and r.factor == "oob" for r in results)
    return False
