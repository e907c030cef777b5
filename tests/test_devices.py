"""Customer devices and attacker UAs: realistic shares, reproducible, and parseable."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from brokerguard.sim.devices import (
    DeviceProfile,
    attacker_user_agents,
    parse_user_agent,
    random_device,
)


def _devices(seed: int, n: int, kind: str | None = None) -> list[DeviceProfile]:
    rng = random.Random(seed)
    return [random_device(rng, kind) for _ in range(n)]


def test_parser_round_trips_every_generated_profile() -> None:
    for d in _devices(1, 5000):
        assert parse_user_agent(d.user_agent) == (d.browser, d.os, d.kind), d


@pytest.mark.parametrize("kind", ["pc", "phone", "tablet"])
def test_kind_restricts_the_draw(kind: str) -> None:
    devices = _devices(2, 500, kind)
    assert {d.kind for d in devices} == {kind}
    assert all(parse_user_agent(d.user_agent)[2] == kind for d in devices)


def test_unknown_kind_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown device kind"):
        random_device(random.Random(0), "watch")


def test_shares_look_japanese() -> None:
    n = 20_000
    devices = _devices(3, n)
    by = Counter((d.os, d.browser) for d in devices)
    kinds = Counter(d.kind for d in devices)
    assert by[("iOS", "Safari")] / n == pytest.approx(0.30, abs=0.02)
    assert by.most_common(1)[0][0] == ("iOS", "Safari")
    assert by[("Windows", "Chrome")] > by[("Windows", "Edge")] > by[("macOS", "Safari")]
    ios = sum(c for (os, _), c in by.items() if os == "iOS")
    android_phone = sum(1 for d in devices if d.os == "Android" and d.kind == "phone")
    assert 1.5 < ios / android_phone < 2.5  # iPhone has about two thirds of JP smartphones
    assert 0.45 < kinds["phone"] / n < 0.60
    assert kinds["tablet"] / n < 0.08


def test_hundreds_of_distinct_user_agents() -> None:
    assert len({d.user_agent for d in _devices(4, 20_000)}) >= 300


def test_devices_are_reproducible() -> None:
    assert _devices(5, 300) == _devices(5, 300)
    assert _devices(5, 300) != _devices(6, 300)


def test_generated_versions_are_2025_versions() -> None:
    for d in _devices(7, 3000):
        ua = d.user_agent
        if "Chrome/" in ua:
            major = int(ua.split("Chrome/")[1].split(".")[0])
            assert 131 <= major <= 136, ua
        if "Firefox/" in ua:
            assert 130 <= int(ua.split("Firefox/")[1].split(".")[0]) <= 139, ua
        if "iPhone OS " in ua or "CPU OS " in ua:
            assert ua.split(" OS ")[1][:3] in ("17_", "18_"), ua
        if "Android " in ua and "Android 10; K" not in ua:
            assert int(ua.split("Android ")[1].split(";")[0]) in (13, 14, 15), ua


REAL_UAS = [
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/134.0.0.0 Safari/537.36",
        ("Chrome", "Windows", "pc"),
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/134.0.0.0 Safari/537.36 Edg/134.0.3124.85",
        ("Edge", "Windows", "pc"),
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/70.0.3538.102 Safari/537.36 Edge/18.19582",
        ("Edge", "Windows", "pc"),
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Safari/537.36 OPR/116.0.0.0",
        ("Opera", "Windows", "pc"),
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/18.3.1 Safari/605.1.15",
        ("Safari", "macOS", "pc"),
    ),
    (
        "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:136.0) Gecko/20100101 Firefox/136.0",
        ("Firefox", "Linux", "pc"),
    ),
    (
        "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/134.0.0.0 Safari/537.36",
        ("Chrome", "ChromeOS", "pc"),
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_3_2 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/18.3 Mobile/15E148 Safari/604.1",
        ("Safari", "iOS", "phone"),
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_3 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) FxiOS/135.0 Mobile/15E148 Safari/605.1.15",
        ("Firefox", "iOS", "phone"),
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5_1 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Mobile/15E148 Safari Line/14.9.0",
        ("LINE", "iOS", "phone"),
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Mobile/15E148",
        ("iOS WebView", "iOS", "phone"),
    ),
    (
        "Mozilla/5.0 (iPad; CPU OS 17_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "CriOS/134.0.6998.99 Mobile/15E148 Safari/604.1",
        ("Chrome", "iPadOS", "tablet"),
    ),
    (
        "Mozilla/5.0 (Linux; Android 13; Pixel 7) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/116.0.0.0 Mobile Safari/537.36",
        ("Chrome", "Android", "phone"),
    ),
    (
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
        "SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36",
        ("Samsung Internet", "Android", "phone"),
    ),
    (
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/134.0.0.0 Mobile Safari/537.36 EdgA/134.0.0.0",
        ("Edge", "Android", "phone"),
    ),
    (
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/134.0.0.0 Safari/537.36",
        ("Chrome", "Android", "tablet"),
    ),
    (
        "Mozilla/5.0 (Android 14; Tablet; rv:135.0) Gecko/135.0 Firefox/135.0",
        ("Firefox", "Android", "tablet"),
    ),
    (
        "Mozilla/5.0 (Linux; Android 14; SO-51D Build/67.1.A.2.118; wv) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Version/4.0 Chrome/133.0.6943.137 Mobile Safari/537.36",
        ("Android WebView", "Android", "phone"),
    ),
    (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "HeadlessChrome/120.0.6099.109 Safari/537.36",
        ("Headless Chrome", "Linux", "pc"),
    ),
    ("python-requests/2.32.3", ("python-requests", "Other", "other")),
    ("okhttp/4.12.0", ("okhttp", "Other", "other")),
    (
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        ("Other", "Other", "other"),
    ),
    ("", ("Other", "Other", "other")),
]


@pytest.mark.parametrize(("ua", "expected"), REAL_UAS)
def test_parser_on_real_user_agents(ua: str, expected: tuple[str, str, str]) -> None:
    assert parse_user_agent(ua) == expected


def test_attacker_user_agents() -> None:
    n = 5000
    uas = attacker_user_agents(random.Random(8), n)
    assert len(uas) == n
    assert uas == attacker_user_agents(random.Random(8), n)
    parsed = [parse_user_agent(ua) for ua in uas]
    browsers = Counter(b for b, _, _ in parsed)
    libraries = sum(browsers[b] for b in ("python-requests", "okhttp", "curl", "Go-http-client"))
    assert 0.04 < libraries / n < 0.13  # present, but at low weight
    assert 0.10 < browsers["Headless Chrome"] / n < 0.20
    assert sum(1 for _, os, _ in parsed if os == "Linux") / n > 0.2  # rare among customers
    old_chrome = sum(
        1 for ua in uas if "Chrome/" in ua and int(ua.split("Chrome/")[1].split(".")[0]) < 131
    )
    assert old_chrome / n > 0.3
    assert {k for _, _, k in parsed} == {"pc", "phone", "other"}


def test_attacker_user_agents_edge_cases() -> None:
    assert attacker_user_agents(random.Random(0), 0) == []
    with pytest.raises(ValueError):
        attacker_user_agents(random.Random(0), -1)
