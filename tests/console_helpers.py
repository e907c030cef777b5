"""Shared set-up of the console tests: a simulated attack run loaded into a real service.

The run (``scenarios/tiny.toml``, 300 customers, 3 days, under allow-all) is both the reports'
run directory and what the service ingests, so alerts, campaigns, timelines and reports all
describe the same accounts. The policy holds every new order (order prior 40), so the last order
of the run waits in the engine for an analyst to release it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import msgspec
from fastapi.testclient import TestClient

from brokerguard.engine.policy import default_policy_path
from brokerguard.events import Event, encode, read_ndjson
from brokerguard.guard import decision_point
from brokerguard.guards import load_guard
from brokerguard.service.db import make_engine, migrate, write_transaction
from brokerguard.service.keys import create_key
from brokerguard.service.users import create_user
from brokerguard.sim.scenario import load_scenario
from brokerguard.sim.world import simulate

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "correct horse battery"
USERS = {"ana": "analyst", "sup": "supervisor", "adm": "admin"}


def simulate_run(out: Path) -> list[Event]:
    scenario = load_scenario(ROOT / "scenarios" / "tiny.toml")
    scenario = msgspec.structs.replace(
        scenario, days=3, broker=msgspec.structs.replace(scenario.broker, investors=300)
    )
    simulate(scenario, load_guard("allow-all"), out)
    with (out / "events.ndjson").open("rb") as stream:
        return list(read_ndjson(stream))


def hold_policy(path: Path) -> Path:
    source = default_policy_path().read_text(encoding="utf-8")
    order_prior = re.search(r"^\[order\]\nprior = \S+", source, re.M).group(0)
    path.write_text(source.replace(order_prior, "[order]\nprior = 40.0", 1), encoding="utf-8")
    return path


def prepare_database(url: str) -> str:
    """Users of every role and an admin API key (returned) in a migrated database."""
    engine = make_engine(url)
    migrate(engine)
    with write_transaction(engine) as conn:
        for name, role in USERS.items():
            create_user(conn, name, PASSWORD, role)
        _info, key = create_key(conn, ("decide", "ingest", "read", "admin"), name="test")
    engine.dispose()
    return key


def split_events(events: list[Event]) -> tuple[list[Event], Event]:
    """All events before the run's last order, and that order."""
    last = max(i for i, e in enumerate(events) if decision_point(e) == "order")
    return events[:last], events[last]


def load(post: Any, key: str, events: list[Event]) -> dict[str, Any]:
    """Ingest ``events`` and decide the held order through ``post(path, content, headers)``;
    returns the decision on the held order."""
    before, order = split_events(events)
    auth = {"Authorization": f"Bearer {key}"}
    for start in range(0, len(before), 2000):
        body = b"".join(encode(e) + b"\n" for e in before[start : start + 2000])
        answer = post("/v1/events", body, {**auth, "content-type": "application/x-ndjson"})
        assert answer.status_code == 200, answer.text
    decided = post("/v1/decide", encode(order), {**auth, "content-type": "application/json"})
    assert decided.status_code == 200, decided.text
    decision = decided.json()
    assert decision["action"] == "hold", decision
    return decision


def login_form_token(client: TestClient) -> str:
    """Open the log-in form as a browser does: it sets the ``bg_login`` cookie and carries the
    same token in its hidden field, which the form post must send back (log-in CSRF)."""
    page = client.get("/console/login")
    assert page.status_code == 200
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, "the log-in form carries its token"
    return found.group(1)


def login(client: TestClient, username: str) -> str:
    """Log ``username`` in through the form (loaded first, as a browser does); returns the
    session's CSRF token."""
    token = login_form_token(client)
    answer = client.post(
        "/console/login",
        data={"username": username, "password": PASSWORD, "csrf_token": token},
        follow_redirects=False,
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/console/"
    return csrf_of(client.get("/console/alerts").text)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "the page carries the session's CSRF token"
    return found.group(1)
