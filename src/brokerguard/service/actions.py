"""What analysts do, as writes: each function changes its rows and appends its audit entry in
the same transaction, so the audit log never misses an action and never records one that did
not happen.

Every function takes a connection inside a
:func:`~brokerguard.service.db.write_transaction` (the recorder's :meth:`~.recorder.Recorder.call`
gives one) and the actor (``user:alice``, ``key:bgk_…``), and returns the row as it now is.
Nothing here knows HTTP; missing rows raise :class:`~.errors.NotFound`, impossible changes
:class:`~.errors.Conflict`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from brokerguard.service import audit, queries
from brokerguard.service.errors import Conflict, NotFound
from brokerguard.service.models import (
    account_actions,
    alerts,
    campaigns,
    case_notes,
    cases,
    policies,
)

__all__ = [
    "ACCOUNT_ACTIONS",
    "add_note",
    "create_case",
    "record_account_action",
    "record_policy",
    "update_alert",
    "update_campaign",
    "update_case",
]

ACCOUNT_ACTIONS: tuple[str, ...] = (
    "release_order",  # confirm a held order on the customer's behalf (target: the order event)
    "cancel_order",  # refuse a held order (target: the order event)
    "lock",
    "freeze",  # the customer froze the account (the broker's site asks on their behalf)
    "unlock",  # ends a lock or a freeze
    "request_unlock",  # the customer asked for an analyst's unlock (the broker's site tells)
    "force_reverify",  # the customer must pass a strong re-verification at the next sign-in
    "trust_device",  # the device cookie is the customer's (target: the cookie)
)


def _log(conn: sa.Connection, actor: str, action: str, subject: str, **detail: Any) -> None:
    audit.append(conn, [audit.AuditEntry(actor, action, subject, detail)])


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


NULLABLE = frozenset({"assignee", "snoozed_until", "outcome"})
"""Fields a change may set to null; for any other field null means "leave as it is"."""


def _changes(changes: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in changes.items() if v is not None or k in NULLABLE}


def update_alert(
    conn: sa.Connection, actor: str, alert_id: str, changes: dict[str, Any]
) -> dict[str, Any]:
    changes = _changes(changes)
    if queries.get_alert(conn, alert_id) is None:
        raise NotFound(f"no alert {alert_id!r}", field="alert_id")
    if changes:
        conn.execute(
            alerts.update().where(alerts.c.id == alert_id).values(**changes, updated_at=_now())
        )
        _log(conn, actor, "alert.update", alert_id, **{k: _iso(v) for k, v in changes.items()})
    alert = queries.get_alert(conn, alert_id)
    assert alert is not None
    return alert


def create_case(
    conn: sa.Connection,
    actor: str,
    *,
    title: str | None = None,
    alert_id: str | None = None,
    campaign_id: str | None = None,
    account: str | None = None,
    labels: list[str] | None = None,
    assignee: str | None = None,
) -> dict[str, Any]:
    """Open a case from an alert, a campaign or an account (at least one of them)."""
    if alert_id is None and campaign_id is None and account is None:
        raise Conflict("a case is opened from an alert, a campaign or an account", field="alert_id")
    if alert_id is not None:
        alert = queries.get_alert(conn, alert_id)
        if alert is None:
            raise NotFound(f"no alert {alert_id!r}", field="alert_id")
        account = account or alert["account"]
        title = title or f"{alert['point']} {alert['action']}: {alert['account']}"
    if campaign_id is not None:
        if queries.get_campaign(conn, campaign_id) is None:
            raise NotFound(f"no campaign {campaign_id!r}", field="campaign_id")
        title = title or f"campaign {campaign_id}"
    title = title or f"account {account}"
    now = _now()
    result = conn.execute(
        cases.insert().values(
            title=title,
            account=account,
            alert_id=alert_id,
            campaign_id=campaign_id,
            status="open",
            labels=sorted(set(labels or [])),
            assignee=assignee,
            created_by=actor,
            created_at=now,
            updated_at=now,
        )
    )
    case_id = int(result.inserted_primary_key[0])
    _log(
        conn,
        actor,
        "case.create",
        str(case_id),
        alert=alert_id,
        campaign=campaign_id,
        account=account,
        title=title,
    )
    if alert_id is not None:
        conn.execute(
            alerts.update()
            .where(alerts.c.id == alert_id, alerts.c.status == "open")
            .values(status="acknowledged", updated_at=now)
        )
    case = queries.get_case(conn, case_id)
    assert case is not None
    return case


def update_case(
    conn: sa.Connection, actor: str, case_id: int, changes: dict[str, Any]
) -> dict[str, Any]:
    """Change a case's title, status, outcome, labels or assignee.

    A case is closed with an outcome: closing one without ``outcome`` (given now or before) is a
    :class:`Conflict`.
    """
    changes = _changes(changes)
    case = queries.get_case(conn, case_id)
    if case is None:
        raise NotFound(f"no case {case_id}", field="case_id")
    if "labels" in changes:
        changes["labels"] = sorted(set(changes["labels"] or []))
    after = {**case, **changes}
    if after["status"] == "closed" and after["outcome"] is None:
        raise Conflict("a case is closed with an outcome: fraud or not_fraud", field="outcome")
    if changes:
        conn.execute(
            cases.update().where(cases.c.id == case_id).values(**changes, updated_at=_now())
        )
        _log(conn, actor, "case.update", str(case_id), **changes)
    updated = queries.get_case(conn, case_id)
    assert updated is not None
    return updated


def add_note(conn: sa.Connection, actor: str, case_id: int, text: str) -> dict[str, Any]:
    if queries.get_case(conn, case_id) is None:
        raise NotFound(f"no case {case_id}", field="case_id")
    now = _now()
    result = conn.execute(
        case_notes.insert().values(case_id=case_id, author=actor, text=text, created_at=now)
    )
    conn.execute(cases.update().where(cases.c.id == case_id).values(updated_at=now))
    note_id = int(result.inserted_primary_key[0])
    _log(conn, actor, "case.note", str(case_id), note=note_id, text=text)
    return {"id": note_id, "case_id": case_id, "author": actor, "text": text, "created_at": now}


def record_account_action(
    conn: sa.Connection, actor: str, account: str, action: str, target: str | None, note: str
) -> dict[str, Any]:
    if action not in ACCOUNT_ACTIONS:
        raise Conflict(f"unknown account action {action!r}", field="action")
    now = _now()
    result = conn.execute(
        account_actions.insert().values(
            account=account, action=action, target=target, note=note, actor=actor, created_at=now
        )
    )
    action_id = int(result.inserted_primary_key[0])
    _log(conn, actor, f"account.{action}", account, id=action_id, target=target, note=note)
    return {
        "id": action_id,
        "account": account,
        "action": action,
        "target": target,
        "note": note,
        "actor": actor,
        "created_at": now,
    }


def update_campaign(
    conn: sa.Connection, actor: str, campaign_id: str, status: str
) -> dict[str, Any]:
    if queries.get_campaign(conn, campaign_id) is None:
        raise NotFound(f"no campaign {campaign_id!r}", field="campaign_id")
    conn.execute(campaigns.update().where(campaigns.c.id == campaign_id).values(status=status))
    _log(conn, actor, "campaign.update", campaign_id, status=status)
    campaign = queries.get_campaign(conn, campaign_id)
    assert campaign is not None
    return campaign


def record_policy(
    conn: sa.Connection, actor: str, name: str, source: str, origin: str
) -> dict[str, Any]:
    """Store the policy now in force (the newest row is the current policy)."""
    now = _now()
    result = conn.execute(
        policies.insert().values(
            name=name, source=source, origin=origin, created_by=actor, created_at=now
        )
    )
    policy_id = int(result.inserted_primary_key[0])
    _log(
        conn,
        actor,
        "policy.set",
        name,
        id=policy_id,
        origin=origin,
        sha256=audit.sha256_text(source),
    )
    return {"id": policy_id, "name": name, "origin": origin, "created_by": actor, "created_at": now}
