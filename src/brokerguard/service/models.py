"""The service's tables, as SQLAlchemy Core metadata (no ORM: rows in, dicts out).

What the tables hold and why it is shaped so:

- ``api_keys``: callers of the API. Only a SHA-256 of each key is kept (see :mod:`.keys`).
- ``users`` / ``console_sessions``: analysts who log in to the console (argon2 password hashes,
  session tokens stored hashed, see :mod:`.users`).
- ``console_login_failures``: wrong console passwords of the last minutes, by username and by
  client address, so that guessing is throttled on every replica (see :mod:`.login_throttle`).
- ``events``: every account event the service saw, for the account timeline. Market data
  (instruments, bars) is not kept here: it has no account, and the engine keeps what it needs.
- ``decisions``: one row per decision the engine took; ``alerts``: one per decision that was not
  ``allow`` (the id is the decision's), with the detector signals an analyst needs.
- ``campaigns``: the cross-account campaigns the engine raised, refreshed while they grow; the
  analyst's ``status`` is the service's own.
- ``cases`` / ``case_notes``: investigations opened from an alert, a campaign or an account.
- ``account_actions``: what analysts did to accounts (release or cancel a held order, lock,
  unlock, force re-verification, mark a device trusted), and what the broker's site did on the
  customer's behalf (freeze, request an analyst's unlock).
- ``policies``: every policy the service ran, newest last; the newest is the current one.
- ``blocklist_review``: phishing hosts that only the learned model called phishing, waiting for
  an analyst before they may enter the guard's block-list (see :mod:`.blocklist_review`); one
  row per host, kept after the decision so that a rejected host is never queued again.
- ``audit_log``: append-only and hash-chained (see :mod:`.audit`); ``seq`` is assigned by the
  writer, never by the database, so a removed row leaves a visible gap.
- ``spill_loads``: spill files (records a stopping service could not write, see :mod:`.spill`)
  loaded by ``brokerguard records load-spill``: how far each was loaded, advanced in the
  transaction that writes its records, so that a load goes on where one stopped and a second
  load of the same file writes nothing.
- ``writer_progress``: how far each writer process's records are written (the first
  ``through`` it was handed, in order), advanced in the transaction that writes them, so that
  ``load-spill`` skips the records of a spill file that a writer wrote before it died.

Timestamps are stored in UTC (:class:`UTCDateTime`), whatever the database.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

__all__ = [
    "UTCDateTime",
    "account_actions",
    "alerts",
    "api_keys",
    "audit_log",
    "blocklist_review",
    "campaigns",
    "case_notes",
    "cases",
    "console_login_failures",
    "console_sessions",
    "decisions",
    "events",
    "instructions",
    "metadata",
    "policies",
    "spill_loads",
    "users",
    "writer_progress",
]


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """A timezone-aware datetime stored in UTC: SQLite keeps no zone, PostgreSQL converts."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
    }
)

Id = sa.String(64)
Account = sa.String(128)  # events.Id allows 128 characters

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", Id, primary_key=True),  # the key's public prefix, e.g. bgk_3f9a1c2e
    sa.Column("name", sa.String(200), nullable=False, server_default=""),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("scopes", sa.String(200), nullable=False),  # comma-separated
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False, server_default=""),
    sa.Column("revoked_at", UTCDateTime, nullable=True),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("username", sa.String(200), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(400), nullable=False),
    sa.Column("role", sa.String(20), nullable=False),  # analyst | supervisor | admin
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
)

console_sessions = sa.Table(
    "console_sessions",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("csrf", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
)

console_login_failures = sa.Table(
    "console_login_failures",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("username", sa.String(200), nullable=False),  # as typed (the form's limit)
    sa.Column("client", sa.String(64), nullable=False),  # the peer's address
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Index("ix_console_login_failures_username_at", "username", "at"),
    sa.Index("ix_console_login_failures_client_at", "client", "at"),
    sa.Index("ix_console_login_failures_at", "at"),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("event_id", sa.String(128), nullable=False),
    sa.Column("type", sa.String(20), nullable=False),
    sa.Column("ts", UTCDateTime, nullable=False),
    sa.Column("account", Account, nullable=True),  # none for market data, canary reports
    sa.Column("session", sa.String(128), nullable=True),
    sa.Column("body", sa.Text, nullable=False),  # the event as JSON, exactly as decoded
    sa.Index("ix_events_account_ts", "account", "ts"),
)

decisions = sa.Table(
    "decisions",
    metadata,
    sa.Column("id", Id, primary_key=True),
    sa.Column("event_id", sa.String(128), nullable=False),
    sa.Column("ts", UTCDateTime, nullable=False),  # the event's time
    sa.Column("account", Account, nullable=False),
    sa.Column("session", sa.String(128), nullable=True),
    sa.Column("point", sa.String(20), nullable=False),
    sa.Column("guard", sa.String(200), nullable=False),
    sa.Column("action", sa.String(20), nullable=False),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("factors", sa.JSON, nullable=False),
    sa.Column("reasons", sa.JSON, nullable=False),
    sa.Column("caller", sa.String(200), nullable=False),
    sa.Column("decided_at", UTCDateTime, nullable=False),  # wall-clock time of the decision
    sa.Index("ix_decisions_account_ts", "account", "ts"),
    sa.Index("ix_decisions_event_id", "event_id"),
    # The console's unlock list reads every `lock` decision: rare rows of the largest table,
    # so a partial index (a few rows, nothing for the other decisions to maintain).
    sa.Index(
        "ix_decisions_locks",
        "account",
        "decided_at",
        postgresql_where=sa.text("action = 'lock'"),
        sqlite_where=sa.text("action = 'lock'"),
    ),
)

alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("id", Id, sa.ForeignKey("decisions.id"), primary_key=True),
    sa.Column("event_id", sa.String(128), nullable=False),
    sa.Column("ts", UTCDateTime, nullable=False),
    sa.Column("account", Account, nullable=False),
    sa.Column("point", sa.String(20), nullable=False),
    sa.Column("action", sa.String(20), nullable=False),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("severity", sa.String(20), nullable=False),  # low | medium | high | critical
    sa.Column("detector", sa.String(20), nullable=False),  # of the strongest signal
    sa.Column("detectors", sa.JSON, nullable=False),  # every detector that spoke
    sa.Column("campaign", sa.String(64), nullable=True),  # engine campaign id, when linked
    sa.Column("reasons", sa.JSON, nullable=False),
    sa.Column("signals", sa.JSON, nullable=False),
    sa.Column("status", sa.String(20), nullable=False, server_default="open"),
    sa.Column("assignee", sa.String(200), nullable=True),
    sa.Column("snoozed_until", UTCDateTime, nullable=True),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Index("ix_alerts_status_ts", "status", "ts"),
    sa.Index("ix_alerts_account_ts", "account", "ts"),
    sa.Index("ix_alerts_ts", "ts"),
)

campaigns = sa.Table(
    "campaigns",
    metadata,
    sa.Column("id", Id, primary_key=True),  # engine id + raise time: unique across restarts
    sa.Column("engine_id", sa.String(32), nullable=False),
    sa.Column("raised_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("symbols", sa.JSON, nullable=False),
    sa.Column("accounts", sa.JSON, nullable=False),
    sa.Column("infrastructure", sa.JSON, nullable=False),
    sa.Column("counterparties", sa.JSON, nullable=False),
    sa.Column("timeline", sa.JSON, nullable=False),
    sa.Column("status", sa.String(20), nullable=False, server_default="active"),
)

cases = sa.Table(
    "cases",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("title", sa.String(300), nullable=False),
    sa.Column("account", Account, nullable=True),
    sa.Column("alert_id", Id, sa.ForeignKey("alerts.id"), nullable=True),
    sa.Column("campaign_id", Id, sa.ForeignKey("campaigns.id"), nullable=True),
    sa.Column("status", sa.String(20), nullable=False, server_default="open"),
    sa.Column("outcome", sa.String(20), nullable=True),  # fraud | not_fraud
    sa.Column("labels", sa.JSON, nullable=False),
    sa.Column("assignee", sa.String(200), nullable=True),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Index("ix_cases_status", "status"),
)

case_notes = sa.Table(
    "case_notes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("case_id", sa.Integer, sa.ForeignKey("cases.id", ondelete="CASCADE"), nullable=False),
    sa.Column("author", sa.String(200), nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Index("ix_case_notes_case_id", "case_id"),
)

account_actions = sa.Table(
    "account_actions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("account", Account, nullable=False),
    sa.Column("action", sa.String(30), nullable=False),
    sa.Column("target", sa.String(200), nullable=True),  # the order event or device cookie
    sa.Column("note", sa.Text, nullable=False, server_default=""),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Index("ix_account_actions_account", "account"),
)

policies = sa.Table(
    "policies",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("source", sa.Text, nullable=False),  # the TOML text as given
    sa.Column("origin", sa.String(500), nullable=False),  # file path or "api"
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column(
        "seq",
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        primary_key=True,
        autoincrement=False,
    ),
    sa.Column("ts", sa.String(40), nullable=False),  # ISO text: hashed exactly as stored
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("action", sa.String(60), nullable=False),
    sa.Column("subject", sa.String(200), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),  # canonical JSON text
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)

instructions = sa.Table(
    "instructions",
    metadata,
    # The broker's order system reads this table as a feed: `GET /v1/instructions?after=SEQ`.
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("kind", sa.String(32), nullable=False),  # cancel_orders, end_session
    sa.Column("ts", UTCDateTime, nullable=False),  # the time of the event that caused it
    sa.Column("account", Account, nullable=False),
    sa.Column("session", sa.String(128), nullable=False),
    sa.Column("orders", sa.JSON, nullable=False),  # order ids (empty for end_session)
    sa.Column("cause", sa.String(128), nullable=False),  # the event that caused it
    sa.Column("reasons", sa.JSON, nullable=False),
    sa.Column("guard", sa.String(200), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),  # wall-clock time it was raised
    sa.Index("ix_instructions_account", "account"),
    # One instruction per cause, session and kind: the service and a worker, or a redelivered
    # batch, raise the same one again; the second write is ignored.
    sa.UniqueConstraint("cause", "session", "kind", name="uq_instructions_cause_session_kind"),
)

blocklist_review = sa.Table(
    "blocklist_review",
    metadata,
    sa.Column("host", sa.String(253), primary_key=True),  # a DNS name has at most 253 characters
    sa.Column("brand", sa.String(64), nullable=True),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("url", sa.Text, nullable=False),  # the reported URL the finding is about
    sa.Column("finding", sa.Text, nullable=False),  # the `phish score --json` line, as JSON
    sa.Column("blocklist", sa.String(1000), nullable=False),  # the list file it was queued for
    sa.Column("status", sa.String(20), nullable=False, server_default="pending"),
    sa.Column("queued_by", sa.String(200), nullable=False),
    sa.Column("queued_at", UTCDateTime, nullable=False),
    sa.Column("decided_by", sa.String(200), nullable=True),
    sa.Column("decided_at", UTCDateTime, nullable=True),
    sa.Column("note", sa.Text, nullable=False, server_default=""),
    sa.Index("ix_blocklist_review_status", "status"),
)

spill_loads = sa.Table(
    "spill_loads",
    metadata,
    sa.Column("id", Id, primary_key=True),  # the spill file's id (its header's)
    sa.Column("file", sa.String(1000), nullable=False),  # the file's name at the last load
    sa.Column("created_at", UTCDateTime, nullable=False),  # when the service wrote it
    sa.Column("records", sa.Integer, nullable=False),  # how many the file holds
    sa.Column("through", sa.Integer, nullable=False),  # the first ones done, in the file's order
    sa.Column("written", sa.Integer, nullable=False),
    sa.Column("skipped", sa.Integer, nullable=False),  # already stored (a decision, a campaign)
    sa.Column("rejected", sa.Integer, nullable=False),  # the database refuses them for good
    sa.Column("loaded_at", UTCDateTime, nullable=False),
)

writer_progress = sa.Table(
    "writer_progress",
    metadata,
    sa.Column("writer", Id, primary_key=True),  # a writer process (the recorder names it)
    # its records 1..through (in the order it was handed them) are written, or refused for good
    sa.Column("through", sa.BigInteger, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)
