"""Evidence about one URL: each function looks at one aspect and returns reasons with weights.

Brand evidence (which firm is imitated, and how) and structure evidence (how the URL is built:
IP host, throw-away domain, kit paths, hosting platform) are separate, so that a phishing URL
that never names its brand — common in 2025 — is still caught by its structure, and a URL that
names a brand on an unremarkable site needs to name it convincingly.
"""

from __future__ import annotations

import re

from rapidfuzz.distance import OSA

from brokerguard.phishing._brands import BrandRegistry
from brokerguard.phishing._confusables import ascii_fold, is_mixed_script, skeleton
from brokerguard.phishing._lexical import (
    CONTEXT_WORDS,
    is_filler,
    looks_random,
    random_path_piece,
    randomness,
)
from brokerguard.phishing._platforms import platform_kind
from brokerguard.phishing._reasons import Reason, make_reason
from brokerguard.phishing._url import ParsedURL
from brokerguard.phishing._words import words

__all__ = ["WEIGHTS", "brand_reasons", "structure_reasons"]


# Log-odds weights; a URL is phishing when they add up to at least THRESHOLD (see _score.py).
WEIGHTS: dict[str, float] = {
    "brand_domain_in_host": 5.0,
    "brand_in_subdomain": 4.0,
    "brand_in_domain": 3.5,
    "brand_embedded": 2.5,
    "weak_brand_context": 3.0,
    "weak_brand": 1.5,
    "weak_brand_piece": 2.5,
    "weak_brand_path": 1.0,
    "random_subdomain": 2.0,
    "numbered_series": 0.5,
    "random_path_mixed": 2.0,
    "brand_typo": 1.5,
    "ascii_lookalike": 3.5,
    "idn_homoglyph": 5.0,
    "mixed_script": 2.0,
    "idn_host": 0.5,
    "brand_domain_in_path": 4.0,
    "brand_is_path": 3.0,
    "brand_in_path": 2.0,
    "brand_in_path_deep": 1.5,
    "login_path_copied": 2.0,
    "ip_host": 3.0,
    "cheap_tld": 1.0,
    "random_domain": 1.5,
    "odd_domain": 0.0,
    "kit_subdomain": 1.5,
    "kit_subdomain_long": 2.5,
    "kit_subdomain_random": 2.0,
    "japan_path": 1.0,
    "jp_domain_in_path": 1.5,
    "uppercase_host": 1.0,
    "path_token": 1.0,
    "domain_in_subdomain": 1.5,
    "jp_domain_in_subdomain": 2.5,
    "query_token": 1.0,
    "brand_in_path_embedded": 2.0,
    "securities_word": 1.0,
    "long_label": 1.5,
    "random_path": 1.5,
    "spa_fragment": 1.0,
    "login_words": 0.5,
    "random_query": 1.0,
    "free_hosting": 1.0,
    "dynamic_dns": 2.5,
    "shortener": 0.5,
    "tracker": 0.5,
    "userinfo_trick": 3.0,
    "japan_affix": 1.5,
    "proxied": 1.0,
}

# TLDs over-represented in phishing reports (Interisle, Spamhaus, and JPCERT/CC's 2024-01..2025-06
# list): cheap or free to register, little checking of the registrant.
CHEAP_TLDS = frozenset(
    words("""
    top icu xyz cn sbs cc asia shop cyou cfd fun pw space group online club buzz vip store site
    tokyo qpon art yoga bond lol click link live work rest bar monster life today world win
    loan top ltd ink best mom beauty hair skin makeup quest autos boats homes motorcycles
    kim ws tk ml ga cf gq
    """)
)

_SPLIT = re.compile(r"[^a-z0-9]+")
_TLD_LABELS = frozenset({"com", "net", "org", "jp", "co", "ne", "or"})
_JP_AFFIX = re.compile(r"(^|[-.])(jp|japan|japian|japsan)([-.]|$)")
# A Japanese domain written into a URL path. The first branch may only start where a dotted name
# starts (not inside a label, not right after "label."): a search would otherwise retry it from
# every label of a long name that does not end in co.jp, which is quadratic (an 8 KB path of
# "a." took a second, a 1 MiB certificate-log line of such URLs minutes). The match is unchanged:
# when a later start in the same name matches, the name's first label matches too, same end.
_JP_DOMAIN = re.compile(
    r"(?<![a-z0-9-])(?<![a-z0-9-]\.)([a-z0-9-]+\.)+(co|ne|or|ac|go)\.jp\b"
    r"|\bwww\.[a-z0-9-]+\.jp\b",
    re.I,
)
_SECURITIES_WORDS = ("zhengjuan", "zhengquan", "shoken", "syoken")
_LOGIN_WORDS = ("login", "signin", "logon", "auth", "verify", "idtoken", "account", "member")


def _pieces(text: str) -> list[str]:
    return [p for p in _SPLIT.split(text.lower()) if p]


def _token_in(piece: str, token: str) -> str | None:
    """How ``token`` sits in ``piece`` (hyphens ignored): ``exact``/``affixed`` (the rest is
    filler like ``jp``, ``www``, digits) or ``embedded`` (inside another word); None if absent."""
    p = piece.replace("-", "").replace("_", "")
    t = token.replace("-", "")
    i = p.find(t)
    if i < 0:
        return None
    before, after = p[:i], p[i + len(t) :]
    if not before and not after.strip("0123456789"):
        return "exact"
    if all(is_filler(x) or looks_random(x) for x in (before, after)):
        return "affixed"  # glued to filler words or to random junk: rakutensec-nsjafsa
    return "embedded" if len(t) >= 5 else None


def _weak_piece(label: str, token: str) -> bool:
    pieces = label.split("-")
    if token in pieces:
        return True
    first = pieces[0]
    if (
        first.startswith(token)
        and 0 < len(first) - len(token) <= 2
        and first[len(token) :].isalpha()
    ):
        return True  # sbiab, sbibg: a two-letter series suffix
    return any(
        piece.startswith(token) and piece[len(token) :].startswith(CONTEXT_WORDS)
        for piece in pieces
    )


def _has_context(text: str) -> bool:
    low = text.lower()
    return any(w in low for w in CONTEXT_WORDS)


def _host_brand(p: ParsedURL, reg: BrandRegistry) -> list[Reason]:
    out: list[Reason] = []
    dashed = p.host.replace("-", ".")
    for domain, bid in reg.official.items():
        if domain in dashed and p.registrable != domain:
            out.append(
                make_reason("brand_domain_in_host", WEIGHTS["brand_domain_in_host"], domain, bid)
            )
            return out
    sub = p.subdomain_labels
    tenant = p.site.split(".")[0] if p.site != p.registrable else ""
    labels = [(lab, "sub") for lab in sub if lab not in ("www", "m")]
    if tenant:
        labels = [(lab, "sub") for lab in p.host[: -len(p.site)].strip(".").split(".") if lab]
        labels.append((tenant, "reg"))
    elif p.registered_label:
        labels.append((p.registered_label, "reg"))
    found: set[str] = set()
    embedded: list[Reason] = []
    for label, where in labels:
        for token, bid in reg.strong_tokens:
            if bid in found:
                continue
            how = _token_in(label, token)
            if how is None:
                continue
            if how == "embedded":
                embedded.append(
                    make_reason("brand_embedded", WEIGHTS["brand_embedded"], label, bid)
                )
                continue
            found.add(bid)
            if where == "sub":
                out.append(
                    make_reason("brand_in_subdomain", WEIGHTS["brand_in_subdomain"], label, bid)
                )
            else:
                out.append(make_reason("brand_in_domain", WEIGHTS["brand_in_domain"], label, bid))
        if found:
            continue
        for token, bid in reg.weak_tokens:
            if bid in found:
                continue
            how = _token_in(label, token)
            if how not in ("exact", "affixed") and _weak_piece(label, token):
                how = "piece"  # sbi-drelies01, sbiab: the abbreviation as a word of its own
            if how is None or how == "embedded":
                continue
            found.add(bid)
            if _has_context(p.host) or _has_context(p.rest) or (where == "sub" and how == "exact"):
                out.append(make_reason("weak_brand", WEIGHTS["weak_brand_context"], label, bid))
            elif how == "piece":
                out.append(make_reason("weak_brand", WEIGHTS["weak_brand_piece"], label, bid))
            else:
                out.append(make_reason("weak_brand", WEIGHTS["weak_brand"], label, bid))
    if not found and embedded:
        found.add(embedded[0].brand or "")
        out.append(embedded[0])
    if not found:
        out.extend(_lookalikes(p, labels, reg))
    return out


def _lookalikes(p: ParsedURL, labels: list[tuple[str, str]], reg: BrandRegistry) -> list[Reason]:
    out: list[Reason] = []
    uni = p.host_unicode
    if uni != p.host:
        skel = skeleton(uni)
        for token, bid in reg.strong_tokens:
            if len(token) >= 4 and token.replace("-", "") in skel.replace("-", ""):
                return [make_reason("idn_homoglyph", WEIGHTS["idn_homoglyph"], uni, bid)]
        if is_mixed_script(uni):
            out.append(make_reason("mixed_script", WEIGHTS["mixed_script"], uni))
        else:
            out.append(make_reason("idn_host", WEIGHTS["idn_host"], uni))
    weak = {t for t, _ in reg.weak_tokens}
    for label, _ in labels:
        for piece in _pieces(label):
            if len(piece) < 5 or piece in weak:
                continue
            folded = ascii_fold(piece)
            for token, bid in reg.strong_tokens:
                t = token.replace("-", "")
                if len(t) < 5:
                    continue
                if t not in piece and ascii_fold(t) in folded:
                    return [
                        *out,
                        make_reason("ascii_lookalike", WEIGHTS["ascii_lookalike"], piece, bid),
                    ]
                if abs(len(piece) - len(t)) <= 1 and 0 < OSA.distance(piece, t) <= (
                    1 if len(t) < 7 else 2
                ):
                    return [*out, make_reason("brand_typo", WEIGHTS["brand_typo"], piece, bid)]
    return out


PAGE_EXTENSIONS = (".html", ".htm", ".php", ".asp", ".aspx", ".jsp")


def _page_named(segment: str, piece: str) -> bool:
    """``segment`` is ``piece`` itself or a web page named ``piece`` (``piece.html``)."""
    return segment == piece or any(segment == piece + ext for ext in PAGE_EXTENSIONS)


def _rest_brand(p: ParsedURL, reg: BrandRegistry) -> list[Reason]:
    rest = p.rest.lower()
    if len(rest) <= 1:
        return []
    for domain, bid in reg.official.items():
        if domain in rest:
            return [
                make_reason("brand_domain_in_path", WEIGHTS["brand_domain_in_path"], domain, bid)
            ]
    segments = [s for s in re.split(r"[/?#&=]+", rest) if s]
    for depth, seg in enumerate(segments):
        for piece in _pieces(seg):
            for token, bid in reg.strong_tokens:
                how = _token_in(piece, token)
                if how in ("exact", "affixed"):
                    if len(segments) == 1 and depth == 0 and _page_named(seg, piece):
                        # the whole path is the brand: /rakusec/, or a page named after the
                        # firm on somebody else's site: /sbisec.html
                        w = WEIGHTS["brand_is_path"]
                    else:
                        w = WEIGHTS["brand_in_path_deep" if depth >= 2 else "brand_in_path"]
                    return [make_reason("brand_in_path", w, piece, bid)]
                if how == "embedded" and len(token.replace("-", "")) >= 6:
                    w = WEIGHTS["brand_in_path_embedded"]
                    return [make_reason("brand_in_path", w, piece, bid)]
    for seg in segments[:2]:
        for token, bid in reg.weak_tokens:
            if _token_in(seg, token) in ("exact", "affixed"):
                return [make_reason("weak_brand", WEIGHTS["weak_brand_path"], seg, bid)]
    words = [w for w in _SECURITIES_WORDS if w in rest]
    if words:
        return [make_reason("securities_word", WEIGHTS["securities_word"], ",".join(words))]
    path = p.path.lower()
    for brand in reg:
        for login in brand.login_paths:
            lp = login.lower().rstrip("/")
            if len(lp) > 6 and (
                path == lp or path.startswith(lp + "/") or path.startswith(lp + ".")
            ):
                return [
                    make_reason("login_path_copied", WEIGHTS["login_path_copied"], login, brand.id)
                ]
    return []


def brand_reasons(p: ParsedURL, reg: BrandRegistry) -> list[Reason]:
    """Evidence that the URL imitates a registered brand (each reason names the brand)."""
    if p.is_ip:
        return _rest_brand(p, reg)
    return _host_brand(p, reg) + _rest_brand(p, reg)


def _structure_host(p: ParsedURL, reg: BrandRegistry) -> list[Reason]:
    out: list[Reason] = []
    if p.is_ip:
        return [make_reason("ip_host", WEIGHTS["ip_host"], p.host)]
    kind = platform_kind(p.registrable)
    if kind and p.host not in (p.registrable, "www." + p.registrable):
        out.append(make_reason(kind, WEIGHTS[kind], p.registrable))
    else:
        kind = None
    tld = p.suffix
    if tld in CHEAP_TLDS:
        out.append(make_reason("cheap_tld", WEIGHTS["cheap_tld"], tld))
    name = p.site.split(".")[0] if kind in ("free_hosting", "dynamic_dns") else p.registered_label
    brandish = {t for t, _ in reg.weak_tokens}
    level = 0
    if not name.startswith("xn--"):
        level = max((randomness(x) for x in name.split("-") if x not in brandish), default=0)
    random_name = level == 2
    if level and WEIGHTS["random_domain" if random_name else "odd_domain"]:
        w = WEIGHTS["random_domain" if random_name else "odd_domain"]
        out.append(make_reason("random_domain", w, name))
    sub = [s for s in p.subdomain_labels if s not in ("www", "m")]
    if kind is not None:
        sub = [s for s in p.host[: -len(p.site)].strip(".").split(".") if s and s != "www"]
    tokens = {t for t, _ in reg.strong_tokens} | {t for t, _ in reg.weak_tokens}
    odd = [s for s in sub if s not in tokens and any(looks_random(x) for x in s.split("-"))]
    if odd:
        out.append(make_reason("random_subdomain", WEIGHTS["random_subdomain"], odd[0]))
    if re.search(r"[a-z]{3,}[0-9]{2,}$", name) and not random_name:
        out.append(make_reason("numbered_series", WEIGHTS["numbered_series"], name))
    kit_label = sub[0] if kind is None and len(sub) == 1 else name if kind == "dynamic_dns" else ""
    if kit_label.isalpha() and len(kit_label) >= 13:
        digits = len(name) <= 7 and any(c.isdigit() for c in name)
        if kind is None and (random_name or digits):
            w = WEIGHTS["kit_subdomain_random"]
        else:
            w = WEIGHTS["kit_subdomain_long" if len(kit_label) >= 15 else "kit_subdomain"]
        out.append(make_reason("kit_subdomain", w, p.host))
    longest = max(len(piece) for piece in re.split(r"[.-]", p.host))
    if longest >= 25:
        out.append(make_reason("long_label", WEIGHTS["long_label"], longest))
    if not p.suffix.endswith("jp"):
        # "jp" glued to a word (sbisec-jp, jp-login), not a locale label of its own (jp.example.com)
        glued = [lab for lab in p.subdomain_labels if "-" in lab and _JP_AFFIX.search(lab)]
        if _JP_AFFIX.search(p.registrable) or glued:
            where = glued[0] if glued else p.registrable
            out.append(make_reason("japan_affix", WEIGHTS["japan_affix"], where))
    sub_labels = p.subdomain_labels
    if any(lab in _TLD_LABELS for lab in sub_labels[1:]):
        # icloud.com.example.cn: another site's domain written in front of the real one
        jp = ".co.jp." in f".{p.host}" or ".ne.jp." in f".{p.host}" or ".or.jp." in f".{p.host}"
        w = WEIGHTS["jp_domain_in_subdomain" if jp else "domain_in_subdomain"]
        out.append(make_reason("domain_in_subdomain", w, p.host))
    written = p.url.split("://", 1)[-1].split("/", 1)[0].rpartition("@")[2]
    if any(c.isupper() for c in written):
        out.append(make_reason("uppercase_host", WEIGHTS["uppercase_host"], written[:60]))
    if p.userinfo and ("." in p.userinfo or "%" in p.userinfo):
        out.append(make_reason("userinfo_trick", WEIGHTS["userinfo_trick"], p.userinfo[:60]))
    return out


def _structure_rest(p: ParsedURL, reg: BrandRegistry) -> list[Reason]:
    out: list[Reason] = []
    segments = [s for s in p.path.split("/") if s]
    known = {lp.strip("/").split("/")[0].lower() for b in reg for lp in b.login_paths}
    if (
        1 <= len(segments) <= 2
        and segments[0].lower() not in known
        and random_path_piece(segments[0])
    ):
        seg = segments[0]
        mixed = any(c.isupper() for c in seg) and any(c.islower() for c in seg)
        w = WEIGHTS["random_path_mixed" if mixed else "random_path"]
        out.append(make_reason("random_path", w, "/" + seg))
    m = _JP_DOMAIN.search(p.path)
    if m and not p.suffix.endswith("jp"):
        out.append(make_reason("jp_domain_in_path", WEIGHTS["jp_domain_in_path"], m.group(0)))
    elif (
        len(segments) == 1
        and not p.query
        and re.fullmatch(r"[a-z0-9]{3,12}", segments[0])
        and segments[0] not in ("jp", "japan", "index", "home")
    ):
        out.append(make_reason("path_token", WEIGHTS["path_token"], "/" + segments[0]))
    if segments and segments[0].lower() in ("jp", "japan") and not p.suffix.endswith("jp"):
        out.append(make_reason("japan_affix", WEIGHTS["japan_path"], "/" + segments[0]))
    if p.fragment.startswith("/"):
        out.append(make_reason("spa_fragment", WEIGHTS["spa_fragment"], "#" + p.fragment[:40]))
    if re.fullmatch(r"[A-Za-z0-9]{4,12}", p.query) and not p.query.isdigit():
        out.append(make_reason("query_token", WEIGHTS["query_token"], "?" + p.query))
    low = p.rest.lower()
    words = [w for w in _LOGIN_WORDS if w in low]
    if words:
        out.append(make_reason("login_words", WEIGHTS["login_words"], ",".join(words)))
    for value in re.findall(r"(?:^|[=&])([A-Za-z0-9_-]{20,})", p.query):
        if any(c.isupper() for c in value) and any(c.islower() for c in value):
            out.append(make_reason("random_query", WEIGHTS["random_query"], value[:24] + "…"))
            break
    return out


def structure_reasons(p: ParsedURL, reg: BrandRegistry) -> list[Reason]:
    """Evidence from how the URL is built, whatever brand it imitates."""
    return _structure_host(p, reg) + _structure_rest(p, reg)
