"""How far each writer process's records are written: spilled records it had written are
skipped by ``brokerguard records load-spill``.

A writer process that dies between committing a batch and acknowledging it leaves the server
holding that batch, which it saves to a spill file (``writer_lost``). Loading it wrote the
batch's event rows a second time (they have no key to know them by). Each writer process now
advances its row here in the transaction that writes its records, and the spill file names
each record's writer and place (spill format version 2), so the load skips what is written.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

UTC = sa.DateTime(timezone=True)  # models.UTCDateTime's storage type

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "writer_progress",
        sa.Column("writer", sa.String(length=64), nullable=False),
        sa.Column("through", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("writer", name=op.f("pk_writer_progress")),
    )


def downgrade() -> None:
    op.drop_table("writer_progress")
