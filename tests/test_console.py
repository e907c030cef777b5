"""The console over HTTP (TestClient) against a real SQLite file: log-in, every page in Japanese
and English, the changes analysts make and their audit entries, CSRF and role checks."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from console_helpers import (
    PASSWORD,
    csrf_of,
    hold_policy,
    load,
    login,
    login_form_token,
    prepare_database,
)
from console_helpers import simulate_run as simulate
from fastapi.testclient import TestClient
from pg_helpers import create_pg_database, drop_pg_database, pg_database_url

from brokerguard.reports import monthly_table, write_monthly_csv
from brokerguard.service.app import create_app
from brokerguard.service.db import make_engine
from brokerguard.service.models import audit_log
from brokerguard.web.i18n import MESSAGES
from brokerguard.web.svg import campaign_graph, fill_chart

pytestmark = pytest.mark.usefixtures("cheap_argon2")  # every hash checked in-process

TEMPLATES = Path(__file__).resolve().parents[1] / "src" / "brokerguard" / "web" / "templates"


class World:
    def __init__(self, client: TestClient, url: str, key: str, held: dict[str, Any]) -> None:
        self.client, self.url, self.key, self.held = client, url, key, held
        self.service = client.app.state.service  # type: ignore[attr-defined]

    def settle(self) -> None:
        self.service.tick()
        assert self.service.recorder.wait_idle(10)

    def audit(self) -> list[tuple[str, str, str]]:
        engine = make_engine(self.url)
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(audit_log.c.actor, audit_log.c.action, audit_log.c.subject).order_by(
                    audit_log.c.seq
                )
            ).all()
        engine.dispose()
        return [tuple(r) for r in rows]

    def api(self, path: str) -> Any:
        answer = self.client.get(path, headers={"Authorization": f"Bearer {self.key}"})
        assert answer.status_code == 200, answer.text
        return answer.json()

    def as_user(self, username: str) -> str:
        self.client.cookies.clear()
        return login(self.client, username)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    run = tmp_path_factory.mktemp("console") / "run"
    return run, simulate(run)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """The console on a fresh SQLite file, then on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('console-db') / 'service.db'}"
        return
    name = create_pg_database()
    try:
        yield pg_database_url(name)
    finally:
        drop_pg_database(name)


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, recorded: tuple[Path, list], database: str
) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("console")
    run, events = recorded
    url = database
    key = prepare_database(url)
    app = create_app(url, hold_policy(tmp / "hold.toml"), console_run=run)
    with TestClient(app) as client:
        held = load(lambda p, b, h: client.post(p, content=b, headers=h), key, events)
        w = World(client, url, key, held)
        w.settle()
        yield w


def test_login_page_in_both_languages_and_wrong_password(world: World) -> None:
    c = world.client
    c.cookies.clear()
    ja = c.get("/console/login")
    assert ja.status_code == 200 and "パスワード" in ja.text and 'lang="ja"' in ja.text
    en = c.get("/console/login?lang=en")
    assert "Password" in en.text and 'lang="en"' in en.text
    assert c.get("/console/login").text.count("Password") >= 1  # the cookie remembers English
    c.get("/console/login?lang=ja")
    token = login_form_token(c)
    wrong = c.post(
        "/console/login",
        data={"username": "ana", "password": "nope" * 4, "csrf_token": token},
        follow_redirects=False,
    )
    assert wrong.headers["location"] == "/console/login?failed=1"
    assert "ユーザー名またはパスワードが違います" in c.get("/console/login?failed=1").text
    assert ("anonymous", "console.login_failed", "ana") in world.audit()


def test_pages_need_a_session(world: World) -> None:
    world.client.cookies.clear()
    for path in (
        "/console/",
        "/console/alerts",
        "/console/cases",
        "/console/reports",
        "/console/blocklist",
        "/console/unlocks",
    ):
        answer = world.client.get(path, follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"] == "/console/login"
    css = world.client.get("/console/static/console.css")
    assert css.status_code == 200 and "/console/fonts/ipaexg.ttf" in css.text
    assert "http" not in css.text, "no asset from the internet"
    font = world.client.get("/console/fonts/ipaexg.ttf")
    assert font.status_code == 200 and font.headers["content-type"] == "font/ttf"


def _pages(world: World) -> list[str]:
    campaign = world.api("/v1/campaigns")[0]["id"]
    alert = world.api("/v1/alerts")[0]
    return [
        "/console/alerts",
        f"/console/accounts/{alert['account']}",
        "/console/campaigns",
        f"/console/campaigns/{campaign}",
        "/console/cases",
        "/console/reports",
        "/console/blocklist",
        "/console/unlocks",
    ]


@pytest.mark.parametrize(
    ("lang", "words"),
    [("ja", ("アラート", "ケース", "ログアウト")), ("en", ("Alerts", "Cases", "Log out"))],
)
def test_every_page_renders_in_both_languages(world: World, lang: str, words: tuple) -> None:
    world.as_user("ana")
    for path in _pages(world):
        page = world.client.get(f"{path}?lang={lang}")
        assert page.status_code == 200, (path, page.text[:500])
        assert f'lang="{lang}"' in page.text
        for word in words:
            assert word in page.text, (path, word)
        assert "http://" not in page.text.replace('xmlns="http://www.w3.org/2000/svg"', "")
        assert "https://" not in page.text, "no asset from the internet"
    world.client.get("/console/alerts?lang=ja")


def test_an_alert_page_shows_reasons_and_signals(world: World) -> None:
    world.as_user("ana")
    alert = next(a for a in world.api("/v1/alerts?limit=1000") if a["signals"] and a["reasons"])
    for lang in ("ja", "en"):
        page = world.client.get(f"/console/alerts/{alert['id']}?lang={lang}")
        assert page.status_code == 200
        assert alert["reasons"][0][lang] in page.text
        assert f"<code>{alert['signals'][0]['code']}</code>" in page.text
        assert f'href="/console/accounts/{alert["account"]}"' in page.text
    assert world.client.get("/console/alerts/nope").status_code == 404


def test_alert_filters(world: World) -> None:
    world.as_user("ana")
    alerts = world.api("/v1/alerts?limit=1000")
    severity = alerts[0]["severity"]
    page = world.client.get(f"/console/alerts?severity={severity}").text
    shown = re.findall(r'<span class="badge (\w+)">', page)
    assert shown and set(shown) == {severity}
    assert len(shown) == min(100, sum(a["severity"] == severity for a in alerts))
    detector = alerts[0]["detector"]
    page = world.client.get(f"/console/alerts?detector={detector}&status=open").text
    rows = re.findall(r'<tr class="sev-\w+" id="alert-(\w+)">', page)
    by_id = {a["id"]: a for a in alerts}
    assert rows and all(by_id[r]["detector"] == detector for r in rows)


def test_the_queue_pages_through_every_alert(world: World) -> None:
    world.as_user("ana")
    total = len(world.api("/v1/alerts?status=open&limit=1000"))
    assert total > 100  # the hold-everything policy alerts on every order
    seen: list[str] = []
    page, pages = 1, None
    while True:
        text = world.client.get(f"/console/alerts?status=open&page={page}").text
        rows = re.findall(r'<tr class="sev-\w+" id="alert-(\w+)">', text)
        assert 0 < len(rows) <= 100
        seen += rows
        counted = re.search(r"(\d+) / (\d+) \((\d+) ", text)
        assert counted is not None
        pages = int(counted.group(2))
        assert int(counted.group(3)) == total
        if "pager-next" not in text:
            break
        assert "status=open" in text.split("pager-next")[1][:200]  # the filter is kept
        page += 1
    assert page == pages == -(-total // 100)
    assert len(seen) == len(set(seen)) == total
    first = world.client.get("/console/alerts?status=open").text
    for odd in ("²", "9" * 5000, "0", "x"):  # not a page number: the first page, not an error
        shown = world.client.get("/console/alerts", params={"status": "open", "page": odd})
        assert shown.status_code == 200
        assert re.findall(r'id="alert-(\w+)"', shown.text) == re.findall(r'id="alert-(\w+)"', first)


def test_assign_and_snooze_are_audited(world: World) -> None:
    token = world.as_user("ana")
    alerts = world.api("/v1/alerts?status=open&limit=1000")
    first = alerts[0]
    done = world.client.post(
        f"/console/alerts/{first['id']}/assign", data={"csrf_token": token}, follow_redirects=False
    )
    assert done.status_code == 303
    assert world.api(f"/v1/alerts/{first['id']}")["assignee"] == "ana"
    assert ("user:ana", "alert.update", first["id"]) in world.audit()

    account = alerts[0]["account"]  # the queue page shows the first 300 only
    assert f"/console/accounts/{account}" in world.client.get("/console/alerts").text
    snoozed = world.client.post(
        f"/console/accounts/{account}/snooze", data={"csrf_token": token}, follow_redirects=False
    )
    assert snoozed.status_code == 303
    own = world.api(f"/v1/alerts?account={account}&status=open")
    assert own and all(a["snoozed_until"] for a in own)
    assert f'href="/console/accounts/{account}"' not in world.client.get("/console/alerts").text
    assert (
        f'href="/console/accounts/{account}"' in world.client.get("/console/alerts?snoozed=1").text
    )


def test_changes_without_the_csrf_token_are_refused(world: World) -> None:
    world.as_user("sup")
    account = world.held["account"]
    for data in ({}, {"csrf_token": "forged"}):
        answer = world.client.post(
            f"/console/accounts/{account}/actions", data={**data, "action": "lock"}
        )
        assert answer.status_code == 403 and answer.json()["error"]["field"] == "X-CSRF-Token"
        answer = world.client.post("/console/cases", data={**data, "account": account})
        assert answer.status_code == 403
    assert account not in world.service.host.locked
    assert not any(a[1] == "account.lock" for a in world.audit())


def test_analysts_cannot_act_on_accounts(world: World) -> None:
    token = world.as_user("ana")
    account = world.held["account"]
    page = world.client.get(f"/console/accounts/{account}").text
    assert "スーパーバイザー以上" in page and 'value="release_order"' not in page
    answer = world.client.post(
        f"/console/accounts/{account}/actions", data={"csrf_token": token, "action": "lock"}
    )
    assert answer.status_code == 403
    campaign = world.api("/v1/campaigns")[0]["id"]
    answer = world.client.post(
        f"/console/campaigns/{campaign}/status", data={"csrf_token": token, "status": "closed"}
    )
    assert answer.status_code == 403
    assert account not in world.service.host.locked


def test_lock_unlock_reverify_and_trust_device(world: World) -> None:
    token = world.as_user("sup")
    account = world.held["account"]
    page = world.client.get(f"/console/accounts/{account}").text
    device = re.search(r'<select name="target"><option>([^<]+)</option>', page)
    assert device, "the account's devices are offered for trust"

    def act(action: str, target: str = "") -> None:
        answer = world.client.post(
            f"/console/accounts/{account}/actions",
            data={"csrf_token": token, "action": action, "target": target, "note": "電話確認"},
            follow_redirects=False,
        )
        assert answer.status_code == 303, answer.text

    act("lock")
    assert world.service.host.locked[account] == "user:sup"
    assert "ロック中" in world.client.get(f"/console/accounts/{account}").text
    act("unlock")
    assert account not in world.service.host.locked
    act("force_reverify")
    act("trust_device", device.group(1))
    done = [a["action"] for a in world.api(f"/v1/accounts/{account}/actions")]
    assert done[:4] == ["trust_device", "force_reverify", "unlock", "lock"]
    logged = [a[1] for a in world.audit() if a[0] == "user:sup" and a[2] == account]
    assert logged[-4:] == [
        "account.lock",
        "account.unlock",
        "account.force_reverify",
        "account.trust_device",
    ]
    bad = world.client.post(
        f"/console/accounts/{account}/actions", data={"csrf_token": token, "action": "explode"}
    )
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "action"


def test_release_a_held_order(world: World) -> None:
    token = world.as_user("adm")
    account, order = world.held["account"], world.held["event_id"]
    page = world.client.get(f"/console/accounts/{account}").text
    assert f'id="held-{order}"' in page
    wrong = world.client.post(
        f"/console/accounts/{account}/actions",
        data={"csrf_token": token, "action": "release_order", "target": "nope"},
    )
    assert wrong.status_code == 409 and wrong.json()["error"]["field"] == "target"
    answer = world.client.post(
        f"/console/accounts/{account}/actions",
        data={"csrf_token": token, "action": "release_order", "target": order},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    assert world.service.host.pending(order) is None
    world.settle()
    page = world.client.get(f"/console/accounts/{account}").text
    assert f'id="held-{order}"' not in page
    assert f"登録連絡先への確認コード 成功 ← {order}" in page  # the Japanese page, in Japanese
    assert ("user:adm", "account.release_order", account) in world.audit()


def test_cases_from_alert_notes_and_outcome(world: World) -> None:
    token = world.as_user("ana")
    alert = world.api("/v1/alerts?status=open&limit=1")[0]
    opened = world.client.post(
        "/console/cases",
        data={"csrf_token": token, "alert_id": alert["id"]},
        follow_redirects=False,
    )
    assert opened.status_code == 303
    path = opened.headers["location"]
    case_id = int(path.rsplit("/", 1)[1])
    note = world.client.post(
        f"{path}/notes", data={"csrf_token": token, "text": "本人に確認中"}, follow_redirects=False
    )
    assert note.status_code == 303
    early = world.client.post(path, data={"csrf_token": token, "status": "closed", "outcome": ""})
    assert early.status_code == 409 and early.json()["error"]["field"] == "outcome"
    closed = world.client.post(
        path,
        data={
            "csrf_token": token,
            "status": "closed",
            "outcome": "fraud",
            "labels": "phishing, ato,",
        },
    )
    assert closed.status_code == 200  # followed to the case page
    assert "本人に確認中" in closed.text and 'value="fraud" selected' in closed.text
    case = world.api(f"/v1/cases/{case_id}")
    assert (case["status"], case["outcome"], case["alert_id"]) == ("closed", "fraud", alert["id"])
    assert case["labels"] == ["ato", "phishing"]
    logged = [a[1] for a in world.audit() if a[2] == str(case_id)]
    assert logged == ["case.create", "case.note", "case.update"]
    # what the engine heard of the outcome is on the account's timeline, in the reader's language
    for lang, words in (("ja", "再本人確認を要求"), ("en", "Force re-verification")):
        page = world.client.get(f"/console/accounts/{alert['account']}?lang={lang}").text
        rows = re.findall(r'<tr class="ev-analyst">(.*?)</tr>', page, re.S)
        assert rows and any(words in row for row in rows), (lang, rows)
    assert f"/console/cases/{case_id}" in world.client.get("/console/cases?status=closed").text

    campaign = world.api("/v1/campaigns")[0]["id"]
    from_campaign = world.client.post(
        "/console/cases", data={"csrf_token": token, "campaign_id": campaign}
    )
    assert from_campaign.status_code == 200 and campaign in from_campaign.text


def test_campaign_page_draws_chart_and_graph(world: World) -> None:
    world.as_user("sup")
    campaigns = world.api("/v1/campaigns")
    camp = max(campaigns, key=lambda c: len(c["accounts"]))
    page = world.client.get(f"/console/campaigns/{camp['id']}").text
    assert page.count('class="graph"') == 1 and page.count("<circle") == len(camp["accounts"])
    assert 'class="chart"' in page and "<polyline" in page, "fills of the symbol are charted"
    assert "買いの波" in page and '<rect class="bar"' in page


def test_reports_and_csv_downloads(world: World, tmp_path: Path) -> None:
    world.as_user("ana")
    page = world.client.get("/console/reports?lang=en").text
    assert "unauthorized logins" in page and "Compensation calculator" in page
    run = Path(world.client.app.state.console_run)  # type: ignore[attr-defined]
    monthly = world.client.get("/console/reports/monthly.csv")
    assert monthly.status_code == 200 and monthly.headers["content-type"].startswith("text/csv")
    expected = write_monthly_csv(monthly_table(run), tmp_path / "m.csv").read_bytes()
    assert monthly.content == expected and monthly.content.startswith(b"\xef\xbb\xbf")
    comp = world.client.get("/console/reports/compensation.csv?policy=full-restoration")
    lines = comp.content.decode("utf-8-sig").splitlines()
    assert len(lines) > 1 and all(",full-restoration," in line for line in lines[1:])
    assert world.client.get("/console/reports/compensation.csv?policy=nope").status_code == 422


def test_errors_on_console_pages_are_pages_for_browsers(world: World) -> None:
    world.as_user("ana")
    html = {"accept": "text/html,application/xhtml+xml"}
    missing = world.client.get("/console/campaigns/nope?lang=en", headers=html)
    assert missing.status_code == 404 and "no campaign &#39;nope&#39;" in missing.text
    assert 'lang="en"' in missing.text and "Alerts" in missing.text
    token = csrf_of(world.client.get("/console/alerts").text)
    refused = world.client.post(
        f"/console/accounts/{world.held['account']}/actions?lang=ja",
        data={"csrf_token": token, "action": "lock"},
        headers=html,
    )
    assert refused.status_code == 403 and "権限がありません" in refused.text
    assert world.client.get("/console/campaigns/nope").json()["error"]["code"] == "not_found"


def test_sign_out_ends_the_session(world: World) -> None:
    token = world.as_user("ana")
    out = world.client.post("/console/signout", data={"csrf_token": token}, follow_redirects=False)
    assert out.headers["location"] == "/console/login"
    world.client.cookies.clear()
    assert world.client.get("/console/alerts", follow_redirects=False).status_code == 303
    assert ("user:ana", "console.logout", "ana") in world.audit()


def test_svg_is_deterministic_escaped_and_linked() -> None:
    accounts, infra = ["A1", "A<2>"], ["ip:192.0.2.1", "asn:Evil & Co"]
    edges = [("A1", "ip:192.0.2.1"), ("A<2>", "ip:192.0.2.1"), ("A1", "asn:Evil & Co")]
    svg = campaign_graph(accounts, infra, edges)
    assert svg == campaign_graph(accounts, infra, edges)
    assert svg.count("<line") == 3 and svg.count("<circle") == 2 and svg.count("<rect") == 2
    assert "A&lt;2&gt;" in svg and "Evil &amp; Co" in svg and "<2>" not in svg
    assert 'href="/console/accounts/A1"' in svg
    assert fill_chart([]) == ""
    t0 = datetime(2025, 3, 18, tzinfo=UTC)
    chart = fill_chart([(t0, 100.0, 10.0), (t0 + timedelta(hours=1), 150.0, 30.0)])
    assert chart.count('class="vol"') == 2 and "<polyline" in chart and "150" in chart


def test_the_catalogue_has_both_languages_for_every_key_the_templates_use() -> None:
    assert all(ja.strip() and en.strip() for ja, en in MESSAGES.values())
    used = set()
    for template in TEMPLATES.glob("*.html"):
        used |= set(re.findall(r't\("(\w+)"\)', template.read_text(encoding="utf-8")))
    assert used and used <= set(MESSAGES), used - set(MESSAGES)


def test_password_constant_is_long_enough() -> None:
    assert len(PASSWORD) >= 12
    assert csrf_of('<input name="csrf_token" value="abc">') == "abc"


def test_dismissing_a_campaign_ends_its_containment_in_the_engine(world: World) -> None:
    token = world.as_user("sup")
    camp = max(world.api("/v1/campaigns"), key=lambda c: len(c["accounts"]))
    state = world.service.host.guard.state
    linked = [k for k in camp["symbols"] if state.get("symbol", k) is not None]
    assert linked and all(state.get("symbol", k).campaign == camp["engine_id"] for k in linked)
    done = world.client.post(
        f"/console/campaigns/{camp['id']}/status",
        data={"csrf_token": token, "status": "dismissed"},
        follow_redirects=False,
    )
    assert done.status_code == 303
    assert all(state.get("symbol", k).campaign == "" for k in linked)
    assert world.api(f"/v1/campaigns/{camp['id']}")["status"] == "dismissed"
    assert ("user:sup", "campaign.update", camp["id"]) in world.audit()
    page = world.client.get(f"/console/campaigns/{camp['id']}?lang=en").text
    assert "Not an attack (end containment)" in page


def test_svg_links_an_account_as_the_pages_do() -> None:
    """An account number with ``?`` or ``#`` links to its own timeline, not to another's."""
    svg = campaign_graph(["V1?x=1#y", "V 2"], [], [])
    assert 'href="/console/accounts/V1%3Fx%3D1%23y"' in svg
    assert 'href="/console/accounts/V%202"' in svg
