"""Reads behind the API and the console: plain functions of a connection, returning dicts.

Nothing here knows HTTP; the console's pages call the same functions as the JSON API. Lists are
newest first and bounded by ``limit`` (at most :data:`MAX_LIMIT`); ``offset`` pages on.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from brokerguard.events import LoginAttempt, decode_line
from brokerguard.service.models import (
    account_actions,
    alerts,
    campaigns,
    case_notes,
    cases,
    decisions,
    events,
    instructions,
    policies,
)

__all__ = [
    "alert_login",
    "count_alerts",
    "MAX_LIMIT",
    "account_timeline",
    "current_policy",
    "get_alert",
    "get_campaign",
    "get_case",
    "held_orders",
    "list_account_actions",
    "list_alerts",
    "list_campaigns",
    "list_cases",
    "list_instructions",
    "locked_accounts",
    "signin_devices",
]

MAX_LIMIT = 1000


def _rows(conn: sa.Connection, query: sa.Select[Any]) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in conn.execute(query)]


def _page(query: sa.Select[Any], limit: int, offset: int) -> sa.Select[Any]:
    return query.limit(max(1, min(limit, MAX_LIMIT))).offset(max(0, offset))


def _alert_filters(
    severity: str | None = None,
    detector: str | None = None,
    status: str | None = None,
    account: str | None = None,
    campaign: str | None = None,
    awake_at: datetime | None = None,
    snoozed_at: datetime | None = None,
) -> list[sa.ColumnElement[bool]]:
    """Conditions on alerts: equal columns; ``awake_at`` keeps alerts not snoozed at that time,
    ``snoozed_at`` only those snoozed then."""
    where: list[sa.ColumnElement[bool]] = []
    for column, value in (
        (alerts.c.severity, severity),
        (alerts.c.detector, detector),
        (alerts.c.status, status),
        (alerts.c.account, account),
        (alerts.c.campaign, campaign),
    ):
        if value is not None:
            where.append(column == value)
    if awake_at is not None:
        where.append(sa.or_(alerts.c.snoozed_until.is_(None), alerts.c.snoozed_until <= awake_at))
    if snoozed_at is not None:
        where.append(alerts.c.snoozed_until > snoozed_at)
    return where


def list_alerts(
    conn: sa.Connection,
    *,
    limit: int = 100,
    offset: int = 0,
    **filters: Any,
) -> list[dict[str, Any]]:
    """Alerts, newest first; ``filters`` as in :func:`count_alerts`."""
    query = sa.select(alerts).where(*_alert_filters(**filters))
    query = query.order_by(alerts.c.ts.desc(), alerts.c.id)
    return _rows(conn, _page(query, limit, offset))


def count_alerts(conn: sa.Connection, **filters: Any) -> int:
    """How many alerts match: severity, detector, status, account, campaign (equal), awake_at
    (not snoozed at that time), snoozed_at (snoozed at that time)."""
    query = sa.select(sa.func.count()).select_from(alerts).where(*_alert_filters(**filters))
    return int(conn.scalar(query) or 0)


def get_alert(conn: sa.Connection, alert_id: str) -> dict[str, Any] | None:
    row = conn.execute(sa.select(alerts).where(alerts.c.id == alert_id)).first()
    return dict(row._mapping) if row is not None else None


def list_campaigns(
    conn: sa.Connection, *, status: str | None = None, limit: int = 100, offset: int = 0
) -> list[dict[str, Any]]:
    query = sa.select(campaigns)
    if status is not None:
        query = query.where(campaigns.c.status == status)
    return _rows(conn, _page(query.order_by(campaigns.c.raised_at.desc()), limit, offset))


def get_campaign(conn: sa.Connection, campaign_id: str) -> dict[str, Any] | None:
    row = conn.execute(sa.select(campaigns).where(campaigns.c.id == campaign_id)).first()
    return dict(row._mapping) if row is not None else None


def _case_filters(
    status: str | None = None, outcome: str | None = None, account: str | None = None
) -> list[Any]:
    return [
        column == value
        for column, value in (
            (cases.c.status, status),
            (cases.c.outcome, outcome),
            (cases.c.account, account),
        )
        if value is not None
    ]


def list_cases(
    conn: sa.Connection,
    *,
    limit: int = 100,
    offset: int = 0,
    **filters: Any,
) -> list[dict[str, Any]]:
    """Cases, newest first; ``filters`` as in :func:`count_cases`."""
    query = sa.select(cases).where(*_case_filters(**filters))
    return _rows(conn, _page(query.order_by(cases.c.id.desc()), limit, offset))


def count_cases(conn: sa.Connection, **filters: Any) -> int:
    """How many cases match: status, outcome, account (equal)."""
    query = sa.select(sa.func.count()).select_from(cases).where(*_case_filters(**filters))
    return int(conn.scalar(query) or 0)


def get_case(conn: sa.Connection, case_id: int) -> dict[str, Any] | None:
    row = conn.execute(sa.select(cases).where(cases.c.id == case_id)).first()
    if row is None:
        return None
    case = dict(row._mapping)
    case["notes"] = _rows(
        conn, sa.select(case_notes).where(case_notes.c.case_id == case_id).order_by(case_notes.c.id)
    )
    return case


def list_account_actions(
    conn: sa.Connection, account: str, limit: int = 100
) -> list[dict[str, Any]]:
    query = (
        sa.select(account_actions)
        .where(account_actions.c.account == account)
        .order_by(account_actions.c.id.desc())
    )
    return _rows(conn, _page(query, limit, 0))


def list_instructions(
    conn: sa.Connection, after: int = 0, account: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """Instructions after ``seq`` ``after``, oldest first: a feed read with the last seq seen."""
    query = sa.select(instructions).where(instructions.c.seq > after)
    if account is not None:
        query = query.where(instructions.c.account == account)
    return _rows(conn, _page(query.order_by(instructions.c.seq), limit, 0))


def locked_accounts(conn: sa.Connection) -> dict[str, tuple[str, str]]:
    """Accounts whose latest lock/freeze/unlock action is a lock or a freeze:
    account -> (the action, who took it)."""
    latest = (
        sa.select(sa.func.max(account_actions.c.id))
        .where(account_actions.c.action.in_(("lock", "freeze", "unlock")))
        .group_by(account_actions.c.account)
    )
    rows = conn.execute(
        sa.select(
            account_actions.c.account, account_actions.c.action, account_actions.c.actor
        ).where(account_actions.c.id.in_(latest), account_actions.c.action != "unlock")
    )
    return {r.account: (r.action, r.actor) for r in rows}


def _timeline_entries(account: str) -> sa.Subquery:
    """One row per timeline item of ``account``: each kept event (``seq``), and each decision
    whose event was not kept (``seq`` -1, after the events of its time; ``decision`` its id)."""
    kept = sa.select(events.c.event_id).where(events.c.account == account)
    seen = sa.select(
        events.c.ts,
        events.c.seq.label("seq"),
        sa.literal_column("''", sa.String).label("decision"),
    ).where(events.c.account == account)
    lone = sa.select(
        decisions.c.ts,
        sa.literal_column("-1", sa.BigInteger).label("seq"),
        decisions.c.id.label("decision"),
    ).where(decisions.c.account == account, decisions.c.event_id.not_in(kept))
    return sa.union_all(seen, lone).subquery("entries")


def account_timeline(
    conn: sa.Connection, account: str, limit: int = 200, offset: int = 0
) -> dict[str, Any]:
    """What the service saw of one account, newest first: its events and the decisions on them,
    ``limit`` items from ``offset`` on, and ``total``, how many items there are in all.

    Each decision is attached to the event it answered (``decision`` on the event); decisions
    whose event was not kept are items of their own.
    """
    entries = _timeline_entries(account)
    total = int(conn.scalar(sa.select(sa.func.count()).select_from(entries)) or 0)
    chosen = conn.execute(
        _page(
            sa.select(entries.c.seq, entries.c.decision).order_by(
                entries.c.ts.desc(), entries.c.seq.desc(), entries.c.decision
            ),
            limit,
            offset,
        )
    ).all()
    seqs = [r.seq for r in chosen if r.seq >= 0]
    seen = {
        e["seq"]: e
        for e in _rows(
            conn,
            sa.select(
                events.c.seq,
                events.c.event_id,
                events.c.type,
                events.c.ts,
                events.c.session,
                events.c.body,
            ).where(events.c.seq.in_(seqs)),
        )
    }
    ids = {e["event_id"] for e in seen.values()}
    decided = _rows(
        conn,
        sa.select(decisions)
        .where(
            decisions.c.account == account,
            sa.or_(
                decisions.c.event_id.in_(ids),
                decisions.c.id.in_([r.decision for r in chosen if r.seq < 0]),
            ),
        )
        .order_by(decisions.c.decided_at),
    )
    alerted = set(
        conn.scalars(sa.select(alerts.c.id).where(alerts.c.id.in_([d["id"] for d in decided])))
    )
    by_id: dict[str, dict[str, Any]] = {}
    by_event: dict[str, dict[str, Any]] = {}  # an event's latest decision
    for d in decided:
        d["alert_id"] = d["id"] if d["id"] in alerted else None
        by_id[d["id"]] = by_event[d["event_id"]] = d
    items = []
    for r in chosen:
        if r.seq >= 0:
            e = dict(seen[r.seq])
            del e["seq"]
            items.append({**e, "decision": by_event.get(e["event_id"])})
        else:
            d = by_id[r.decision]
            items.append(
                {
                    "event_id": d["event_id"],
                    "type": d["point"],
                    "ts": d["ts"],
                    "session": d["session"],
                    "body": None,
                    "decision": d,
                }
            )
    return {
        "account": account,
        "items": items,
        "total": total,
        "actions": list_account_actions(conn, account),
    }


def held_orders(conn: sa.Connection, account: str) -> list[dict[str, Any]]:
    """The account's orders the guard held, newest first, as timeline items (whether each still
    waits is the engine's to say): not only those on the timeline's page being read."""
    held = _rows(
        conn,
        sa.select(decisions)
        .where(
            decisions.c.account == account,
            decisions.c.point == "order",
            decisions.c.action == "hold",
        )
        .order_by(decisions.c.ts.desc()),
    )
    bodies = dict(
        conn.execute(
            sa.select(events.c.event_id, events.c.body).where(
                events.c.account == account,
                events.c.event_id.in_([d["event_id"] for d in held]),
            )
        ).all()
    )
    return [
        {
            "event_id": d["event_id"],
            "type": "order",
            "ts": d["ts"],
            "session": d["session"],
            "body": bodies.get(d["event_id"]),
            "decision": d,
        }
        for d in held
    ]


def signin_devices(conn: sa.Connection, account: str) -> list[str]:
    """The device cookies the account has signed in with, sorted."""
    bodies = conn.scalars(
        sa.select(events.c.body).where(events.c.account == account, events.c.type == "login")
    )
    return sorted({d for body in bodies if (d := json.loads(body).get("device"))})


def alert_login(conn: sa.Connection, alert_id: str) -> LoginAttempt | None:
    """The sign-in an alert was raised on, as the service kept it; None for other alerts."""
    body = conn.scalar(
        sa.select(events.c.body)
        .join(alerts, alerts.c.event_id == events.c.event_id)
        .where(alerts.c.id == alert_id, events.c.type == "login")
        .limit(1)
    )
    if body is None:
        return None
    event = decode_line(body.encode())
    return event if isinstance(event, LoginAttempt) else None


def current_policy(conn: sa.Connection) -> dict[str, Any] | None:
    row = conn.execute(sa.select(policies).order_by(policies.c.id.desc()).limit(1)).first()
    return dict(row._mapping) if row is not None else None
