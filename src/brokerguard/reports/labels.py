"""Labels: which accounts, events and orders were unauthorized.

A report cannot tell fraud from a customer's own trading by looking at events; somebody has to
say so. For a broker that is the list of confirmed fraud cases its investigations produced; for
a simulated run it is ``truth.json``. Both become one :class:`FraudLabels`, so every report works
the same on a broker's history and on the simulator's runs.

A confirmed-cases file has one case per line, as NDJSON or CSV (UTF-8, a BOM is accepted), with
the fields of :class:`FraudCase`::

    account,kind,order_id,event_id,confirmed
    A0001623,login,,l2b39,2025-03-21T10:00:00+09:00
    A0001623,trade,n2cb7,,2025-03-21T10:00:00+09:00
    A0000387,withdrawal,,w17,

>>> case = FraudCase(account="A1", kind="trade", order_id="n1")
>>> labels_from_cases([case], source="cases.csv").orders
frozenset({('A1', 'n1')})
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from brokerguard.events import field_of_error
from brokerguard.reports.errors import ReportError
from brokerguard.truth import Truth, TruthError, load_truth

__all__ = [
    "CASE_FIELDS",
    "FraudCase",
    "FraudLabels",
    "labels_from_cases",
    "labels_from_truth",
    "load_cases",
    "load_labels",
]

CaseKind = Literal["login", "trade", "withdrawal"]
Id = Annotated[str, Meta(min_length=1, max_length=128)]

CASE_FIELDS = ("account", "kind", "order_id", "event_id", "confirmed")
"""Columns of a confirmed-cases CSV (``account`` and ``kind`` required, the rest may be empty)."""


class FraudCase(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One confirmed unauthorized operation, as an investigation records it.

    A ``login`` or ``withdrawal`` names its event (``event_id``); a ``trade`` names the order
    (``order_id``) or the event of the order or of one of its fills (``event_id``).
    ``confirmed`` is when the firm confirmed the fraud (kept for the record; reports count by
    when the operation happened).
    """

    account: Id
    kind: CaseKind
    order_id: Id | None = None
    event_id: Id | None = None
    confirmed: Annotated[datetime, Meta(tz=True)] | None = None

    def __post_init__(self) -> None:
        if self.kind == "trade" and self.order_id is None and self.event_id is None:
            raise ValueError("`order_id` or `event_id` is required for a trade")
        if self.kind != "trade" and self.event_id is None:
            raise ValueError(f"`event_id` is required for a {self.kind}")


class FraudLabels(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a report needs to know about what was unauthorized.

    ``events`` are ids of events the attacker caused (logins, orders, fills, withdrawals…);
    ``orders`` are ``(account, order_id)`` pairs of unauthorized orders. An order is unauthorized
    if it is in ``orders`` or if its order event or one of its fills is in ``events`` — which
    lets a case name whichever id the investigator had at hand. ``accounts`` are the victims.
    """

    source: str
    accounts: frozenset[str]
    events: frozenset[str] = frozenset()
    orders: frozenset[tuple[str, str]] = frozenset()
    confirmed: dict[str, datetime] = {}


def labels_from_truth(truth: Truth, *, source: str = "truth.json") -> FraudLabels:
    """The labels of a simulated run: every victim, every event and order its attacker caused."""
    return FraudLabels(
        source=source,
        accounts=frozenset(v.account for v in truth.victims),
        events=frozenset(e for v in truth.victims for e in v.events),
        orders=frozenset((v.account, o) for v in truth.victims for o in v.orders),
    )


def labels_from_cases(cases: Iterable[FraudCase], *, source: str) -> FraudLabels:
    """The labels of a broker's confirmed cases; ``confirmed`` keeps each account's earliest."""
    accounts: set[str] = set()
    events: set[str] = set()
    orders: set[tuple[str, str]] = set()
    confirmed: dict[str, datetime] = {}
    for case in cases:
        accounts.add(case.account)
        if case.event_id is not None:
            events.add(case.event_id)
        if case.order_id is not None:
            orders.add((case.account, case.order_id))
        if case.confirmed is not None:
            first = confirmed.get(case.account)
            if first is None or case.confirmed < first:
                confirmed[case.account] = case.confirmed
    return FraudLabels(
        source=source,
        accounts=frozenset(accounts),
        events=frozenset(events),
        orders=frozenset(orders),
        confirmed=confirmed,
    )


_HINTS = {
    "kind": "expected login, trade or withdrawal",
    "confirmed": "expected a time with its zone, such as 2025-04-02T10:00:00+09:00",
}


def _case(raw: dict[str, object], path: Path, line: int) -> FraudCase:
    try:
        return msgspec.convert(raw, FraudCase)
    except msgspec.ValidationError as exc:
        message = str(exc)
        field = field_of_error(message)
        problem = message.split(" - at `", 1)[0]
        if field in _HINTS:
            problem = f"{_HINTS[field]}, got {raw.get(field)!r} ({problem})"
        raise ReportError(problem, path=path, line=line, field=field) from None


def _cases_csv(path: Path) -> list[FraudCase]:
    with path.open(encoding="utf-8-sig", newline="") as stream:
        reader = csv.reader(stream)
        header = next(reader, None)
        if header is None:
            raise ReportError("empty file; expected a header line", path=path, line=1)
        names = [name.strip() for name in header]
        for name in names:
            if name not in CASE_FIELDS:
                raise ReportError(
                    f"unknown column; expected some of {', '.join(CASE_FIELDS)}",
                    path=path,
                    line=1,
                    field=name,
                )
        for required in ("account", "kind"):
            if required not in names:
                raise ReportError("required column missing", path=path, line=1, field=required)
        cases = []
        for row in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(names):
                raise ReportError(
                    f"{len(row)} cells, the header has {len(names)}", path=path, line=line
                )
            raw = {n: c.strip() for n, c in zip(names, row, strict=True) if c.strip()}
            cases.append(_case(raw, path, line))
    return cases


def _cases_ndjson(path: Path) -> list[FraudCase]:
    decoder = msgspec.json.Decoder(dict[str, object])
    cases = []
    with path.open("rb") as stream:
        for line, raw in enumerate(stream, start=1):
            if not raw.strip():
                continue
            try:
                item = decoder.decode(raw)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise ReportError(f"not a JSON object: {exc}", path=path, line=line) from None
            cases.append(_case(item, path, line))
    return cases


def load_cases(path: Path) -> list[FraudCase]:
    """Read a confirmed-cases file: ``.csv``, else NDJSON (one JSON object per line).

    Raises :class:`ReportError` naming the file, line and field of the first bad case, and
    FileNotFoundError when the file is missing.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: labels file not found")
    try:
        if path.suffix.lower() == ".csv":
            return _cases_csv(path)
        return _cases_ndjson(path)
    except UnicodeDecodeError as exc:
        raise ReportError(f"not UTF-8 text ({exc.reason})", path=path) from None


def _truth(path: Path) -> Truth:
    try:
        return load_truth(path)
    except TruthError as exc:
        problem = exc.problem
        if path.name.lower() != "truth.json":  # perhaps confirmed cases, named .json
            problem += (
                " (a .json labels file is read as a run's truth.json; confirmed cases are one"
                " per line, as .csv or .ndjson)"
            )
        raise ReportError(problem, path=path, field=exc.field) from None


def load_labels(path: Path) -> FraudLabels:
    """Labels from a ``truth.json`` (a run's) or a confirmed-cases file (``.csv``, NDJSON).

    A ``.json`` file is read as a run's ``truth.json``; anything else as confirmed cases.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: labels file not found")
    if path.suffix.lower() == ".json":
        return labels_from_truth(_truth(path), source=str(path))
    return labels_from_cases(load_cases(path), source=str(path))
