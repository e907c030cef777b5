"""The service's records as a run directory, and its fraud cases as report labels.

The reports (:mod:`brokerguard.reports`) read a run directory — ``events.ndjson`` and
``decisions.ndjson`` — and labels saying what was unauthorized. A broker running the service has
no simulator's ``truth.json``: what it has is its analysts' cases. This module writes the events
and decisions the service recorded in the same formats, and turns every case closed as **fraud**
into :class:`~brokerguard.reports.labels.FraudCase` lines:

- a case on a sign-in alert labels that sign-in, and every order, fill and withdrawal made in
  the session it opened (the attacker's session: what was done in it was not the customer's);
- a case on an order or withdrawal alert labels that operation (an order also brings its fills);
- a case on an account or a campaign without a single alert labels every operation BrokerGuard
  alerted on for that account (for a campaign: for each of its accounts), and the sessions of
  those sign-ins as above.

Market bars are not recorded by the service (they carry no account), so losses are valued at the
last fill price recorded for each symbol: the fallback the price book already uses.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import msgspec
import sqlalchemy as sa

from brokerguard.files import replaced
from brokerguard.guard import DecisionRecord, Reason
from brokerguard.reports.labels import FraudCase
from brokerguard.service.models import alerts, audit_log, campaigns, cases, decisions, events

__all__ = [
    "CASES",
    "export_run",
    "fraud_cases",
    "records_mark",
    "write_cases",
    "write_decisions",
    "write_events",
]

CASES = "cases.ndjson"
_encoder = msgspec.json.Encoder()
_MAX_LISTED = 20_000  # ids in one statement: below SQLite's 32,766 and PostgreSQL's 65,535
_CHUNK = 500  # event ids per IN (...) list: far below any database's limit on parameters


def _alerted_events(conn: sa.Connection, case: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(account, event id, decision point) of the alerts a fraud case confirms."""
    columns = (alerts.c.account, alerts.c.event_id, alerts.c.point)
    if case["alert_id"] is not None:
        query = sa.select(*columns).where(alerts.c.id == case["alert_id"])
    else:
        accounts = [case["account"]] if case["account"] else []
        if case["campaign_id"] is not None:
            found = conn.scalar(
                sa.select(campaigns.c.accounts).where(campaigns.c.id == case["campaign_id"])
            )
            accounts += list(found or [])
        if not accounts:
            return []
        query = sa.select(*columns).where(alerts.c.account.in_(accounts))
    return [(str(r.account), str(r.event_id), str(r.point)) for r in conn.execute(query)]


def _chunks(ids: Collection[str]) -> Iterator[list[str]]:
    """The distinct ``ids``, sorted, :data:`_CHUNK` at a time (one ``IN (...)`` list each)."""
    wanted = sorted(set(ids))
    for start in range(0, len(wanted), _CHUNK):
        yield wanted[start : start + _CHUNK]


def _logins(conn: sa.Connection, ids: Collection[str]) -> dict[str, Any]:
    """The first recorded sign-in event (its account and session) of each of ``ids``.

    Looked up a chunk of ids at a time: ``event_id`` has no index of its own (the events table
    is the one every decision writes to), so each lookup reads the table once.
    """
    found: dict[str, Any] = {}
    for chunk in _chunks(ids):
        query = (
            sa.select(events.c.event_id, events.c.account, events.c.session)
            .where(events.c.event_id.in_(chunk), events.c.type == "login")
            .order_by(events.c.seq)
        )
        for row in conn.execute(query):
            found.setdefault(row.event_id, row)
    return found


def _session_operations(conn: sa.Connection, login: Any) -> list[tuple[str, str, str]]:
    """(account, event id, type) of the orders, fills and withdrawals of a sign-in's session."""
    if login is None or login.session is None:
        return []
    rows = conn.execute(
        sa.select(events.c.account, events.c.event_id, events.c.type).where(
            events.c.account == login.account,
            events.c.session == login.session,
            events.c.type.in_(("order", "withdrawal")),
        )
    )
    return [(str(r.account), str(r.event_id), str(r.type)) for r in rows]


def fraud_cases(conn: sa.Connection) -> list[FraudCase]:
    """Every operation the cases closed as fraud confirm, one :class:`FraudCase` each."""
    found: dict[tuple[str, str], FraudCase] = {}

    def add(account: str, kind: str, event_id: str, confirmed: Any) -> None:
        case = FraudCase(account=account, kind=kind, event_id=event_id, confirmed=confirmed)  # type: ignore[arg-type]
        found.setdefault((kind, event_id), case)

    query = sa.select(cases).where(cases.c.outcome == "fraud").order_by(cases.c.id)
    confirms = [
        (case["updated_at"], _alerted_events(conn, case))
        for case in (dict(r._mapping) for r in conn.execute(query))
    ]
    logins = _logins(
        conn, [e for _, alerted in confirms for _, e, point in alerted if point == "login"]
    )
    sessions: dict[str, list[tuple[str, str, str]]] = {}
    for confirmed, alerted in confirms:
        for account, event_id, point in alerted:
            if point == "login":
                add(account, "login", event_id, confirmed)
                if event_id not in sessions:
                    sessions[event_id] = _session_operations(conn, logins.get(event_id))
                for acc, op_id, kind in sessions[event_id]:
                    add(acc, "trade" if kind == "order" else "withdrawal", op_id, confirmed)
            elif point == "order":
                add(account, "trade", event_id, confirmed)
            elif point == "withdrawal":
                add(account, "withdrawal", event_id, confirmed)
    return list(found.values())


def records_mark(conn: sa.Connection) -> tuple[Any, ...]:
    """A watermark of every record the reports read: equal marks, equal reports.

    Cheap (maxima and counts) and read in one statement. Why each part moves when a report's
    input changes:

    - ``events`` are only ever appended, by writers that hold the database's write lock
      (:func:`~brokerguard.service.db.write_transaction`), so a new row has a higher ``seq``
      than any committed before it; the count also catches a row removed by hand;
    - ``decisions`` (and their ``alerts``, written in the same transaction) are only appended,
      with random ids: their counts move;
    - a case opened, changed or annotated moves the cases' count, largest id or latest
      ``updated_at``, and always appends to the hash-chained ``audit_log``, whose ``seq`` only
      grows (so does an analyst's change of a campaign);
    - a campaign that grows (its accounts feed the fraud labels) moves its ``updated_at``.
    """

    def scalar(column: Any, table: sa.Table) -> Any:
        return sa.select(column).select_from(table).scalar_subquery()

    count = sa.func.count
    query = sa.select(
        scalar(sa.func.max(events.c.seq), events),
        scalar(count(), events),
        scalar(count(), decisions),
        scalar(count(), alerts),
        scalar(count(), cases),
        scalar(sa.func.max(cases.c.id), cases),
        scalar(sa.func.max(cases.c.updated_at), cases),
        scalar(count(), campaigns),
        scalar(sa.func.max(campaigns.c.updated_at), campaigns),
        scalar(sa.func.max(audit_log.c.seq), audit_log),
    )
    return tuple(conn.execute(query).one())


def _lines(conn: sa.Connection, query: sa.Select[Any]) -> Iterator[Any]:
    yield from conn.execution_options(yield_per=5000).execute(query)


def write_events(
    conn: sa.Connection,
    path: Path,
    *,
    types: Collection[str] | None = None,
    accounts: Collection[str] = (),
    ids: Collection[str] = (),
) -> Path:
    """The recorded events as ``events.ndjson``, in the order the engine took them (a bar is
    stamped with its start but arrives at its close, after the sign-ins within it): a replay of
    the file sees what the engine saw.

    With ``types``, a report's selection: only the events of those types, on those
    ``accounts``, with those ``ids``, and the first and the last ones in time (they set the
    months covered and the valuation date), still in that order. When the lists are too long
    for one statement, every event, which no report reads differently.
    """
    query = sa.select(events.c.body).order_by(events.c.seq)
    if types is not None and len(accounts) + len(ids) <= _MAX_LISTED:
        first = sa.select(sa.func.min(events.c.ts)).scalar_subquery()
        last = sa.select(sa.func.max(events.c.ts)).scalar_subquery()
        query = query.where(
            sa.or_(
                events.c.type.in_(sorted(types)),
                events.c.account.in_(sorted(accounts)),
                events.c.event_id.in_(sorted(ids)),
                events.c.ts == first,
                events.c.ts == last,
            )
        )
    with replaced(path, "w") as sink:
        for row in _lines(conn, query):
            sink.write(row.body)
            sink.write("\n")
    return path


def _decision_lines(conn: sa.Connection, query: sa.Select[Any]) -> Iterator[bytes]:
    for row in _lines(conn, query):
        record = DecisionRecord(
            event=row.event_id,
            ts=row.ts,
            account=row.account,
            point=row.point,
            guard=row.guard,
            action=row.action,
            score=row.score,
            factors=tuple(row.factors),
            reasons=tuple(msgspec.convert(r, type=Reason) for r in row.reasons),
        )
        yield _encoder.encode(record) + b"\n"


def write_decisions(
    conn: sa.Connection, path: Path, *, only: Collection[str] | None = None
) -> Path:
    """The recorded decisions as ``decisions.ndjson``, by event time.

    With ``only``, just the decisions on those events (looked up by the event-id index): what a
    report reads of the file, which keeps the first decision on each labelled event and nothing
    else. Within one event the order is the full file's, so that first decision is the same.
    """
    with replaced(path, "wb") as sink:
        ordered = (decisions.c.ts, decisions.c.id)
        if only is None:
            sink.writelines(_decision_lines(conn, sa.select(decisions).order_by(*ordered)))
            return path
        for chunk in _chunks(only):
            query = sa.select(decisions).where(decisions.c.event_id.in_(chunk)).order_by(*ordered)
            sink.writelines(_decision_lines(conn, query))
    return path


def write_cases(conn: sa.Connection, path: Path) -> Path:
    """The operations the cases closed as fraud confirm, as ``cases.ndjson``."""
    with replaced(path, "wb") as sink:
        for case in fraud_cases(conn):
            sink.write(_encoder.encode(case) + b"\n")
    return path


def export_run(conn: sa.Connection, out: Path) -> Path:
    """Write ``events.ndjson``, ``decisions.ndjson`` and ``cases.ndjson`` under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    write_events(conn, out / "events.ndjson")
    write_decisions(conn, out / "decisions.ndjson")
    write_cases(conn, out / CASES)
    return out
