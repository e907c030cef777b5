"""Alembic environment: migrations run on the connection that ``db.migrate`` hands over.

There is no alembic.ini: the service calls Alembic in process with a connection already open,
so the same code upgrades SQLite and PostgreSQL, from the CLI, the server and the tests.
"""

from __future__ import annotations

from alembic import context

from brokerguard.service.models import metadata

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - only ``db.migrate`` runs these migrations
    raise RuntimeError("run migrations through brokerguard.service.db.migrate")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters by copying the table
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
