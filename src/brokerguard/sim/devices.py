"""Devices and user-agent strings of Japanese retail investors (2025) and of their attackers.

Risk-based authentication compares a login's user agent -> browser -> OS -> device with the
account's history, so the simulator must produce the UA strings real browsers send, including
their blind spots:

- Chrome (since 2023) and Edge (since 119) send a *reduced* UA: the OS part is frozen
  ("Windows NT 10.0; Win64; x64", "Macintosh; Intel Mac OS X 10_15_7", "Linux; Android 10; K")
  and the version is "<major>.0.0.0". Many customers therefore share one string; only the
  major version moves.
- iPadOS Safari asks for desktop sites by default and then sends the Mac UA. Such iPads are part
  of the Mac Safari share here; "tablet" profiles are the tablets whose UA says so.
- In-app browsers (Android WebView, e.g. a link opened from a mail or messaging app) are not
  reduced and carry the real Android version and the handset model.

A profile describes what the server can observe, so ``parse_user_agent(p.user_agent)`` gives back
``(p.browser, p.os, p.kind)`` for every generated profile.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Literal, NamedTuple

from brokerguard.useragent import parse_user_agent

__all__ = [
    "DeviceKind",
    "DeviceProfile",
    "attacker_user_agents",
    "parse_user_agent",
    "random_device",
]

DeviceKind = Literal["pc", "phone", "tablet"]


class DeviceProfile(NamedTuple):
    """A device as a server sees it: its kind, OS and browser family, and the UA it sends."""

    kind: DeviceKind
    os: str
    browser: str
    user_agent: str


# --- versions seen in 2025 (oldest first; later entries are drawn more often) ---------------
# Full Chrome builds appear only where the UA is not reduced (CriOS, WebView, headless).
_CHROME_BUILDS = (
    "131.0.6778.85", "131.0.6778.139", "131.0.6778.204", "132.0.6834.83", "132.0.6834.110",
    "132.0.6834.160", "133.0.6943.53", "133.0.6943.98", "133.0.6943.141", "134.0.6998.35",
    "134.0.6998.88", "134.0.6998.117", "134.0.6998.165", "135.0.7049.42", "135.0.7049.84",
    "135.0.7049.114", "136.0.7103.48", "136.0.7103.92", "136.0.7103.113",
)  # fmt: skip
_FIREFOX_MAJORS = (133, 134, 135, 136, 137, 138)
_IOS_VERSIONS = (
    "17_5_1", "17_6_1", "17_7", "17_7_2", "18_0_1", "18_1", "18_1_1", "18_2", "18_2_1", "18_3",
    "18_3_1", "18_3_2", "18_4", "18_4_1", "18_5",
)  # fmt: skip
_MAC_SAFARI_VERSIONS = (
    "17.4.1", "17.5", "17.6", "18.0", "18.0.1", "18.1", "18.1.1", "18.2", "18.3", "18.3.1",
    "18.4", "18.5",
)  # fmt: skip
_ANDROID_BUILDS = {13: "TQ3A.230901.001", 14: "UP1A.231005.007", 15: "AP3A.240905.015.A2"}
# Handsets sold in Japan (Xperia, AQUOS, Galaxy carrier and SIM-free model numbers, Pixel),
# with the Android each launched with, so no handset reports a version it never had.
_ANDROID_MODELS: dict[str, int] = {
    "SO-51D": 13, "XQ-DC44": 13, "SOG12": 13, "SH-54D": 13, "SHG11": 13, "SH-M26": 13,
    "SH-53C": 13, "SC-51E": 14, "SCG25": 14, "SC-53D": 13, "Pixel 8": 14, "Pixel 8a": 14,
    "Pixel 9": 14, "Pixel 7a": 13, "A302SH": 13, "F-51C": 13,
}  # fmt: skip


def _recent(rng: random.Random, versions: Sequence[str]) -> str:
    """A version, later ones likelier: people update, but slowly."""
    return rng.choices(versions, weights=range(1, len(versions) + 1))[0]


def _major(build: str) -> str:
    return build.split(".", 1)[0]


def _safari_version(ios: str) -> str:
    return ".".join(ios.split("_")[:2])


def _android(rng: random.Random, oldest: int = 13) -> int:
    versions = [v for v in (13, 14, 15) if v >= oldest]
    return rng.choices(versions, weights=[{13: 2, 14: 4, 15: 3}[v] for v in versions])[0]


_WIN = "Windows NT 10.0; Win64; x64"
_MAC = "Macintosh; Intel Mac OS X 10_15_7"
_WEBKIT_CHROME = "AppleWebKit/537.36 (KHTML, like Gecko)"
_WEBKIT_APPLE = "AppleWebKit/605.1.15 (KHTML, like Gecko)"


def _iphone_safari(rng: random.Random) -> str:
    ios = _recent(rng, _IOS_VERSIONS)
    return (
        f"Mozilla/5.0 (iPhone; CPU iPhone OS {ios} like Mac OS X) {_WEBKIT_APPLE} "
        f"Version/{_safari_version(ios)} Mobile/15E148 Safari/604.1"
    )


def _iphone_chrome(rng: random.Random) -> str:
    ios, build = _recent(rng, _IOS_VERSIONS), _recent(rng, _CHROME_BUILDS)
    return (
        f"Mozilla/5.0 (iPhone; CPU iPhone OS {ios} like Mac OS X) {_WEBKIT_APPLE} "
        f"CriOS/{build} Mobile/15E148 Safari/604.1"
    )


def _ipad_safari(rng: random.Random) -> str:
    ios = _recent(rng, _IOS_VERSIONS)
    return (
        f"Mozilla/5.0 (iPad; CPU OS {ios} like Mac OS X) {_WEBKIT_APPLE} "
        f"Version/{_safari_version(ios)} Mobile/15E148 Safari/604.1"
    )


def _android_chrome(rng: random.Random, mobile: bool = True) -> str:
    major = _major(_recent(rng, _CHROME_BUILDS))
    tail = "Mobile Safari/537.36" if mobile else "Safari/537.36"
    return f"Mozilla/5.0 (Linux; Android 10; K) {_WEBKIT_CHROME} Chrome/{major}.0.0.0 {tail}"


def _android_tablet_chrome(rng: random.Random) -> str:
    return _android_chrome(rng, mobile=False)


def _android_webview(rng: random.Random) -> str:
    model = rng.choice(tuple(_ANDROID_MODELS))
    version = _android(rng, _ANDROID_MODELS[model])
    build = _recent(rng, _CHROME_BUILDS)
    return (
        f"Mozilla/5.0 (Linux; Android {version}; {model} Build/{_ANDROID_BUILDS[version]}; wv) "
        f"{_WEBKIT_CHROME} Version/4.0 Chrome/{build} Mobile Safari/537.36"
    )


def _android_firefox(rng: random.Random) -> str:
    v = rng.choice(_FIREFOX_MAJORS)
    return f"Mozilla/5.0 (Android {_android(rng)}; Mobile; rv:{v}.0) Gecko/{v}.0 Firefox/{v}.0"


def _windows_chrome(rng: random.Random) -> str:
    major = _major(_recent(rng, _CHROME_BUILDS))
    return f"Mozilla/5.0 ({_WIN}) {_WEBKIT_CHROME} Chrome/{major}.0.0.0 Safari/537.36"


def _windows_edge(rng: random.Random) -> str:
    major = _major(_recent(rng, _CHROME_BUILDS))  # Edge ships the same majors as Chrome
    return (
        f"Mozilla/5.0 ({_WIN}) {_WEBKIT_CHROME} Chrome/{major}.0.0.0 Safari/537.36 "
        f"Edg/{major}.0.0.0"
    )


def _windows_firefox(rng: random.Random) -> str:
    v = rng.choice(_FIREFOX_MAJORS)
    return f"Mozilla/5.0 ({_WIN}; rv:{v}.0) Gecko/20100101 Firefox/{v}.0"


def _mac_safari(rng: random.Random) -> str:
    v = _recent(rng, _MAC_SAFARI_VERSIONS)
    return f"Mozilla/5.0 ({_MAC}) {_WEBKIT_APPLE} Version/{v} Safari/605.1.15"


def _mac_chrome(rng: random.Random) -> str:
    major = _major(_recent(rng, _CHROME_BUILDS))
    return f"Mozilla/5.0 ({_MAC}) {_WEBKIT_CHROME} Chrome/{major}.0.0.0 Safari/537.36"


class _Template(NamedTuple):
    kind: DeviceKind
    os: str
    browser: str
    weight: float
    make: Callable[[random.Random], str]


# Shares of broker logins, not of all web traffic: iPhone dominates Japanese mobile (~2/3),
# and retail investors trade on PCs more than the average user browses on them.
_TEMPLATES: tuple[_Template, ...] = (
    _Template("phone", "iOS", "Safari", 0.30, _iphone_safari),
    _Template("phone", "iOS", "Chrome", 0.03, _iphone_chrome),
    _Template("phone", "Android", "Chrome", 0.14, _android_chrome),
    _Template("phone", "Android", "Android WebView", 0.03, _android_webview),
    _Template("phone", "Android", "Firefox", 0.005, _android_firefox),
    _Template("pc", "Windows", "Chrome", 0.20, _windows_chrome),
    _Template("pc", "Windows", "Edge", 0.12, _windows_edge),
    _Template("pc", "Windows", "Firefox", 0.015, _windows_firefox),
    _Template("pc", "macOS", "Safari", 0.07, _mac_safari),
    _Template("pc", "macOS", "Chrome", 0.04, _mac_chrome),
    _Template("tablet", "iPadOS", "Safari", 0.03, _ipad_safari),
    _Template("tablet", "Android", "Chrome", 0.01, _android_tablet_chrome),
)
_KINDS: tuple[DeviceKind, ...] = ("pc", "phone", "tablet")


def random_device(rng: random.Random, kind: str | None = None) -> DeviceProfile:
    """A customer's device, drawn by realistic share; `kind` limits it to pc, phone or tablet."""
    if kind is None:
        templates = _TEMPLATES
    elif kind in _KINDS:
        templates = tuple(t for t in _TEMPLATES if t.kind == kind)
    else:
        raise ValueError(f"unknown device kind {kind!r}; expected one of {_KINDS} or None")
    t = rng.choices(templates, weights=[t.weight for t in templates])[0]
    return DeviceProfile(t.kind, t.os, t.browser, t.make(rng))


# --- attackers ----------------------------------------------------------------------------
# Old Chrome majors: pinned automation images and anti-detect browsers lag behind stable;
# 109 is the last Chrome for Windows 7/8.1.
_OLD_CHROME_MAJORS = (109, 112, 114, 116, 118, 119, 120, 122, 124, 126)
_OLD_IOS = ("15_8_3", "16_6", "16_7_8", "17_0_3", "17_1_2")
_LIBRARIES = (
    "python-requests/2.31.0", "python-requests/2.32.3", "okhttp/4.9.3", "okhttp/4.12.0",
    "curl/8.5.0", "Go-http-client/1.1",
)  # fmt: skip


def _headless_chrome(rng: random.Random) -> str:
    build = _recent(rng, _CHROME_BUILDS)
    return f"Mozilla/5.0 (X11; Linux x86_64) {_WEBKIT_CHROME} HeadlessChrome/{build} Safari/537.36"


def _linux_chrome(rng: random.Random) -> str:
    major = _major(rng.choice(_CHROME_BUILDS))
    return f"Mozilla/5.0 (X11; Linux x86_64) {_WEBKIT_CHROME} Chrome/{major}.0.0.0 Safari/537.36"


def _outdated_windows_chrome(rng: random.Random) -> str:
    major = rng.choice(_OLD_CHROME_MAJORS)
    return f"Mozilla/5.0 ({_WIN}) {_WEBKIT_CHROME} Chrome/{major}.0.0.0 Safari/537.36"


def _generic_iphone(rng: random.Random) -> str:
    ios = rng.choice(_OLD_IOS)
    return (
        f"Mozilla/5.0 (iPhone; CPU iPhone OS {ios} like Mac OS X) {_WEBKIT_APPLE} "
        f"Version/{_safari_version(ios)} Mobile/15E148 Safari/604.1"
    )


def _generic_android(rng: random.Random) -> str:
    major = rng.choice(_OLD_CHROME_MAJORS)
    return (
        f"Mozilla/5.0 (Linux; Android 10; K) {_WEBKIT_CHROME} Chrome/{major}.0.0.0 "
        "Mobile Safari/537.36"
    )


def _library(rng: random.Random) -> str:
    return rng.choice(_LIBRARIES)


_ATTACKER_MAKERS: tuple[tuple[float, Callable[[random.Random], str]], ...] = (
    (0.30, _outdated_windows_chrome),
    (0.15, _windows_chrome),  # anti-detect browsers copy current stable
    (0.15, _headless_chrome),
    (0.12, _linux_chrome),
    (0.10, _generic_iphone),
    (0.10, _generic_android),
    (0.08, _library),
)


def attacker_user_agents(rng: random.Random, n: int) -> list[str]:
    """UAs of phishing operators' own tooling, for logins they make from their infrastructure.

    Adversary-in-the-middle kits relay the victim's real UA instead; the simulator models that
    by reusing the victim's profile, not with this function.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    weights = [w for w, _ in _ATTACKER_MAKERS]
    makers = rng.choices([m for _, m in _ATTACKER_MAKERS], weights=weights, k=n)
    return [make(rng) for make in makers]
