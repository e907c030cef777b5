"""User-agent strings to (browser family, OS family, device kind).

The login-risk model reads user agents as a hierarchy (UA -> browser -> OS -> device kind), as in
Freeman et al. (NDSS 2016): a browser update changes the UA string but not the browser family, so
the coarser levels keep a returning customer familiar. Both the detection engine and the
simulator's device catalogue use this one parser.
"""

from __future__ import annotations

__all__ = ["parse_user_agent"]

# (token, browser family), first match wins: Edge, Opera, Samsung and in-app browsers also
# carry "Chrome/" or "Safari/", so the specific tokens come before the generic ones.
_BROWSER_TOKENS: tuple[tuple[str, str], ...] = (
    ("python-requests/", "python-requests"),
    ("okhttp/", "okhttp"),
    ("curl/", "curl"),
    ("Go-http-client/", "Go-http-client"),
    ("HeadlessChrome/", "Headless Chrome"),
    ("Edg/", "Edge"),
    ("Edge/", "Edge"),  # pre-2020 EdgeHTML
    ("EdgA/", "Edge"),
    ("EdgiOS/", "Edge"),
    ("OPR/", "Opera"),
    ("SamsungBrowser/", "Samsung Internet"),
    (" Line/", "LINE"),
    ("FxiOS/", "Firefox"),
    ("Firefox/", "Firefox"),
    ("CriOS/", "Chrome"),
    ("; wv)", "Android WebView"),
    ("Chrome/", "Chrome"),
)


def _browser(ua: str, os: str) -> str:
    for token, family in _BROWSER_TOKENS:
        if token in ua:
            return family
    if "Safari/" in ua and "Version/" in ua:
        return "Safari"
    if os in ("iOS", "iPadOS") and "AppleWebKit/" in ua:
        return "iOS WebView"  # apps' embedded WKWebView: no Safari token
    return "Other"


def _os(ua: str) -> str:
    if "iPhone" in ua or "iPod" in ua:
        return "iOS"
    if "iPad" in ua:
        return "iPadOS"
    if "Android" in ua:
        return "Android"
    if "Windows" in ua:
        return "Windows"
    if "Macintosh" in ua or "Mac OS X" in ua:
        return "macOS"
    if "CrOS" in ua:
        return "ChromeOS"
    if "Linux" in ua or "X11" in ua:
        return "Linux"
    return "Other"


DEVICE_KINDS = ("pc", "phone", "tablet", "other")
"""Every device kind :func:`parse_user_agent` says."""


def _device(ua: str, os: str) -> str:
    if os == "iOS":
        return "phone"
    if os == "iPadOS":
        return "tablet"
    if os == "Android":
        # Chrome drops "Mobile" on tablets; Firefox says "Tablet".
        return "phone" if "Mobile" in ua else "tablet"
    if os in ("Windows", "macOS", "Linux", "ChromeOS"):
        return "pc"
    return "other"


def parse_user_agent(ua: str) -> tuple[str, str, str]:
    """(browser family, OS family, device kind) of a UA string, for the RBA feature hierarchy.

    Deliberately small: it knows the families that matter for Japanese broker logins and says
    "Other"/"other" for the rest, which RBA treats as rare anyway.
    """
    os = _os(ua)
    return _browser(ua, os), os, _device(ua, os)
