"""The console's message catalogue: every UI string in Japanese and English.

Kept as one small table rather than gettext files: the console has a few dozen strings, and a
test can check that each has both languages. The language comes from ``?lang=`` (remembered in a
cookie), else the cookie, else Japanese, the language of the analysts it was made for.
"""

from __future__ import annotations

from starlette.requests import Request

from brokerguard.cookies import HOST_PREFIX

__all__ = ["LANG_COOKIE", "LANGS", "MESSAGES", "language", "translator"]

LANGS = ("ja", "en")
LANG_COOKIE = "bg_lang"

MESSAGES: dict[str, tuple[str, str]] = {
    # key: (ja, en)
    "title": ("BrokerGuard 分析コンソール", "BrokerGuard analyst console"),
    "login": ("ログイン", "Log in"),
    "logout": ("ログアウト", "Log out"),
    "username": ("ユーザー名", "Username"),
    "password": ("パスワード", "Password"),
    "login_failed": ("ユーザー名またはパスワードが違います。", "Wrong username or password."),
    "login_throttled": (
        "ログインの失敗が続いたため、約{minutes}分間受け付けません。",
        "Too many wrong passwords: try again in about {minutes} min.",
    ),
    "alerts": ("アラート", "Alerts"),
    "alert": ("アラート", "Alert"),
    "llr": ("重み（対数尤度比）", "Weight (log-likelihood ratio)"),
    "campaigns": ("キャンペーン", "Campaigns"),
    "cases": ("ケース", "Cases"),
    "reports": ("レポート", "Reports"),
    "account": ("口座", "Account"),
    "severity": ("重大度", "Severity"),
    "detector": ("検知器", "Detector"),
    "status": ("状態", "Status"),
    "any": ("すべて", "any"),
    "filter": ("絞り込み", "Filter"),
    "time": ("時刻（UTC）", "Time (UTC)"),
    "point": ("判定点", "Point"),
    "action": ("判定", "Decision"),
    "score": ("スコア", "Score"),
    "reasons": ("理由", "Reasons"),
    "signals": ("検知シグナルと根拠", "Detector signals and evidence"),
    "assignee": ("担当", "Assignee"),
    "assign_me": ("自分に割り当て", "Assign to me"),
    "snooze": ("スヌーズ（24時間）", "Snooze (24 h)"),
    "snoozed_until": ("スヌーズ期限", "Snoozed until"),
    "show_snoozed": ("スヌーズ中も表示", "Show snoozed"),
    "open_case": ("ケースを開く", "Open a case"),
    "timeline": ("タイムライン", "Timeline"),
    "no_alerts": ("アラートはありません。", "No alerts."),
    "pages": ("ページ移動", "Pages"),
    "page": ("ページ", "Page"),
    "previous": ("前へ", "Previous"),
    "next": ("次へ", "Next"),
    "event": ("イベント", "Event"),
    "where": ("接続元", "Where"),
    "device": ("端末", "Device"),
    "factors": ("認証要素", "Factors"),
    "details": ("詳細", "Details"),
    "signal": ("シグナル", "Signal"),
    "evidence": ("根拠", "Evidence"),
    "no_evidence": ("根拠の記録なし", "no evidence recorded"),
    "signal_no_text": (
        "（このコードの説明文がポリシーにありません）",
        "(the policy has no sentence for this code)",
    ),
    "signal_not_the_case": (
        "該当せず（本人らしい点）: {text}",
        "Not the case (points to the customer): {text}",
    ),
    "yes": ("はい", "yes"),
    "no": ("いいえ", "no"),
    # evidence_ + a signal's evidence key: its name (a key not listed shows as its code alone)
    "evidence_ip": ("IPアドレス", "IP address"),
    "evidence_country": ("国", "country"),
    "evidence_asn": ("ネットワーク事業者（AS）", "network operator (AS)"),
    "evidence_network": ("ネットワークの種類", "network kind"),
    "evidence_new": ("初めての階層", "first-seen level"),
    "evidence_user_agent": ("ブラウザ識別（ハッシュ）", "browser (hash)"),
    "evidence_cookie": ("端末Cookie（ハッシュ）", "device cookie (hash)"),
    "evidence_hour": ("時刻（時）", "hour"),
    "evidence_passkey": ("パスキーでのログイン回数", "sign-ins by passkey"),
    "evidence_password": (
        "同じブラウザからのパスワードでのログイン回数",
        "password sign-ins from those browsers",
    ),
    "evidence_trusted": ("信頼済み", "trusted"),
    "evidence_login_seen": ("ログインの記録あり", "sign-in seen"),
    "evidence_symbol": ("銘柄", "symbol"),
    "evidence_daily_value_jpy": ("1日の売買代金（円）", "daily traded value (JPY)"),
    "evidence_campaign": ("キャンペーン", "campaign"),
    "evidence_market": ("市場", "market"),
    "evidence_field": ("変更項目", "changed field"),
    "evidence_sold_share": ("売却した割合", "share sold"),
    "evidence_above_pct": ("直近値からの乖離（%）", "above last price (%)"),
    "evidence_account": ("この口座の失敗回数", "failures on this account"),
    "evidence_address": ("このアドレスからの失敗回数", "failures from this address"),
    "evidence_count": ("回数", "count"),
    "evidence_from": ("前回の国", "previous country"),
    "evidence_to": ("今回の国", "this country"),
    "evidence_minutes": ("経過時間（分）", "minutes since"),
    "evidence_key": ("一致した基盤", "matched infrastructure"),
    "evidence_origin": ("複製ページの表示元", "cloned page's origin"),
    "evidence_host": ("ホスト名", "host"),
    "evidence_listed": ("ブロックリスト掲載", "on the blocklist"),
    "evidence_brand": ("なりすまし対象ブランド", "impersonated brand"),
    "evidence_hours_ago": ("変更からの時間（時間）", "hours since the change"),
    "evidence_share": ("残高に対する割合", "share of the balance"),
    "evidence_z": ("通常の規模からの偏差（標準偏差）", "deviation from usual size (σ)"),
    "evidence_changed": ("変わった項目", "what changed"),
    "evidence_session": ("セッション", "session"),
    "evidence_actions": ("重要操作の回数", "sensitive actions"),
    "evidence_since": ("再確認の要求時刻", "re-verification asked at"),
    "evidence_keys": ("不正と確認された基盤", "confirmed-fraud infrastructure"),
    # entity_ + the kind of an infrastructure key named as a value (a canary's ``key``, a
    # confirmed fraud's ``keys``): the kind's name, then the value
    "entity_ip": ("IPアドレス", "IP address"),
    "entity_asn": ("ネットワーク事業者（AS）", "network (AS)"),
    "entity_ua": ("AS・ブラウザ", "AS and browser"),
    # evidence_kind_ + the kind of a prefixed evidence key (``ip:<address>``, ``asn:<AS>``,
    # ``ua:<AS>/<browser hash>``): shown as the kind's name and the key's value; the count
    # beside it is of other accounts seen there
    "evidence_kind_ip": ("同じIPアドレスの他口座", "other accounts on IP address"),
    "evidence_kind_asn": ("同じネットワーク事業者（AS）の他口座", "other accounts on network (AS)"),
    "evidence_kind_ua": ("同じAS・ブラウザの他口座", "other accounts on AS and browser"),
    "locked": ("ロック中", "Locked"),
    "actions": ("操作", "Actions"),
    "release_order": ("保留注文を承認", "Release held order"),
    "cancel_order": ("保留注文を取消", "Cancel held order"),
    "lock": ("口座をロック", "Lock account"),
    "freeze": ("お客さまによる凍結", "Frozen by the customer"),
    "unlock": ("ロック解除", "Unlock account"),
    "force_reverify": ("再本人確認を要求", "Force re-verification"),
    "trust_device": ("端末を信頼済みにする", "Mark device trusted"),
    "confirm_fraud": (
        "不正と確認（接続元を全口座で警戒）",
        "Confirmed fraud (its address, for every account)",
    ),
    "confirm_customer": ("お客さまご本人の操作と確認", "Confirmed the customer's own"),
    "dismiss_campaign": (
        "攻撃ではないと判断（封じ込め解除）",
        "Campaign dismissed (containment ended)",
    ),
    "note": ("メモ", "Note"),
    "past_actions": ("これまでの操作", "Actions taken"),
    "instructions": (
        "エンジンからの指示（未約定注文の取消・ログアウト）",
        "Instructions (orders to cancel while open, sessions to sign out)",
    ),
    "instruction_kind": ("指示", "Instruction"),
    "cancel_orders": ("未約定注文の取消", "Cancel open orders"),
    "end_session": ("セッションのログアウト", "Sign the session out"),
    "session": ("セッション", "Session"),
    "orders": ("注文", "Orders"),
    "cause": ("きっかけ", "Cause"),
    "actor": ("実行者", "By"),
    "target": ("対象", "Target"),
    "needs_supervisor": (
        "口座の操作にはスーパーバイザー以上の権限が必要です。",
        "Account actions need the supervisor role or above.",
    ),
    "symbols": ("銘柄", "Symbols"),
    "linked_accounts": ("関連口座", "Linked accounts"),
    "infrastructure": ("共有インフラ", "Shared infrastructure"),
    "graph": ("口座とインフラのつながり", "Accounts and shared infrastructure"),
    "buy_waves": ("買いの波", "Buy waves"),
    "axis_price": ("約定価格（円）", "fill price (¥)"),
    "axis_volume": ("出来高（株）", "volume (shares)"),
    "axis_time": ("時刻（UTC）", "time (UTC)"),
    "legend_account": ("口座（クリックでタイムライン）", "account (click: its timeline)"),
    "legend_infrastructure": ("共有インフラ", "shared infrastructure"),
    "legend_link": ("口座がそのインフラを使用", "the account used it"),
    "no_buy_waves": (
        "このキャンペーンの銘柄の買い約定は記録されていません。",
        "No buy fills of this campaign's symbols recorded.",
    ),
    "no_infrastructure": (
        "口座が共有する接続元・ネットワークは見つかっていません。",
        "No address or network shared by the accounts found.",
    ),
    "no_timeline": ("記録はまだありません。", "Nothing recorded yet."),
    "bought_jpy": ("買付金額（円）", "Bought (¥)"),
    "price_volume": ("約定価格と出来高", "Fill price and volume"),
    "no_fills": ("この銘柄の約定はまだ記録されていません。", "No fills of this symbol recorded."),
    "raised_at": ("検知時刻（UTC）", "Raised at (UTC)"),
    "contain": ("封じ込め済みにする", "Mark contained"),
    "contain_help": (
        "分析者の記録のみ（検知と封じ込めは続きます）",
        "For the record (detection and containment go on)",
    ),
    "close_help": (
        "分析者の記録のみ（検知と封じ込めは続きます）",
        "For the record (detection and containment go on)",
    ),
    "dismiss": ("攻撃ではない（封じ込め解除）", "Not an attack (end containment)"),
    "dismiss_help": (
        "正当な売買の集中などと判断した場合: 銘柄と通信基盤への追加認証・保留を止めます",
        "A legitimate frenzy or shared network: stop stepping up its symbols and infrastructure",
    ),
    "campaign": ("キャンペーン", "Campaign"),
    "dismissed": ("攻撃ではない", "dismissed"),
    "contained": ("封じ込め済み", "contained"),
    "active": ("進行中", "active"),
    "close": ("クローズ", "Close"),
    "case_title": ("件名", "Title"),
    "outcome": ("結論", "Outcome"),
    "fraud": ("不正", "Fraud"),
    "not_fraud": ("不正ではない", "Not fraud"),
    "outcome_needed": (
        "クローズするには結論（不正／不正ではない）を選んでください。",
        "To close a case, choose its outcome (fraud or not fraud).",
    ),
    "notes": ("メモ", "Notes"),
    "labels": ("ラベル（カンマ区切り）", "Labels (comma-separated)"),
    "add_note": ("メモを追加", "Add note"),
    "save": ("保存", "Save"),
    "open": ("未対応", "open"),
    "acknowledged": ("確認済み", "acknowledged"),
    "investigating": ("調査中", "investigating"),
    "closed": ("クローズ", "closed"),
    "no_cases": ("ケースはありません。", "No cases."),
    "created_by": ("作成者", "Opened by"),
    "opened_at": ("作成日時（UTC）", "Opened at (UTC)"),
    "updated_at": ("最終更新（UTC）", "Last change (UTC)"),
    "no_campaigns": (
        "キャンペーンは検知されていません。",
        "No campaigns detected.",
    ),
    "monthly": ("月次報告（当局様式）", "Monthly report (regulator's table)"),
    "compensation": ("補償計算", "Compensation calculator"),
    "download_csv": ("CSVをダウンロード", "Download CSV"),
    "policy": ("補償方針", "Policy"),
    "payout": ("補償額", "Payout"),
    "chart_count": ("件数", "count"),
    "chart_million_yen": ("金額（百万円）", "¥ million"),
    "chart_month": ("月（日本時間）", "month (Japan time)"),
    "chart_logins": ("不正アクセス件数", "unauthorized logins"),
    "chart_trades": ("不正取引件数", "unauthorized trades"),
    "chart_sold": ("売却金額", "value sold"),
    "chart_bought": ("買付金額", "value bought"),
    "months_jst": (
        "月は日本時間の暦月です（当局様式）。",
        "Months are calendar months in Japan time, as the regulator counts them.",
    ),
    "summary": ("方針ごとの集計", "Summary by policy"),
    "victims_paid": ("補償対象", "Victims paid"),
    "victims_unpaid": ("対象外", "Not paid"),
    "total_payout": ("補償総額", "Total payout"),
    "no_compensation": (
        "補償の対象となる被害はありません。",
        "No losses to compensate.",
    ),
    "rows": ("件", "rows"),
    "explanation": ("説明", "Explanation"),
    "reports_source": ("データ元", "Source data"),
    "records_source": (
        "サービスの記録（不正と判定して閉じたケースを不正として集計）",
        "The service's records (cases closed as fraud say what was unauthorized)",
    ),
    "blocklist": ("ブロックリスト審査", "Block-list review"),
    "blocklist_help": (
        "学習モデルだけがフィッシングと判定したホストです。承認するとブロックリストに載り、"
        "そこから来たログインには追加認証が求められます。却下したホストは二度と審査待ちに"
        "なりません。ルールで判定されたホストは審査なしで載ります。",
        "Hosts that only the learned model called phishing. Approved, a host enters the "
        "block-list and sign-ins referred from it are stepped up; a rejected host is never "
        "queued again. Hosts the rules call phishing enter the list without review.",
    ),
    "blocklist_loaded": ("稼働中のブロックリスト", "Block-list in force"),
    "blocklist_entries": ("件", "entries"),
    "blocklist_since": ("読み込み", "loaded"),
    "blocklist_none": (
        "このサービスはブロックリストのファイルを監視していません（serve --blocklist）。"
        "承認したホストは登録時のファイルに書き込まれます。",
        "This service watches no block-list file (serve --blocklist); an approved host is "
        "written to the file it was queued for.",
    ),
    "blocklist_error": (
        "ファイルを読み込めなかったため、前のリストを使い続けています",
        "The file could not be read; the previous list stays in force",
    ),
    "host": ("ホスト", "Host"),
    "reported_url": ("報告されたURL", "Reported URL"),
    "queued": ("登録", "Queued"),
    "decided": ("判断", "Decided"),
    "approve": ("承認（ブロックリストへ）", "Approve (into the block-list)"),
    "reject": ("却下（フィッシングではない）", "Reject (not phishing)"),
    "pending": ("審査待ち", "pending"),
    "approved": ("承認済み", "approved"),
    "rejected": ("却下", "rejected"),
    "no_pending": ("審査待ちのホストはありません。", "No hosts to review."),
    "not_found": ("見つかりません。", "Not found."),
    "request_unlock": ("お客さまのロック解除依頼", "Unlock asked by the customer"),
    "unlocks": ("ロック解除待ち", "Waiting for unlock"),
    "unlocks_help": (
        "ロックまたは凍結されたままの口座です（新しい順）。パスキーで本人確認できないお客さまは"
        "窓口での解除を依頼できます。本人確認の方法をメモに書いて解除してください"
        "（お客さまのサイトはこのメモで解除依頼を完了します）。",
        "Accounts still locked or frozen, newest first. A customer who cannot re-verify with a "
        "passkey may ask for an analyst's unlock. Unlock with a note saying how the identity "
        "was checked (the broker's site completes the customer's request with it).",
    ),
    "unlocks_all": ("すべて", "All"),
    "unlocks_requested_only": ("解除依頼ありのみ", "Requested only"),
    "no_unlocks": ("ロック解除を待つ口座はありません。", "No account waits for an unlock."),
    "accounts_counted": ("口座", "accounts"),
    "alerts_counted": ("件", "alerts"),
    "cases_counted": ("件", "cases"),
    "events_counted": ("イベント", "events"),
    "span_of": ("{what} {first}–{last}（全 {total} 件中）", "{what} {first}–{last} of {total}"),
    "locked_since": ("ロック開始", "Locked since"),
    "locked_by": ("ロックしたもの", "Locked by"),
    "unlock_requested": ("お客さまの解除依頼", "Customer's unlock request"),
    "requested": ("依頼あり", "Requested"),
    "unlock_note": ("本人確認の方法（必須）", "How the identity was checked (required)"),
    "origin_policy": ("判定ポリシー", "Policy decision"),
    "origin_analyst": ("分析者", "Analyst"),
    "origin_customer": (
        "凍結（お客さま・証券会社サイト経由）",
        "Freeze (the customer, through the broker's site)",
    ),
    "origin_system": ("証券会社のシステム", "Broker's system"),
    "then": ("その後", "Then"),
    "point_login": ("ログイン時", "at sign-in"),
    "point_order": ("注文時", "at an order"),
    "point_withdrawal": ("出金時", "at a withdrawal"),
    "point_settings": ("設定変更時", "at a settings change"),
    "language": ("English", "日本語"),
    "role_analyst": ("アナリスト", "analyst"),
    "role_supervisor": ("スーパーバイザー", "supervisor"),
    "role_admin": ("管理者", "admin"),
    # codes the pages show, named: severity_, detector_, decision_, event_, campaign_ + code
    "severity_low": ("低", "low"),
    "severity_medium": ("中", "medium"),
    "severity_high": ("高", "high"),
    "severity_critical": ("重大", "critical"),
    "detector_login": ("ログイン", "sign-in"),
    "detector_session": ("セッション", "session"),
    "detector_account": ("口座の変更・出金", "account changes"),
    "detector_trading": ("売買", "trading"),
    "detector_campaign": ("キャンペーン", "campaign"),
    "detector_analyst": ("分析者の判断", "analysts' conclusions"),
    "detector_policy": ("判定ポリシーの規則", "policy rule"),
    "decision_allow": ("許可", "allow"),
    "decision_challenge": ("追加認証", "challenge"),
    "decision_hold": ("保留", "hold"),
    "decision_deny": ("拒否", "deny"),
    "decision_lock": ("ロック", "lock"),
    "event_login": ("ログイン", "sign-in"),
    "event_challenge": ("追加認証の結果", "step-up result"),
    "event_session": ("セッション", "session"),
    "event_order": ("注文", "order"),
    "event_execution": ("約定", "fill"),
    "event_withdrawal": ("出金", "withdrawal"),
    "event_settings": ("設定変更", "settings change"),
    "event_canary": ("偽サイト検知", "canary"),
    "event_analyst": ("分析者の判断", "analyst's conclusion"),
    "event_holdings": ("保有状況", "holdings"),
    "event_account": ("口座情報", "account"),
    "event_instrument": ("銘柄情報", "instrument"),
    "event_bar": ("価格足", "price bar"),
    "order_new": ("新規", "new"),
    "order_cancel": ("取消", "cancel"),
    "side_buy": ("買い", "buy"),
    "side_sell": ("売り", "sell"),
    "field_email": ("メールアドレス", "e-mail address"),
    "field_phone": ("電話番号", "phone number"),
    "field_bank_account": ("出金先口座", "payout bank account"),
    "field_password": ("パスワード", "password"),
    "field_mfa": ("多要素認証", "multi-factor authentication"),
    "field_passkey": ("パスキー", "passkey"),
    "field_notifications": ("通知設定", "notification settings"),
    "factor_password": ("パスワード", "password"),
    "factor_passkey": ("パスキー", "passkey"),
    "factor_sms": ("SMS認証コード", "SMS code"),
    "factor_email": ("メール認証コード", "e-mail code"),
    "factor_totp": ("認証アプリ", "authenticator app"),
    "factor_oob": ("登録連絡先への確認コード", "code to the registered contact"),
    "outcome_passed": ("成功", "passed"),
    "outcome_failed": ("失敗", "failed"),
    "outcome_abandoned": ("中断", "abandoned"),
    "session_view": ("閲覧", "page view"),
    "session_portfolio": ("資産状況の閲覧", "portfolio viewed"),
    "session_orders": ("注文画面", "orders page"),
    "session_settings": ("設定画面", "settings page"),
    "session_logout": ("ログアウト", "signed out"),
    "network_isp": ("プロバイダー", "ISP"),
    "network_hosting": ("データセンター・VPN", "hosting/VPN"),
    "network_anonymizer": ("匿名化サービス", "anonymizer"),
    "network_private": ("内部ネットワーク", "private"),
    "network_unknown": ("不明", "unknown"),
    "device_pc": ("パソコン", "PC"),
    "device_phone": ("スマートフォン", "phone"),
    "device_tablet": ("タブレット", "tablet"),
    "device_other": ("その他", "other"),
    "signin_success": ("成功", "success"),
    "signin_failed": ("失敗", "failed"),
    "campaign_raised": ("検知", "raised"),
    "campaign_account": ("口座", "account"),
    "campaign_symbol": ("銘柄", "symbol"),
    "campaign_infrastructure": ("共有インフラ", "infrastructure"),
    "campaign_counterparty": ("売り手", "counterparty"),
    "campaign_dismissed": ("攻撃ではないと判断", "dismissed"),
}


def language(request: Request) -> str:
    """``ja`` or ``en``: the query's ``lang``, else the cookie, else Japanese.

    The cookie is ``__Host-bg_lang`` behind HTTPS (:mod:`brokerguard.cookies`), which only this
    host can set over HTTPS; the bare ``bg_lang`` is read when there is none — over HTTP, and
    for a choice made before the prefix, until the reader chooses again (at worst a cookie tossed
    in from a sibling host picks the page's language, nothing else).
    """
    asked = request.query_params.get("lang")
    if asked in LANGS:
        return asked
    kept = request.cookies.get(HOST_PREFIX + LANG_COOKIE)  # behind HTTPS
    if kept not in LANGS:  # over HTTP, or chosen before the cookie took the prefix
        kept = request.cookies.get(LANG_COOKIE)
    return kept if kept in LANGS else "ja"


def translator(lang: str):  # noqa: ANN201 - a plain function for templates
    """``t(key)`` for templates; an unknown key shows itself, so a gap is visible, not fatal."""
    index = LANGS.index(lang)

    def t(key: str) -> str:
        pair = MESSAGES.get(key)
        return pair[index] if pair is not None else key

    return t
