"""Reports from the service's records are kept in memory until the records change.

Every report here is compared with the computation the service did before it kept anything:
the whole database exported to a run directory and both tables computed from it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import Api
from test_service_reports import challenge_every_login, story

from brokerguard.events import Execution, Order
from brokerguard.reports import compensation_table, monthly_table
from brokerguard.reports.labels import labels_from_cases, load_cases
from brokerguard.service import actions, reporting
from brokerguard.service.db import make_engine, write_transaction
from brokerguard.service.exports import CASES, export_run, records_mark
from brokerguard.service.models import campaigns, decisions

Tables = tuple[list[Any], list[Any]]


def fresh(url: str, out: Path, policies: list[Any]) -> Tables:
    """Both tables as the service computed them before: everything exported, then read."""
    engine = make_engine(url)
    with engine.connect() as conn:
        export_run(conn, out)
    engine.dispose()
    labels = labels_from_cases(load_cases(out / CASES), source="fraud cases")
    return monthly_table(out, labels), compensation_table(out, policies, labels)


class Counted:
    """Wraps one of :mod:`reporting`'s functions and counts its calls."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
        self.calls = 0
        self.wrapped = getattr(reporting, name)
        monkeypatch.setattr(reporting, name, self)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.wrapped(*args, **kwargs)


def close_case(api: Api, alert_id: str, outcome: str) -> int:
    admin = api.auth("admin")
    case = api.client.post("/v1/cases", json={"alert_id": alert_id}, headers=admin).json()
    closed = api.client.patch(
        f"/v1/cases/{case['id']}", json={"status": "closed", "outcome": outcome}, headers=admin
    )
    assert closed.status_code == 200, closed.text
    api.settle()
    return int(case["id"])


def recorded(make_api: Any, url: str, tmp_path: Path) -> tuple[Api, dict[str, str], str, str]:
    """The story of test_service_reports recorded; (api, alert id by event id, the attacker's
    login id, the customer's)."""
    api = make_api(url, policy_path=challenge_every_login(tmp_path / "p.toml"))
    events, attacker_login, own_login = story()
    assert api.ingest(events).status_code == 200
    api.settle()
    alerts = {a["event_id"]: a["id"] for a in api.get("/v1/alerts", params={"limit": 100}).json()}
    return api, alerts, attacker_login, own_login


def test_reports_come_from_memory_until_the_records_change(
    make_api: Any, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api, alerts, attacker_login, own_login = recorded(make_api, database_url, tmp_path)
    exports = Counted(monkeypatch, "write_events")
    every = reporting.choose_policies(None)
    svc = api.service
    n = iter(range(100))

    def check() -> Tables:
        """The service's answer equals a fresh computation, and the same answer again comes
        without another export; returns it."""
        got = reporting.report_tables(svc, None, True, every)
        assert got == fresh(database_url, tmp_path / f"fresh{next(n)}", every)
        before = exports.calls
        assert reporting.report_tables(svc, None, True, every) == got
        assert reporting.report_tables(svc, None, True, None) == (got[0], [])
        assert reporting.report_tables(svc, None, False, every) == ([], got[1])
        assert exports.calls == before
        return got

    nothing = check()
    assert exports.calls == 1
    assert [(r.logins, r.trades) for r in nothing[0]] == [(0, 0)] and nothing[1] == []

    # a case closed as fraud: the attacker's sign-in and his session's two trades now count
    close_case(api, alerts[attacker_login], "fraud")
    confirmed = check()
    assert exports.calls == 2
    assert [(r.logins, r.trades, r.sold_jpy, r.bought_jpy) for r in confirmed[0]] == [
        (1, 2, 870000, 880000)
    ]
    assert {p.account for p in confirmed[1]} == {"V1"}

    # one more order and fill in the attacker's session: new events, new figures
    t = datetime(2025, 4, 1, 9, tzinfo=UTC)
    more = [
        Order(
            id="att-o9-new",
            ts=t,
            account="V1",
            session="att-s",
            order_id="att-o9",
            symbol="9999",
            market="TSE",
            side="buy",
            quantity=1000,
            price_type="limit",
            limit_price=120.0,
        ),
        Execution(
            id="att-o9-fill",
            ts=t + timedelta(seconds=5),
            account="V1",
            order_id="att-o9",
            symbol="9999",
            market="TSE",
            side="buy",
            quantity=1000,
            price=120.0,
            value_jpy=120_000.0,
        ),
    ]
    assert api.ingest(more).status_code == 200
    api.settle()
    grown = check()
    assert exports.calls == 3
    assert [(r.trades, r.bought_jpy) for r in grown[0]] == [(3, 1_000_000)]
    assert grown[1] != confirmed[1]

    # the customer's own sign-in closed as not fraud: the labels stay, the records moved
    close_case(api, alerts[own_login], "not_fraud")
    assert check() == grown
    assert exports.calls == 4

    # a note written by another process (its own engine): seen through the database
    engine = make_engine(database_url)
    with write_transaction(engine) as conn:
        actions.add_note(conn, "someone", 1, "seen")
    engine.dispose()
    assert check() == grown
    assert exports.calls == 5


def test_a_compensation_request_computes_no_monthly_table_and_reads_only_labelled_decisions(
    make_api: Any, sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api, alerts, attacker_login, _ = recorded(make_api, sqlite_url, tmp_path)
    close_case(api, alerts[attacker_login], "fraud")
    monthly = Counted(monkeypatch, "monthly_table")
    written: list[list[str]] = []
    write = reporting.write_decisions

    def write_decisions(conn: sa.Connection, path: Path, **kw: Any) -> Path:
        write(conn, path, **kw)
        lines = path.read_text().splitlines()
        written.append([line.split('"event":"')[1].split('"')[0] for line in lines])
        return path

    monkeypatch.setattr(reporting, "write_decisions", write_decisions)
    every = reporting.choose_policies(None)
    _, paid = reporting.report_tables(api.service, None, False, every)
    assert paid == fresh(sqlite_url, tmp_path / "fresh", every)[1]
    assert monthly.calls == 0
    # the attacker's sign-in and two orders were decided; nothing of the customer's session
    assert sorted(written[0]) == [attacker_login, "att-o0-new", "att-o1-new"]
    with api.service.read() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(decisions)) > 3

    # the monthly table later: computed once, from the same watermark, the losses kept
    rows, _ = reporting.report_tables(api.service, None, True, None)
    assert monthly.calls == 1 and len(written) == 2
    assert rows == fresh(sqlite_url, tmp_path / "fresh2", every)[0]
    reporting.report_tables(api.service, None, True, every)
    assert monthly.calls == 1 and len(written) == 2


def test_the_watermark_moves_with_every_kind_of_record(sqlite_url: str, tmp_path: Path) -> None:
    from brokerguard.service.db import migrate

    engine = make_engine(sqlite_url)
    migrate(engine)
    marks = []

    def mark() -> None:
        with engine.connect() as conn:
            marks.append(records_mark(conn))

    mark()
    now = datetime(2025, 4, 1, tzinfo=UTC)
    with write_transaction(engine) as conn:
        conn.execute(
            sa.text(
                "insert into events (event_id, type, ts, account, session, body) "
                "values ('e1', 'login', '2025-04-01 00:00:00.000000', 'A', 's', '{}')"
            )
        )
    mark()
    with write_transaction(engine) as conn:
        case = actions.create_case(conn, "t", account="A")
    mark()
    with write_transaction(engine) as conn:
        actions.update_case(conn, "t", case["id"], {"status": "closed", "outcome": "fraud"})
    mark()
    with write_transaction(engine) as conn:
        conn.execute(
            campaigns.insert().values(
                id="c1",
                engine_id="c1",
                raised_at=now,
                updated_at=now,
                symbols=[],
                accounts=["A"],
                infrastructure=[],
                counterparties=[],
                timeline=[],
            )
        )
    mark()
    with write_transaction(engine) as conn:  # a campaign that grows, as the recorder writes it
        conn.execute(
            campaigns.update()
            .where(campaigns.c.id == "c1")
            .values(accounts=["A", "B"], updated_at=now + timedelta(minutes=1))
        )
    mark()
    with write_transaction(engine) as conn:
        conn.execute(
            decisions.insert().values(
                id="d1",
                event_id="e1",
                ts=now,
                account="A",
                point="login",
                guard="g",
                action="allow",
                score=0.0,
                factors=[],
                reasons=[],
                caller="t",
                decided_at=now,
            )
        )
    mark()
    engine.dispose()
    assert len(set(marks)) == len(marks), marks


def test_a_recorded_attack_reports_as_a_full_export_does(
    make_api: Any, sqlite_url: str, tmp_path: Path, recorded_events: list[Any]
) -> None:
    """A simulated attack decided by the engine, cases closed as fraud on accounts, alerts and
    campaigns: the tables from the report's own export equal those of the full export."""
    api = make_api(sqlite_url)
    assert api.ingest(recorded_events).status_code == 200
    api.settle()
    alerts = api.get("/v1/alerts", params={"limit": 500}).json()
    found = api.get("/v1/campaigns").json()
    assert alerts, "the engine raised no alert: nothing to label"
    admin = api.auth("admin")
    opened = [{"account": a} for a in sorted({a["account"] for a in alerts})[:5]]
    opened += [{"alert_id": a["id"]} for a in alerts[-5:]]
    opened += [{"campaign_id": c["id"]} for c in found[:1]]
    for body in opened:
        case = api.client.post("/v1/cases", json=body, headers=admin)
        assert case.status_code == 201, case.text
        api.client.patch(
            f"/v1/cases/{case.json()['id']}",
            json={"status": "closed", "outcome": "fraud"},
            headers=admin,
        ).raise_for_status()
    api.settle()
    every = reporting.choose_policies(None)
    expected = fresh(sqlite_url, tmp_path / "fresh", every)
    assert expected[0] and any(r.logins or r.trades for r in expected[0])
    assert reporting.report_tables(api.service, None, False, every)[1] == expected[1]
    assert reporting.report_tables(api.service, None, True, None)[0] == expected[0]

    class Unseen:  # both tables at once, for a service the cache has not seen
        def read(self, *, report: bool = False) -> sa.Connection:
            return api.service.read(report=report)

    assert reporting.report_tables(Unseen(), None, True, every) == expected


def test_a_reports_selection_of_events_keeps_the_engines_order(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from brokerguard.service import exports
    from brokerguard.service.db import migrate
    from brokerguard.service.exports import write_events

    engine = make_engine(sqlite_url)
    migrate(engine)
    rows = [  # (event id, type, minute, account), in the order the engine took them
        ("bar-late", "bar", 30, None),
        ("first", "session", 0, "Z"),
        ("mine", "login", 5, "V"),
        ("labelled", "order", 6, "W"),
        ("other", "login", 7, "Z"),
        ("result", "challenge", 8, "Z"),
        ("fill", "execution", 9, "Z"),
        ("last", "session", 40, "Z"),
    ]
    with write_transaction(engine) as conn:
        for event_id, kind, minute, account in rows:
            conn.execute(
                sa.text(
                    "insert into events (event_id, type, ts, account, session, body) "
                    "values (:id, :type, :ts, :account, null, :id)"
                ),
                {
                    "id": event_id,
                    "type": kind,
                    "ts": f"2025-04-01 00:{minute:02d}:00.000000",
                    "account": account,
                },
            )

    def written(**selection: Any) -> list[str]:
        with engine.connect() as conn:
            path = write_events(conn, tmp_path / "events.ndjson", **selection)
        return path.read_text().splitlines()

    assert written() == [r[0] for r in rows]
    chosen = written(types={"challenge"}, accounts={"V"}, ids={"labelled"})
    assert chosen == ["first", "mine", "labelled", "result", "last"]
    priced = written(types={"challenge", "bar", "execution"}, accounts=(), ids=())
    assert priced == ["bar-late", "first", "result", "fill", "last"]
    monkeypatch.setattr(exports, "_MAX_LISTED", 1)  # too many ids for one statement: every event
    assert written(types={"challenge"}, accounts={"V"}, ids={"labelled"}) == written()
    engine.dispose()
