"""Orders to cancel reach the broker: in the answer to the batch that led to them, and in the feed.

The log is a customer's history, then a doubtful session (a sign-in from abroad that passed only
a relayable code) that sells a holding and then tries to buy a small cap; the buy is held. What
happens to the hold's answer decides whether the sell, if still open, must be cancelled.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from conftest import Api, add_user
from console_helpers import login
from engine_helpers import Rig
from instruction_helpers import (
    Recorder,
    doubtful_session_sells_then_buys,
    lenient_orders,
    lenient_orders_text,
    rig_with_customer,
)

from brokerguard.events import ChallengeResult, Event


def doubtful_session_log() -> tuple[list[Event], str, str, str, Rig]:
    """The events, the session, the sell's order id and the held buy's event id."""
    r = Rig(lenient_orders())
    recorder = Recorder(r.engine)
    r.engine = recorder  # type: ignore[assignment]
    rig_with_customer(r=r)
    session, sell, held = doubtful_session_sells_then_buys(r)
    return recorder.log, session, sell, held, r


def lenient_api(make_api: Callable[..., Api], url: str, tmp_path: Path) -> Api:
    policy = tmp_path / "lenient.toml"
    policy.write_text(lenient_orders_text(), encoding="utf-8")
    return make_api(url, policy_path=policy)


def test_a_failed_step_up_answers_with_the_orders_to_cancel_and_feeds_them(
    make_api: Callable[..., Api], database_url: str, tmp_path: Path
) -> None:
    api = lenient_api(make_api, database_url, tmp_path)
    log, session, sell, held, r = doubtful_session_log()
    first = api.ingest(log)
    assert first.status_code == 200 and first.json()["instructions"] == []
    failed = ChallengeResult(
        id="chal-failed",
        ts=r.now + timedelta(minutes=5),
        account="A1",
        session=session,
        ref=held,
        factor="oob",
        outcome="failed",
    )
    answer = api.ingest([failed]).json()
    instruction, signed_out = answer["instructions"]
    assert instruction["kind"] == "cancel_orders"
    assert (instruction["account"], instruction["session"]) == ("A1", session)
    assert instruction["orders"] == [sell] and instruction["cause"] == "chal-failed"
    assert [reason["code"] for reason in instruction["reasons"]] == ["orders_cancelled"]
    assert all(reason["en"] and reason["ja"] for reason in instruction["reasons"])
    assert (signed_out["kind"], signed_out["session"], signed_out["orders"]) == (
        "end_session",
        session,
        [],
    )
    assert [reason["code"] for reason in signed_out["reasons"]] == ["session_ended"]

    api.settle()
    feed = api.get("/v1/instructions", scope="decide")
    assert feed.status_code == 200
    kept, kept_end = feed.json()  # one cause, two kinds: both kept, in the order raised
    assert kept["orders"] == [sell] and kept["cause"] == "chal-failed" and kept["seq"] > 0
    assert kept["guard"].startswith("brokerguard")
    assert kept_end["kind"] == "end_session" and kept_end["seq"] > kept["seq"]
    assert api.get(f"/v1/instructions?after={kept['seq']}").json() == [kept_end]
    later = api.get(f"/v1/instructions?after={kept_end['seq']}", scope="ingest")
    assert later.status_code == 200 and later.json() == []
    assert api.get("/v1/instructions?account=someone-else").json() == []
    assert api.get("/v1/instructions?after=-1").status_code == 422


def test_an_analyst_refusing_the_held_buy_cancels_what_the_session_placed_before(
    make_api: Callable[..., Api], database_url: str, tmp_path: Path
) -> None:
    api = lenient_api(make_api, database_url, tmp_path)
    log, session, sell, held, _ = doubtful_session_log()
    assert api.ingest(log).status_code == 200
    refused = api.client.post(
        "/v1/accounts/A1/actions",
        json={"action": "cancel_order", "target": held, "note": "the customer says not me"},
        headers=api.auth("admin"),
    )
    assert refused.status_code == 201, refused.text
    api.settle()
    kept, kept_end = api.get("/v1/instructions").json()
    assert kept["session"] == session and kept["orders"] == [sell]
    assert kept["cause"] == f"action-{refused.json()['id']}"
    assert (kept_end["kind"], kept_end["session"]) == ("end_session", session)

    add_user(database_url, "ana", "analyst")
    login(api.client, "ana")
    page = api.client.get("/console/accounts/A1", headers={"accept-language": "ja"}).text
    assert "未約定注文の取消" in page and sell in page and "orders_cancelled" in page
    assert "セッションのログアウト" in page and "session_ended" in page


def test_the_feed_needs_a_key(make_api: Callable[..., Api], sqlite_url: str) -> None:
    api = make_api(sqlite_url)
    assert api.client.get("/v1/instructions").status_code == 401


def test_an_after_beyond_the_seq_column_is_refused_naming_it(api: Api) -> None:
    """A ``seq`` is a 64-bit integer: a larger ``after`` overflowed the query (a 500)."""
    assert api.get(f"/v1/instructions?after={2**63 - 1}").json() == []
    response = api.get(f"/v1/instructions?after={2**63}")
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == "after"
