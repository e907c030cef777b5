"""``brokerguard demo-site --origin https://…``: the site's cookies are Secure when browsers reach
it over HTTPS, as an origin of ``https`` says they do."""

from __future__ import annotations

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
    device = next(c for c in page.headers.get_list("set-cookie") if c.startswith("bgs_device="))
    assert "secure" in device.lower()
    app.state.site.close()


def test_an_http_origin_keeps_the_cookies_usable_over_http(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    app = _site(monkeypatch, tmp_path, "http://localhost:8100")
    assert not app.state.site.config.secure_cookies
    app.state.site.close()
