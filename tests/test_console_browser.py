"""The console's main flow in a real browser: Debian's Chromium driven by Playwright (sync API)
against ``brokerguard serve`` started by the test on a free port.

Log in, open an alert, follow it to the account timeline, release the held order, open a case,
download the monthly report. Chromium is not optional: without ``/usr/bin/chromium`` this test
FAILS saying how to install it (``.ci/run`` installs it); it never downloads a browser of its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_helpers import chromium_browser, require_chromium
from console_helpers import PASSWORD, hold_policy, load, prepare_database, simulate_run
from servers import free_port


class Answer:
    def __init__(self, status_code: int, body: bytes) -> None:
        self.status_code, self.text = status_code, body.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.text)


class Http:
    """A few plain HTTP calls to the server (the standard library is enough)."""

    def __init__(self, base: str, key: str = "") -> None:
        self.base, self.key = base, key

    def call(self, path: str, body: bytes | None = None, headers: dict | None = None) -> Answer:
        headers = {
            **({"Authorization": f"Bearer {self.key}"} if self.key else {}),
            **(headers or {}),
        }
        request = urllib.request.Request(self.base + path, data=body, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return Answer(response.status, response.read())
        except urllib.error.HTTPError as exc:
            return Answer(exc.code, exc.read())

    def get(self, path: str) -> Answer:
        return self.call(path)

    def post(self, path: str, body: bytes, headers: dict) -> Answer:
        return self.call(path, body, headers)


class Server:
    def __init__(self, base: str, key: str, held: dict[str, Any], run: Path) -> None:
        self.base, self.key, self.held, self.run = base, key, held, run


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("browser")
    events = simulate_run(tmp / "run")
    url = f"sqlite:///{tmp / 'service.db'}"
    key = prepare_database(url)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    bg = Path(sys.executable).with_name("brokerguard")
    log = (tmp / "server.log").open("wb")
    process = subprocess.Popen(
        [
            str(bg),
            "serve",
            "--port",
            str(port),
            "--database",
            url,
            "--policy",
            str(hold_policy(tmp / "hold.toml")),
        ],
        env={**os.environ, "BROKERGUARD_CONSOLE_RUN": str(tmp / "run")},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        client = Http(base)
        for _ in range(300):
            try:
                if client.get("/healthz").status_code == 200:
                    break
            except OSError:
                pass
            if process.poll() is not None:
                pytest.fail(f"brokerguard serve exited: {(tmp / 'server.log').read_text()}")
            time.sleep(0.1)
        held = load(client.post, key, events)
        client.key = key
        for _ in range(100):  # records are written a moment after the answer
            if client.get(f"/v1/alerts/{held['alert_id']}").status_code == 200:
                break
            time.sleep(0.1)
        yield Server(base, key, held, tmp / "run")
    finally:
        process.terminate()
        process.wait(30)
        log.close()


def test_a_missing_chromium_fails_loudly(tmp_path: Path) -> None:
    with pytest.raises(pytest.fail.Exception, match="apt-get install -y chromium"):
        require_chromium(tmp_path / "no-chromium")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium_browser() as chromium:
        yield chromium


def test_alert_to_release_to_case_to_monthly_report(
    server: Server, browser: Any, tmp_path: Path
) -> None:
    context = browser.new_context(accept_downloads=True, locale="ja-JP")
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        page.goto(f"{server.base}/console/login")
        page.fill("input[name=username]", "sup")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url("**/console/alerts")
        assert page.locator("h1").inner_text() == "アラート"

        held = server.held
        row = page.locator(f"#alert-{held['alert_id']}")
        assert row.count() == 1, "the held order's alert is in the queue"
        row.locator("a.alert-link").click()
        page.wait_for_url(f"**/console/alerts/{held['alert_id']}")
        page.locator("a.account-link").click()
        page.wait_for_url(f"**/console/accounts/{held['account']}")
        box = page.locator(f"#held-{held['event_id']}")
        assert box.count() == 1, "the held order is offered for release"

        box.locator("button.release_order").click()
        page.wait_for_load_state()
        assert page.locator(f"#held-{held['event_id']}").count() == 0
        assert "保留注文を承認" in page.locator("table.past").inner_text()

        page.locator("form:has(input[name=account]) button").click()
        page.wait_for_url("**/console/cases/*")
        assert held["account"] in page.locator("h1.case-title").inner_text()

        page.goto(f"{server.base}/console/reports?lang=en")
        with page.expect_download() as info:
            page.click("#monthly-csv")
        saved = tmp_path / "monthly.csv"
        info.value.save_as(saved)
        text = saved.read_bytes().decode("utf-8-sig")
        assert text.splitlines()[0].startswith("月 (month),不正アクセス件数 (unauthorized logins)")
        assert len(text.splitlines()) >= 2
    finally:
        context.close()

    client = Http(server.base, server.key)
    done = client.get(f"/v1/accounts/{held['account']}/actions").json()
    assert done[0]["action"] == "release_order" and done[0]["actor"] == "user:sup"
    cases = client.get(f"/v1/cases?account={held['account']}").json()
    assert cases and cases[0]["created_by"] == "user:sup"
