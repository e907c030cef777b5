"""Instructions of more than one kind per cause: orders to cancel, and a session to sign out.

A failed step-up (or an analyst's fraud confirmation) now raises two instructions for the same
session: ``cancel_orders`` and ``end_session``. One row per cause and session became one row per
cause, session and kind. (SQLite rebuilds the table to change the constraint; the rows are kept.)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("instructions") as batch:
        batch.drop_constraint("uq_instructions_cause_session", type_="unique")
        batch.create_unique_constraint(
            "uq_instructions_cause_session_kind", ["cause", "session", "kind"]
        )


def downgrade() -> None:
    op.execute("DELETE FROM instructions WHERE kind <> 'cancel_orders'")
    with op.batch_alter_table("instructions") as batch:
        batch.drop_constraint("uq_instructions_cause_session_kind", type_="unique")
        batch.create_unique_constraint("uq_instructions_cause_session", ["cause", "session"])
