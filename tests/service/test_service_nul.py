"""U+0000 anywhere a request could bring it is a 422 naming where, on both databases.

PostgreSQL cannot store U+0000 in text: before the check, these were 500s there (and stored as
given on SQLite). Each case also checks that nothing was stored.
"""

from __future__ import annotations

import pytest
from conftest import Api


def _error(response) -> dict:
    assert response.status_code == 422, response.text
    return response.json()["error"]


def test_a_nul_in_a_json_body_is_refused_naming_the_field(api: Api) -> None:
    admin = api.auth("admin")
    error = _error(api.client.post("/v1/cases", json={"account": "A1\x00"}, headers=admin))
    assert error["field"] == "account" and "U+0000" in error["message"]
    error = _error(
        api.client.post("/v1/cases", json={"account": "A1", "labels": ["x\x00"]}, headers=admin)
    )
    assert error["field"] == "labels" and "U+0000" in error["message"]
    note = {"action": "lock", "note": "called\x00"}
    error = _error(api.client.post("/v1/accounts/A1/actions", json=note, headers=admin))
    assert error["field"] == "note"
    assert api.get("/v1/cases").json() == []
    assert api.get("/v1/accounts/A1/actions").json() == []


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/v1/accounts/A%00/actions", "path"),
        ("/v1/alerts?account=A%00", "account"),
        ("/v1/cases?account=%00", "account"),
    ],
)
def test_a_nul_in_the_path_or_query_is_refused_naming_it(api: Api, path: str, field: str) -> None:
    error = _error(api.get(path))
    assert error["field"] == field and "U+0000" in error["message"]


def test_a_nul_in_a_form_body_is_refused_before_any_page_reads_it(api: Api) -> None:
    answer = api.client.post(
        "/console/login",
        content=b"username=al%00ice&password=x",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    error = _error(answer)
    assert error["field"] == "username"


def test_a_nul_in_a_multipart_form_is_refused_too(api: Api) -> None:
    answer = api.client.post(
        "/console/login", files={"username": (None, "al\x00ice"), "password": (None, "x")}
    )
    assert _error(answer)["field"] == "form"


def test_a_form_without_nul_reaches_its_page(api: Api) -> None:
    answer = api.client.post(
        "/console/login",
        content=b"username=alice&password=x",
        headers={"content-type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )
    assert answer.status_code != 422  # the login page's own answer (a wrong password)


def test_a_chunked_form_over_the_body_limit_is_still_a_413(api: Api) -> None:
    """The form is read here before any page: the body limit's refusal must keep its 413."""

    def chunks():
        for _ in range(40):
            yield b"note=" + b"x" * 32768 + b"&"

    answer = api.client.post(
        "/console/login",
        content=chunks(),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 413, answer.text


@pytest.mark.parametrize(
    ("content_type", "content"),
    [
        ("Application/X-WWW-Form-Urlencoded", b"username=al%00ice&password=x"),
        ("multipart/form-data; boundary=XX; charset=utf-7", b"--XX--"),
    ],
)
def test_the_form_checks_hold_however_the_content_type_is_written(
    api: Api, content_type: str, content: bytes
) -> None:
    answer = api.client.post(
        "/console/login", content=content, headers={"content-type": content_type}
    )
    assert answer.status_code == 422, answer.text
