"""The audit log: append-only, hash-chained, so a removed or altered entry is detected.

Every decision and every analyst action appends an entry. Entry ``n`` stores
``hash_n = sha256(hash_{n-1} + canonical_json(entry_n))`` (hex), where the canonical JSON is the
entry's fields — ``seq``, ``ts``, ``actor``, ``action``, ``subject`` and ``detail`` (itself a
canonical JSON text, stored exactly as hashed) — with sorted keys, no spaces, UTF-8. The first
entry's previous hash is 64 zeros. :func:`verify` recomputes the chain from the stored rows:

- an altered field changes that entry's hash (``hash mismatch``);
- a removed entry leaves a gap in ``seq`` and breaks the next entry's ``prev_hash``;
- rewriting the whole chain after the change needs every later hash recomputed, and the head
  printed by ``brokerguard audit verify`` (kept elsewhere, e.g. in the operator's log) no longer
  matches; that is also the only way to notice entries removed from the very end.

Appends run inside :func:`~brokerguard.service.db.write_transaction`, which holds the database's
write lock, so two writers (the server and a CLI command) never fork the chain.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, NamedTuple

import sqlalchemy as sa

from brokerguard.service.models import audit_log

__all__ = [
    "GENESIS",
    "AuditEntry",
    "AuditProblem",
    "AuditReport",
    "append",
    "canonical",
    "entry_hash",
    "hash_at",
    "sha256_text",
    "verify",
]

GENESIS = "0" * 64
_BATCH = 5000


class AuditEntry(NamedTuple):
    """What happened, before it gets its place in the chain."""

    actor: str  # "key:bgk_…", "user:alice", "cli", "system"
    action: str  # "decision", "case.create", "account.lock", …
    subject: str  # what it was done to: an account, a case id, a key id
    detail: Mapping[str, Any]


class AuditProblem(NamedTuple):
    seq: int  # the entry number where the chain first breaks
    problem: str


class AuditReport(NamedTuple):
    entries: int
    head_seq: int
    head_hash: str
    problem: AuditProblem | None


def canonical(value: Any) -> str:
    """The one JSON text of a value: sorted keys, no whitespace, non-ASCII kept as is."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def entry_hash(
    prev_hash: str, seq: int, ts: str, actor: str, action: str, subject: str, detail: str
) -> str:
    body = canonical(
        {
            "seq": seq,
            "ts": ts,
            "actor": actor,
            "action": action,
            "subject": subject,
            "detail": detail,
        }
    )
    return hashlib.sha256((prev_hash + body).encode()).hexdigest()


def _head(conn: sa.Connection) -> tuple[int, str]:
    row = conn.execute(
        sa.select(audit_log.c.seq, audit_log.c.hash).order_by(audit_log.c.seq.desc()).limit(1)
    ).first()
    return (0, GENESIS) if row is None else (int(row.seq), str(row.hash))


def append(conn: sa.Connection, entries: Iterable[AuditEntry], now: datetime | None = None) -> int:
    """Chain ``entries`` after the current head; returns the new head's ``seq``.

    ``conn`` must be inside :func:`~brokerguard.service.db.write_transaction`.
    """
    seq, prev = _head(conn)
    ts = (now or datetime.now(UTC)).isoformat(timespec="microseconds")
    rows = []
    for entry in entries:
        seq += 1
        detail = canonical(dict(entry.detail))
        digest = entry_hash(prev, seq, ts, entry.actor, entry.action, entry.subject, detail)
        rows.append(
            {
                "seq": seq,
                "ts": ts,
                "actor": entry.actor,
                "action": entry.action,
                "subject": entry.subject,
                "detail": detail,
                "prev_hash": prev,
                "hash": digest,
            }
        )
        prev = digest
    if rows:
        conn.execute(audit_log.insert(), rows)
    return seq


def _rows(conn: sa.Connection) -> Iterator[sa.Row[Any]]:
    after = 0
    while True:
        batch = conn.execute(
            sa.select(audit_log)
            .where(audit_log.c.seq > after)
            .order_by(audit_log.c.seq)
            .limit(_BATCH)
        ).all()
        if not batch:
            return
        yield from batch
        after = int(batch[-1].seq)


def hash_at(conn: sa.Connection, seq: int) -> str | None:
    """The stored hash of entry ``seq``, or None when there is no such entry."""
    return conn.scalar(sa.select(audit_log.c.hash).where(audit_log.c.seq == seq))


def verify(conn: sa.Connection) -> AuditReport:
    """Walk the chain from its first entry; report the first entry where it breaks."""
    expected_seq, prev = 1, GENESIS
    count = 0
    for row in _rows(conn):
        seq = int(row.seq)
        if seq != expected_seq:
            missing = f"{expected_seq}" if seq == expected_seq + 1 else f"{expected_seq}-{seq - 1}"
            return AuditReport(
                count,
                expected_seq - 1,
                prev,
                AuditProblem(expected_seq, f"entry {missing} is missing (next entry is {seq})"),
            )
        if row.prev_hash != prev:
            return AuditReport(
                count,
                seq - 1,
                prev,
                AuditProblem(seq, "its previous hash does not match the entry before it"),
            )
        digest = entry_hash(prev, seq, row.ts, row.actor, row.action, row.subject, row.detail)
        if digest != row.hash:
            return AuditReport(
                count,
                seq - 1,
                prev,
                AuditProblem(seq, "its content does not match its hash (the entry was altered)"),
            )
        count += 1
        expected_seq, prev = seq + 1, digest
    return AuditReport(count, expected_seq - 1, prev, None)
