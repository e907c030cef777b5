"""Peel redirect and translation-proxy wrappers off a URL to reach the page that is really shown.

Phishers hide behind links that point at a well-known service which then forwards or proxies
the victim: Google Translate's proxy (``<host-with-dashes>.translate.goog``), ``google.com/url``,
Outlook Safe Links, Proofpoint URL Defense, Facebook and LinkedIn redirectors, Bing's ``ck/a``,
the Wayback Machine, and any open redirect that carries the target in a ``url=``-style
parameter. Each step is decoded offline from the URL text itself; nothing is fetched.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote

from brokerguard.phishing._url import ParsedURL, URLError, parse_url

__all__ = ["Hop", "unwrap", "untranslate_host"]

MAX_HOPS = 5
_TARGET_PARAMS = (
    "url",
    "u",
    "q",
    "target",
    "dest",
    "destination",
    "redirect",
    "redirect_url",
    "redirect_uri",
    "to",
    "link",
    "goto",
    "out",
    "r",
    "uddg",
    "continue",
    "next",
)


@dataclass(frozen=True, slots=True)
class Hop:
    """One unwrapping step: ``url`` was reached from the previous hop through ``via``."""

    via: str
    url: ParsedURL


def untranslate_host(label: str) -> str:
    """Decode a Google Translate proxy label: ``www-example-co-jp`` -> ``www.example.co.jp``.

    Google writes ``.`` as ``-`` and a real ``-`` as ``--``.

    >>> untranslate_host("my--site-example-com")
    'my-site.example.com'
    """
    return label.replace("--", "\x00").replace("-", ".").replace("\x00", "-")


def _looks_like_target(value: str) -> bool:
    v = value.strip().lower()
    return v.startswith(("http://", "https://", "http%3a", "https%3a", "//", "www."))


def _param_target(query: str, names: tuple[str, ...] = _TARGET_PARAMS) -> str | None:
    pairs = parse_qsl(query, keep_blank_values=False)
    wanted = {n: None for n in names}
    for key, value in pairs:
        k = key.lower()
        if k in wanted and wanted[k] is None and _looks_like_target(value):
            wanted[k] = value
    for n in names:
        value = wanted[n]
        if value:
            return unquote(value) if value.lower().startswith(("http%3a", "https%3a")) else value
    return None


def _bing(query: str) -> str | None:
    for key, value in parse_qsl(query):
        if key == "u" and value.startswith("a1"):
            data = value[2:]
            try:
                return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)).decode("utf-8")
            except ValueError:
                # binascii.Error, UnicodeDecodeError, and a non-ASCII value (parse_qsl decoded
                # ``%C3%A9``), which b64decode refuses with a plain ValueError
                return None
    return None


def _proofpoint(p: ParsedURL) -> str | None:
    if p.path.startswith("/v3/__"):
        inner = p.url.split("/v3/__", 1)[1]
        return inner.split("__;", 1)[0]
    if p.path.startswith("/v2/url"):
        for key, value in parse_qsl(p.query):
            if key == "u":
                # v2 writes "%" as "-" and "/" as "_": https-3A__host_path is https://host/path
                return unquote(value.replace("-", "%").replace("_", "/"))
    return None


def _translate_goog(p: ParsedURL) -> str | None:
    label = p.host[: -len(".translate.goog")]
    if "." in label or not label:
        return None
    host = untranslate_host(label)
    # Drop the proxy's own _x_tr_ parameters and keep the rest as written: decoded and joined
    # again, a space or "&" in a value would make the target unparsable or change it
    keep = [
        kv
        for kv in p.query.split("&")
        if kv and not unquote(kv.partition("=")[0]).startswith("_x_tr_")
    ]
    query = "&".join(keep)
    return f"https://{host}{p.path}" + (f"?{query}" if query else "")


def _step(p: ParsedURL) -> tuple[str, str] | None:
    """(wrapper name, inner URL text) if ``p`` is a wrapper we can decode, else None."""
    host, reg = p.host, p.registrable
    if host.endswith(".translate.goog"):
        inner = _translate_goog(p)
        return ("google_translate_proxy", inner) if inner else None
    if reg.startswith("google.") or host.startswith("translate.google."):
        if host.startswith("translate.") or "translate" in p.path:
            target = _param_target(p.query, ("u", "url"))
            for key, value in parse_qsl(p.query):
                if target is None and key == "u" and "." in value:
                    target = value  # Google's own parameter: the page to translate, scheme optional
            if target is None and p.query and _looks_like_target(p.query.split("&")[0]):
                target = unquote(p.query.split("&")[0])
            if target:
                return ("google_translate", target)
        if p.path in ("/url", "/amp/s") or p.path.startswith("/amp/s/"):
            if p.path.startswith("/amp/s/"):
                return ("google_amp", "https://" + p.path[len("/amp/s/") :])
            target = _param_target(p.query, ("q", "url"))
            if target:
                return ("google_redirect", target)
    if host.endswith("safelinks.protection.outlook.com"):
        target = _param_target(p.query, ("url",))
        return ("outlook_safelinks", target) if target else None
    if reg in ("urldefense.com", "proofpoint.com") or host == "urldefense.proofpoint.com":
        target = _proofpoint(p)
        return ("proofpoint_urldefense", target) if target else None
    if reg == "bing.com" and p.path.startswith("/ck/"):
        target = _bing(p.query)
        return ("bing_redirect", target) if target else None
    if host == "web.archive.org":
        m = re.match(r"^/web/[0-9a-z_*]+/(.+)$", p.path)
        if m:
            return ("wayback_machine", m.group(1) + (f"?{p.query}" if p.query else ""))
    if reg == "ampproject.org" and p.path.startswith(("/c/s/", "/v/s/")):
        return ("amp_cache", "https://" + p.path[5:])
    target = _param_target(p.query)
    if target:
        return ("redirect_parameter", target)
    return None


def unwrap(url: str | ParsedURL) -> list[Hop]:
    """Every hop from the given URL to the innermost target we can decode, first hop included
    (with ``via="input"``). Raises :class:`URLError` only if the given URL itself is bad; an
    undecodable inner target simply ends the chain."""
    first = parse_url(url) if isinstance(url, str) else url
    hops = [Hop("input", first)]
    seen = {first.url}
    while len(hops) <= MAX_HOPS:
        step = _step(hops[-1].url)
        if step is None:
            break
        via, text = step
        if text.startswith("//"):
            text = "https:" + text
        try:
            inner = parse_url(text)
        except URLError:
            break
        if inner.url in seen:
            break
        seen.add(inner.url)
        hops.append(Hop(via, inner))
    return hops
