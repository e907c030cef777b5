"""Analyse a forwarded mail (.eml): who really sent it, where its links really go, how it pushes.

A customer or an employee forwards a suspicious mail; the security team needs to know in one
look whether it is a phishing lure for its brand. This module reads the raw message with the
standard library's ``email`` parser (which decodes MIME encoded-words such as ISO-2022-JP and
UTF-8 subjects), then reports: the ``Authentication-Results`` verdicts (SPF, DKIM, DMARC), the
From address against the display name (a display name naming the firm on a domain that is not
the firm's), every link with its visible text and its unwrapped target and score, and urgency
phrases in Japanese and English. Nothing is fetched and no attachment is opened.
"""

from __future__ import annotations

import re
from email import errors, policy
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses, parseaddr
from html.parser import HTMLParser
from typing import Any

import msgspec

from brokerguard.phishing._brands import Brand, BrandRegistry, default_registry
from brokerguard.phishing._score import THRESHOLD, Finding, score_url
from brokerguard.phishing._url import URLError, parse_url, registrable_domain

__all__ = ["MailError", "MailLink", "MailReport", "analyse_mail", "URGENCY_PHRASES"]

MAX_MAIL_BYTES = 25 << 20
MAX_LINKS = 200

# Phrases that press the reader to act now; the 2025 broker lures used 【重要】, 【緊急】 and
# threats of suspension or forced loss-cut.
URGENCY_PHRASES: tuple[str, ...] = (
    "緊急",
    "重要",
    "至急",
    "本日中",
    "24時間以内",
    "２４時間以内",
    "48時間以内",
    "期限",
    "停止",
    "凍結",
    "制限",
    "ロック",
    "不正アクセス",
    "不正ログイン",
    "本人確認",
    "確認してください",
    "ご確認ください",
    "再設定",
    "強制ロスカット",
    "補償",
    "失効",
    "更新してください",
    "urgent",
    "immediately",
    "important",
    "suspended",
    "suspension",
    "verify your",
    "within 24 hours",
    "locked",
    "unusual activity",
    "unauthorized",
    "confirm your",
    "action required",
    "final notice",
)


class MailError(ValueError):
    """A file that is not a readable mail; the message says why."""


class MailLink(msgspec.Struct, frozen=True, kw_only=True):
    """A link found in the mail body, with the text shown to the reader."""

    url: str
    text: str
    finding: Finding | None
    error: str | None = None
    text_host_mismatch: bool = False  # the visible text shows another host than the link


class MailReport(msgspec.Struct, frozen=True, kw_only=True):
    """What ``phish mail`` prints (``--json`` gives exactly this object)."""

    subject: str
    from_address: str
    from_display: str
    from_domain: str
    reply_to: list[str]
    return_path: str
    authentication: dict[str, str]  # spf / dkim / dmarc -> pass, fail, softfail, none, ...
    display_brand: str | None  # a brand named in the display name or subject
    sender_is_brand: bool  # the From domain is one of that brand's domains
    urgency: list[str]
    links: list[MailLink]
    verdict: str  # phishing, suspicious or benign
    score: float
    reasons: list[str]
    reasons_ja: list[str]


_C0_OR_SPACE = "".join(chr(c) for c in range(0x21))


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[tuple[str, str]] = []
        self.text: list[str] = []
        self._href: str | None = None
        self._buf: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._end_link()  # a browser ends an open <a> at the next one: it stays a link
            # As a browser reads an href (WHATWG URL): spaces and control characters around
            # it stripped, tabs and newlines inside it removed, so " https://x" is a link too
            href = (dict(attrs).get("href") or "").strip(_C0_OR_SPACE)
            self._href = re.sub(r"[\t\n\r]", "", href)
            self._buf = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "a":
            self._end_link()

    def close(self) -> None:
        super().close()
        self._end_link()  # an <a> never closed is a link to the end of the document

    def _end_link(self) -> None:
        if self._href is not None:
            self.links.append((self._href, "".join(self._buf).strip()))
            self._href = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._href is not None:
            self._buf.append(data)


_URL_IN_TEXT = re.compile(r"(?:https?://|www\.)[^\s<>\"'「」（）()、。]+", re.IGNORECASE)


# What the standard library's header parsers raise on some malformed headers: their own
# MessageError (HeaderParseError, a bad base64 encoded-word) and, from the structured parser,
# plain errors (a CR inside a display name, an address group where a mailbox was expected, a
# truncated angle address).
_HEADER_PARSE_FAILURES = (errors.MessageError, ValueError, AttributeError, IndexError, TypeError)


def _header_values(msg: EmailMessage, name: str) -> list[str]:
    """Every value of header ``name``, decoded; read as plain text where parsing it fails.

    A lure is written by the attacker: a From header the structured parser chokes on must
    still be shown (and the mail still analysed), not crash the analysis of the whole mail.
    """
    try:
        return [str(v) for v in msg.get_all(name, []) or []]
    except _HEADER_PARSE_FAILURES:
        return [_decoded(v) for k, v in msg.raw_items() if k.lower() == name.lower()]


def _decoded(raw: str) -> str:
    """A raw header value with its encoded-words (=?utf-8?B?...?=) decoded where they read."""
    # The parser keeps a raw header's 8-bit bytes (UTF-8 written without an encoded-word) as
    # surrogate escapes: turn them back into the characters they spell.
    try:
        text = str(raw).encode("ascii", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # already characters (a message parsed from text)
        text = str(raw)
    unfolded = re.sub(r"\r?\n[ \t]", " ", text)
    try:
        return str(make_header(decode_header(unfolded)))
    except (*_HEADER_PARSE_FAILURES, LookupError, UnicodeError):
        return unfolded


def _header(msg: EmailMessage, name: str) -> str:
    values = _header_values(msg, name)
    return values[0] if values else ""


def _auth_results(msg: EmailMessage) -> dict[str, str]:
    out: dict[str, str] = {}
    for header in _header_values(msg, "Authentication-Results"):
        # A result is "; method=result" (RFC 8601). Comments and property values can hold the
        # sender's own text (smtp.mailfrom=dmarc=pass@phish.example), so comments are dropped
        # (one pass: linear time, and a stray "(" cannot hide what follows its comment) and a
        # method counts only right after a semicolon.
        text = re.sub(r"\([^()]*\)", " ", str(header))
        for method in ("spf", "dkim", "dmarc"):
            m = re.search(rf";\s*{method}\s*=\s*([a-z]+)", text, re.IGNORECASE)
            if m and method not in out:
                out[method] = m.group(1).lower()
    if "spf" not in out:
        received_spf = _header(msg, "Received-SPF").split()
        if received_spf:
            out["spf"] = received_spf[0].lower()
    return out


def _bodies(msg: EmailMessage) -> tuple[str, str]:
    plain, html = [], []
    for part in msg.walk():
        if part.is_multipart() or part.get_content_disposition() == "attachment":
            continue
        ctype = part.get_content_type()
        if ctype not in ("text/plain", "text/html"):
            continue
        try:
            content = part.get_content()
        except (LookupError, UnicodeDecodeError, ValueError):
            payload = part.get_payload(decode=True) or b""
            content = payload.decode("utf-8", errors="replace")
        (html if ctype == "text/html" else plain).append(str(content))
    return "\n".join(plain), "\n".join(html)


def _brand_named(text: str, reg: BrandRegistry) -> str | None:
    low = text.lower()
    for brand in reg:
        names = [brand.name_ja, brand.name_en, *brand.descriptions]
        if any(n and n.lower() in low for n in names):
            return brand.id
        if brand.name_ja.endswith("証券") and brand.name_ja[:-2] and brand.name_ja[:-2] in text:
            return brand.id
    return None


def _link(url: str, text: str, reg: BrandRegistry) -> MailLink:
    try:
        finding = score_url(url, reg, THRESHOLD)
    except URLError as exc:
        return MailLink(url=url[:500], text=text[:200], finding=None, error=str(exc))
    mismatch = False
    match = _URL_IN_TEXT.search(text)
    shown = match.group(0) if match else text.strip()
    if re.fullmatch(r"(?:https?://)?[\w.-]+\.[a-z]{2,}(?:/\S*)?", shown, re.IGNORECASE):
        try:
            mismatch = parse_url(shown).registrable != parse_url(url).registrable
        except URLError:
            mismatch = False
    return MailLink(url=url[:2000], text=text[:200], finding=finding, text_host_mismatch=mismatch)


def analyse_mail(data: bytes, registry: BrandRegistry | None = None) -> MailReport:
    """Analyse one raw RFC 5322 message. Raises :class:`MailError` for what is not a mail."""
    reg = registry or default_registry()
    if len(data) > MAX_MAIL_BYTES:
        raise MailError(f"{len(data):,} bytes; a mail is at most {MAX_MAIL_BYTES:,}")
    if not data.strip():
        raise MailError("empty file")
    try:
        msg = BytesParser(policy=policy.default).parsebytes(data)
    except RecursionError:
        # the email package recurses once per MIME level: a few kB of nesting exhaust it
        raise MailError("MIME parts nested too deeply to read") from None
    if not any(_header(msg, h) for h in ("From", "Subject", "Date", "Message-ID", "Received")):
        raise MailError("no mail headers (From, Subject, Date, ...): not an .eml file")
    subject = _header(msg, "Subject")
    display, address = parseaddr(_header(msg, "From"))
    from_domain = address.rpartition("@")[2].lower()
    reply_to = [a for _, a in getaddresses(_header_values(msg, "Reply-To")) if a]
    return_path = parseaddr(_header(msg, "Return-Path"))[1]
    auth = _auth_results(msg)
    plain, html = _bodies(msg)

    pairs: list[tuple[str, str]] = []
    if html:
        parser = _Links()
        parser.feed(html)
        parser.close()
        pairs += [(h, t) for h, t in parser.links if h.lower().startswith(("http", "www."))]
    seen = {h for h, _ in pairs}
    for m in _URL_IN_TEXT.finditer(plain):
        if m.group(0) not in seen:
            seen.add(m.group(0))
            pairs.append((m.group(0), m.group(0)))
    links = [_link(h, t, reg) for h, t in pairs[:MAX_LINKS]]

    display_brand = _brand_named(display, reg) or _brand_named(subject, reg)
    brand = reg.get(display_brand) if display_brand else None
    sender_is_brand = bool(brand and registrable_domain(from_domain) in brand.domains)
    body = f"{subject}\n{plain}\n{html}".lower()
    urgency = [p for p in URGENCY_PHRASES if p.lower() in body]
    facts = {
        "subject": subject,
        "from_address": address,
        "from_display": display,
        "from_domain": from_domain,
        "reply_to": reply_to,
        "return_path": return_path,
        "authentication": auth,
        "display_brand": display_brand,
        "sender_is_brand": sender_is_brand,
        "urgency": urgency,
        "links": links,
    }
    return _decide(facts, brand)


def _decide(facts: dict[str, Any], brand: Brand | None) -> MailReport:
    """Weigh the facts of a mail into a verdict with reasons in both languages."""
    auth: dict[str, str] = facts["authentication"]
    links: list[MailLink] = facts["links"]
    from_domain: str = facts["from_domain"]
    reply_to: list[str] = facts["reply_to"]
    urgency: list[str] = facts["urgency"]
    impersonates = brand is not None and not facts["sender_is_brand"]
    en: list[str] = []
    ja: list[str] = []
    score = max((lk.finding.score for lk in links if lk.finding), default=0.0)
    phishing_links = [lk for lk in links if lk.finding and lk.finding.is_phishing]
    if phishing_links:
        en.append(f"{len(phishing_links)} link(s) scored as phishing")
        ja.append(f"{len(phishing_links)} 件のリンクがフィッシングと判定されました")
    failed = sorted(k for k, v in auth.items() if v in ("fail", "softfail", "permerror", "none"))
    if failed:
        en.append("sender authentication failed: " + ", ".join(f"{k}={auth[k]}" for k in failed))
        ja.append("送信元認証に失敗: " + ", ".join(f"{k}={auth[k]}" for k in failed))
    if impersonates and brand is not None:
        sender = from_domain or "an unknown domain"
        en.append(f"names {brand.name_en} but is sent from {sender}")
        ja.append(
            f"{brand.name_ja}を名乗っていますが送信元は {from_domain or '不明なドメイン'} です"
        )
    if reply_to and any(r.rpartition("@")[2].lower() != from_domain for r in reply_to):
        en.append("Reply-To goes to another domain than From")
        ja.append("Reply-To が From と異なるドメインです")
    mismatched = [lk for lk in links if lk.text_host_mismatch]
    if mismatched:
        en.append(f"{len(mismatched)} link(s) show one address and go to another")
        ja.append(f"{len(mismatched)} 件のリンクは表示と実際の行き先が異なります")
    if urgency:
        en.append("urgency phrases: " + ", ".join(urgency[:6]))
        ja.append("緊急性をあおる表現: " + "、".join(urgency[:6]))
    mail_signals = bool(failed) + impersonates + bool(mismatched)
    if phishing_links or (mail_signals >= 2 and (urgency or links)):
        verdict = "phishing"
        score = max(score, 0.5 + 0.1 * mail_signals)
    elif mail_signals or (urgency and links and not facts["sender_is_brand"]):
        verdict = "suspicious"
    else:
        verdict = "benign"
    return MailReport(
        **facts,
        verdict=verdict,
        score=round(min(score, 1.0), 4),
        reasons=en,
        reasons_ja=ja,
    )
