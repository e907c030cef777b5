"""What analysts do in the API reaches the engine: the next decisions change because of it."""

from __future__ import annotations

import itertools
from datetime import timedelta

from conftest import Api
from engine_helpers import ALIBABA_HK, OCN, T0, attacker_ua, device, ip_in

from brokerguard.events import ChallengeResult, LoginAttempt

_ids = itertools.count(1)


class Customer:
    """One account signing in through ``/v1/decide``, with its own clock."""

    def __init__(self, api: Api, account: str, seed: int) -> None:
        self.api, self.account = api, account
        self.ip, self.ua = ip_in(OCN, seed), device(seed)
        self.now = T0

    def login(
        self, *, ip: str | None = None, ua: str | None = None, cookie: str | None = "home"
    ) -> dict:
        self.now += timedelta(hours=1)
        event = LoginAttempt(
            id=f"l{next(_ids)}",
            ts=self.now,
            account=self.account,
            session=f"s{next(_ids)}",
            ip=ip or self.ip,
            user_agent=ua or self.ua,
            device=cookie and f"ck-{self.account}-{cookie}",
            factors=["password"],
            success=True,
        )
        answer = self.api.decide(event)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def history(self, days: int = 12) -> None:
        for _ in range(days):
            self.now += timedelta(days=1)
            assert self.login()["action"] == "allow"

    def confirm(self, decision: dict, factor: str = "oob") -> None:
        answer = ChallengeResult(
            id=f"c{next(_ids)}",
            ts=self.now,
            account=self.account,
            ref=decision["event_id"],
            factor=factor,
            outcome="passed",
        )
        assert self.api.ingest([answer]).status_code == 200


def codes(decision: dict) -> set[str]:
    return {r["code"] for r in decision["reasons"]}


def act(api: Api, account: str, action: str, target: str | None = None) -> None:
    body = {"action": action, **({"target": target} if target else {})}
    done = api.client.post(f"/v1/accounts/{account}/actions", json=body, headers=api.auth("admin"))
    assert done.status_code == 201, done.text


def test_force_reverify_challenges_until_the_customer_confirms(api: Api) -> None:
    alice = Customer(api, "A100", 101)
    alice.history()
    act(api, "A100", "force_reverify")
    asked = alice.login()
    assert asked["action"] == "challenge" and "reverify_required" in codes(asked)
    assert set(asked["factors"]) <= {"passkey", "oob"}
    alice.confirm(asked)
    assert alice.login()["action"] == "allow"


def test_a_trusted_device_lowers_the_score_of_its_sign_ins(api: Api) -> None:
    bob = Customer(api, "A200", 201)
    bob.history()
    unknown = bob.login(cookie="tablet")["score"]
    act(api, "A200", "trust_device", "ck-A200-phone")
    trusted = bob.login(cookie="phone")["score"]
    assert trusted < unknown
    # a cookie longer than an event id allows is refused before anything is recorded: the
    # conclusion would be an event the workers cannot read
    long = {"action": "trust_device", "target": "c" * 129}
    refused = api.client.post("/v1/accounts/A200/actions", json=long, headers=api.auth("admin"))
    assert refused.status_code == 422 and refused.json()["error"]["field"] == "target"
    listed = api.client.get("/v1/accounts/A200/actions", headers=api.auth("admin")).json()
    assert [a["action"] for a in listed] == ["trust_device"]


def test_a_fraud_case_on_a_sign_in_marks_its_address_for_other_accounts(api: Api) -> None:
    carol, dave = Customer(api, "A300", 301), Customer(api, "A400", 401)
    carol.history()
    dave.history()
    attacker = ip_in(ALIBABA_HK, 301)
    before = dave.login(ip=attacker, ua=attacker_ua(7), cookie=None)
    assert "confirmed_fraud_infrastructure" not in codes(before)
    taken = carol.login(ip=attacker, ua=attacker_ua(8), cookie=None)
    assert taken["alert_id"] is not None
    api.settle()  # the alert and its event are written

    admin = api.auth("admin")
    case = api.client.post("/v1/cases", json={"alert_id": taken["alert_id"]}, headers=admin)
    assert case.status_code == 201, case.text
    closed = api.client.patch(
        f"/v1/cases/{case.json()['id']}",
        json={"status": "closed", "outcome": "fraud"},
        headers=admin,
    )
    assert closed.status_code == 200, closed.text

    after = dave.login(ip=attacker, ua=attacker_ua(9), cookie=None)
    assert after["score"] > before["score"]
    api.settle()
    signals = api.get(f"/v1/alerts/{after['alert_id']}").json()["signals"]
    assert "confirmed_fraud_infrastructure" in {s["code"] for s in signals}
    # the victim re-verifies at the next sign-in, even from home
    home = carol.login()
    assert home["action"] == "challenge" and "reverify_required" in codes(home)


def test_a_not_fraud_case_teaches_the_engine_the_customers_sign_in(api: Api) -> None:
    erin = Customer(api, "A500", 501)
    erin.history()
    travelling = {"ip": ip_in(ALIBABA_HK, 502), "cookie": "laptop"}
    first = erin.login(**travelling)
    assert first["alert_id"] is not None
    api.settle()
    admin = api.auth("admin")
    case = api.client.post("/v1/cases", json={"alert_id": first["alert_id"]}, headers=admin)
    api.client.patch(
        f"/v1/cases/{case.json()['id']}",
        json={"status": "closed", "outcome": "not_fraud"},
        headers=admin,
    ).raise_for_status()
    again = erin.login(**travelling)
    assert again["score"] < first["score"]


def test_every_signal_code_has_a_detector_that_alerts_can_name() -> None:
    from typing import get_args

    from brokerguard.engine.signals import SIGNAL_CODES
    from brokerguard.service.records import DETECTOR_OF, DETECTORS
    from brokerguard.service.schemas import Detector

    assert [c for c in SIGNAL_CODES if c not in DETECTOR_OF] == []
    assert set(DETECTORS) <= set(get_args(Detector))
