"""Reason codes of the phishing scorer and their texts in English and Japanese.

Every finding explains itself with these: a machine-readable ``code``, the evidence ``weight``
it added (log-odds, so the weights of a finding add up to its score before the logistic), the
``detail`` that triggered it (the label, token or wrapper), and one sentence per language for
an analyst or a takedown request.
"""

from __future__ import annotations

import msgspec

__all__ = ["REASONS", "Reason", "make_reason"]


class Reason(msgspec.Struct, frozen=True, kw_only=True):
    """One piece of evidence in a finding."""

    code: str
    weight: float
    detail: str
    en: str
    ja: str
    brand: str | None = None


# code: (English, Japanese); "{d}" is replaced by the detail.
REASONS: dict[str, tuple[str, str]] = {
    "official_domain": (
        "{d} is a domain of the firm itself",
        "{d} は正規のドメインです",
    ),
    "related_domain": (
        "{d} belongs to a company of the same group",
        "{d} は同じグループ会社のドメインです",
    ),
    "brand_domain_in_host": (
        "the host imitates the real domain {d}",
        "ホスト名が正規ドメイン {d} を模倣しています",
    ),
    "brand_in_subdomain": (
        "brand name '{d}' in a subdomain of an unrelated domain",
        "無関係なドメインのサブドメインにブランド名「{d}」が含まれています",
    ),
    "brand_in_domain": (
        "brand name '{d}' in the registered domain",
        "登録ドメイン名にブランド名「{d}」が含まれています",
    ),
    "brand_embedded": (
        "brand name '{d}' inside a longer word of the host",
        "ホスト名の単語の中にブランド名「{d}」が含まれています",
    ),
    "weak_brand": (
        "brand abbreviation '{d}' in the host",
        "ホスト名にブランドの略称「{d}」が含まれています",
    ),
    "brand_typo": (
        "'{d}' is a misspelling of the brand name",
        "「{d}」はブランド名のつづりを変えたものです",
    ),
    "ascii_lookalike": (
        "'{d}' imitates the brand name with look-alike characters (1/l/i, 0/o, rn/m)",
        "「{d}」は似た文字（1/l/i、0/o、rn/m など）でブランド名を模倣しています",
    ),
    "idn_homoglyph": (
        "internationalized host '{d}' imitates the brand with look-alike letters",
        "国際化ドメイン「{d}」が似た文字でブランド名を模倣しています",
    ),
    "mixed_script": (
        "host mixes letters of several scripts: {d}",
        "ホスト名に複数の文字体系が混在しています: {d}",
    ),
    "idn_host": (
        "internationalized (punycode) host {d}",
        "国際化ドメイン（punycode）です: {d}",
    ),
    "brand_in_path": (
        "brand name '{d}' in the path or query of an unrelated site",
        "無関係なサイトのパスまたはクエリにブランド名「{d}」が含まれています",
    ),
    "brand_domain_in_path": (
        "the real domain {d} is copied into the path",
        "正規ドメイン {d} がパスに書き込まれています",
    ),
    "securities_word": (
        "securities word in the path: {d}",
        "パスに証券を表す語があります: {d}",
    ),
    "login_path_copied": (
        "path copied from the firm's login page: {d}",
        "正規サイトのログインページのパスを模倣しています: {d}",
    ),
    "ip_host": (
        "the host is a bare IP address ({d})",
        "ホスト名が IP アドレスです（{d}）",
    ),
    "cheap_tld": (
        "top-level domain .{d} is common in phishing",
        "トップレベルドメイン .{d} はフィッシングでよく使われます",
    ),
    "random_domain": (
        "the registered name '{d}' looks randomly generated",
        "登録ドメイン名「{d}」は無作為に生成されたように見えます",
    ),
    "random_subdomain": (
        "subdomain '{d}' looks randomly generated",
        "サブドメイン「{d}」は無作為に生成されたように見えます",
    ),
    "numbered_series": (
        "numbered domain name '{d}', typical of bulk registrations",
        "連番のドメイン名「{d}」（大量登録の特徴）",
    ),
    "kit_subdomain": (
        "long word subdomain on a short random domain, a phishing-kit pattern: {d}",
        "短い無作為なドメインに長い単語のサブドメイン（フィッシングキットの特徴）: {d}",
    ),
    "long_label": (
        "unusually long host label ({d} characters)",
        "ホスト名のラベルが異常に長いです（{d} 文字）",
    ),
    "random_path": (
        "short random path '{d}', typical of phishing kits",
        "フィッシングキットに典型的な短い無作為なパス「{d}」",
    ),
    "spa_fragment": (
        "single-page login route in the fragment: {d}",
        "フラグメントにログイン画面のルートがあります: {d}",
    ),
    "login_words": (
        "login words in the path: {d}",
        "パスにログイン関連の語があります: {d}",
    ),
    "random_query": (
        "long random token in the query: {d}",
        "クエリに長い無作為なトークンがあります: {d}",
    ),
    "free_hosting": (
        "hosted on a free or serverless platform ({d})",
        "無料・サーバーレスのホスティング上にあります（{d}）",
    ),
    "dynamic_dns": (
        "host under a dynamic-DNS provider ({d})",
        "ダイナミック DNS サービスのホスト名です（{d}）",
    ),
    "shortener": (
        "URL shortener hides the target ({d})",
        "短縮 URL で実際の行き先が隠されています（{d}）",
    ),
    "tracker": (
        "mail click-tracking redirect hides the target ({d})",
        "メールのクリック計測用リダイレクトで行き先が隠されています（{d}）",
    ),
    "userinfo_trick": (
        "text before '@' disguises the real host: {d}",
        "「@」の前の文字列で本当のホスト名を偽装しています: {d}",
    ),
    "japan_affix": (
        "'jp'/'japan' added to a non-Japanese domain: {d}",
        "日本以外のドメインに「jp」「japan」が付けられています: {d}",
    ),
    "jp_domain_in_path": (
        "a Japanese domain name ({d}) is copied into the path of a foreign site",
        "海外のサイトのパスに日本のドメイン名（{d}）が書き込まれています",
    ),
    "domain_in_subdomain": (
        "another domain name is written in front of the real one: {d}",
        "本当のドメインの前に別のドメイン名が書かれています: {d}",
    ),
    "query_token": (
        "a bare random token as the whole query ({d}), a per-victim kit id",
        "クエリ全体が無作為なトークンです（{d}）（被害者ごとのキット ID）",
    ),
    "uppercase_host": (
        "host written in capitals ({d}), a trick to slip past filters",
        "フィルター回避のためホスト名が大文字で書かれています（{d}）",
    ),
    "path_token": (
        "a single short token as the whole path ({d}), as phishing kits use",
        "パス全体が短いトークン一つです（{d}）（フィッシングキットの特徴）",
    ),
    "learned_pattern": (
        "a model trained on reported phishing URLs adds its judgement; strongest features: {d}",
        "報告済みフィッシング URL で学習したモデルの判定を加えました。主な特徴: {d}",
    ),
    "unwrapped": (
        "unwrapped {d}",
        "{d} を展開しました",
    ),
}


def make_reason(code: str, weight: float, detail: object, brand: str | None = None) -> Reason:
    """A reason with its texts filled in; ``code`` must be one of :data:`REASONS`."""
    en, ja = REASONS[code]
    d = str(detail)
    return Reason(
        code=code,
        weight=round(weight, 3),
        detail=d,
        en=en.format(d=d),
        ja=ja.format(d=d),
        brand=brand,
    )
