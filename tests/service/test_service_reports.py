"""Reports from the service's own records: what the analysts' fraud cases confirm is what counts."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import timedelta
from pathlib import Path

import msgspec
import sqlalchemy as sa
from conftest import Api, add_user
from engine_helpers import ALIBABA_HK, OCN, T0, attacker_ua, device, ip_in

from brokerguard.engine.policy import default_policy_path
from brokerguard.events import (
    ChallengeResult,
    Event,
    Execution,
    HoldingsSnapshot,
    Instrument,
    LoginAttempt,
    Order,
    Position,
)
from brokerguard.reports import CompensationRow
from brokerguard.reports.labels import load_cases
from brokerguard.service.app import create_app
from brokerguard.service.db import make_engine
from brokerguard.service.exports import CASES, export_run

PASSWORD = "correct horse battery"


def challenge_every_login(path: Path) -> Path:
    """Every sign-in challenged with an SMS code (so each is an alert that can still go through),
    every order allowed."""
    source = default_policy_path().read_text(encoding="utf-8")
    login = re.search(r"^\[login\]\nprior = \S+\nrules = \[\n.*?\n\]", source, re.M | re.S)
    order = re.search(r"^\[order\]\nprior = \S+", source, re.M)
    assert login and order
    source = source.replace(
        login.group(0),
        '[login]\nprior = 40.0\nrules = [\n  { min_score = 0.5, action = "challenge", '
        'factors = ["sms"] },\n]',
    ).replace(order.group(0), "[order]\nprior = -40.0")
    path.write_text(source, encoding="utf-8")
    return path


def story() -> tuple[list[Event], str, str]:
    """A customer's own session and an attacker's; returns the events, the attacker's login id
    and the customer's."""
    t = T0
    events: list[Event] = [
        Instrument(
            id="i1",
            ts=t,
            symbol="7203",
            market="TSE",
            segment="Prime",
            currency="JPY",
            lot_size=100,
            price=3000.0,
            avg_daily_volume=20_000_000,
            market_cap_jpy=4e13,
        ),
        Instrument(
            id="i2",
            ts=t,
            symbol="9999",
            market="TSE",
            segment="Growth",
            currency="JPY",
            lot_size=100,
            price=100.0,
            avg_daily_volume=50_000,
            market_cap_jpy=2e9,
        ),
        HoldingsSnapshot(
            id="h1",
            ts=t,
            account="V1",
            cash_jpy=10_000.0,
            positions=[Position(symbol="7203", market="TSE", quantity=200)],
        ),
    ]

    def session(prefix: str, ip: str, ua: str, start, trades) -> str:
        login = LoginAttempt(
            id=f"{prefix}-login",
            ts=start,
            account="V1",
            session=f"{prefix}-s",
            ip=ip,
            user_agent=ua,
            device=None,
            factors=["password"],
            success=True,
        )
        events.append(login)
        events.append(
            ChallengeResult(
                id=f"{prefix}-otp",
                ts=start + timedelta(seconds=20),
                account="V1",
                session=f"{prefix}-s",
                ref=login.id,
                factor="sms",
                outcome="passed",
            )
        )
        for n, (symbol, side, qty, price) in enumerate(trades):
            ts = start + timedelta(minutes=n + 1)
            oid = f"{prefix}-o{n}"
            events.append(
                Order(
                    id=f"{oid}-new",
                    ts=ts,
                    account="V1",
                    session=f"{prefix}-s",
                    order_id=oid,
                    symbol=symbol,
                    market="TSE",
                    side=side,
                    quantity=qty,
                    price_type="limit",
                    limit_price=price,
                )
            )
            events.append(
                Execution(
                    id=f"{oid}-fill",
                    ts=ts + timedelta(seconds=5),
                    account="V1",
                    order_id=oid,
                    symbol=symbol,
                    market="TSE",
                    side=side,
                    quantity=qty,
                    price=price,
                    value_jpy=qty * price,
                )
            )
        return login.id

    own = session(
        "own", ip_in(OCN, 1), device(1), t + timedelta(hours=1), [("7203", "buy", 100, 3000.0)]
    )
    theirs = session(
        "att",
        ip_in(ALIBABA_HK, 1),
        attacker_ua(1),
        t + timedelta(hours=5),
        [("7203", "sell", 300, 2900.0), ("9999", "buy", 8000, 110.0)],
    )
    return events, theirs, own


def monthly_rows(api: Api) -> list[list[str]]:
    api.client.cookies.clear()
    login = api.client.post("/console/login", json={"username": "sup", "password": PASSWORD})
    assert login.status_code == 200, login.text
    answer = api.client.get("/console/reports/monthly.csv")
    assert answer.status_code == 200, answer.text
    return list(csv.reader(io.StringIO(answer.content.decode("utf-8-sig"))))[1:]


def test_monthly_report_counts_what_fraud_cases_confirm(
    make_api, database_url: str, tmp_path: Path
) -> None:
    add_user(database_url, "sup", "supervisor", PASSWORD)
    api = make_api(database_url, policy_path=challenge_every_login(tmp_path / "p.toml"))
    events, attacker_login, own_login = story()
    assert api.ingest(events).status_code == 200
    api.settle()
    assert monthly_rows(api) == [["2025-04", "0", "0", "0", "0"]]  # nothing confirmed yet

    alerts = {a["event_id"]: a for a in api.get("/v1/alerts", params={"limit": 100}).json()}
    assert {attacker_login, own_login} <= set(alerts)
    admin = api.auth("admin")
    for login_id, outcome in ((attacker_login, "fraud"), (own_login, "not_fraud")):
        case = api.client.post(
            "/v1/cases", json={"alert_id": alerts[login_id]["id"]}, headers=admin
        ).json()
        closed = api.client.patch(
            f"/v1/cases/{case['id']}", json={"status": "closed", "outcome": outcome}, headers=admin
        )
        assert closed.status_code == 200, closed.text
    api.settle()

    # the attacker's sign-in, its two trades, 300 x 2,900 sold and 8,000 x 110 bought
    assert monthly_rows(api) == [["2025-04", "1", "2", "870000", "880000"]]

    monthly = api.get("/v1/reports/monthly").json()
    assert monthly == [
        {"month": "2025-04", "logins": 1, "trades": 2, "sold_jpy": 870000, "bought_jpy": 880000}
    ]
    paid = api.get("/v1/reports/compensation", params={"policy": "full-restoration"}).json()
    assert [(p["account"], p["policy"]) for p in paid] == [("V1", "full-restoration")]
    assert paid[0]["payout_jpy"] > 0
    assert api.get("/v1/reports/compensation", params={"policy": "nope"}).status_code == 422
    download = api.get("/v1/reports/monthly.csv")
    assert download.headers["content-type"].startswith("text/csv")
    assert "2025-04,1,2,870000,880000" in download.content.decode("utf-8-sig")

    engine = make_engine(database_url)
    with engine.connect() as conn:
        export_run(conn, tmp_path / "export")
        assert conn.scalar(sa.text("select count(*) from cases")) == 2
    engine.dispose()
    cases = load_cases(tmp_path / "export" / CASES)
    assert sorted((c.kind, c.event_id) for c in cases) == [
        ("login", attacker_login),
        ("trade", "att-o0-new"),
        ("trade", "att-o1-new"),
    ]
    exported = (tmp_path / "export" / "events.ndjson").read_text().splitlines()
    kinds = [json.loads(line)["type"] for line in exported]
    assert kinds.count("analyst") == 3  # the two outcomes, as the engine heard them
    assert len(exported) - 3 == len(events)  # every event, market data included
    heard = sorted(
        (a["action"], (a["login"] or {}).get("id"))
        for a in map(json.loads, exported)
        if a["type"] == "analyst"
    )
    assert heard == [
        ("confirm_customer", own_login),
        ("confirm_fraud", attacker_login),
        ("force_reverify", None),
    ]


def test_records_export_feeds_brokerguard_report(make_api, sqlite_url: str, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from brokerguard.cli import app

    api = make_api(sqlite_url, policy_path=challenge_every_login(tmp_path / "p.toml"))
    events, attacker_login, _ = story()
    assert api.ingest(events).status_code == 200
    api.settle()
    alert = next(
        a
        for a in api.get("/v1/alerts", params={"limit": 100}).json()
        if a["event_id"] == attacker_login
    )
    admin = api.auth("admin")
    case = api.client.post("/v1/cases", json={"alert_id": alert["id"]}, headers=admin).json()
    api.client.patch(
        f"/v1/cases/{case['id']}", json={"status": "closed", "outcome": "fraud"}, headers=admin
    ).raise_for_status()
    api.settle()

    runner = CliRunner()
    out = tmp_path / "records"
    done = runner.invoke(app, ["records", "export", str(out), "--database", sqlite_url])
    assert done.exit_code == 0, done.output
    csv_path = tmp_path / "monthly.csv"
    report = runner.invoke(
        app,
        ["report", "monthly", str(out), "--labels", str(out / CASES), "--csv", str(csv_path)],
    )
    assert report.exit_code == 0, report.output
    rows = list(csv.reader(io.StringIO(csv_path.read_text(encoding="utf-8-sig"))))
    assert rows[1] == ["2025-04", "1", "2", "870000", "880000"]


def test_the_documented_compensation_rows_are_the_struct(sqlite_url: str) -> None:
    """The OpenAPI document describes ``CompensationRow`` itself: the same fields in the same
    order, the same JSON types, the same required ones — a field added to the Struct shows."""
    doc = create_app(sqlite_url).openapi()
    answer = doc["paths"]["/v1/reports/compensation"]["get"]["responses"]["200"]
    ref = answer["content"]["application/json"]["schema"]["items"]["$ref"]
    documented = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
    (_,), components = msgspec.json.schema_components((CompensationRow,))
    struct = components[CompensationRow.__name__]

    def untitled(properties: dict[str, dict[str, object]]) -> dict[str, dict[str, object]]:
        return {
            name: {k: v for k, v in p.items() if k != "title"} for name, p in properties.items()
        }

    assert list(documented["properties"]) == list(CompensationRow.__struct_fields__)
    assert untitled(documented["properties"]) == untitled(struct["properties"])
    assert sorted(documented["required"]) == sorted(struct["required"])
