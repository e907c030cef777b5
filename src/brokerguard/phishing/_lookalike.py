"""Lookalike domains of a brand, for registration and certificate monitoring.

Two generators. ``dnstwist_lookalikes`` runs dnstwist's own fuzzers (the ``dnstwist`` package:
addition, bitsquatting, homoglyph, hyphenation, insertion, omission, repetition, replacement,
subdomain, transposition, vowel-swap, ...) on a domain. ``generate_lookalikes`` produces what
phishers of Japanese brokers actually registered in 2024-01..2025-06: the brand or its URL
abbreviation, glued to filler words (``-jp``, ``-co``, ``www-``, ``sec-``, ``login``), a counter
(``01``..``10``), look-alike letters (``sbl``, ``rnatsui``), on cheap TLDs. Neither can see the
commonest 2025 pattern, the brand as a *subdomain* of a random domain (``sbisec-jp.evsy8.com``):
registration feeds never show subdomains, which is why ``phish watch`` scores every host name it
is given rather than matching a list.
"""

from __future__ import annotations

from collections.abc import Iterable

from brokerguard.phishing._brands import Brand

__all__ = ["dnstwist_lookalikes", "generate_lookalikes"]

AFFIXES = (
    "",
    "-jp",
    "jp",
    "-co",
    "-co-jp",
    "-cojp",
    "-japan",
    "-sec",
    "sec",
    "-login",
    "login",
    "-info",
    "-secure",
    "-online",
    "-app",
    "-web",
)
PREFIXES = ("", "www-", "m-", "my", "site4-", "sec-", "jp-", "login-", "info-")
COUNTERS = ("", "1", "2", "01", "02", "001")
TLDS = (
    "com",
    "net",
    "org",
    "top",
    "cn",
    "shop",
    "xyz",
    "icu",
    "sbs",
    "cc",
    "asia",
    "online",
    "site",
    "vip",
    "info",
    "co",
    "jp",
    "tokyo",
    "cyou",
    "cfd",
    "store",
    "buzz",
    "club",
    "fun",
)
_LOOKALIKE_LETTERS = {"i": ("l", "1"), "l": ("i", "1"), "o": ("0",), "m": ("rn",), "w": ("vv",)}


def _spellings(token: str) -> set[str]:
    """The token, with one look-alike letter, one letter dropped, and one pair swapped."""
    out = {token}
    for i, c in enumerate(token):
        for alt in _LOOKALIKE_LETTERS.get(c, ()):
            out.add(token[:i] + alt + token[i + 1 :])
        if c.isalpha() and len(token) > 4:
            out.add(token[:i] + token[i + 1 :])
        if i + 1 < len(token) and token[i] != token[i + 1]:
            out.add(token[:i] + token[i + 1] + token[i] + token[i + 2 :])
    return {s for s in out if s and not s.startswith("-") and not s.endswith("-")}


def _bases(brand: Brand) -> set[str]:
    bases = {d.split(".")[0] for d in brand.domains}
    bases.update(t for t in brand.tokens if len(t.replace("-", "")) >= 4)
    return bases


def generate_lookalikes(brand: Brand, tlds: Iterable[str] = TLDS) -> dict[str, str]:
    """Domain -> how it was made (``affix``, ``spelling``), the brand's own domains excluded."""
    out: dict[str, str] = {}
    own = set(brand.domains) | set(brand.related_domains)
    tld_list = list(tlds)
    for base in sorted(_bases(brand)):
        labels: dict[str, str] = {}
        for spelling in _spellings(base):
            for counter in ("", "1", "01"):
                labels.setdefault(
                    f"{spelling}{counter}", "affix" if spelling == base else "spelling"
                )
        for counter in COUNTERS:
            for prefix in PREFIXES:
                labels.setdefault(f"{prefix}{base}{counter}", "affix")
            for affix in AFFIXES:
                labels.setdefault(f"{base}{affix}{counter}", "affix")
        for label, kind in sorted(labels.items()):
            if len(label) > 63 or "--" in label:
                continue
            for tld in tld_list:
                domain = f"{label}.{tld}"
                if domain not in own:
                    out.setdefault(domain, kind)
    return out


def dnstwist_lookalikes(domain: str) -> dict[str, str]:
    """Domain -> dnstwist fuzzer name, from the installed dnstwist package (original excluded).

    Raises ImportError with an install hint if dnstwist is not installed."""
    try:
        import dnstwist
    except ImportError as exc:  # pragma: no cover - dnstwist is a declared dependency
        raise ImportError("dnstwist is not installed: pip install dnstwist") from exc
    fuzz = dnstwist.Fuzzer(domain)
    fuzz.generate()
    return {d["domain"]: d["fuzzer"] for d in fuzz.domains if d["fuzzer"] != "*original"}
