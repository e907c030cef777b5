"""Wrong console passwords of the last minutes, so that password guessing is throttled.

Kept in the database (not in one process's memory) so that every replica behind a load
balancer counts the same failures; rows older than the window are deleted as new ones come.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

UTC = sa.DateTime(timezone=True)  # models.UTCDateTime's storage type

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "console_login_failures",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("username", sa.String(length=200), nullable=False),
        sa.Column("client", sa.String(length=64), nullable=False),
        sa.Column("at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_login_failures")),
    )
    for name, columns in (
        ("ix_console_login_failures_username_at", ["username", "at"]),
        ("ix_console_login_failures_client_at", ["client", "at"]),
        ("ix_console_login_failures_at", ["at"]),
    ):
        op.create_index(name, "console_login_failures", columns)


def downgrade() -> None:
    op.drop_table("console_login_failures")
