"""The reference site without a guard: what it reads of a request, and what its security page
says, checked on the app alone (its lifespan is not run, so nothing asks the guard)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from brokerguard.frontdoor._web import SESSION_COOKIE
from brokerguard.frontdoor.app import create_site
from brokerguard.frontdoor.guardclient import GuardClient
from brokerguard.frontdoor.sessions import LoginRecord
from brokerguard.frontdoor.site import MAX_BODY, SiteConfig


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    config = SiteConfig(
        origin="http://localhost:8100", rp_id="localhost", store_path=tmp_path / "site.db"
    )
    app = create_site(config, GuardClient("http://127.0.0.1:9", "bgk_test"))
    yield TestClient(app, client=("203.0.113.7", 50000))  # no lifespan: the guard is not asked
    app.state.site.close()


def test_a_body_over_the_limit_is_refused_unread(client: TestClient) -> None:
    """``/canary`` read any body whole into memory before looking at its first 4 KiB, and the
    log-in form too: anyone could make the site hold gigabytes. Now a body over the limit is
    refused (413) as it arrives, announced or sent in chunks."""
    big = b"x" * (MAX_BODY + 1)
    for path in ("/canary", "/login"):
        announced = client.post(path, content=big)
        assert announced.status_code == 413, (path, announced.status_code)

    def chunks() -> Iterator[bytes]:
        for _ in range(MAX_BODY // 1024 + 2):
            yield b"x" * 1024

    streamed = client.post("/canary", content=chunks())
    assert streamed.status_code == 413
    small = client.post("/canary", content=b'{"o": "aHR0cDovL2V2aWwuZXhhbXBsZQ=="}')
    assert small.status_code == 204  # a report (the guard being away changes nothing here)


def test_the_security_page_names_a_passkey_sign_in_in_the_readers_language(
    client: TestClient,
) -> None:
    """The recent sign-ins named the password factor in the page's language and a passkey
    always in English ("passkey" on the Japanese page)."""
    site = client.app.state.site  # type: ignore[attr-defined]
    token = site.sessions.open("demo01", "203.0.113.7", "Mozilla/5.0", "web-test")
    for factor in ("passkey", "password"):
        record = LoginRecord(
            ts=datetime.now(UTC),
            ip="203.0.113.7",
            user_agent="Mozilla/5.0",
            factor=factor,
            result="allowed",
        )
        site.sessions.note_login("demo01", record)
    client.cookies.set(SESSION_COOKIE, token)
    for lang, words in (("ja", ("パスワード", "パスキー")), ("en", ("Password", "Passkey"))):
        page = client.get(f"/settings?lang={lang}")
        assert page.status_code == 200
        rows = re.findall(r'<tr class="login-allowed">(.*?)</tr>', page.text)
        factors = [re.findall(r"<td>([^<]*)</td>", row)[2] for row in rows]
        assert factors == list(words), (lang, factors)


def _language_link(page: str) -> str:
    found = re.search(r'<a href="([^"]*)" class="lang">', page)
    assert found is not None
    return found.group(1).replace("&amp;", "&")


def test_the_language_link_keeps_the_page_it_is_on(client: TestClient) -> None:
    """The language link was ``?lang=en`` alone, dropping the page's own query: on the unlock
    page (``/unlock?account=…``) it led to a page without the account the customer typed."""
    site = client.app.state.site  # type: ignore[attr-defined]
    site.lockout.lock("demo01", reason="customer", by="customer")
    page = client.get("/unlock?account=demo01&lang=ja").text
    assert 'id="unlock-account"' in page and 'value="demo01"' in page
    link = _language_link(page)
    assert link.startswith("?")
    english = client.get("/unlock" + link).text
    assert 'lang="en"' in english and 'value="demo01"' in english, link


def _families(css: str, selector: str) -> list[str]:
    rule = re.search(r"(?:^|[\s}])" + re.escape(selector) + r"\s*\{([^}]*)\}", css)
    assert rule is not None, selector
    stack = re.search(r"font(?:-family)?\s*:\s*([^;]*)", rule.group(1))
    assert stack is not None, selector
    return [f.strip().strip('"') for f in stack.group(1).split(",")]


def test_japanese_text_is_drawn_in_the_served_japanese_font(client: TestClient) -> None:
    """The stylesheet put system-ui and system CJK fonts before the served IPAex Gothic: a
    machine with a partial CJK font mixed glyph shapes, one with none drew headings and buttons
    (which do not inherit the body's font) as boxes. The served font now comes first, limited by
    ``unicode-range`` to Japanese, and form controls inherit the body's font."""
    css = client.get("/static/site.css").text
    face = re.search(r"@font-face\s*\{([^}]*)\}", css)
    assert face is not None and "/console/fonts/ipaexg.ttf" in face.group(1)
    served = re.search(r'font-family:\s*"([^"]+)"', face.group(1)).group(1)  # type: ignore[union-attr]
    assert "U+3000-30FF" in face.group(1) and "U+4E00-9FFF" in face.group(1)  # kana, kanji
    stack = _families(css, "body")
    assert stack[0] == served, stack
    assert re.search(r"button[^{]*\{[^}]*font:\s*inherit", css), "buttons inherit the font"
    assert client.get("/console/fonts/ipaexg.ttf").status_code == 200


def test_a_missing_page_is_a_page_for_a_browser_and_405_names_every_method(
    client: TestClient,
) -> None:
    """A browser that opened a path the site has no page for got ``{"detail":"Not Found"}``;
    ``PUT /login`` answered 405 with ``Allow: GET`` though the path takes the form's POST."""
    html = {"accept": "text/html,application/xhtml+xml"}
    for lang, words in (("ja", "見つかりませんでした"), ("en", "no such page")):
        page = client.get("/no-such-page", params={"lang": lang}, headers=html)
        assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
        assert words in page.text and 'href="/"' in page.text
    script = client.get("/no-such-page")
    assert script.status_code == 404 and script.json() == {"error": "not_found"}
    put = client.put("/login", headers=html)
    assert put.status_code == 405 and put.headers["content-type"].startswith("text/html")
    assert {m.strip() for m in put.headers["allow"].split(",")} >= {"GET", "POST"}
    assert {m.strip() for m in client.put("/login").headers["allow"].split(",")} >= {"GET", "POST"}


def test_an_order_form_with_a_bad_field_comes_back_filled_in_saying_what_is_wrong(
    client: TestClient,
) -> None:
    """A limit price out of range sent the customer to ``/order?invalid=1``: an empty form that
    said nothing. The form comes back (400) with what was typed and the reason, in the reader's
    language, the field marked."""
    site = client.app.state.site  # type: ignore[attr-defined]
    client.cookies.set(SESSION_COOKIE, site.sessions.open("demo01", "203.0.113.7", "M", "g"))
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/order").text).group(1)  # type: ignore[union-attr]
    form = {"csrf_token": csrf, "symbol": "7203", "side": "sell", "quantity": "5"}
    for lang, words in (("ja", "指値は"), ("en", "Limit price:")):
        answer = client.post(
            f"/order?lang={lang}", data={**form, "limit_price": "999999999"}, follow_redirects=False
        )
        assert answer.status_code == 400 and words in answer.text
        assert 'value="5"' in answer.text and 'value="999999999"' in answer.text
        assert re.search(r'name="limit_price"[^>]*aria-invalid="true"', answer.text)
        assert re.search(r'<option value="sell" selected>', answer.text)
    answer = client.post("/order", data={**form, "quantity": "many"}, follow_redirects=False)
    assert answer.status_code == 400 and 'value="many"' in answer.text
    assert re.search(r'name="quantity"[^>]*aria-invalid="true"', answer.text)


def _signed_in(client: TestClient) -> str:
    """A session of demo01 in ``client``; returns its CSRF token."""
    site = client.app.state.site  # type: ignore[attr-defined]
    client.cookies.set(SESSION_COOKIE, site.sessions.open("demo01", "127.0.0.1", UA, "g"))
    found = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/settings").text)
    assert found is not None
    return found.group(1)


UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0 Safari/537.36"
)


def test_the_security_page_has_no_english_words_in_japanese(client: TestClient) -> None:
    """Sign-ins from an address without a country or a named network said ``??`` and
    ``private``, and every device ``(pc)``, on the Japanese page."""
    site = client.app.state.site  # type: ignore[attr-defined]
    record = LoginRecord(
        ts=datetime.now(UTC), ip="127.0.0.1", user_agent=UA, factor="password", result="allowed"
    )
    site.sessions.note_login("demo01", record)
    _signed_in(client)
    page = client.get("/settings?lang=ja").text
    rows = re.findall(r'<tr class="login-allowed">(.*?)</tr>', page, re.S)
    rows += re.findall(r'<tr id="session-[^"]*">(.*?)</tr>', page, re.S)
    assert len(rows) == 2
    for row in rows:
        cells = " ".join(re.findall(r"<td>([^<]*)", row))
        assert "??" not in cells and "private" not in cells and "(pc)" not in cells, cells
        assert "不明" in cells and "社内・家庭内ネットワーク" in cells and "パソコン" in cells
    english = client.get("/settings?lang=en").text
    assert "private network" in english and "(computer)" in english


def test_a_bad_passkey_name_is_said_next_to_its_field(client: TestClient) -> None:
    """Renaming a passkey to nothing (spaces) put a bare "Error" at the top of the page, far
    from the name's field and not saying why; the reason now stands at that passkey's field."""
    from brokerguard.auth.passkeys import _SEP, Passkey

    site = client.app.state.site  # type: ignore[attr-defined]
    key = Passkey(
        credential_id="cred1",
        account="demo01",
        name="phone",
        public_key=b"x",
        sign_count=0,
        created=datetime.now(UTC),
    )
    site.passkeys._passkeys.put("demo01" + _SEP + "cred1", key)
    csrf = _signed_in(client)
    answer = client.post(
        "/settings/passkeys/cred1/rename",
        data={"csrf_token": csrf, "name": "   "},
        follow_redirects=False,
    )
    page = client.get(answer.headers["location"].split("#")[0] + "&lang=en").text
    row = re.search(r'<tr class="passkey-row" id="pk-cred1">(.*?)</tr>', page, re.S)
    assert row is not None and "1 to 64 characters" in row.group(1)
    assert re.search(r'name="name"[^>]*aria-invalid="true"', row.group(1))
    assert 'id="error"' not in page  # not a bare error at the top
    japanese = client.get(answer.headers["location"].split("#")[0] + "&lang=ja").text
    assert "1〜64文字" in japanese


def test_an_order_beyond_the_customers_shares_or_cash_is_refused_with_the_form(
    client: TestClient,
) -> None:
    """A sale of shares never held was "filled" and a purchase beyond the cash went through:
    the portfolio then showed ¥-496,999,998 in cash. The form comes back saying why, with what
    was typed, and nothing is placed."""
    site = client.app.state.site  # type: ignore[attr-defined]
    site.add_customer(
        "poor01", "pw-poor-0001", name="P", email="p@example.jp", cash=1000.0, positions={}
    )
    client.cookies.set(SESSION_COOKIE, site.sessions.open("poor01", "203.0.113.7", "M", "g"))
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/order").text).group(1)  # type: ignore[union-attr]
    for side, words in (
        ("sell", "more shares than you hold"),
        ("buy", "costs more than your cash"),
    ):
        form = {"csrf_token": csrf, "symbol": "7203", "side": side, "quantity": "5"}
        answer = client.post("/order?lang=en", data=form, follow_redirects=False)
        assert answer.status_code == 400 and words in answer.text, side
        assert 'value="5"' in answer.text
    assert site.book.orders("poor01") == []
    assert site.book.customer("poor01").cash == 1000.0


def test_the_portfolio_formats_prices_and_says_its_times_are_japan_time(
    client: TestClient,
) -> None:
    """The order history showed a limit price as ``99999999.5`` and a market order's as ``-``,
    and neither page said its times are Japan time (the console's are UTC)."""
    from brokerguard.frontdoor.book import PlacedOrder

    site = client.app.state.site  # type: ignore[attr-defined]
    site.add_customer("rich01", "pw-rich-0001", name="R", email="r@example.jp")
    for i, price in enumerate((1234567.5, None)):
        site.book.record(
            PlacedOrder(
                id=f"o{i}",
                account="rich01",
                ts=datetime.now(UTC),
                symbol="7203",
                side="buy",
                quantity=1500,
                limit_price=price,
                status="placed",
            )
        )
    client.cookies.set(SESSION_COOKIE, site.sessions.open("rich01", "203.0.113.7", "M", "g"))
    ja = client.get("/portfolio?lang=ja").text
    assert "¥1,234,567.5" in ja and "成行" in ja and ">1,500<" in ja and "日時（日本時間）" in ja
    en = client.get("/portfolio?lang=en").text
    assert "market" in en and "Time (Japan time)" in en
    assert "（日本時間）" in client.get("/settings?lang=ja").text


def test_the_site_has_an_icon_of_its_own(client: TestClient) -> None:
    """No page named an icon: the browser asked for ``/favicon.ico`` (a 404) and the tab of
    the broker's site was blank — the one place a customer glances to tell sites apart."""
    page = client.get("/login").text
    icon = re.search(r'<link rel="icon" href="([^"]+)"', page)
    assert icon is not None
    answer = client.get(icon.group(1))
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("image/svg")


def test_japanese_headings_and_buttons_are_drawn_in_the_served_font(
    client: TestClient, browser: Any
) -> None:
    """In a browser without a Japanese system font the log-in page drew its buttons (which did
    not inherit the page's font) as boxes: their Japanese came from no Japanese font at all.
    Now headings and buttons are drawn in IPAex Gothic served by the site only."""
    from browser_helpers import platform_fonts, route_to_app

    base = "http://site.test"

    page = browser.new_page()
    route_to_app(page, client, base)
    page.goto(f"{base}/login?lang=ja")
    page.evaluate("document.fonts.ready")
    for selector in ("h1", "#password-login button", "#passkey-login"):  # all Japanese
        fonts = platform_fonts(page, selector)
        assert fonts == {"IPAexGothic"}, (selector, fonts)


def test_on_a_phone_the_security_page_keeps_words_whole(client: TestClient, browser: Any) -> None:
    """At a phone's 390 px the security page squeezed its tables until each cell held a
    character a line (パ/ス/ワ/ー/ド, 2026-/11-/29) and the header broke デモ|証券. The tables
    scroll sideways in their own box instead; the page itself does not."""
    from browser_helpers import route_to_app

    site = client.app.state.site  # type: ignore[attr-defined]
    for _ in range(3):
        record = LoginRecord(
            ts=datetime.now(UTC), ip="127.0.0.1", user_agent=UA, factor="password", result="allowed"
        )
        site.sessions.note_login("demo01", record)
    _signed_in(client)
    base = "http://site.test"

    lines = """el => { const r = document.createRange(); r.selectNodeContents(el);
      return new Set([...r.getClientRects()].filter(x => x.width > 0)
                     .map(x => Math.round(x.top))).size; }"""
    page = browser.new_page(viewport={"width": 390, "height": 800})
    route_to_app(page, client, base)
    page.goto(f"{base}/settings?lang=ja")
    page.evaluate("document.fonts.ready")
    broken = [
        cell.inner_text()
        for cell in page.query_selector_all("#logins td, #logins th, header a, .brand")
        if cell.evaluate(lines) > 1
    ]
    assert not broken, broken[:6]
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
