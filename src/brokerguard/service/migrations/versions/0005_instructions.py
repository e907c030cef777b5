"""Instructions: orders the engine asks the broker to cancel, kept as a feed.

When a session fails a phishing-resistant step-up, or an analyst confirms that the sign-in
behind it was fraud, the orders it placed earlier and that are still open should not execute.
The broker's order system reads these rows in order (``GET /v1/instructions?after=SEQ``).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

UTC = sa.DateTime(timezone=True)  # models.UTCDateTime's storage type

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "instructions",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("ts", UTC, nullable=False),
        sa.Column("account", sa.String(length=128), nullable=False),
        sa.Column("session", sa.String(length=128), nullable=False),
        sa.Column("orders", sa.JSON(), nullable=False),
        sa.Column("cause", sa.String(length=128), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("guard", sa.String(length=200), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_instructions")),
        sa.UniqueConstraint("cause", "session", name="uq_instructions_cause_session"),
    )
    op.create_index("ix_instructions_account", "instructions", ["account"])


def downgrade() -> None:
    op.drop_index("ix_instructions_account", table_name="instructions")
    op.drop_table("instructions")
