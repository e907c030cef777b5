"""The review step between phishing findings and the guard's block-list.

A listed host challenges every sign-in whose Referer names it, so what enters the list must be
right. The rules' findings explain themselves and go straight in; a host that only the learned
model calls phishing waits in ``blocklist_review`` until an analyst approves it (then it is
written to the list file) or rejects it (then it stays out, and is never queued again — nor
listed by the rules, since an analyst looked at it and said no).

The queue is a table of the service's database (SQLite or PostgreSQL), so the CLI
(``brokerguard phish blocklist`` / ``phish review``) and the console write the same rows. Every
function runs inside :func:`~brokerguard.service.db.write_transaction` and appends its audit
entry there. The list file is written inside that transaction too: the database's write lock
keeps two writers (a CLI run and a console approval) from losing each other's entries in the
file's read-merge-replace, and a failed file write rolls the row change back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import sqlalchemy as sa

from brokerguard.phishing._blocklist import Blocklist, load_blocklist, write_blocklist
from brokerguard.phishing._review import Split
from brokerguard.phishing._score import Finding
from brokerguard.service import audit
from brokerguard.service.errors import Conflict, InvalidInput, NotFound
from brokerguard.service.models import blocklist_review

__all__ = [
    "STATUSES",
    "QueueResult",
    "decide",
    "enqueue",
    "get_entry",
    "list_entries",
    "statuses_of",
]

STATUSES = ("pending", "approved", "rejected")
MAX_NOTE = 2000
_CHUNK = 500  # hosts per IN (...) query


@dataclass
class QueueResult:
    """Where each phishing host of one ``phish blocklist`` run went."""

    listed: list[str] = field(default_factory=list)  # the rules': written to the list
    queued: list[str] = field(default_factory=list)  # model-only: new in the review queue
    waiting: list[str] = field(default_factory=list)  # model-only, already pending
    already_listed: list[str] = field(default_factory=list)  # model-only, on the list already
    rejected: list[str] = field(default_factory=list)  # an analyst rejected it: left out
    entries: int = 0  # entries in the list file afterwards


def _now() -> datetime:
    return datetime.now(UTC)


def statuses_of(conn: sa.Connection, hosts: list[str]) -> dict[str, str]:
    """The review status of each host that was ever queued."""
    found: dict[str, str] = {}
    for start in range(0, len(hosts), _CHUNK):
        chunk = hosts[start : start + _CHUNK]
        rows = conn.execute(
            sa.select(blocklist_review.c.host, blocklist_review.c.status).where(
                blocklist_review.c.host.in_(chunk)
            )
        )
        found.update({r.host: r.status for r in rows})
    return found


def _listed(current: Blocklist, host: str) -> bool:
    return host in current.exact or current.match(host) is not None


def enqueue(conn: sa.Connection, split: Split, list_path: Path, actor: str) -> QueueResult:
    """Write the rules' hosts to ``list_path`` and queue the model-only ones for review.

    Hosts an analyst rejected are left out of both. Raises
    :class:`~brokerguard.phishing.BlocklistError` if the existing list file is broken (then
    nothing is written or queued).
    """
    list_path = list_path.resolve()
    known = statuses_of(conn, sorted({*split.rules, *split.model}))
    current = load_blocklist(list_path) if list_path.exists() else Blocklist()
    result = QueueResult()
    rules: list[Finding] = []
    for host, finding in sorted(split.rules.items()):
        if known.get(host) == "rejected":
            result.rejected.append(host)
        else:
            rules.append(finding)
            result.listed.append(host)
    now = _now()
    for host, finding in sorted(split.model.items()):
        status = known.get(host)
        if status == "rejected":
            result.rejected.append(host)
        elif status == "pending":
            result.waiting.append(host)
        elif _listed(current, host) or status == "approved":
            result.already_listed.append(host)
        else:
            conn.execute(
                blocklist_review.insert().values(
                    host=host,
                    brand=finding.brand,
                    score=finding.score,
                    url=finding.url,
                    finding=msgspec.json.encode(finding).decode("utf-8"),
                    blocklist=str(list_path),
                    status="pending",
                    queued_by=actor,
                    queued_at=now,
                    note="",
                )
            )
            result.queued.append(host)
    result.entries = len(write_blocklist(list_path, rules))
    detail = {
        "blocklist": str(list_path),
        "listed": len(result.listed),
        "queued": result.queued[:100],
        "queued_count": len(result.queued),
        "rejected_skipped": len(result.rejected),
    }
    audit.append(conn, [audit.AuditEntry(actor, "blocklist.queue", str(list_path), detail)])
    return result


def _row(r: Any) -> dict[str, Any]:
    row = dict(r._mapping)
    finding = msgspec.json.decode(row.pop("finding"), type=Finding)
    row["reasons"] = [msgspec.to_builtins(x) for x in finding.reasons]
    row["target"] = finding.target
    return row


def _raw(conn: sa.Connection, host: str) -> Any:
    return conn.execute(sa.select(blocklist_review).where(blocklist_review.c.host == host)).first()


def get_entry(conn: sa.Connection, host: str) -> dict[str, Any] | None:
    """One host's review row (with the finding's reasons), or None."""
    r = _raw(conn, host)
    return _row(r) if r is not None else None


def list_entries(
    conn: sa.Connection, status: str | None = "pending", limit: int = 500
) -> list[dict[str, Any]]:
    """Review rows, newest first; ``status`` None = every row."""
    if status is not None and status not in STATUSES:
        raise InvalidInput(
            f"unknown review status {status!r}; one of {', '.join(STATUSES)}", field="status"
        )
    q = sa.select(blocklist_review)
    if status is not None:
        q = q.where(blocklist_review.c.status == status)
    q = q.order_by(
        sa.func.coalesce(blocklist_review.c.decided_at, blocklist_review.c.queued_at).desc(),
        blocklist_review.c.host,
    ).limit(limit)
    return [_row(r) for r in conn.execute(q)]


def decide(
    conn: sa.Connection,
    actor: str,
    host: str,
    approve: bool,
    note: str = "",
    list_path: Path | None = None,
) -> dict[str, Any]:
    """Approve (write to the block-list) or reject (keep out for good) one queued host.

    ``list_path`` overrides the list the host was queued for (the running service's
    ``--blocklist``). A pending or rejected host may be approved (an analyst may change their
    mind); an approved host is on the list, so it is a :class:`Conflict` to decide it again.
    """
    host = host.strip().lower()
    if not host:
        raise InvalidInput("a host is needed", field="host")
    if len(note) > MAX_NOTE:
        raise InvalidInput(f"the note has at most {MAX_NOTE} characters", field="note")
    raw = _raw(conn, host)
    if raw is None:
        raise NotFound(f"{host!r} is not in the review queue", field="host")
    row = _row(raw)
    if row["status"] == "approved":
        raise Conflict(
            f"{host} was approved by {row['decided_by']} and is on the block-list already",
            field="host",
        )
    if row["status"] == "rejected" and not approve:
        raise Conflict(f"{host} was rejected by {row['decided_by']} already", field="host")
    target = (list_path or Path(row["blocklist"])).resolve()
    if approve:
        write_blocklist(target, [msgspec.json.decode(raw.finding, type=Finding)])
    status = "approved" if approve else "rejected"
    now = _now()
    conn.execute(
        blocklist_review.update()
        .where(blocklist_review.c.host == host)
        .values(status=status, decided_by=actor, decided_at=now, note=note)
    )
    detail = {"note": note, "blocklist": str(target), "score": row["score"], "brand": row["brand"]}
    action = "blocklist.approve" if approve else "blocklist.reject"
    audit.append(conn, [audit.AuditEntry(actor, action, host, detail)])
    updated = get_entry(conn, host)
    assert updated is not None
    return updated
