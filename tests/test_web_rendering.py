"""The page rendering that the analyst console and the broker's site share.

A throwaway template folder and catalogue stand in for either caller's, so what is checked is
the shared part itself: the language and its texts, escaping, the remembered choice, and that a
page's context may use any name (the console passes ``pages``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

from brokerguard.web.i18n import LANG_COOKIE
from brokerguard.web.rendering import render_page, templates


def catalogue(lang: str) -> Callable[..., str]:
    return lambda key: f"{key}@{lang}"


def test_a_page_has_its_language_texts_escaped_context_and_a_remembered_choice(
    tmp_path: Path,
) -> None:
    (tmp_path / "p.html").write_text(
        "{{ lang }} {{ other_lang }} {{ t('hello') }} {{ pages }} {{ name }} {{ note }}",
        encoding="utf-8",
    )
    folder = templates(tmp_path)

    async def page(request: Request) -> Response:
        return render_page(
            folder, catalogue, request, "p.html", status=201, samesite="strict",
            pages=3, name="n", note="<b>",
        )  # fmt: skip

    with TestClient(Starlette(routes=[Route("/", page)])) as client:
        first = client.get("/")
        assert (first.status_code, first.text) == (201, "ja en hello@ja 3 n &lt;b&gt;")
        assert "set-cookie" not in first.headers
        chosen = client.get("/?lang=en")
        assert chosen.text == "en ja hello@en 3 n &lt;b&gt;"
        cookie = chosen.headers["set-cookie"].lower()
        assert cookie.startswith(f"{LANG_COOKIE}=en;") and "samesite=strict" in cookie
        assert client.get("/").text.startswith("en ja hello@en")  # the cookie remembers
