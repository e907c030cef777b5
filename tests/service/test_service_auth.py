"""Nothing but /healthz answers without authentication; keys have scopes; console users roles."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from conftest import Api, add_user

from brokerguard.service.db import make_engine, write_transaction
from brokerguard.service.keys import revoke_key
from brokerguard.service.models import api_keys, users
from brokerguard.service.users import UserError, create_user

PASSWORD = "correct horse battery"


def routes(api: Api) -> list[tuple[str, str]]:
    """Every operation of the OpenAPI document, with path parameters filled in."""
    found = []
    for path, item in api.app.openapi()["paths"].items():
        concrete = re.sub(r"\{[^}]+\}", "1", path)
        for method in item:
            found.append((method.upper(), concrete))
    found.append(("GET", "/v1/openapi.json"))
    return found


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert error["code"] == code
    assert error["message"] and error["message_ja"]
    assert "field" in error
    return error


def test_only_healthz_is_open(api: Api) -> None:
    response = api.client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    checked = 0
    for method, path in routes(api):
        if path in ("/healthz", "/console/login"):
            continue
        response = api.client.request(method, path)
        assert_error(response, 401, "unauthorized")
        assert response.headers["www-authenticate"] == "Bearer"
        checked += 1
    assert checked >= 15


def test_bad_and_unknown_keys_are_401(api: Api) -> None:
    for header in ("Basic abc", "Bearer", "Bearer bgk_0000_nope", "Bearer not-a-key"):
        response = api.client.get("/v1/alerts", headers={"Authorization": header})
        assert_error(response, 401, "unauthorized")


def test_a_revoked_key_is_refused(api: Api, database_url: str) -> None:
    key = api.keys["read"]
    engine = make_engine(database_url)
    with write_transaction(engine) as conn:
        assert revoke_key(conn, key.split("_")[0] + "_" + key.split("_")[1])
    engine.dispose()
    assert_error(api.get("/v1/alerts"), 401, "unauthorized")


@pytest.mark.parametrize(
    ("scope", "method", "path"),
    [
        ("read", "POST", "/v1/decide"),
        ("ingest", "POST", "/v1/decide"),
        ("admin", "POST", "/v1/decide"),
        ("decide", "POST", "/v1/events"),
        ("decide", "GET", "/v1/alerts"),
        ("ingest", "GET", "/v1/cases"),
        ("read", "POST", "/v1/cases"),
        ("read", "PUT", "/v1/policy"),
        ("read", "POST", "/v1/accounts/A1/actions"),
        ("decide", "GET", "/v1/policy"),
    ],
)
def test_a_key_without_the_scope_is_403(
    make_api: Callable[..., Api], sqlite_url: str, scope: str, method: str, path: str
) -> None:
    api = make_api(sqlite_url)
    response = api.client.request(method, path, headers=api.auth(scope), json={})
    assert_error(response, 403, "forbidden")


def test_keys_are_stored_hashed(api: Api, database_url: str) -> None:
    engine = make_engine(database_url)
    with engine.connect() as conn:
        stored = " ".join(str(v) for row in conn.execute(sa.select(api_keys)) for v in row)
    engine.dispose()
    for key in api.keys.values():
        secret = key.split("_", 2)[2]
        assert secret not in stored
        assert key.split("_", 2)[1] in stored  # the id is kept in clear


def test_console_roles_and_csrf(api: Api, database_url: str) -> None:
    add_user(database_url, "ana", "analyst", PASSWORD)
    add_user(database_url, "sue", "supervisor", PASSWORD)
    engine = make_engine(database_url)
    with engine.connect() as conn:
        hashes = list(conn.scalars(sa.select(users.c.password_hash)))
    engine.dispose()
    assert all(h.startswith("$argon2id$") and PASSWORD not in h for h in hashes)

    client = api.client
    wrong = client.post("/console/login", json={"username": "ana", "password": "nope"})
    assert_error(wrong, 401, "unauthorized")
    missing = client.post("/console/login", json={"username": "ana"})
    assert assert_error(missing, 422, "invalid_input")["field"] == "password"

    login = client.post("/console/login", json={"username": "ana", "password": PASSWORD})
    assert login.status_code == 200, login.text
    who = login.json()
    assert who["role"] == "analyst" and who["csrf_token"]
    assert "bg_session" in login.headers["set-cookie"]
    assert "httponly" in login.headers["set-cookie"].lower()
    assert client.get("/v1/alerts").status_code == 200  # the cookie authenticates
    assert client.get("/v1/whoami").json()["id"] == "ana"
    act = client.post("/v1/accounts/A1/actions", json={"action": "lock"})
    assert_error(act, 403, "forbidden")  # an analyst may not lock accounts
    assert_error(client.post("/v1/decide", json={}), 403, "forbidden")

    client.cookies.clear()
    login = client.post("/console/login", json={"username": "sue", "password": PASSWORD})
    csrf = login.json()["csrf_token"]
    no_token = client.post("/v1/accounts/A1/actions", json={"action": "lock"})
    assert assert_error(no_token, 403, "forbidden")["field"] == "X-CSRF-Token"
    locked = client.post(
        "/v1/accounts/A1/actions", json={"action": "lock"}, headers={"X-CSRF-Token": csrf}
    )
    assert locked.status_code == 201, locked.text
    assert locked.json()["actor"] == "user:sue"

    out = client.post("/console/logout", headers={"X-CSRF-Token": csrf})
    assert out.status_code == 204
    client.cookies.clear()
    assert_error(client.get("/v1/alerts"), 401, "unauthorized")


def test_the_login_form_is_local_and_bilingual(api: Api) -> None:
    page = api.client.get("/console/login")
    assert page.status_code == 200
    assert "ログイン" in page.text and "Log in" in page.text
    assert "http://" not in page.text and "https://" not in page.text


def test_the_longest_username_can_log_in_and_act(api: Api, database_url: str) -> None:
    """The audit log and the records name a user ``user:NAME`` in 200 characters: a longer
    name was accepted, and on PostgreSQL its every log-in was a 500."""
    engine = make_engine(database_url)
    try:
        with pytest.raises(UserError, match="195"), write_transaction(engine) as conn:
            create_user(conn, "n" * 196, PASSWORD, "supervisor")
    finally:
        engine.dispose()
    name = "n" * 195
    add_user(database_url, name, "supervisor", PASSWORD)
    login = api.client.post("/console/login", json={"username": name, "password": PASSWORD})
    assert login.status_code == 200
    csrf = login.json()["csrf_token"]
    locked = api.client.post(
        "/v1/accounts/A1/actions", json={"action": "lock"}, headers={"X-CSRF-Token": csrf}
    )
    assert locked.status_code == 201
    assert locked.json()["actor"] == f"user:{name}"
