"""Turn one line of untrusted text into a parsed URL, or a clear error saying why it is not one.

Everything the phishing watch reads comes from outside (reports, mails, certificate logs), so the
parser never trusts its input: it bounds the length, refuses binary and control characters,
accepts a bare host name as a URL, decodes IDN hosts and splits the host into the parts the
scorer needs (registrable domain, subdomain labels, public suffix).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import SplitResult, unquote, urlsplit

import idna
from publicsuffixlist import PublicSuffixList

__all__ = ["MAX_URL_LENGTH", "ParsedURL", "URLError", "parse_url", "registrable_domain"]

MAX_URL_LENGTH = 8192
_SCHEMES = {"http", "https"}
_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}$")
_DOTTED_NUMBERS = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")


@lru_cache(maxsize=1)
def _icann() -> PublicSuffixList:
    return PublicSuffixList(only_icann=True)  # read on first use: parsing the list takes ~50 ms


@lru_cache(maxsize=1)
def _all() -> PublicSuffixList:
    return PublicSuffixList()


class URLError(ValueError):
    """Input that is not a usable web URL; the message says what is wrong with it."""


@dataclass(frozen=True, slots=True)
class ParsedURL:
    """A web URL split into what the scorer looks at.

    ``host`` is the ASCII (punycode) form in lower case; ``host_unicode`` the displayed form.
    ``registrable`` is the domain a registrant buys (ICANN public suffix + one label) and
    ``site`` the same with private suffixes (``x.workers.dev``), where a tenant's name starts.
    """

    url: str
    scheme: str
    host: str
    host_unicode: str
    port: int | None
    path: str
    query: str
    fragment: str
    userinfo: str
    is_ip: bool
    registrable: str
    site: str
    suffix: str

    @property
    def subdomain_labels(self) -> list[str]:
        """Labels left of the registrable domain (``www`` included)."""
        if self.is_ip or not self.registrable or self.host == self.registrable:
            return []
        return self.host[: -len(self.registrable) - 1].split(".")

    @property
    def registered_label(self) -> str:
        """The label the registrant chose: ``example`` in ``www.example.co.jp``."""
        if self.is_ip or not self.registrable:
            return ""
        return self.registrable.split(".")[0]

    @property
    def rest(self) -> str:
        """Path, query and fragment, percent-decoded: where a brand hides after the host."""
        text = self.path
        if self.query:
            text += "?" + self.query
        if self.fragment:
            text += "#" + self.fragment
        return unquote(text)


def registrable_domain(host: str) -> str:
    """The ICANN registrable domain of a host name (the host itself if none can be found)."""
    return _icann().privatesuffix(host) or host


def _check_text(text: str) -> str:
    if len(text) > MAX_URL_LENGTH:
        raise URLError(
            f"line is {len(text):,} characters long; a URL is at most {MAX_URL_LENGTH:,}"
        )
    stripped = text.strip()
    if not stripped:
        raise URLError("empty line: expected a URL or a host name")
    if "\ufffd" in stripped or any(ord(c) < 32 or ord(c) == 127 for c in stripped):
        raise URLError("binary or control characters: expected a URL or a host name")
    if not stripped.isascii() and any(0xD800 <= ord(c) <= 0xDFFF for c in stripped):
        # A lone surrogate (from JSON's "\ud800" or a surrogate-escaped byte) is no character
        # at all: the model's feature hashing could not encode it and failed mid-score.
        raise URLError("not valid Unicode (a lone surrogate): expected a URL or a host name")
    if any(c.isspace() for c in stripped):
        raise URLError(f"{_clip(stripped)!r}: contains spaces; expected one URL per line")
    return stripped


def _clip(text: str, n: int = 80) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _split(text: str) -> SplitResult:
    # Browsers read "\" as "/" before the query of a web URL (WHATWG URL), so that
    # https://evil.example\@bank.example/ opens evil.example, where urlsplit would take
    # "evil.example\" for the user name and bank.example for the host.
    cut = min((i for i in (text.find("?"), text.find("#")) if i >= 0), default=len(text))
    candidate = text[:cut].replace("\\", "/") + text[cut:]
    low = candidate.lower()
    if "://" not in low[:12]:
        if re.match(r"^[a-z][a-z0-9+.-]*:(?!\d)", low) and not low.startswith(("http:", "https:")):
            scheme = low.split(":", 1)[0]
            raise URLError(f"{_clip(text)!r}: scheme {scheme!r} is not a web URL")
        candidate = "http://" + candidate.lstrip("/")
    try:
        parts = urlsplit(candidate)
        _ = parts.port  # a bad port raises here
    except ValueError as exc:
        raise URLError(f"{_clip(text)!r}: not a URL ({exc})") from None
    if parts.scheme.lower() not in _SCHEMES:
        raise URLError(f"{_clip(text)!r}: scheme {parts.scheme!r} is not a web URL")
    return parts


def _host_forms(raw_host: str, text: str) -> tuple[str, str]:
    host = raw_host.strip(".").lower()
    if not host:
        raise URLError(f"{_clip(text)!r}: no host name")
    host = unquote(host).lower()  # %53 is "S": lower-cased after decoding, as browsers do
    if host.startswith("[") or ":" in host:
        return host.strip("[]"), host.strip("[]")
    if host.isascii():
        ascii_host = host
    else:
        try:
            ascii_host = idna.encode(host, uts46=True, transitional=False).decode("ascii")
        except (idna.IDNAError, UnicodeError) as exc:
            raise URLError(
                f"{_clip(text)!r}: host {host!r} is not a valid domain ({exc})"
            ) from None
    labels = ascii_host.split(".")
    if len(ascii_host) > 253 or not all(_LABEL.match(label) for label in labels):
        raise URLError(f"{_clip(text)!r}: host {_clip(host, 60)!r} is not a valid domain name")
    try:
        unicode_host = idna.decode(ascii_host) if "xn--" in ascii_host else ascii_host
    except (idna.IDNAError, UnicodeError):
        unicode_host = ascii_host
    return ascii_host, unicode_host


def _is_ip(host: str) -> bool:
    if _DOTTED_NUMBERS.match(host):
        return True  # also 43.100.00.234, which browsers still resolve
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return host.isdigit()  # a single 32-bit number is an IPv4 address to a browser
    return True


def parse_url(text: str) -> ParsedURL:
    """Parse one URL (or bare host name); raise :class:`URLError` naming the problem."""
    stripped = _check_text(text)
    parts = _split(stripped)
    raw_host = parts.hostname or ""
    userinfo = parts.netloc.rpartition("@")[0] if "@" in parts.netloc else ""
    host, host_unicode = _host_forms(raw_host, stripped)
    is_ip = _is_ip(host)
    if is_ip:
        registrable = site = host
        suffix = ""
    else:
        if "." not in host:
            raise URLError(f"{_clip(stripped)!r}: host {host!r} has no domain suffix")
        registrable = _icann().privatesuffix(host) or host
        site = _all().privatesuffix(host) or registrable
        suffix = _icann().publicsuffix(host) or host.rsplit(".", 1)[-1]
    return ParsedURL(
        url=stripped,
        scheme=parts.scheme.lower(),
        host=host,
        host_unicode=host_unicode,
        port=parts.port,
        path=parts.path or "/",
        query=parts.query,
        fragment=parts.fragment,
        userinfo=userinfo,
        is_ip=is_ip,
        registrable=registrable,
        site=site,
        suffix=suffix,
    )
