"""The console's pages and forms against what the API already refuses, on a SQLite file and on
PostgreSQL: ids no row can have, fields longer than the records keep, and what the pages tell a
browser about framing and caching.

Each form is checked before anything is recorded, as the API's request models check a body, so
a refused change leaves no row and no audit entry behind.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, unquote, urljoin, urlsplit

import pytest
from conftest import Api, add_user, audit
from console_helpers import login

from brokerguard.events import AccountSnapshot, Event, LoginAttempt
from brokerguard.guard import ACTIONS
from brokerguard.service.db import make_engine, write_transaction
from brokerguard.service.models import campaigns
from brokerguard.service.records import DETECTORS, SEVERITIES
from brokerguard.web.i18n import MESSAGES

pytestmark = pytest.mark.usefixtures("cheap_argon2")  # every hash checked in-process

T0 = datetime(2025, 3, 20, 1, 0, tzinfo=UTC)


@pytest.fixture
def console(make_api: Callable[..., Api], database_url: str) -> tuple[Api, str]:
    """A service with one account that signed in once, and a supervisor logged in (the CSRF
    token is returned)."""
    add_user(database_url, "sup", "supervisor")
    api = make_api(database_url)
    answer = api.ingest(
        [
            AccountSnapshot(id="acct-V1", ts=T0, account="V1", opened=T0 - timedelta(days=900)),
            LoginAttempt(
                id="login-V1",
                ts=T0 + timedelta(minutes=1),
                account="V1",
                session="s-V1",
                ip="203.0.113.5",
                user_agent="Mozilla/5.0 (Windows NT 10.0; Win64; x64)",
                device="dev-V1",
                factors=["password"],
                success=True,
            ),
        ]
    )
    assert answer.status_code == 200, answer.text
    api.settle()
    return api, login(api.client, "sup")


@pytest.mark.parametrize("case_id", [2**31, 10**20])
def test_a_case_id_no_case_can_have_is_not_found(console: tuple[Api, str], case_id: int) -> None:
    """An id beyond the cases table's integers was a 500 (SQLite cannot bind it, PostgreSQL's
    integer column refuses it); the API answers such an id with an error, the console now with
    the 404 of any other missing case."""
    api, token = console
    c = api.client
    page = c.get(f"/console/cases/{case_id}")
    assert page.status_code == 404, page.text
    assert page.json()["error"]["field"] == "case_id"
    for path, form in (
        (f"/console/cases/{case_id}", {"status": "investigating"}),
        (f"/console/cases/{case_id}/notes", {"text": "x"}),
    ):
        answer = c.post(path, data={"csrf_token": token, **form})
        assert answer.status_code == 404, (path, answer.text)


@pytest.mark.parametrize(
    ("account", "form", "field"),
    [
        ("V1", {"action": "trust_device", "target": "d" * 129}, "target"),
        ("A" * 129, {"action": "force_reverify"}, "account"),
        ("A" * 129, {"action": "lock"}, "account"),
        ("V1", {"action": "lock", "note": "n" * 2001}, "note"),
    ],
)
def test_an_account_action_is_checked_before_anything_is_recorded(
    console: tuple[Api, str], database_url: str, account: str, form: dict, field: str
) -> None:
    """The console took what the API refuses (422): a device cookie or an account longer than an
    event's ids was recorded with its audit entry, and then the engine's event could not be made
    (a 500, the action half done); a 129-character account was locked on SQLite and a 500 on
    PostgreSQL; a note over 2,000 characters was cut short without a word."""
    api, token = console
    before = audit(database_url)
    answer = api.client.post(
        f"/console/accounts/{account}/actions", data={"csrf_token": token, **form}
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["field"] == field
    api.settle()
    assert audit(database_url) == before  # no action recorded (each has its audit entry)
    assert not api.service.host.locked


@pytest.mark.parametrize(
    ("form", "field"),
    [({"account": "V1", "title": "t" * 301}, "title"), ({"account": "A" * 129}, "account")],
)
def test_a_case_is_opened_only_from_what_the_api_takes(
    console: tuple[Api, str], database_url: str, form: dict, field: str
) -> None:
    """A title over 300 characters or an account over 128 was written on SQLite and a 500 on
    PostgreSQL (its columns are that long); the API refuses both (422), and so does the form."""
    api, token = console
    before = audit(database_url)
    answer = api.client.post("/console/cases", data={"csrf_token": token, **form})
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["field"] == field
    api.settle()
    assert audit(database_url) == before
    assert api.get("/v1/cases").json() == []


def test_a_note_too_long_is_refused_not_cut_short(
    console: tuple[Api, str], database_url: str
) -> None:
    """A note over the API's 10,000 characters was stored cut at 10,000, and the analyst was
    not told that the end of it was gone."""
    api, token = console
    opened = api.client.post(
        "/console/cases", data={"csrf_token": token, "account": "V1"}, follow_redirects=False
    )
    assert opened.status_code == 303
    path = opened.headers["location"]
    text = "確認内容 " + "x" * 10_000
    answer = api.client.post(f"{path}/notes", data={"csrf_token": token, "text": text})
    assert answer.status_code == 422 and answer.json()["error"]["field"] == "text"
    api.settle()
    assert [a[1] for a in audit(database_url)][-1] == "case.create"
    fits = api.client.post(
        f"{path}/notes", data={"csrf_token": token, "text": text[:10_000]}, follow_redirects=False
    )
    assert fits.status_code == 303
    case = int(path.rsplit("/", 1)[1])
    assert [n["text"] for n in api.get(f"/v1/cases/{case}").json()["notes"]] == [text[:10_000]]


def test_console_pages_may_not_be_framed_nor_kept_in_caches(console: tuple[Api, str]) -> None:
    """The console's pages (customers' sign-ins, addresses, devices; buttons that unlock an
    account or release a held order) came with no header at all: any page could frame them — a
    site on another port or subdomain of the same host is the same site, so the session cookie
    goes along despite SameSite=Strict — and any cache could keep them. The broker's site sends
    these headers on every page; the console now does too, as do its CSV downloads."""
    api, _token = console
    c = api.client
    html = {"accept": "text/html"}
    for path in (
        "/console/alerts",
        "/console/accounts/V1",
        "/console/cases/99",  # an error page
        "/console/reports/monthly.csv",
    ):
        answer = c.get(path, headers=html)
        assert answer.status_code in (200, 404), (path, answer.status_code)
        assert answer.headers.get("x-frame-options") == "DENY", path
        policy = answer.headers.get("content-security-policy", "")
        assert "frame-ancestors 'none'" in policy and "default-src 'self'" in policy, path
        assert answer.headers.get("cache-control") == "no-store", path
    c.cookies.clear()
    assert c.get("/console/login").headers.get("x-frame-options") == "DENY"


def test_every_code_the_console_shows_has_both_languages() -> None:
    """Severities, detectors, decisions, event types, campaign statuses and campaign timeline
    entries were shown as English codes on the Japanese pages (the alert filter even passed them
    through the catalogue, which had none of them, and named the ``policy`` detector
    "補償方針", the compensation policy)."""
    kinds = {
        "severity": SEVERITIES,
        "detector": (*DETECTORS, "policy"),
        "decision": ACTIONS,
        "event": tuple(t.__struct_config__.tag for t in Event.__args__),  # type: ignore[attr-defined]
        "campaign": ("raised", "account", "symbol", "infrastructure", "counterparty", "dismissed"),
    }
    missing = [
        f"{k}_{c}" for k, codes in kinds.items() for c in codes if f"{k}_{c}" not in MESSAGES
    ]
    assert not missing
    assert MESSAGES["detector_policy"][0] != MESSAGES["policy"][0]
    for status in ("active", "contained", "closed", "dismissed"):
        assert status in MESSAGES


def test_pages_name_codes_in_the_readers_language(
    console: tuple[Api, str], database_url: str
) -> None:
    """The alert filter, the campaigns and a campaign's timeline, an account's timeline."""
    api, _token = console
    engine = make_engine(database_url)
    now = datetime.now(UTC)
    with write_transaction(engine) as conn:
        conn.execute(
            campaigns.insert().values(
                id="C-1",
                engine_id="c1",
                raised_at=now,
                updated_at=now,
                symbols=["TSE:9999"],
                accounts=["V1"],
                infrastructure=[],
                counterparties=[],
                timeline=[{"at": now.isoformat(), "what": "raised", "detail": "symbol TSE:9999"}],
                status="active",
            )
        )
    engine.dispose()
    c = api.client
    for lang in ("ja", "en"):
        queue = c.get(f"/console/alerts?lang={lang}").text
        found = re.findall(r'<option value="(\w+)"[^>]*>([^<]*)</option>', queue)
        options = {code: html.unescape(name) for code, name in found}
        named = {code: f"severity_{code}" for code in SEVERITIES}
        named |= {code: f"detector_{code}" for code in (*DETECTORS, "policy")}
        for code, key in named.items():
            assert options[code] == MESSAGES[key][lang == "en"], code
        listed = c.get(f"/console/campaigns?lang={lang}").text
        assert f"<td>{MESSAGES['active'][lang == 'en']}</td>" in listed
        camp = c.get(f"/console/campaigns/C-1?lang={lang}").text
        assert f"<td>{MESSAGES['campaign_raised'][lang == 'en']}</td>" in camp
        account = c.get(f"/console/accounts/V1?lang={lang}").text
        row = re.search(r'<tr class="ev-login">(.*?)</tr>', account, re.S)
        assert row is not None
        for key in ("event_login", "signin_success", "decision_allow"):
            assert MESSAGES[key][lang == "en"] in row.group(1), (lang, key, row.group(1))
    ja = c.get("/console/alerts?lang=ja").text
    assert "補償方針" not in ja


def _fail_logins(api: Api, account: str, times: int) -> list[str]:
    """Wrong passwords for ``account``, decided by the guard (as a broker's log-in system reports
    the ID someone typed); the actions it answered."""
    answers = []
    for n in range(times):
        event = LoginAttempt(
            id=f"typed-{account}-{n}",
            ts=T0 + timedelta(hours=1, seconds=n),
            account=account,
            session=f"typed-s{n}",
            ip="203.0.113.9",
            user_agent="Mozilla/5.0 (Windows NT 10.0; Win64; x64)",
            factors=["password"],
            success=False,
        )
        answer = api.decide(event)
        assert answer.status_code == 200, answer.text
        answers.append(answer.json()["action"])
    return answers


def _resolved(page_url: str, html_text: str) -> list[str]:
    """Every link and form target of ``html_text`` as a browser resolves it (dot segments
    removed), its path decoded."""
    targets = re.findall(r'(?:href|action)="([^"]+)"', html_text)
    return [unquote(urlsplit(urljoin(page_url, html.unescape(t))).path) for t in targets]


def test_an_account_id_with_a_slash_links_to_its_own_page_and_actions(
    console: tuple[Api, str],
) -> None:
    """An account ID is whatever the broker's systems send: a login system that reports failed
    sign-ins for any ID typed at its form (the signal of credential stuffing) sends IDs that
    anyone chose. The console quoted them for links and forms but left ``/`` in, so a browser
    resolved ``V1/.`` (or ``X/../V1``) to the page of account V1: ten wrong passwords for ``V1/.``
    put a row in the unlock queue whose unlock button unlocked V1 — here frozen by its customer
    — and alerts whose snooze button snoozed V1's alerts."""
    api, token = console
    answers = _fail_logins(api, "V1/.", 10)
    assert answers[-1] == "lock"
    frozen = api.client.post(
        "/v1/accounts/V1/actions", json={"action": "freeze"}, headers=api.auth("admin")
    )
    assert frozen.status_code == 201, frozen.text
    api.settle()
    base = "http://testserver/console/unlocks"
    page = api.client.get("/console/unlocks").text
    row = re.search(r'<tr id="unlock-V1/\.".*?</tr>', page, re.S)
    assert row is not None
    own = [p for p in _resolved(base, row.group(0)) if p.startswith("/console/accounts/")]
    assert own == ["/console/accounts/V1/.", "/console/accounts/V1/./actions"], own
    action = re.search(r'action="([^"]+)"', row.group(0))
    assert action is not None
    unlocked = api.client.post(
        urljoin(base, html.unescape(action.group(1))),
        data={"csrf_token": token, "action": "unlock", "note": "本人確認済み"},
        follow_redirects=False,
    )
    assert unlocked.status_code == 303, unlocked.text
    assert "V1" in api.service.host.locked, "the customer's freeze of V1 stands"
    api.settle()
    after = api.client.get("/console/unlocks").text
    assert 'id="unlock-V1"' in after and 'id="unlock-V1/."' not in after
    timeline = api.client.get(urljoin(base, "/console/accounts/V1%2F.")).text
    assert "V1/." in timeline and "ev-login" in timeline
    queue = api.client.get("/console/alerts").text
    rows = [r for r in re.findall(r'<tr class="sev-.*?</tr>', queue, re.S) if ">V1/.<" in r]
    assert rows, "the refused sign-ins of V1/. are alerts"
    for r in rows:
        own = {p for p in _resolved(base, r) if p.startswith("/console/accounts/")}
        assert own == {"/console/accounts/V1/.", "/console/accounts/V1/./snooze"}, own


def test_the_case_list_pages_through_every_case(console: tuple[Api, str]) -> None:
    """The list showed the 300 newest cases and nothing else: no page, no count, so an older case
    (closed, investigating, …) could not be found from it. It now pages as the alert queue does,
    the status filter kept across pages."""
    api, _token = console
    admin = api.auth("admin")
    for n in range(305):
        made = api.client.post("/v1/cases", json={"account": f"P{n:03d}"}, headers=admin)
        assert made.status_code == 201, made.text
    api.settle()
    seen: list[str] = []
    path = "/console/cases?status=open"
    while True:
        page = api.client.get(path).text
        seen += re.findall(r'<tr><td><a href="/console/cases/(\d+)">', page)
        found = re.search(r'class="pager-next" href="([^"]+)"', page)
        if found is None:
            break
        path = "/console/cases" + html.unescape(found.group(1))
        assert "status=open" in path
    assert len(seen) == len(set(seen)) == 305
    assert "305" in api.client.get("/console/cases?status=open").text
    everything = api.client.get("/console/cases").text
    assert 'class="pager-next"' in everything and "(305 " in everything


def test_every_error_on_a_console_page_is_a_page_for_a_browser(console: tuple[Api, str]) -> None:
    """A service error (a missing alert) was shown to a browser as a page in its language, but a
    path that names no page, a case number that is not one, or a wrong method came as the
    service's raw JSON. Scripts still get the JSON."""
    api, _token = console
    c = api.client
    page = {"accept": "text/html,application/xhtml+xml"}
    for path, status in (
        ("/console/no-such-page", 404),
        ("/console/cases/abc", 422),
        ("/console/signout", 405),
    ):
        for lang, word in (("ja", "アラート"), ("en", "Alerts")):
            answer = c.get(f"{path}?lang={lang}", headers=page)
            assert answer.status_code == status, (path, answer.text[:200])
            assert answer.headers["content-type"].startswith("text/html"), path
            assert f'lang="{lang}"' in answer.text and word in answer.text
            assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
        assert c.get(path).json()["error"]["code"]  # no text/html asked: the JSON error


def test_the_language_link_keeps_the_filters_and_the_page(console: tuple[Api, str]) -> None:
    """Switching the language on a filtered queue, page 2, went back to the unfiltered first
    page (the link was ``?lang=en`` alone)."""
    api, _token = console
    page = api.client.get("/console/alerts?status=open&severity=high&page=2&lang=ja").text
    link = re.search(r'<a class="lang" href="([^"]*)">', page)
    assert link is not None
    query = parse_qs(urlsplit(html.unescape(link.group(1))).query)
    assert query == {"status": ["open"], "severity": ["high"], "page": ["2"], "lang": ["en"]}
