"""Alembic migrations of the service's database (run by :func:`brokerguard.service.db.migrate`)."""
