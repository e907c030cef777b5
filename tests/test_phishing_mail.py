"""Mail analysis on real-format .eml files (tests/data/phishing/), all addresses invented."""

from __future__ import annotations

from pathlib import Path

import pytest

from brokerguard.phishing._mail import MailError, analyse_mail

DATA = Path(__file__).parent / "data" / "phishing"


def read(name: str) -> bytes:
    return (DATA / name).read_bytes()


def test_iso2022jp_lure() -> None:
    raw = read("lure-iso2022jp.eml")
    assert b"=?iso-2022-jp?b?" in raw.lower()  # the subject really is an encoded-word
    r = analyse_mail(raw)
    assert r.subject == "【重要】お客様のアカウントの本人確認について（24時間以内）"
    assert r.from_display == "SBI証券"
    assert r.from_domain == "sbisec-notice.example-phish.top"
    assert r.authentication == {"spf": "fail", "dkim": "none", "dmarc": "fail"}
    assert r.display_brand == "sbi" and not r.sender_is_brand
    assert {"重要", "24時間以内", "不正アクセス"} <= set(r.urgency)
    assert r.verdict == "phishing"
    (link,) = r.links
    assert link.text == "https://www.sbisec.co.jp/ETGate/"
    assert link.text_host_mismatch  # shows the real site, goes elsewhere
    assert link.finding is not None and link.finding.is_phishing
    assert any("SBI証券を名乗って" in s for s in r.reasons_ja)


def test_utf8_lure_with_translate_proxy_link() -> None:
    r = analyse_mail(read("lure-utf8-translate.eml"))
    assert r.subject.startswith("【緊急】Urgent")
    assert "口座の一時停止" in r.subject
    assert r.display_brand == "monex"
    assert r.reply_to == ["desk@another.example-phish.xyz"]
    assert {"緊急", "urgent", "suspended"} <= set(r.urgency)
    html_link = next(lk for lk in r.links if lk.text == "ログイン")
    assert html_link.finding is not None
    assert html_link.finding.hops == ["google_translate_proxy"]
    assert html_link.finding.brand == "monex"
    assert r.verdict == "phishing"
    assert any("Reply-To" in s for s in r.reasons)


def test_legitimate_notice_is_benign() -> None:
    r = analyse_mail(read("notice-legit.eml"))
    assert r.subject == "メンテナンスのお知らせ"
    assert r.sender_is_brand and r.display_brand == "matsui"
    assert r.authentication["dmarc"] == "pass"
    assert r.verdict == "benign"
    assert all(lk.finding and not lk.finding.is_phishing for lk in r.links)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00binary", "not an .eml"),
        (b"hello world\n", "not an .eml"),
    ],
)
def test_not_a_mail(data: bytes, problem: str) -> None:
    with pytest.raises(MailError, match=problem):
        analyse_mail(data)


def _html_mail(html: str) -> bytes:
    return (
        "From: SBI証券 <info@sbisec-notice.example-phish.top>\r\nSubject: 【重要】\r\n"
        "Content-Type: text/html; charset=utf-8\r\n\r\n" + html + "\r\n"
    ).encode()


def test_href_with_whitespace_around_or_inside_is_still_a_link() -> None:
    # browsers strip the spaces around an href and drop tabs and newlines inside it
    r = analyse_mail(
        _html_mail('<a href=" \nhttps://sbisec-jp.example-\nphish.top/login ">ログイン</a>')
    )
    (link,) = r.links
    assert link.url == "https://sbisec-jp.example-phish.top/login"
    assert link.finding is not None and link.finding.is_phishing


@pytest.mark.parametrize(
    "html",
    [
        '<p><a href="https://sbisec-jp.example-phish.top/login">ログイン</p>',  # never closed
        '<a href="https://sbisec-jp.example-phish.top/login">ログイン<a name="x"></a>',  # next <a>
    ],
)
def test_an_anchor_closed_implicitly_is_still_a_link(html: str) -> None:
    # a browser ends an <a> at the next <a> or the end of the document, and it stays a link
    r = analyse_mail(_html_mail(html))
    assert [(lk.url, lk.text) for lk in r.links] == [
        ("https://sbisec-jp.example-phish.top/login", "ログイン")
    ]
    assert r.links[0].finding is not None and r.links[0].finding.is_phishing


def test_authentication_results_reads_methods_not_property_values() -> None:
    # the envelope sender (the phisher's choice) appears in a comment and in smtp.mailfrom
    raw = (
        "Authentication-Results: mx.example.jp;\r\n"
        "  spf=softfail (mx.example.jp: domain of dmarc=pass@example-phish.top does not\r\n"
        "  designate 203.0.113.9 as permitted sender)\r\n"
        "  smtp.mailfrom=dmarc=pass@example-phish.top;\r\n"
        "  dkim=none (message not signed; spf=pass);\r\n"
        "  dmarc=fail (p=REJECT) header.from=sbisec.co.jp\r\n"
        "From: SBI証券 <info@sbisec.co.jp>\r\nSubject: 【重要】\r\n\r\nhello\r\n"
    ).encode()
    r = analyse_mail(raw)
    assert r.authentication == {"spf": "softfail", "dkim": "none", "dmarc": "fail"}


def test_mime_nested_too_deeply_is_a_mail_error() -> None:
    # the standard library's parser recurses once per level: a small file can exhaust the stack
    level = b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n"
    raw = b"From: a@example-phish.top\r\n" + b"".join(level % (i, i) for i in range(2000))
    with pytest.raises(MailError, match="nested"):
        analyse_mail(raw)


@pytest.mark.parametrize(
    ("from_header", "display"),
    [
        # an encoded display name that decodes to a line break: the structured parser refuses
        # to build the address (ValueError), so the raw header is read instead
        ("=?utf-8?B?U0JJ6Ki85Yi4DQrjgrXjg53jg7zjg4g=?= <info@sbi-notice.example-phish.top>", "SBI"),
        # an address cut off after its "@": the parser ran off the end (IndexError)
        ("SBI証券 <info@", "SBI証券"),
    ],
)
def test_a_from_header_the_parser_chokes_on_is_still_analysed(
    from_header: str, display: str
) -> None:
    """Found by mutating the fixtures: the attacker writes the headers, so a malformed one
    must not stop the analysis (it crashed it, uncaught, before)."""
    raw = (
        f"From: {from_header}\r\nSubject: =?utf-8?B?44CQ6YeN6KaB44CR?=\r\n\r\n"
        "https://sbisec.example-phish.top/ETGate/\r\n"
    ).encode()
    r = analyse_mail(raw)
    assert r.from_display.startswith(display)
    assert r.subject == "【重要】" and "重要" in r.urgency
    assert r.display_brand == "sbi" and r.verdict == "phishing"
