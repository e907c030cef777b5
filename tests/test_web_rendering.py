"""The page rendering that the analyst console and the broker's site share.

A throwaway template folder and catalogue stand in for either caller's, so what is checked is
the shared part itself: the language and its texts, escaping, the remembered choice, and that a
page's context may use any name (the console passes ``pages``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

from brokerguard.cookies import CookiePolicy
from brokerguard.web.i18n import LANG_COOKIE
from brokerguard.web.rendering import render_page, templates


def catalogue(lang: str) -> Callable[..., str]:
    return lambda key: f"{key}@{lang}"


def _app(page: Callable[[Request], Awaitable[Response]], cookies: CookiePolicy) -> Starlette:
    app = Starlette(routes=[Route("/", page)])
    app.state.cookies = cookies  # as create_site and create_app set theirs
    return app


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
            folder, catalogue, request, "p.html", status=201, pages=3, name="n", note="<b>",
        )  # fmt: skip

    with TestClient(_app(page, CookiePolicy(secure=False, samesite="strict"))) as client:
        first = client.get("/")
        assert (first.status_code, first.text) == (201, "ja en hello@ja 3 n &lt;b&gt;")
        assert "set-cookie" not in first.headers
        chosen = client.get("/?lang=en")
        assert chosen.text == "en ja hello@en 3 n &lt;b&gt;"
        cookie = chosen.headers["set-cookie"].lower()
        assert cookie.startswith(f"{LANG_COOKIE}=en;") and "samesite=strict" in cookie
        assert client.get("/").text.startswith("en ja hello@en")  # the cookie remembers


def test_behind_https_the_language_cookie_carries_the_host_prefix_like_the_others(
    tmp_path: Path,
) -> None:
    """The language cookie was set bare (``bg_lang``, no Secure) where every other cookie of
    the site and the console is a ``__Host-`` one behind HTTPS: any sibling host or plain-HTTP
    answer could set it. Now it is set by the app's cookie policy too. A bare ``bg_lang`` chosen
    before is still read until the reader chooses again, and is deleted then."""
    (tmp_path / "p.html").write_text("{{ lang }}", encoding="utf-8")
    folder = templates(tmp_path)

    async def page(request: Request) -> Response:
        return render_page(folder, catalogue, request, "p.html")

    app = _app(page, CookiePolicy(secure=True, samesite="lax"))
    with TestClient(app, base_url="https://www.broker.example") as client:
        chosen = client.get("/?lang=en")
        (cookie,) = chosen.headers.get_list("set-cookie")
        first, *rest = [part.strip() for part in cookie.split(";")]
        assert first == "__Host-bg_lang=en"
        attributes = {part.lower() for part in rest}
        assert {"secure", "httponly", "path=/", "samesite=lax"} <= attributes
        assert not [a for a in attributes if a.startswith("domain")]
        assert client.get("/").text == "en"  # remembered under the prefixed name

    with TestClient(app, base_url="https://www.broker.example") as before:
        before.cookies.set(LANG_COOKIE, "en")  # chosen before the prefix
        assert before.get("/").text == "en"
        again = before.get("/?lang=ja").headers.get_list("set-cookie")
        assert sorted(c.split(";")[0] for c in again) == ["__Host-bg_lang=ja", 'bg_lang=""']
        assert any(c.startswith("bg_lang=") and "max-age=0" in c.lower() for c in again)
        assert before.get("/").text == "ja"
