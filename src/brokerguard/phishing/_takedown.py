"""Takedown requests: the text a security team sends to a registrar's or host's abuse desk.

One request per finding, in Japanese and English, naming the imitated firm, the URL (defanged,
so that no mail client turns it into a live link), the host and registrable domain, and the
evidence in plain words. The reporter's organisation and contact are filled in by the caller.
"""

from __future__ import annotations

from datetime import UTC, datetime

from brokerguard.phishing._brands import BrandRegistry, default_registry
from brokerguard.phishing._score import Finding

__all__ = ["defang", "takedown_request"]


def defang(text: str) -> str:
    """``https://a.example/x`` -> ``hxxps://a[.]example/x``: readable, not clickable."""
    return text.replace("http", "hxxp", 1).replace(".", "[.]")


def takedown_request(
    finding: Finding,
    *,
    reporter: str = "(your organisation)",
    contact: str = "(your contact address)",
    registry: BrandRegistry | None = None,
    now: datetime | None = None,
) -> str:
    """The request text (Japanese first, then English) for one phishing finding."""
    reg = registry or default_registry()
    brand = reg.get(finding.brand) if finding.brand else None
    when = (now or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    name_ja = brand.name_ja if brand else "当社"
    name_en = brand.name_en if brand else "our company"
    official = ", ".join(brand.domains) if brand else "-"
    url = defang(finding.target or finding.url)
    host = defang(finding.host or "-")
    domain = defang(finding.registrable or "-")
    # The evidence names the phishing host too (domain_in_subdomain, kit_subdomain, ...):
    # defanged like the URL, so that no line of the request is a live link
    shown = [r for r in finding.reasons if r.weight > 0]
    ja = "\n".join(f"・{defang(r.ja)}" for r in shown) or "・（根拠なし）"
    en = "\n".join(f"- {defang(r.en)}" for r in shown) or "- (no evidence)"
    return f"""件名: フィッシングサイトの停止のお願い（{name_ja}を装ったサイト）

ご担当者様

{reporter}です。{name_ja}（正規ドメイン: {official}）を装ったフィッシングサイトが貴社の管理する
ドメインまたはサーバー上で稼働していることを確認しました。利用者の ID・パスワード・ワンタイム
パスワードを詐取するものであり、速やかな停止（テイクダウン）をお願いいたします。

URL:       {url}
ホスト名:  {host}
ドメイン:  {domain}
確認日時:  {when}
判定スコア: {finding.score:.2f}
根拠:
{ja}

連絡先: {contact}

----
Subject: Takedown request: phishing site imitating {name_en}

Dear abuse team,

This is {reporter}. A phishing site imitating {name_en} (official domains: {official}) is
hosted on a domain or server you manage. It collects customers' IDs, passwords and one-time
passwords. Please take it down as soon as possible.

URL:      {url}
Host:     {host}
Domain:   {domain}
Seen:     {when}
Score:    {finding.score:.2f}
Evidence:
{en}

Contact: {contact}
"""
