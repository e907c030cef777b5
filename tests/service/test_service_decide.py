"""``/v1/decide`` answers as the engine would; bad events are refused with the field named."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest
import sqlalchemy as sa
from conftest import Api

from brokerguard.engine import BrokerGuard
from brokerguard.events import ANALYST_EVENT_REFUSED, Event, encode, read_ndjson
from brokerguard.guard import decision_point
from brokerguard.service.db import make_engine
from brokerguard.service.exports import export_run
from brokerguard.service.models import alerts, decisions, events

LOGIN = {
    "type": "login",
    "id": "l1",
    "ts": "2025-03-20T10:00:00+09:00",
    "account": "A1",
    "session": "s1",
    "ip": "203.0.113.7",
    "user_agent": "Mozilla/5.0",
    "device": "d1",
    "factors": ["password"],
    "success": True,
}


def body(**changes: object) -> bytes:
    event = {**LOGIN, **changes}
    return msgspec.json.encode({k: v for k, v in event.items() if v is not ...})


def error_of(response, status: int) -> dict:
    assert response.status_code == status, response.text
    return response.json()["error"]


def count(url: str, table: sa.Table) -> int:
    engine = make_engine(url)
    with engine.connect() as conn:
        n = conn.scalar(sa.select(sa.func.count()).select_from(table))
    engine.dispose()
    return int(n or 0)


def test_decide_answers_like_the_engine(
    api: Api, database_url: str, recorded_events: list[Event], tmp_path: Path
) -> None:
    """The recorded run through the API (observed events in batches, decision points one by
    one, in order) gets the same decisions as a BrokerGuard fed the same events directly; and
    the service's records, exported, replay to the same decisions (market data included)."""
    direct = BrokerGuard()
    expected = []
    answers = []
    batch: list[Event] = []
    for event in recorded_events:
        if decision_point(event) is None:
            direct.observe(event)
            batch.append(event)
            continue
        if batch:
            assert api.ingest(batch).status_code == 200
            batch = []
        expected.append(direct.decide(event))
        response = api.decide(event)
        assert response.status_code == 200, response.text
        answers.append(response.json())
    if batch:
        assert api.ingest(batch).status_code == 200
    assert len(answers) > 200
    for want, got in zip(expected, answers, strict=True):
        assert got["action"] == want.action
        assert got["score"] == pytest.approx(want.score)
        assert got["factors"] == list(want.factors)
        assert [r["code"] for r in got["reasons"]] == [r.code for r in want.reasons]
        assert all(r["en"] and r["ja"] for r in got["reasons"])
    actions = {a["action"] for a in answers}
    assert {"allow", "deny"} <= actions and actions & {"challenge", "hold"}

    api.settle()
    assert count(database_url, decisions) == len(answers)
    raised = [a for a in answers if a["alert_id"] is not None]
    assert raised and count(database_url, alerts) == len(raised)
    assert all(a["action"] != "allow" for a in raised)
    assert count(database_url, events) == len(recorded_events)  # market data too

    engine = make_engine(database_url)
    with engine.connect() as conn:
        export_run(conn, tmp_path / "export")
    engine.dispose()
    with (tmp_path / "export" / "events.ndjson").open("rb") as f:
        exported = list(read_ndjson(f))
    assert sorted(e.id for e in exported) == sorted(e.id for e in recorded_events)
    assert [e.id for e in exported] == [e.id for e in recorded_events]  # as the engine saw them
    again = BrokerGuard()
    replayed = [
        again.decide(e) if decision_point(e) is not None else again.observe(e) for e in exported
    ]
    decided = [d for e, d in zip(exported, replayed, strict=True) if decision_point(e)]
    assert [(d.action, d.score) for d in decided] == [(d.action, d.score) for d in expected]


def test_a_batch_decides_its_decision_points(api: Api, recorded_events: list[Event]) -> None:
    head = recorded_events[:3000]
    points = sum(1 for e in head if decision_point(e) is not None)
    response = api.ingest(head, batch=len(head))
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["accepted"] == 3000
    assert answer["decided"] == points == sum(answer["actions"].values())
    assert answer["observed"] == 3000 - points


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"success": "yes"}, "success"),  # wrong type
        ({"ip": "999.1.1.1"}, "ip"),  # impossible value
        ({"colour": "red"}, "colour"),  # unknown field
        ({"account": ...}, "account"),  # missing field
        ({"ts": "2025-03-20T10:00:00"}, "ts"),  # no time zone
        ({"factors": ["carrier-pigeon"]}, "factors[0]"),
        ({"type": "teleport"}, "type"),  # unknown event type
        ({"type": "session", "action": "view", "factors": ..., "success": ...}, "type"),
    ],
)
def test_a_bad_event_is_refused_naming_the_field(
    make_api: Callable[..., Api], sqlite_url: str, changes: dict, field: str
) -> None:
    api = make_api(sqlite_url)
    error = error_of(api.decide(body(**changes)), 422)
    assert error["code"] == "invalid_event"
    assert error["field"] == field
    assert field.split("[")[0] in error["message"] or field == "type"
    assert api.service.host.events == 0  # nothing reached the engine


def test_malformed_and_oversized_bodies(make_api: Callable[..., Api], sqlite_url: str) -> None:
    api = make_api(sqlite_url)
    assert error_of(api.decide(b'{"type": "login",'), 400)["code"] == "malformed_json"
    assert error_of(api.decide(b""), 400)["code"] == "malformed_json"
    not_utf8 = body().replace(b'"A1"', b'"A\xff"')  # was a 500 (UnicodeDecodeError)
    assert error_of(api.decide(not_utf8), 400)["code"] == "malformed_json"
    in_batch = api.client.post(
        "/v1/events",
        content=body() + b"\n" + not_utf8,
        headers={**api.auth("ingest"), "content-type": "application/x-ndjson"},
    )
    assert error_of(in_batch, 422)["line"] == 2
    cancel = {
        "type": "order",
        "id": "o1",
        "ts": "2025-03-20T10:00:00+09:00",
        "account": "A1",
        "session": "s1",
        "order_id": "x",
        "action": "cancel",
        "symbol": "7203",
        "market": "TSE",
        "side": "buy",
        "quantity": 100,
        "price_type": "market",
    }
    assert error_of(api.decide(msgspec.json.encode(cancel)), 422)["field"] == "action"
    huge = body(user_agent="x" * (2 << 20))
    error = error_of(api.decide(huge), 413)
    assert error["code"] == "payload_too_large" and "1048576" in error["message"]

    def chunks():  # no Content-Length: counted while received
        for _ in range(40):
            yield b" " * 65536

    chunked = api.client.post(
        "/v1/events",
        content=chunks(),
        headers={**api.auth("ingest"), "content-type": "application/x-ndjson"},
    )
    assert error_of(chunked, 413)["code"] == "payload_too_large"
    wrong_type = api.client.post(
        "/v1/decide", content=body(), headers={**api.auth("decide"), "content-type": "text/csv"}
    )
    assert error_of(wrong_type, 415)["code"] == "unsupported_media_type"
    assert error_of(api.get("/v1/nowhere"), 404)["code"] == "not_found"
    assert error_of(api.client.delete("/v1/decide"), 405)["code"] == "method_not_allowed"


def test_a_bad_batch_changes_nothing(api: Api, database_url: str) -> None:
    good = encode(msgspec.json.decode(body(), type=Event)) + b"\n"
    bad = body(id="l2", ip="not-an-ip") + b"\n"
    response = api.client.post(
        "/v1/events",
        content=good + good.replace(b'"l1"', b'"l3"') + bad,
        headers={**api.auth("ingest"), "content-type": "application/x-ndjson"},
    )
    error = error_of(response, 422)
    assert (error["code"], error["field"], error["line"]) == ("invalid_event", "ip", 3)
    array = b"[" + good.strip() + b"," + bad.strip() + b"]"
    response = api.client.post(
        "/v1/events",
        content=array,
        headers={**api.auth("ingest"), "content-type": "application/json"},
    )
    assert error_of(response, 422)["field"] == "[1].ip"
    api.settle()
    assert api.service.host.events == 0
    assert count(database_url, events) == 0


def test_analyst_events_are_refused_on_the_public_event_routes(api: Api, database_url: str) -> None:
    """A login or trading system may not send an analyst's conclusion (trust this device,
    this sign-in was the customer's): those come only from the analyst API and the console."""
    trust = (
        b'{"type":"analyst","id":"a1","ts":"2025-03-20T10:00:00+09:00",'
        b'"action":"trust_device","account":"A1","device":"ck-1"}'
    )
    good = encode(msgspec.json.decode(body(), type=Event))
    ndjson = api.client.post(
        "/v1/events",
        content=good + b"\n" + trust + b"\n",
        headers={**api.auth("ingest"), "content-type": "application/x-ndjson"},
    )
    error = error_of(ndjson, 422)
    assert (error["code"], error["field"], error["line"]) == ("invalid_event", "type", 2)
    assert error["message"] == f"line 2: {ANALYST_EVENT_REFUSED}"  # as `brokerguard ingest`
    assert "analyst API" in error["message"] and "console" in error["message"]
    array = api.client.post(
        "/v1/events",
        content=b"[" + good + b"," + trust + b"]",
        headers={**api.auth("ingest"), "content-type": "application/json"},
    )
    error = error_of(array, 422)
    assert (error["field"], error["message"]) == ("[1].type", ANALYST_EVENT_REFUSED)
    error = error_of(api.decide(trust), 422)
    assert (error["field"], error["message"]) == ("type", ANALYST_EVENT_REFUSED)
    api.settle()
    assert api.service.host.events == 0
    assert count(database_url, events) == 0


def test_the_fast_path_answers_as_the_route_does(
    make_api: Callable[..., Api], sqlite_url: str, recorded_events: list[Event]
) -> None:
    """``POST /v1/decide`` with a cached key skips FastAPI (service/fastpath.py); a key not yet
    verified goes through the route. Same answers, same errors, either way."""
    api = make_api(sqlite_url)
    bodies = [
        body(success="yes"),
        body(colour="red"),
        body(type="teleport"),
        b'{"type": "login",',
        b"",
        body(user_agent="x" * (2 << 20)),
    ]
    for raw in bodies:
        api.service.keys.forget()
        slow = api.decide(raw)  # verifies the key: the route
        fast = api.decide(raw)  # the key is cached now: the fast path
        assert (fast.status_code, fast.json()) == (slow.status_code, slow.json())
    points = [e for e in recorded_events if decision_point(e) is not None][:30]
    for event in points[:15]:
        api.service.keys.forget()
        assert api.decide(event).status_code == 200
    for event in points[15:]:
        assert api.decide(event).status_code == 200
    api.settle()
    assert count(sqlite_url, decisions) == 30
    wrong_scope = api.decide(points[0], scope="read")
    assert wrong_scope.status_code == 403
    api.decide(points[0], scope="read")  # cached now, still refused
    assert api.decide(points[0], scope="read").status_code == 403


def test_a_retried_decision_gets_the_same_answer_and_is_recorded_once(
    api: Api, database_url: str
) -> None:
    """A login system that times out and sends the same event again gets the answer it would
    have had, with the same decision id; nothing is recorded twice (before, a second decision
    row, and for a challenge a second alert without its signals)."""
    first = api.decide(body(ip="13.112.10.20"))  # a cloud exit, unknown account: a step-up
    again = api.decide(body(ip="13.112.10.20"))
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    api.settle()
    assert count(database_url, decisions) == 1
    assert count(database_url, alerts) == (1 if first.json()["alert_id"] else 0)
    other = api.decide(body(ip="13.112.10.20", ts="2025-03-20T10:05:00+09:00"))
    assert other.json()["decision_id"] != first.json()["decision_id"]  # same id, another time
