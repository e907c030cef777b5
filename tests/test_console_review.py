"""What a UI review of the console found, each pinned by a test that failed before its fix: the
console on a fresh SQLite file loaded with the tiny simulated run (``console_helpers``)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from console_helpers import hold_policy, load, login, prepare_database
from console_helpers import simulate_run as simulate
from fastapi.testclient import TestClient

from brokerguard.service.app import create_app


class World:
    def __init__(self, client: TestClient, key: str, held: dict[str, Any]) -> None:
        self.client, self.key, self.held = client, key, held
        self.service = client.app.state.service  # type: ignore[attr-defined]

    def settle(self) -> None:
        self.service.tick()
        assert self.service.recorder.wait_idle(10)

    def as_user(self, username: str) -> str:
        self.client.cookies.clear()
        return login(self.client, username)

    def page(self, path: str, lang: str = "ja") -> str:
        answer = self.client.get(path, params={"lang": lang})
        assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
        return answer.text


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("console-review")
    events = simulate(tmp / "run")
    url = f"sqlite:///{tmp / 'service.db'}"
    key = prepare_database(url)
    app = create_app(url, hold_policy(tmp / "hold.toml"), console_run=tmp / "run")
    with TestClient(app) as client:
        held = load(lambda p, b, h: client.post(p, content=b, headers=h), key, events)
        w = World(client, key, held)
        w.settle()
        w.as_user("sup")
        yield w


def test_the_served_japanese_font_comes_before_system_ui(world: World) -> None:
    """The console's font stack put IPAex Gothic (served by the console) last, after system-ui
    and the system CJK fonts: Japanese was drawn by whatever partial font the machine had, in
    mixed shapes, or as boxes. It is now first, for Japanese characters only."""
    css = world.client.get("/console/static/console.css").text
    face = re.search(r"@font-face\s*\{([^}]*)\}", css)
    assert face is not None and "unicode-range" in face.group(1)
    body = re.search(r"body\s*\{[^}]*font:\s*[^,;]*?\s*\"([^\"]+)\"\s*,\s*system-ui", css)
    assert body is not None and body.group(1) == "BG IPAexGothic", "served font first"
