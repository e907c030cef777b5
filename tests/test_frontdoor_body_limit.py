"""The reference site reads no request body larger than it needs: its log-in form, canary
reports and WebAuthn calls are a few kilobytes, and every one of them can be sent by anyone."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from brokerguard.frontdoor.app import create_site
from brokerguard.frontdoor.guardclient import GuardClient
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
