"""The console's list of accounts waiting for an unlock, over HTTP on the real service (a SQLite
file, and the session's PostgreSQL database).

Each account is locked the way it happens in production: the policy answering ``lock`` to the
tenth wrong password in a row (decided through ``POST /v1/decide``), an analyst's lock in the
console, the broker's site freezing at the customer's request and asking for an analyst's
unlock (``POST /v1/accounts/{a}/actions``, as :mod:`brokerguard.frontdoor` does), and a lock by
the broker's own system with an API key.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from conftest import Api, add_user, audit
from console_helpers import login
from markupsafe import escape

from brokerguard.events import LoginAttempt
from brokerguard.service.unlock_queue import PAGE

pytestmark = pytest.mark.usefixtures("cheap_argon2")  # every hash checked in-process

_ids = itertools.count(1)
FREEZE_NOTE = "customer: locked by C2 at the front door"
SITE_NOTE = "guard: locked by guard at the front door"
ASK_NOTE = "unlock request r-1: the customer asked for an analyst's unlock"


def fail_logins(api: Api, account: str, times: int) -> list[str]:
    """Wrong passwords decided by the guard; the actions it answered."""
    start = datetime.now(UTC)
    answers = []
    for n in range(times):
        event = LoginAttempt(
            id=f"ul-login-{next(_ids)}",
            ts=start + timedelta(seconds=n),
            account=account,
            session=f"ul-s{n}",
            ip="203.0.113.9",
            user_agent="Mozilla/5.0 (Windows NT 10.0; Win64; x64)",
            factors=["password"],
            success=False,
        )
        answer = api.decide(event)
        assert answer.status_code == 200, answer.text
        answers.append(answer.json()["action"])
    return answers


def act(api: Api, account: str, action: str, note: str = "") -> None:
    answer = api.client.post(
        f"/v1/accounts/{account}/actions",
        json={"action": action, "note": note},
        headers=api.auth("admin"),
    )
    assert answer.status_code == 201, answer.text


def row_of(html: str, account: str) -> str | None:
    """The table row of ``account`` on the unlocks page, or None when it is not listed."""
    found = re.search(rf'<tr id="unlock-{account}"[^>]*>(.*?)</tr>', html, re.S)
    return found.group(1) if found else None


@pytest.fixture
def locked(make_api: Callable[..., Api], database_url: str) -> Api:
    """Four accounts locked four ways, and one locked then unlocked (not waiting)."""
    add_user(database_url, "ana", "analyst")
    add_user(database_url, "sup", "supervisor")
    api = make_api(database_url)
    answers = fail_logins(api, "C1", 10)
    assert answers[:9] == ["deny"] * 9 and answers[9] == "lock"  # the policy's rule
    act(api, "C1", "freeze", SITE_NOTE)  # the site locks on the guard's answer and tells it
    act(api, "C2", "freeze", FREEZE_NOTE)
    act(api, "C2", "request_unlock", ASK_NOTE)
    act(api, "C3", "lock", "chargeback dispute")
    act(api, "C5", "lock", "x")
    act(api, "C5", "unlock", "identity confirmed")
    api.settle()
    return api


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_the_list_shows_each_lock_with_its_origin_and_the_filter_keeps_requests(
    locked: Api, lang: str
) -> None:
    client = locked.client
    assert client.get("/console/unlocks", follow_redirects=False).status_code == 303
    token = login(client, "sup")
    lock = client.post(
        "/console/accounts/C4/actions",
        data={"csrf_token": token, "action": "lock", "note": "suspicious calls"},
        follow_redirects=False,
    )
    assert lock.status_code == 303
    page = client.get(f"/console/unlocks?lang={lang}")
    assert page.status_code == 200 and f'lang="{lang}"' in page.text
    words = {
        "ja": ("ロック解除待ち", "判定ポリシー", "凍結（お客さま", "分析者", "依頼あり"),
        "en": (
            "Waiting for unlock",
            "Policy decision",
            "Freeze (the customer",
            "Analyst",
            "Requested",
        ),
    }
    assert all(escape(w) in page.text for w in words[lang]), lang
    assert 'href="/console/unlocks"' in page.text  # in the navigation
    html = page.text
    assert row_of(html, "C5") is None  # unlocked: not waiting
    policy, frozen, by_key, analyst = (row_of(html, a) for a in ("C1", "C2", "C3", "C4"))
    assert policy and frozen and by_key and analyst
    assert "rule_locked" in policy and 'href="/console/accounts/C1"' in policy
    assert SITE_NOTE in policy  # what followed the policy's lock, under it
    assert fail_logins(locked, "C1", 1) == ["lock"]  # the freeze's echo is no origin
    assert row_of(client.get(f"/console/unlocks?lang={lang}").text, "C1") == policy
    assert FREEZE_NOTE in frozen and "key:" in frozen and escape(ASK_NOTE) in frozen
    assert "user:sup" in analyst and "suspicious calls" in analyst
    assert "chargeback dispute" in by_key and 'class="requested"' not in by_key
    assert 'class="origin-policy"' in html and 'class="origin-customer"' in html
    assert 'class="origin-analyst"' in html and 'class="origin-system"' in html
    order = [m.group(1) for m in re.finditer(r'<tr id="unlock-(\w+)"', html)]
    assert order == ["C4", "C3", "C2", "C1"], "newest first"
    asked = client.get(f"/console/unlocks?requested=1&lang={lang}").text
    assert [m.group(1) for m in re.finditer(r'<tr id="unlock-(\w+)"', asked)] == ["C2"]
    assert "https://" not in html and "http://" not in html  # nothing from outside


def test_an_unlock_with_a_note_leaves_the_list_and_is_audited(
    locked: Api, database_url: str
) -> None:
    client = locked.client
    token = login(client, "sup")
    page = client.get("/console/unlocks?requested=1").text
    assert 'name="back" value="/console/unlocks?requested=1"' in row_of(page, "C2")
    note = "called back on the registered phone; identity confirmed"
    for data in ({}, {"csrf_token": "forged"}):  # no CSRF token: refused, nothing changes
        refused = client.post(
            "/console/accounts/C2/actions",
            data={**data, "action": "unlock", "note": note},
            follow_redirects=False,
        )
        assert refused.status_code == 403
    assert "C2" in locked.service.host.locked
    done = client.post(
        "/console/accounts/C2/actions",
        data={"csrf_token": token, "action": "unlock", "note": note, "back": "/console/unlocks"},
        follow_redirects=False,
    )
    assert done.status_code == 303 and done.headers["location"] == "/console/unlocks"
    assert "C2" not in locked.service.host.locked
    after = client.get("/console/unlocks").text
    assert row_of(after, "C2") is None and row_of(after, "C3") is not None
    assert "no-unlocks" in client.get("/console/unlocks?requested=1").text
    trail = [(a, act, s, d) for a, act, s, d in audit(database_url) if s == "C2"]
    assert [t[1] for t in trail] == ["account.freeze", "account.request_unlock", "account.unlock"]
    detail = trail[-1][3]
    detail = json.loads(detail) if isinstance(detail, str) else detail
    assert trail[-1][0] == "user:sup" and detail["note"] == note

    # the account page says the same: waiting since the policy's lock, and offers the unlock
    account = client.get("/console/accounts/C1?lang=en").text
    assert 'id="waiting-unlock"' in account and "Policy decision" in account
    assert '<input type="hidden" name="action" value="unlock">' in account
    assert 'id="waiting-unlock"' not in client.get("/console/accounts/C5").text
    # a policy's lock leaves the list with the analyst's unlock too; elsewhere goes home
    other = client.post(
        "/console/accounts/C1/actions",
        data={"csrf_token": token, "action": "unlock", "note": "x", "back": "https://evil.example"},
        follow_redirects=False,
    )
    assert other.headers["location"] == "/console/accounts/C1"
    assert row_of(client.get("/console/unlocks").text, "C1") is None
    assert 'id="waiting-unlock"' not in client.get("/console/accounts/C1").text
    # the customer's request is the site's word, not an analyst's action
    spoof = client.post(
        "/console/accounts/C3/actions",
        data={"csrf_token": token, "action": "request_unlock"},
        headers={"accept": "application/json"},
    )
    assert spoof.status_code == 422


def test_a_new_lock_after_an_unlock_waits_again_and_old_requests_do_not_count(
    locked: Api,
) -> None:
    act(locked, "C2", "unlock", "identity confirmed")
    act(locked, "C2", "freeze", FREEZE_NOTE)
    locked.settle()
    client = locked.client
    login(client, "ana")
    page = client.get("/console/unlocks?lang=en").text
    assert row_of(page, "C2") is not None and 'class="requested"' not in row_of(page, "C2")
    assert "Account actions need the supervisor role" in row_of(page, "C2")  # analysts: no form
    assert 'value="unlock"' not in page


def listed(html: str) -> list[str]:
    return [m.group(1) for m in re.finditer(r'<tr id="unlock-(\w+)"', html)]


def test_the_list_comes_a_page_at_a_time_and_an_unlock_returns_to_its_page(
    make_api: Callable[..., Api], database_url: str
) -> None:
    """More accounts wait than a page holds: page 2 has the rest, newest first throughout, with
    previous/next links in both languages that keep the other parameters; an unlock made on
    page 2 returns to page 2, and a page past the end shows the last one."""
    add_user(database_url, "sup", "supervisor")
    api = make_api(database_url)
    count = PAGE + 5
    accounts = [f"P{n:03d}" for n in range(count)]
    for account in accounts:
        act(api, account, "lock", "paging")
    api.settle()
    client = api.client
    token = login(client, "sup")

    first = client.get("/console/unlocks?lang=en").text
    second = client.get("/console/unlocks?lang=en&page=2").text
    assert len(listed(first)) == PAGE and len(listed(second)) == 5
    assert listed(first) + listed(second) == accounts[::-1]  # newest first, none twice
    assert f"Page 1 / 2 ({count} accounts)" in first and "pager-prev" not in first
    assert 'class="pager-next" href="?lang=en&amp;page=2">Next →' in first
    assert f"Page 2 / 2 ({count} accounts)" in second and "pager-next" not in second
    assert 'class="pager-prev" href="?lang=en&amp;page=1">← Previous' in second
    ja = client.get("/console/unlocks?lang=ja&page=2").text
    assert f"ページ 2 / 2 ({count} 口座)" in ja and "← 前へ" in ja and listed(ja) == listed(second)
    assert listed(client.get("/console/unlocks?page=9").text) == listed(second)
    first_listed = listed(first)
    for odd in ("²", "٣", "9" * 5000, "-1", "0", "x"):  # not a page number: the first page
        shown = client.get("/console/unlocks", params={"lang": "en", "page": odd})
        assert shown.status_code == 200 and listed(shown.text) == first_listed
    assert "pager" not in client.get("/console/unlocks?requested=1").text  # one page: no pager

    oldest = accounts[0]
    assert 'name="back" value="/console/unlocks?page=2"' in row_of(second, oldest)
    page2 = "/console/unlocks?page=2"
    done = client.post(
        f"/console/accounts/{oldest}/actions",
        data={"csrf_token": token, "action": "unlock", "note": "id checked", "back": page2},
        follow_redirects=False,
    )
    assert done.status_code == 303 and done.headers["location"] == "/console/unlocks?page=2"
    after = client.get(done.headers["location"]).text
    assert oldest not in listed(after) and len(listed(after)) == 4
    for elsewhere in (f"{page2}&next=https://evil.example", "//evil.example/console/unlocks"):
        sent = client.post(
            f"/console/accounts/{accounts[1]}/actions",
            data={"csrf_token": token, "action": "lock", "note": "x", "back": elsewhere},
            follow_redirects=False,
        )
        assert sent.headers["location"] == f"/console/accounts/{accounts[1]}"
