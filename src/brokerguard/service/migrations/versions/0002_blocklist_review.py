"""The review queue of the phishing block-list: model-only findings wait for an analyst.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

UTC = sa.DateTime(timezone=True)  # models.UTCDateTime's storage type

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "blocklist_review",
        sa.Column("host", sa.String(length=253), nullable=False),
        sa.Column("brand", sa.String(length=64), nullable=True),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("finding", sa.Text(), nullable=False),
        sa.Column("blocklist", sa.String(length=1000), nullable=False),
        sa.Column("status", sa.String(length=20), server_default="pending", nullable=False),
        sa.Column("queued_by", sa.String(length=200), nullable=False),
        sa.Column("queued_at", UTC, nullable=False),
        sa.Column("decided_by", sa.String(length=200), nullable=True),
        sa.Column("decided_at", UTC, nullable=True),
        sa.Column("note", sa.Text(), server_default="", nullable=False),
        sa.PrimaryKeyConstraint("host", name=op.f("pk_blocklist_review")),
    )
    op.create_index("ix_blocklist_review_status", "blocklist_review", ["status"])


def downgrade() -> None:
    op.drop_index("ix_blocklist_review_status", table_name="blocklist_review")
    op.drop_table("blocklist_review")
