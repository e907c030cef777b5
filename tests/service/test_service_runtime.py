"""The service's moving parts: the writer process, the engine's state file, the one thread."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from conftest import Api

from brokerguard.events import Event
from brokerguard.guard import decision_point
from brokerguard.service.db import make_engine
from brokerguard.service.models import decisions
from brokerguard.stores.sqlite import SqliteState


def decided(url: str) -> int:
    engine = make_engine(url)
    with engine.connect() as conn:
        n = conn.scalar(sa.select(sa.func.count()).select_from(decisions))
    engine.dispose()
    return int(n or 0)


def test_a_dead_writer_process_is_replaced(
    make_api: Callable[..., Api], sqlite_url: str, recorded_events: list[Event]
) -> None:
    api = make_api(sqlite_url)
    points = [e for e in recorded_events if decision_point(e) is not None][:40]
    for event in points[:20]:
        assert api.decide(event).status_code == 200
    api.settle()
    assert decided(sqlite_url) == 20
    writer = api.service.recorder._process
    os.kill(writer.pid, signal.SIGKILL)
    writer.join(10)
    for event in points[20:]:
        assert api.decide(event).status_code == 200
    api.settle()
    assert decided(sqlite_url) == 40
    assert api.service.recorder._process.pid != writer.pid
    health = api.client.get("/healthz").json()
    assert (health["status"], health["writer_restarts"]) == ("ok", 1)


def test_the_engine_state_survives_a_restart(
    make_api: Callable[..., Api], sqlite_url: str, recorded_events: list[Event], tmp_path: Path
) -> None:
    state = tmp_path / "state.db"
    head = recorded_events[:4000]
    api = make_api(sqlite_url, state_path=state)
    assert api.ingest(head).status_code == 200
    api.client.__exit__(None, None, None)  # shutdown flushes the state file
    with SqliteState(state) as stored:
        accounts = stored.count("account")
    assert accounts > 100
    again = make_api(sqlite_url, state_path=state)
    count = again.service.host.guard.state.count  # the state lives on the loop's thread
    assert again.client.portal.call(count, "account") == accounts


def test_the_engine_is_only_called_on_the_event_loop_thread(
    api: Api, recorded_events: list[Event]
) -> None:
    import threading

    seen: set[int] = set()
    guard = api.service.host.guard
    original_decide, original_observe = guard.decide, guard.observe

    def decide(event):  # type: ignore[no-untyped-def]
        seen.add(threading.get_ident())
        return original_decide(event)

    def observe(event):  # type: ignore[no-untyped-def]
        seen.add(threading.get_ident())
        return original_observe(event)

    guard.decide, guard.observe = decide, observe
    head = recorded_events[:3000]
    assert api.ingest(head, batch=500).status_code == 200
    for event in [e for e in head if decision_point(e) is not None][:50]:
        api.decide(event)
    assert len(seen) == 1 and threading.get_ident() not in seen
