"""An analyst's day through the API: alerts, cases, the account timeline, held orders, locks,
campaigns and the policy."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import conftest
import msgspec
import pytest
from conftest import Api

from brokerguard.engine.policy import default_policy_path
from brokerguard.events import ChallengeResult, Event, LoginAttempt, MarketBar
from brokerguard.guard import decision_point
from brokerguard.service.errors import Conflict


@pytest.fixture
def busy(api: Api, recorded_events: list[Event]) -> Api:
    """The recorded attack run loaded through /v1/events, records written."""
    response = api.ingest(recorded_events)
    assert response.status_code == 200, response.text
    api.settle()
    return api


def admin(api: Api) -> dict[str, str]:
    return api.auth("admin")


def test_alerts_filter_and_open_cases(busy: Api) -> None:
    api = busy
    everything = api.get("/v1/alerts", params={"limit": 1000}).json()
    assert everything
    assert [a["ts"] for a in everything] == sorted((a["ts"] for a in everything), reverse=True)
    for name in ("severity", "detector", "status"):
        value = everything[0][name]
        some = api.get("/v1/alerts", params={name: value, "limit": 1000}).json()
        assert some and all(a[name] == value for a in some)
    assert api.get("/v1/alerts", params={"severity": "extreme"}).status_code == 422

    alert = everything[0]
    assert api.get(f"/v1/alerts/{alert['id']}").json() == alert
    opened = api.client.post(
        "/v1/cases", json={"alert_id": alert["id"], "labels": ["ato"]}, headers=admin(api)
    )
    assert opened.status_code == 201, opened.text
    case = opened.json()
    assert (case["account"], case["status"], case["labels"]) == (alert["account"], "open", ["ato"])
    assert api.get(f"/v1/alerts/{alert['id']}").json()["status"] == "acknowledged"

    note = api.client.post(
        f"/v1/cases/{case['id']}/notes", json={"text": "本人に確認中 / calling"}, headers=admin(api)
    )
    assert note.status_code == 201
    early = api.client.patch(
        f"/v1/cases/{case['id']}", json={"status": "closed"}, headers=admin(api)
    )
    assert early.status_code == 409 and early.json()["error"]["field"] == "outcome"
    closed = api.client.patch(
        f"/v1/cases/{case['id']}",
        json={"status": "closed", "outcome": "fraud", "labels": ["ato", "phishing"]},
        headers=admin(api),
    )
    assert closed.status_code == 200, closed.text
    got = api.get(f"/v1/cases/{case['id']}").json()
    assert (got["status"], got["outcome"]) == ("closed", "fraud")
    assert [n["text"] for n in got["notes"]] == ["本人に確認中 / calling"]
    assert api.get("/v1/cases", params={"outcome": "fraud"}).json()[0]["id"] == case["id"]
    missing = api.client.post("/v1/cases", json={"alert_id": "nope"}, headers=admin(api))
    assert missing.status_code == 404 and missing.json()["error"]["field"] == "alert_id"
    typo = api.client.post("/v1/cases", json={"alert": alert["id"]}, headers=admin(api))
    assert typo.status_code == 422 and typo.json()["error"]["field"] == "alert"

    # A snooze ends within 30 days: one "until 9999" would bury the alert unworked.
    other = everything[1]["id"]
    week = (datetime.now(UTC) + timedelta(days=7)).isoformat()
    snoozed = api.client.patch(
        f"/v1/alerts/{other}", json={"snoozed_until": week}, headers=admin(api)
    )
    assert snoozed.status_code == 200, snoozed.text
    forever = api.client.patch(
        f"/v1/alerts/{other}", json={"snoozed_until": "9999-12-31T00:00:00Z"}, headers=admin(api)
    )
    assert forever.status_code == 422 and forever.json()["error"]["field"] == "snoozed_until"
    assert api.get(f"/v1/alerts/{other}").json()["snoozed_until"] == snoozed.json()["snoozed_until"]


def test_campaigns_are_recorded(busy: Api) -> None:
    api = busy
    campaigns = api.get("/v1/campaigns").json()
    assert campaigns, "the recorded attack raises at least one campaign"
    camp = campaigns[0]
    assert camp["accounts"] and camp["timeline"] and camp["status"] == "active"
    contained = api.client.patch(
        f"/v1/campaigns/{camp['id']}", json={"status": "contained"}, headers=admin(api)
    )
    assert contained.status_code == 200
    api.service.tick()  # a later snapshot of the engine keeps the analyst's status
    api.settle()
    assert api.get(f"/v1/campaigns/{camp['id']}").json()["status"] == "contained"
    case = api.client.post("/v1/cases", json={"campaign_id": camp["id"]}, headers=admin(api))
    assert case.status_code == 201 and case.json()["campaign_id"] == camp["id"]


def held_order(
    make_api: Callable[..., Api], database_url: str, recorded_events: list[Event], tmp_path: Path
) -> tuple[Api, Event, dict]:
    """A service whose policy holds every new order, with the run's last order held."""
    policy = tmp_path / "hold-orders.toml"
    source = default_policy_path().read_text(encoding="utf-8")
    order_prior = re.search(r"^\[order\]\nprior = \S+", source, re.M).group(0)
    policy.write_text(source.replace(order_prior, "[order]\nprior = 40.0", 1), encoding="utf-8")
    api = make_api(database_url, policy_path=policy)  # every new order is held
    last = max(i for i, e in enumerate(recorded_events) if decision_point(e) == "order")
    assert api.ingest(recorded_events[:last]).status_code == 200
    order = recorded_events[last]
    answer = api.decide(order).json()
    assert answer["action"] == "hold" and answer["alert_id"], (answer["score"], answer["reasons"])
    assert api.service.host.pending(order.id) is not None
    api.settle()
    return api, order, answer


def test_timeline_and_held_orders(
    make_api: Callable[..., Api], database_url: str, recorded_events: list[Event], tmp_path: Path
) -> None:
    api, order, answer = held_order(make_api, database_url, recorded_events, tmp_path)
    account = answer["account"]
    timeline = api.get(f"/v1/accounts/{account}/timeline").json()
    assert timeline["account"] == account and not timeline["locked"]
    item = timeline["items"][0]
    assert item["event_id"] == order.id and item["event"]["type"] == "order"
    assert item["decision"]["action"] == "hold"
    assert item["decision"]["alert_id"] == answer["alert_id"]
    assert {i["type"] for i in timeline["items"]} >= {"login", "order"}
    total = timeline["total"]
    assert total == len(timeline["items"]) >= 2 and timeline["offset"] == 0
    # Paged one item at a time, the timeline gives the same items in the same order.
    pages = [
        api.get(f"/v1/accounts/{account}/timeline?limit=1&offset={i}").json()
        for i in range(total + 1)
    ]
    assert [p["total"] for p in pages] == [total] * (total + 1)
    assert [p["offset"] for p in pages] == list(range(total + 1))
    paged = [p["items"][0] for p in pages[:total]]
    assert [(i["type"], i["event_id"], i["ts"]) for i in paged] == [
        (i["type"], i["event_id"], i["ts"]) for i in timeline["items"]
    ]
    assert pages[total]["items"] == []  # past the end: nothing, and still the total
    bad = api.client.get(f"/v1/accounts/{account}/timeline?offset=-1", headers=admin(api))
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "offset", bad.text

    url = f"/v1/accounts/{account}/actions"
    wrong = api.client.post(
        url, json={"action": "release_order", "target": "nope"}, headers=admin(api)
    )
    assert wrong.status_code == 409 and wrong.json()["error"]["field"] == "target"
    untargeted = api.client.post(url, json={"action": "cancel_order"}, headers=admin(api))
    assert untargeted.status_code == 422 and untargeted.json()["error"]["field"] == "target"
    release = api.client.post(
        url,
        json={"action": "release_order", "target": order.id, "note": "本人確認済"},
        headers=admin(api),
    )
    assert release.status_code == 201, release.text
    assert api.service.host.pending(order.id) is None  # the engine heard the answer
    api.settle()
    timeline = api.get(f"/v1/accounts/{account}/timeline").json()
    reply = next(i for i in timeline["items"] if i["type"] == "challenge")
    assert reply["event"]["ref"] == order.id and reply["event"]["outcome"] == "passed"
    assert timeline["actions"][0]["action"] == "release_order"


def test_two_analysts_answering_one_held_order_at_once_one_is_refused(
    make_api: Callable[..., Api], database_url: str, recorded_events: list[Event], tmp_path: Path
) -> None:
    """Release and cancel of one hold sent at the same moment: one answers it, the other is a
    conflict, and the audit records only the answer that took effect."""
    api, order, answer = held_order(make_api, database_url, recorded_events, tmp_path)
    service, account = api.service, answer["account"]

    async def both() -> list[object]:
        return await asyncio.gather(
            service.act_on_account("ann", account, "release_order", order.id, "ok"),
            service.act_on_account("bob", account, "cancel_order", order.id, "not me"),
            return_exceptions=True,
        )

    first, second = api.client.portal.call(both)
    assert isinstance(first, dict) and first["action"] == "release_order"
    assert isinstance(second, Conflict) and second.field == "target"
    api.settle()
    timeline = api.get(f"/v1/accounts/{account}/timeline").json()
    assert [a["action"] for a in timeline["actions"]] == ["release_order"]
    reply = next(i for i in timeline["items"] if i["type"] == "challenge")
    assert reply["event"]["outcome"] == "passed"


@pytest.mark.parametrize("meanwhile", ["confirmed", "expired"])
def test_an_answer_to_a_hold_answered_or_expired_meanwhile_is_refused_and_not_audited(
    make_api: Callable[..., Api],
    database_url: str,
    recorded_events: list[Event],
    tmp_path: Path,
    meanwhile: str,
) -> None:
    """An analyst's release (or cancel) is checked against the hold, then recorded, then told
    to the engine. While it was being recorded the customer could confirm the hold with the
    code, or the hold expire (the sweep forgets it six hours on): the engine then heard
    nothing, yet the release was answered 201 and stood in the audit log as done. Now it is a
    conflict that says so, and neither the actions nor the audit log hold it."""
    api, order, answer = held_order(make_api, database_url, recorded_events, tmp_path)
    service, account = api.service, answer["account"]
    if meanwhile == "confirmed":  # the customer's code, through the broker's systems
        event: Event = ChallengeResult(
            id="confirm-1",
            ts=order.ts,
            account=account,
            ref=order.id,
            factor="oob",
            outcome="passed",
        )
    else:  # a market bar seven hours on: the hourly sweep forgets the unanswered hold
        bar = next(e for e in reversed(recorded_events) if isinstance(e, MarketBar))
        later = max(bar.ts, order.ts) + timedelta(hours=7)
        event = msgspec.structs.replace(bar, id="late-bar", ts=later)
    before = [a[1] for a in conftest.audit(database_url)]

    async def both() -> list[object]:
        return await asyncio.gather(
            service.act_on_account("ann", account, "release_order", order.id, "ok"),
            service.ingest([event], "key:test"),
            return_exceptions=True,
        )

    release, _ingested = api.client.portal.call(both)
    assert service.host.pending(order.id) is None
    assert isinstance(release, Conflict), release
    assert release.field == "target"
    assert f"held order {order.id!r}" in str(release)
    assert "was already answered" in str(release) and "or expired" in str(release)
    assert "nothing done" in str(release)
    api.settle()
    timeline = api.get(f"/v1/accounts/{account}/timeline").json()
    assert timeline["actions"] == []
    after = [a[1] for a in conftest.audit(database_url)]
    assert "account.release_order" not in after[len(before) :], after[len(before) :]
    replies = [i for i in timeline["items"] if i["type"] == "challenge"]
    assert [r["event"]["id"] for r in replies] == (
        ["confirm-1"] if meanwhile == "confirmed" else []
    )


def test_a_lock_holds_across_restarts(
    make_api: Callable[..., Api], sqlite_url: str, recorded_events: list[Event]
) -> None:
    api = make_api(sqlite_url)
    login = next(e for e in recorded_events if isinstance(e, LoginAttempt) and e.success)
    locked = api.client.post(
        f"/v1/accounts/{login.account}/actions", json={"action": "lock"}, headers=admin(api)
    )
    assert locked.status_code == 201
    answer = api.decide(login).json()
    assert answer["action"] == "lock"
    assert [r["code"] for r in answer["reasons"]] == ["account_locked"]
    assert answer["alert_id"] is None

    again = make_api(sqlite_url)  # a restart on the same database
    assert again.decide(login).json()["action"] == "lock"
    assert again.get(f"/v1/accounts/{login.account}/timeline").json()["locked"]
    again.client.post(
        f"/v1/accounts/{login.account}/actions", json={"action": "unlock"}, headers=admin(again)
    )
    assert again.decide(login).json()["reasons"] != answer["reasons"]

    frozen = again.client.post(
        f"/v1/accounts/{login.account}/actions", json={"action": "freeze"}, headers=admin(again)
    )
    assert frozen.status_code == 201
    assert [r["code"] for r in again.decide(login).json()["reasons"]] == ["account_frozen"]
    third = make_api(sqlite_url)  # a freeze holds across restarts too, and says it is one
    answer = third.decide(login).json()
    assert (answer["action"], [r["code"] for r in answer["reasons"]]) == (
        "lock",
        ["account_frozen"],
    )


def test_policy_read_and_replace(api: Api, recorded_events: list[Event]) -> None:
    current = api.get("/v1/policy").json()
    assert current["name"] == "default" and current["guard"] == "brokerguard"
    assert current["source"] == default_policy_path().read_text(encoding="utf-8")
    assert current["policy"]["login"]["prior"] == -2.0

    def put(text: str, scope: str = "admin"):
        return api.client.put(
            "/v1/policy",
            content=text.encode(),
            headers={**api.auth(scope), "content-type": "application/toml"},
        )

    assert put("name = ", "admin").json()["error"]["code"] == "invalid_policy"
    source = current["source"]
    unknown = put(source.replace("prior = -2.0", "prior = -2.0\npriour = 1", 1))
    assert unknown.status_code == 422 and unknown.json()["error"]["field"] == "login.priour"
    assert api.get("/v1/policy").json()["name"] == "default"  # nothing changed

    strict = source.replace('name = "default"', 'name = "strict"').replace(
        "prior = -2.0", "prior = 6.0", 1
    )
    replaced = put(strict)
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["guard"] == "brokerguard:strict"
    assert api.client.get("/healthz").json()["guard"] == "brokerguard:strict"
    login = next(e for e in recorded_events if isinstance(e, LoginAttempt) and e.success)
    login = msgspec.structs.replace(login, factors=["password"])
    assert decision_point(login) == "login"
    assert api.decide(login).json()["action"] == "challenge"  # prior 6: every login steps up


def test_an_account_id_with_a_slash_is_addressed_whole(api: Api) -> None:
    """Account IDs may hold ``/`` (a branch prefix, ``TKY/0001``); a client quotes it (%2F) or
    not, and the actions and the timeline are the account's, not a 404."""
    login = LoginAttempt(
        id="slash-1",
        ts=datetime(2026, 11, 28, 1, 0, tzinfo=UTC),
        account="TKY/0001",
        session="s-slash",
        ip="203.0.113.9",
        user_agent="Mozilla/5.0",
        factors=["password"],
        success=True,
    )
    for path in ("TKY/0001", quote("TKY/0001", safe="")):
        locked = api.client.post(
            f"/v1/accounts/{path}/actions", json={"action": "lock"}, headers=admin(api)
        )
        assert locked.status_code == 201, locked.text
        assert locked.json()["account"] == "TKY/0001"
    assert api.decide(login).json()["action"] == "lock"
    api.settle()
    timeline = api.get(f"/v1/accounts/{quote('TKY/0001', safe='')}/timeline").json()
    assert timeline["locked"] and len(timeline["actions"]) == 2
    listed = api.get("/v1/accounts/TKY/0001/actions").json()
    assert [a["action"] for a in listed] == ["lock", "lock"]
