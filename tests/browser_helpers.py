"""Debian's Chromium for the browser tests, driven by Playwright (sync API).

Chromium is not optional: without ``/usr/bin/chromium`` a browser test FAILS saying how to install
it (``.ci/run`` installs it); Playwright never downloads a browser of its own here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def require_chromium(path: Path = CHROMIUM) -> None:
    """Fail (never skip) when Debian's Chromium is not installed, saying how to install it."""
    if not path.exists():
        pytest.fail(
            f"{path} is missing: the browser tests need Debian's Chromium; install "
            "it with `apt-get install -y chromium chromium-driver` (.ci/run does this)",
            pytrace=False,
        )


@contextlib.contextmanager
def chromium_browser() -> Iterator[Any]:
    """A headless Chromium for the length of the ``with``."""
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def platform_fonts(page: Any, selector: str) -> set[str]:
    """The fonts Chromium drew the text of ``selector``'s first element with (DevTools)."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("DOM.enable")
    cdp.send("CSS.enable")
    root = cdp.send("DOM.getDocument")["root"]["nodeId"]
    node = cdp.send("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
    fonts = cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"]
    return {f["familyName"] for f in fonts}


def route_to_app(page: Any, client: Any, base: str) -> None:
    """Answer the browser's requests under ``base`` from an in-process test client, so a browser
    test needs no server."""

    def serve(route: Any) -> None:
        answer = client.get(route.request.url[len(base) :])
        route.fulfill(
            status=answer.status_code,
            body=answer.content,
            headers={"content-type": answer.headers.get("content-type", "text/html")},
        )

    page.route(f"{base}/**", serve)
