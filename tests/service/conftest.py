"""Fixtures of the service tests: a real SQLite file and the PostgreSQL server of this machine.

PostgreSQL is not optional: if it does not answer, the tests that need it fail with a message
saying how to start it (CI starts it in ``.ci/run``). Each test session creates its own database,
``bg_test_<random>``, migrates it from empty, truncates it between tests and drops it at the end.
``BG_TEST_POSTGRES`` names the server (default ``postgresql://postgres@127.0.0.1:5432/postgres``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from pg_helpers import create_pg_database, database_back, drop_pg_database, pg_database_url

from brokerguard.events import Event, encode, read_ndjson
from brokerguard.guards import load_guard
from brokerguard.service.app import create_app
from brokerguard.service.db import make_engine, migrate, write_transaction
from brokerguard.service.keys import create_key
from brokerguard.service.models import audit_log, metadata
from brokerguard.service.users import create_user
from brokerguard.sim.scenario import load_scenario
from brokerguard.sim.world import simulate

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A migrated throwaway PostgreSQL database for this test session."""
    name = create_pg_database()
    url = pg_database_url(name)
    try:
        engine = make_engine(url)
        migrate(engine)
        engine.dispose()
        yield url
    finally:
        drop_pg_database(name)


@pytest.fixture
def outage_db() -> Iterator[tuple[str, str]]:
    """A migrated PostgreSQL database of the test's own, (url, name), which the test may take
    away and bring back (``pg_helpers.database_away`` / ``database_back``)."""
    name = create_pg_database()
    url = pg_database_url(name)
    try:
        engine = make_engine(url)
        migrate(engine)
        engine.dispose()
        yield url, name
    finally:
        database_back(name)
        drop_pg_database(name)


def _truncate(url: str) -> None:
    engine = make_engine(url)
    names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on a fresh SQLite file and on the session's PostgreSQL database (emptied)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'service.db'}"
    url: str = request.getfixturevalue("pg_url")
    _truncate(url)
    return url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'service.db'}"


def add_key(url: str, *scopes: str) -> str:
    engine = make_engine(url)
    migrate(engine)
    with write_transaction(engine) as conn:
        _info, key = create_key(conn, scopes or ("decide",), name="test")
    engine.dispose()
    return key


def add_user(url: str, username: str, role: str, password: str = "correct horse battery") -> None:
    engine = make_engine(url)
    migrate(engine)
    with write_transaction(engine) as conn:
        create_user(conn, username, password, role)
    engine.dispose()


def audit(url: str) -> list[tuple[str, str, str, Any]]:
    """The audit log, oldest first: (actor, action, subject, detail)."""
    engine = make_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                audit_log.c.actor, audit_log.c.action, audit_log.c.subject, audit_log.c.detail
            ).order_by(audit_log.c.seq)
        ).all()
    engine.dispose()
    return [tuple(r) for r in rows]


class Api:
    """A TestClient on a running app (lifespan on), with keys of every scope."""

    def __init__(self, client: TestClient, keys: dict[str, str]) -> None:
        self.client = client
        self.keys = keys
        self.app = client.app

    @property
    def service(self) -> Any:
        return self.app.state.service  # type: ignore[attr-defined]

    def auth(self, scope: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[scope]}"}

    def decide(self, event: Event | bytes, scope: str = "decide") -> Any:
        body = event if isinstance(event, bytes) else encode(event)
        return self.client.post(
            "/v1/decide",
            content=body,
            headers={**self.auth(scope), "content-type": "application/json"},
        )

    def ingest(self, events: list[Event], batch: int = 2000) -> Any:
        """POST the events as NDJSON batches (under the size limit); the first failure, or the
        last answer."""
        response = None
        for start in range(0, len(events), batch):
            body = b"".join(encode(e) + b"\n" for e in events[start : start + batch])
            response = self.client.post(
                "/v1/events",
                content=body,
                headers={**self.auth("ingest"), "content-type": "application/x-ndjson"},
            )
            if response.status_code != 200:
                return response
        return response

    def get(self, path: str, scope: str = "read", **kw: Any) -> Any:
        return self.client.get(path, headers=self.auth(scope), **kw)

    def settle(self) -> None:
        """Wait until every queued record is written (records are written after answering)."""
        self.service.tick()
        assert self.service.recorder.wait_idle(10)


@pytest.fixture
def make_api() -> Iterator[Callable[..., Api]]:
    opened: list[TestClient] = []

    def make(url: str, **kwargs: Any) -> Api:
        keys = {scope: add_key(url, scope) for scope in ("decide", "ingest", "read", "admin")}
        client = TestClient(create_app(url, **kwargs))
        client.__enter__()
        opened.append(client)
        return Api(client, keys)

    yield make
    for client in opened:
        client.__exit__(None, None, None)


@pytest.fixture
def api(make_api: Callable[..., Api], database_url: str) -> Api:
    return make_api(database_url)


@pytest.fixture(scope="session")
def recorded_events(tmp_path_factory: pytest.TempPathFactory) -> list[Event]:
    """A small attack scenario (300 customers, 3 days) recorded under allow-all."""
    scenario = load_scenario(ROOT / "scenarios" / "tiny.toml")
    scenario = msgspec.structs.replace(
        scenario, days=3, broker=msgspec.structs.replace(scenario.broker, investors=300)
    )
    out = tmp_path_factory.mktemp("recorded")
    simulate(scenario, load_guard("allow-all"), out)
    with (out / "events.ndjson").open("rb") as stream:
        return list(read_ndjson(stream))
