"""``brokerguard demo-site --origin https://…``: the site's cookies are Secure when browsers reach
it over HTTPS, as an origin of ``https`` says they do."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.testclient import TestClient

from brokerguard.frontdoor.cli import demo_site


def _site(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, origin: str) -> Any:
    """The app ``demo-site`` would serve (not started: ``uvicorn.run`` only hands it over)."""
    served: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **_kw: served.setdefault("app", app))
    demo_site(
        origin=origin,
        guard_url="http://127.0.0.1:9",  # never asked: the app's lifespan does not run
        guard_key="bgk_test",
        store=tmp_path / f"site-{origin.partition(':')[0]}.db",
        seed=False,
    )
    return served["app"]


def test_an_https_origin_makes_the_cookies_secure(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The site's session and device cookies never carried Secure: ``demo-site`` had
    no way to ask for it, whatever the origin, so a broker serving it over HTTPS still let a
    browser send the session cookie over plain HTTP to the same host."""
    app = _site(monkeypatch, tmp_path, "https://www.broker.example")
    assert app.state.site.config.secure_cookies
    page = TestClient(app, base_url="https://www.broker.example").get("/login")
    device = next(
        c for c in page.headers.get_list("set-cookie") if c.startswith("__Host-bgs_device=")
    )
    assert "secure" in device.lower()
    app.state.site.close()


def test_over_https_the_cookies_carry_the_host_prefix_and_only_those_are_read(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A Secure cookie without the ``__Host-`` prefix can still be set by a sibling subdomain
    (``Domain=broker.example``) or overwritten from plain HTTP: a criminal controlling any host
    of the broker's domain could plant his own session or pending step-up in the customer's
    browser (cookie tossing). Over HTTPS the site's cookies are ``__Host-`` ones (Secure,
    Path=/, no Domain), which browsers accept only from the site itself, and it reads no other."""
    app = _site(monkeypatch, tmp_path, "https://www.broker.example")
    site = app.state.site
    client = TestClient(
        app,
        base_url="https://www.broker.example",
        follow_redirects=False,
        client=("203.0.113.7", 50000),
    )
    device = next(
        c
        for c in client.get("/login").headers.get_list("set-cookie")
        if c.startswith("__Host-bgs_device=")
    )
    attributes = [a.strip().lower() for a in device.split(";")[1:]]
    assert "secure" in attributes and "path=/" in attributes and "httponly" in attributes
    assert not [a for a in attributes if a.startswith("domain")]

    token = site.sessions.open("demo01", "203.0.113.7", "Mozilla/5.0", "web-test")
    tossed = TestClient(app, base_url="https://www.broker.example", follow_redirects=False)
    tossed.cookies.set("bgs_session", token)  # what a sibling host could set
    assert tossed.get("/settings").headers["location"] == "/login"
    client.cookies.set("__Host-bgs_session", token)
    settings = client.get("/settings")
    assert settings.status_code == 200
    csrf = re.search(r'data-csrf="([^"]+)"', settings.text).group(1)
    out = client.post("/logout", headers={"x-csrf-token": csrf})
    gone = next(
        c for c in out.headers.get_list("set-cookie") if c.startswith("__Host-bgs_session=")
    )
    assert "secure" in gone.lower() and "path=/" in gone.lower()  # else the browser keeps it
    site.close()


def test_over_https_the_language_cookie_carries_the_host_prefix_too(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The language choice was kept in a bare ``bg_lang`` (not even Secure) beside the site's
    ``__Host-`` cookies."""
    app = _site(monkeypatch, tmp_path, "https://www.broker.example")
    client = TestClient(app, base_url="https://www.broker.example")
    chosen = client.get("/login?lang=en").headers.get_list("set-cookie")
    lang = next(c for c in chosen if "bg_lang=" in c)
    assert lang.startswith("__Host-bg_lang=en;") and "secure" in lang.lower(), chosen
    assert 'lang="en"' in client.get("/login").text  # remembered
    app.state.site.close()


def test_an_http_origin_keeps_the_cookies_usable_over_http(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    app = _site(monkeypatch, tmp_path, "http://localhost:8100")
    assert not app.state.site.config.secure_cookies
    app.state.site.close()
