"""Accounts waiting for an unlock: what locked each one, since when, and whether the customer
asked for an analyst's unlock.

An account waits from the first lock after its latest ``unlock`` action (or from its first lock
ever) until the next ``unlock``. Three things lock it, and the analyst must know which before
reopening it:

- an account action ``lock`` (an analyst in the console, or the broker's systems with an API
  key) or ``freeze`` (the customer, through the broker's site: the freeze button, or the
  site's own lock after failed passwords — the note says which);
- the engine's policy answering ``lock`` to a sign-in or an operation (too many failed
  passwords, a rule): a decision, not a held state, so the broker's systems enforce it and tell
  the guard of the unlock with the ``unlock`` action. Decisions the analysts' lock made
  (:data:`~brokerguard.service.host.ACCOUNT_LOCKED`, ``CUSTOMER_FROZE``) are echoes of an action
  and are not origins.

A customer who cannot re-verify with a passkey asks the broker's site for an analyst's unlock;
the site records it at the guard as the ``request_unlock`` account action (audited like every
action). Requests older than the wait's start belong to an earlier lock and are ignored.

The console shows the list a page at a time (:func:`unlock_page`, :data:`PAGE` accounts a
page): every waiting account is on some page, however many there are.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from brokerguard.service.host import ACCOUNT_LOCKED, CUSTOMER_FROZE
from brokerguard.service.models import account_actions, decisions

__all__ = ["PAGE", "unlock_page", "waiting_unlocks"]

ECHOES = frozenset({ACCOUNT_LOCKED.code, CUSTOMER_FROZE.code})
"""Reason codes of decisions made by an account action's lock, not by the policy."""

LOCKS = ("lock", "freeze")
PAGE = 100
"""Accounts per page of the console's list."""


def _origin_of_action(row: dict[str, Any]) -> str:
    """``analyst`` (a console user), ``customer`` (a freeze) or ``system`` (an API key's lock)."""
    if row["action"] == "freeze":
        return "customer"
    return "analyst" if str(row["actor"]).startswith("user:") else "system"


def _entry(account: str, first: dict[str, Any], origin: str) -> dict[str, Any]:
    return {
        "account": account,
        "since": first["at"],
        "origin": origin,
        "actor": first.get("actor"),
        "note": first.get("note", ""),
        "point": first.get("point"),
        "reasons": first.get("reasons", []),
        "requested_at": None,
        "request_note": "",
        "then": None,  # a policy's lock: the action that followed it (the site's freeze)
    }


def waiting_unlocks(
    conn: sa.Connection,
    *,
    requested_only: bool = False,
    account: str | None = None,
) -> list[dict[str, Any]]:
    """Accounts waiting for an unlock, newest wait first (all of them: see :func:`unlock_page`).

    Each entry: ``account``, ``since``, ``origin`` (``policy``, ``analyst``, ``customer`` or
    ``system``), ``actor`` and ``note`` of the locking action, ``point`` and ``reasons`` of the
    policy's decision, ``then`` (the action entry that followed a policy's lock, if any), and
    ``requested_at`` and ``request_note`` of the customer's latest request (None when none was
    made). ``requested_only`` keeps the accounts whose customer asked; ``account`` reads only
    that account (its page).
    """
    only_acts = [account_actions.c.account == account] if account is not None else []
    only_decisions = [decisions.c.account == account] if account is not None else []
    kinds = (*LOCKS, "unlock", "request_unlock")
    acts = conn.execute(
        sa.select(account_actions)
        .where(account_actions.c.action.in_(kinds), *only_acts)
        .order_by(account_actions.c.id)
    )
    by_account: dict[str, list[dict[str, Any]]] = {}
    ended: dict[str, datetime] = {}  # account -> its latest unlock
    for act in acts:
        row = dict(act._mapping)
        if row["action"] == "unlock":
            by_account.pop(row["account"], None)
            ended[row["account"]] = row["created_at"]
        else:
            by_account.setdefault(row["account"], []).append(row)

    waiting: dict[str, dict[str, Any]] = {}
    for account, rows in by_account.items():
        first = next((r for r in rows if r["action"] in LOCKS), None)
        if first is not None:
            at = {**first, "at": first["created_at"]}
            waiting[account] = _entry(account, at, _origin_of_action(first))

    locks = conn.execute(
        sa.select(
            decisions.c.account, decisions.c.point, decisions.c.reasons, decisions.c.decided_at
        )
        .where(decisions.c.action == "lock", *only_decisions)  # index ix_decisions_locks
        .order_by(decisions.c.decided_at)
    )
    for d in locks:
        if any(r.get("code") in ECHOES for r in d.reasons or ()):
            continue
        after = ended.get(d.account)
        if after is not None and d.decided_at <= after:
            continue  # a lock the latest unlock ended
        known = waiting.get(d.account)
        if known is not None and known["origin"] == "policy":
            continue  # the first decision of this wait is its origin
        if known is None or d.decided_at < known["since"]:
            first = {"at": d.decided_at, "point": d.point, "reasons": list(d.reasons or ())}
            waiting[d.account] = {**_entry(d.account, first, "policy"), "then": known}
        # a policy's lock after the action's: an echo the reason codes did not tell apart

    for account, entry in waiting.items():
        asked = [
            r
            for r in by_account.get(account, ())
            if r["action"] == "request_unlock" and r["created_at"] >= entry["since"]
        ]
        if asked:
            entry["requested_at"] = asked[-1]["created_at"]
            entry["request_note"] = asked[-1]["note"]
    rows = [e for e in waiting.values() if e["requested_at"] is not None or not requested_only]
    rows.sort(key=lambda e: (e["since"], e["account"]), reverse=True)
    return rows


def unlock_page(
    conn: sa.Connection, page: int = 1, *, per_page: int = PAGE, requested_only: bool = False
) -> tuple[list[dict[str, Any]], int, int]:
    """One page of :func:`waiting_unlocks`: its rows, the page shown (1-based; a page past the
    end shows the last one, as after unlocking the last account of the last page) and how many
    accounts wait in all."""
    rows = waiting_unlocks(conn, requested_only=requested_only)
    pages = max(1, -(-len(rows) // per_page))
    page = min(max(1, page), pages)
    return rows[(page - 1) * per_page : page * per_page], page, len(rows)
