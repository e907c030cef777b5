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

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import sqlalchemy as sa

from brokerguard.guard import DecisionRecord, Reason
from brokerguard.reports.labels import FraudCase
from brokerguard.service.models import alerts, campaigns, cases, decisions, events

__all__ = ["CASES", "export_run", "fraud_cases"]

CASES = "cases.ndjson"
_encoder = msgspec.json.Encoder()


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


def _session_operations(conn: sa.Connection, login_id: str) -> list[tuple[str, str, str]]:
    """(account, event id, type) of the orders, fills and withdrawals of a sign-in's session."""
    login = conn.execute(
        sa.select(events.c.account, events.c.session).where(
            events.c.event_id == login_id, events.c.type == "login"
        )
    ).first()
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
    for case in (dict(r._mapping) for r in conn.execute(query)):
        confirmed = case["updated_at"]
        for account, event_id, point in _alerted_events(conn, case):
            if point == "login":
                add(account, "login", event_id, confirmed)
                for acc, op_id, kind in _session_operations(conn, event_id):
                    add(acc, "trade" if kind == "order" else "withdrawal", op_id, confirmed)
            elif point == "order":
                add(account, "trade", event_id, confirmed)
            elif point == "withdrawal":
                add(account, "withdrawal", event_id, confirmed)
    return list(found.values())


def _lines(conn: sa.Connection, query: sa.Select[Any]) -> Iterator[Any]:
    yield from conn.execution_options(yield_per=5000).execute(query)


def export_run(conn: sa.Connection, out: Path) -> Path:
    """Write ``events.ndjson``, ``decisions.ndjson`` and ``cases.ndjson`` under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    with (out / "events.ndjson").open("w", encoding="utf-8") as sink:
        # in the order the engine took them (a bar is stamped with its start but arrives at its
        # close, after the sign-ins within it): a replay of the file sees what the engine saw
        query = sa.select(events.c.body).order_by(events.c.seq)
        for row in _lines(conn, query):
            sink.write(row.body)
            sink.write("\n")
    with (out / "decisions.ndjson").open("wb") as sink:
        query = sa.select(decisions).order_by(decisions.c.ts, decisions.c.id)
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
            sink.write(_encoder.encode(record) + b"\n")
    with (out / CASES).open("wb") as sink:
        for case in fraud_cases(conn):
            sink.write(_encoder.encode(case) + b"\n")
    return out
