"""Events without an account are kept too: market data, canary reports, campaign dismissals.

The service kept only account events, so an export replayed without the instruments and bars the
engine had seen (it judged thinness and prices without them) and the reports valued losses at
the last fill instead of the market. ``events.account`` may now be empty.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:  # SQLite rebuilds the table
        batch.alter_column("account", existing_type=sa.String(length=128), nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM events WHERE account IS NULL")
    with op.batch_alter_table("events") as batch:
        batch.alter_column("account", existing_type=sa.String(length=128), nullable=False)
