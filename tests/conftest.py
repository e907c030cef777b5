"""Fixtures shared by the reference site's end-to-end tests (tests/test_frontdoor*.py).

``guard`` is an embedded BrokerGuard service and ``smtp`` a real SMTP server (aiosmtpd), each
started once per test module; ``rig`` is a fresh site (its own SQLite file) on them for every
test (:func:`frontdoor_helpers.site_rig`). A module that needs a guard of each test's own
defines its own ``guard`` fixture, which ``rig`` then uses.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from frontdoor_helpers import SiteRig, site_rig
from servers import Inbox, smtp_server

from brokerguard.frontdoor.embedded import EmbeddedGuard


@pytest.fixture(scope="module")
def guard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedGuard]:
    embedded = EmbeddedGuard(tmp_path_factory.mktemp("guard")).start()
    try:
        yield embedded
    finally:
        embedded.stop()


@pytest.fixture(scope="module")
def smtp() -> Iterator[tuple[Inbox, int]]:
    with smtp_server() as served:
        yield served


@pytest.fixture
def rig(tmp_path: Path, smtp: tuple[Inbox, int], guard: EmbeddedGuard) -> Iterator[SiteRig]:
    inbox, port = smtp
    with site_rig(tmp_path, inbox, port, guard) as made:
        yield made
