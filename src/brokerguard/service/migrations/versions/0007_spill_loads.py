"""Spill files loaded back: how far each was loaded (``brokerguard records load-spill``).

Records a stopping service could not write (the database away) are saved to a spill file; the
load advances this row in the same transaction as the records it writes, so an interrupted load
goes on where it stopped and a second load of the same file writes nothing.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

UTC = sa.DateTime(timezone=True)  # models.UTCDateTime's storage type

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "spill_loads",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("file", sa.String(length=1000), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("records", sa.Integer(), nullable=False),
        sa.Column("through", sa.Integer(), nullable=False),
        sa.Column("written", sa.Integer(), nullable=False),
        sa.Column("skipped", sa.Integer(), nullable=False),
        sa.Column("rejected", sa.Integer(), nullable=False),
        sa.Column("loaded_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_spill_loads")),
    )


def downgrade() -> None:
    op.drop_table("spill_loads")
