"""Throwaway PostgreSQL databases on this machine's server, for the tests that need one.

PostgreSQL is not optional: if it does not answer, the tests that need it fail with a message
saying how to start it (CI starts it in ``.ci/run``). ``BG_TEST_POSTGRES`` names the server
(default ``postgresql://postgres@127.0.0.1:5432/postgres``).
"""

from __future__ import annotations

import os
import secrets

import psycopg
import pytest

PG_SERVER = os.environ.get("BG_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
START_PG = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"


def pg_admin() -> psycopg.Connection:
    try:
        return psycopg.connect(PG_SERVER, autocommit=True)
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL at {PG_SERVER} does not answer ({exc}); start it with `{START_PG}` "
            "(the service tests need it and never skip)",
            pytrace=False,
        )


def pg_database_url(name: str) -> str:
    base, _, _db = PG_SERVER.rpartition("/")
    return f"{base}/{name}"


def create_pg_database() -> str:
    """A new empty database ``bg_test_<random>``; returns its name."""
    name = f"bg_test_{secrets.token_hex(5)}"
    with pg_admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name


def drop_pg_database(name: str) -> None:
    with pg_admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def database_away(name: str) -> None:
    """The database refuses connections and its open sessions are ended: every use fails with
    an OperationalError, as while the server is down (:func:`database_back` undoes it)."""
    with pg_admin() as admin:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )


def database_back(name: str) -> None:
    with pg_admin() as admin:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
