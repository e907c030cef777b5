"""A partial index of the ``lock`` decisions, for the console's list of accounts waiting for an
unlock (:mod:`brokerguard.service.unlock_queue`): it reads every lock decision, a few rows of the
largest table, and a partial index finds them without scanning it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

LOCKS = sa.text("action = 'lock'")


def upgrade() -> None:
    op.create_index(
        "ix_decisions_locks",
        "decisions",
        ["account", "decided_at"],
        postgresql_where=LOCKS,
        sqlite_where=LOCKS,
    )


def downgrade() -> None:
    op.drop_index("ix_decisions_locks", table_name="decisions")
