"""Fixtures shared by the reference site's end-to-end tests (tests/test_frontdoor*.py), and
cheap Argon2 for the modules that ask for it (:func:`cheap_argon2`), and one Chromium per
module for the browser tests that ask for ``browser`` (:func:`chromium`).

``guard`` is an embedded BrokerGuard service and ``smtp`` a real SMTP server (aiosmtpd), each
started once per test module; ``rig`` is a fresh site (its own SQLite file) on them for every
test (:func:`frontdoor_helpers.site_rig`). A module that needs a guard of each test's own
defines its own ``guard`` fixture, which ``rig`` then uses.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from browser_helpers import chromium_browser
from frontdoor_helpers import SiteRig, site_rig
from servers import Inbox, smtp_server

from brokerguard.auth import passwords
from brokerguard.frontdoor.embedded import EmbeddedGuard
from brokerguard.service import users

CHEAP_ARGON2 = {"time_cost": 1, "memory_cost": 1024, "parallelism": 1}
"""Argon2id at its lowest cost, for the tests (as tests/test_passwords.py's ``CHEAP``)."""


class CheapPasswordHasher(PasswordHasher):
    """argon2's ``PasswordHasher`` with :data:`CHEAP_ARGON2` for the parameters not given."""

    def __init__(self, **given: object) -> None:
        super().__init__(**{**CHEAP_ARGON2, **given})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def cheap_argon2() -> Iterator[None]:
    """Console users' passwords (``service.users``) and the site's customers' (``Passwords``
    without a ``hasher``) hashed in this process with the lowest Argon2 cost, not the
    production one (64 MiB and 3 passes on 4 lanes: 0.2 s a hash or a check here, a hundred
    and more of them in the console, service and site tests). Same algorithm, same code paths,
    same answers; the production parameters are pinned by
    tests/test_passwords.py::test_the_production_argon2_parameters_are_argon2s_defaults.

    A module asks for it (``pytestmark = pytest.mark.usefixtures("cheap_argon2")``) only when
    every hash it makes is checked in this process: a ``brokerguard`` subprocess keeps the
    production cost, so a cheap hash checked there counts as one of older parameters and is
    rewritten at the login (a write the test never made before), and a production hash checked
    here likewise."""
    mp = pytest.MonkeyPatch()
    cheap = CheapPasswordHasher()
    mp.setattr(users, "_hasher", cheap)
    mp.setattr(users, "_DUMMY", cheap.hash("not a password of anyone's"))
    mp.setattr(passwords, "PasswordHasher", CheapPasswordHasher)
    try:
        yield
    finally:
        mp.undo()


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


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """One headless Chromium for the module's browser tests: launching one costs seconds."""
    with chromium_browser() as launched:
        yield launched


@pytest.fixture
def browser(chromium: Any) -> Iterator[Any]:
    """The module's Chromium; the pages a test opened (each in a context of its own) are closed
    after it, so no test sees another's."""
    yield chromium
    for context in chromium.contexts:
        context.close()
