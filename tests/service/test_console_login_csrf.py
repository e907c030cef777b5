"""The console's log-in form carries a double-submit token (log-in CSRF).

Without it, any page an analyst visits could post the console's log-in form with the
criminal's own user name and password: the analyst's browser would then be signed in to the
criminal's console account, and what the analyst types there (notes, the accounts looked up)
would be recorded where the criminal can read it. The form's page sets a ``bg_login`` cookie and
carries the same value in a hidden field; a form post whose field does not match the cookie is a
403 ``login_csrf``. A JSON log-in (scripts) needs no token: a cross-site page cannot send
``application/json`` without the service's consent (CORS preflight).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import add_user, audit
from fastapi.testclient import TestClient

from brokerguard.service.app import create_app

pytestmark = pytest.mark.usefixtures("cheap_argon2")  # every hash checked in-process

PASSWORD = "correct horse battery"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[TestClient, str]]:
    url = f"sqlite:///{tmp_path / 'service.db'}"
    add_user(url, "ana", "analyst", PASSWORD)
    add_user(url, "eve", "analyst", PASSWORD)
    with TestClient(create_app(url)) as client:
        yield client, url


def _token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "the log-in form has no hidden token"
    return found.group(1)


def _form(client: TestClient, username: str, token: str | None, **kw):
    data = {"username": username, "password": PASSWORD}
    if token is not None:
        data["csrf_token"] = token
    return client.post("/console/login", data=data, follow_redirects=False, **kw)


def test_the_log_in_form_sets_its_token_in_a_cookie_and_a_hidden_field(served) -> None:
    client, _url = served
    page = client.get("/console/login")
    token = _token(page.text)
    assert client.cookies.get("bg_login") == token
    cookie = page.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
    assert _token(client.get("/console/login").text) == token  # a second tab: the same token
    done = _form(client, "ana", token)
    assert done.status_code == 303 and done.headers["location"] == "/console/"
    assert "bg_session" in client.cookies


def test_a_forged_log_in_post_is_refused_with_login_csrf(served) -> None:
    client, url = served
    # The criminal's page posts his own name and password, with or without a token of his own
    # (from his own visit to the form): the analyst's browser has no matching cookie.
    his = TestClient(client.app)
    his_token = _token(his.get("/console/login").text)
    client.cookies.clear()
    for token in (None, "", his_token):
        forged = _form(client, "eve", token)
        assert forged.status_code == 403, forged.text
        error = forged.json()["error"]
        assert error["code"] == "login_csrf" and error["field"] == "csrf_token"
        assert "log-in page" in error["message"] and "ログイン画面" in error["message_ja"]
        assert "bg_session" not in forged.headers.get("set-cookie", "")
    # A cookie of the analyst's own with the criminal's field does not match either.
    _token(client.get("/console/login").text)
    assert _form(client, "eve", his_token).status_code == 403
    assert not [e for e in audit(url) if e[1] == "console.login"]  # no one signed in


def test_a_browser_is_shown_the_refusal_as_a_page_in_both_languages(served) -> None:
    client, _url = served
    client.cookies.clear()
    page = _form(client, "ana", "x", headers={"accept": "text/html"})
    assert page.status_code == 403 and page.headers["content-type"].startswith("text/html")
    assert "ログイン画面" in page.text and "log-in page" in page.text


def test_a_json_log_in_needs_no_token(served) -> None:
    client, _url = served
    client.cookies.clear()
    answer = client.post("/console/login", json={"username": "ana", "password": PASSWORD})
    assert answer.status_code == 200 and answer.json()["id"] == "ana"


def test_the_openapi_document_names_the_forms_token(served) -> None:
    client, _url = served
    doc = client.app.openapi()
    body = doc["paths"]["/console/login"]["post"]["requestBody"]["content"]
    form = body["application/x-www-form-urlencoded"]["schema"]
    name = form["$ref"].rsplit("/", 1)[-1]
    schema = doc["components"]["schemas"][name]
    assert "csrf_token" in schema["required"]
    assert "bg_login" in schema["properties"]["csrf_token"]["description"]
    json_schema = body["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    assert "csrf_token" not in doc["components"]["schemas"][json_schema]["properties"]


def test_a_made_up_cookie_is_not_taken_as_the_forms_token(served) -> None:
    """A cookie the browser was given by someone else (too short, odd characters) is replaced,
    and a token with characters compare_digest refuses as str is a 403, never a 500."""
    client, _url = served
    client.cookies.clear()
    client.cookies.set("bg_login", "planted")
    token = _token(client.get("/console/login").text)
    assert token != "planted" and len(token) >= 32
    odd = _form(client, "ana", "é" * 43)
    assert odd.status_code == 403 and odd.json()["error"]["code"] == "login_csrf"
