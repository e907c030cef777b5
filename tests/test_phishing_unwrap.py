"""Unwrapping of translation proxies and redirectors, decoded from the URL text alone."""

from __future__ import annotations

import base64

import pytest

from brokerguard.phishing import score_url, untranslate_host, unwrap


def hosts(url: str) -> list[tuple[str, str]]:
    return [(h.via, h.url.host) for h in unwrap(url)]


@pytest.mark.parametrize(
    ("url", "via", "host"),
    [
        (
            "https://sbisec-jp-example--phish-top.translate.goog/ETGate/?_x_tr_sl=auto&_x_tr_tl=ja",
            "google_translate_proxy",
            "sbisec.jp.example-phish.top",
        ),
        (
            "https://translate.google.com/translate?sl=auto&tl=ja&u=https://monex.example-phish.top/",
            "google_translate",
            "monex.example-phish.top",
        ),
        (
            "https://www.google.com/url?q=https://daiwa.example-phish.top/login&sa=D",
            "google_redirect",
            "daiwa.example-phish.top",
        ),
        (
            "https://apc01.safelinks.protection.outlook.com/?url=https%3A%2F%2Fnomura.example-phish.top%2F&data=x",
            "outlook_safelinks",
            "nomura.example-phish.top",
        ),
        (
            "https://urldefense.com/v3/__https://matsui.example-phish.top/sp/login__;!!AbC",
            "proofpoint_urldefense",
            "matsui.example-phish.top",
        ),
        (
            "https://urldefense.proofpoint.com/v2/url?u=https-3A__matsui.example-2Dphish.top_sp_login"
            "&d=DwMFaQ&c=abc&r=def",
            "proofpoint_urldefense",
            "matsui.example-phish.top",
        ),
        (
            "https://web.archive.org/web/20250101000000/https://rakutensec.example-phish.top/",
            "wayback_machine",
            "rakutensec.example-phish.top",
        ),
        (
            "https://redirect.example.net/out?url=https://sbisec.example-phish.top/",
            "redirect_parameter",
            "sbisec.example-phish.top",
        ),
    ],
)
def test_unwrap_reaches_the_real_target(url: str, via: str, host: str) -> None:
    chain = hosts(url)
    assert chain[0][0] == "input"
    assert (via, host) in chain


def test_bing_redirect_base64() -> None:
    target = "https://sbisec.example-phish.top/"
    code = base64.urlsafe_b64encode(target.encode()).decode().rstrip("=")
    chain = hosts(f"https://www.bing.com/ck/a?!&&p=abc&u=a1{code}&ntb=1")
    assert chain[-1] == ("bing_redirect", "sbisec.example-phish.top")


@pytest.mark.parametrize("code", ["a1%C3%A9", "a1\u00e9", "a1%FF%FE", "a1!!!", "a1/w=="])
def test_bing_redirect_undecodable_ends_the_chain(code: str) -> None:
    url = f"https://www.bing.com/ck/a?u={code}"
    assert [h.via for h in unwrap(url)] == ["input"]
    assert score_url(url).verdict == "benign"


def test_translate_proxy_keeps_the_query_as_written() -> None:
    # parse_qsl decodes %20 and + to spaces: re-joined unencoded, the target stopped parsing
    # and the chain ended at the proxy, hiding the phishing host behind a space in the query
    url = (
        "https://sbisec-example--phish-top.translate.goog/login"
        "?next=%2Fhome%20page&q=a+b&v=x%26y&_x_tr_sl=ja&_x_tr_tl=en"
    )
    chain = unwrap(url)
    assert [(h.via, h.url.host) for h in chain][-1] == (
        "google_translate_proxy",
        "sbisec.example-phish.top",
    )
    assert chain[-1].url.query == "next=%2Fhome%20page&q=a+b&v=x%26y"
    assert score_url(url).is_phishing


def test_untranslate_host() -> None:
    assert untranslate_host("www-sbisec-co-jp") == "www.sbisec.co.jp"
    assert untranslate_host("rakuten--sec-example-com") == "rakuten-sec.example.com"


def test_translated_official_site_is_benign_but_translated_phish_is_not() -> None:
    legit = score_url("https://www-sbisec-co-jp.translate.goog/ETGate/?_x_tr_sl=ja&_x_tr_tl=en")
    assert legit.verdict == "benign"
    assert legit.hops == ["google_translate_proxy"]
    phish = score_url("https://sbisec-example--phish-top.translate.goog/?_x_tr_sl=ja&_x_tr_tl=en")
    assert phish.is_phishing and phish.brand == "sbi"
    assert phish.reasons[0].code == "unwrapped"
    assert phish.target and "example-phish.top" in phish.target


def test_redirect_on_official_domain_to_phish_is_phishing() -> None:
    f = score_url("https://www.sbisec.co.jp/redirect?url=https://sbisec-jp.example-phish.top/")
    assert f.is_phishing
    assert f.host == "sbisec-jp.example-phish.top"


def test_userinfo_trick() -> None:
    f = score_url("https://www.sbisec.co.jp%E2%88%95login@example-phish.top/")
    assert f.host == "example-phish.top"
    assert "userinfo_trick" in {r.code for r in f.reasons}
    assert f.is_phishing


def test_backslash_before_at_is_a_path_not_a_user_name() -> None:
    # Browsers read a backslash as "/" in a web URL: this goes to example-phish.top, not the firm
    f = score_url("https://sbisec-login.example-phish.top\\@www.sbisec.co.jp/")
    assert f.host == "sbisec-login.example-phish.top"
    assert "official_domain" not in {r.code for r in f.reasons}
    assert f.is_phishing
    assert unwrap("https:\\\\sbisec.example-phish.top\\login")[0].url.host == (
        "sbisec.example-phish.top"
    )


def test_percent_encoded_capital_in_the_host_is_read_as_browsers_do() -> None:
    # a browser decodes %53 to "S" and lower-cases the host: this opens sbisec-jp.example-...
    f = score_url("https://%53bisec-jp.example-phish.top/login")
    assert f.host == "sbisec-jp.example-phish.top"
    assert f.is_phishing and f.brand == "sbi"


def test_undecodable_inner_target_ends_the_chain() -> None:
    chain = unwrap("https://www.google.com/url?q=https://exa%20mple/")
    assert [h.via for h in chain] == ["input"]


def test_unwrap_loops_are_bounded() -> None:
    url = "https://r.example.net/?url=https://r.example.net/?url=https://r.example.net/"
    assert len(unwrap(url)) <= 6
