"""Every text the customer reads on the reference site, in Japanese and English.

One table, like the console's (:mod:`brokerguard.web.i18n`), so a test can check that each key
has both languages. The language comes from ``?lang=``, then the ``bg_lang`` cookie, then
Japanese. Texts never ask the customer to follow a link from a mail: mails have none.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["MESSAGES", "translator"]

MESSAGES: dict[str, tuple[str, str]] = {
    "site": ("デモ証券", "Demo Securities"),
    "language": ("English", "日本語"),
    "login": ("ログイン", "Log in"),
    "logout": ("ログアウト", "Log out"),
    "account_id": ("口座番号", "Account number"),
    "password": ("パスワード", "Password"),
    "or": ("または", "or"),
    "login_passkey": ("パスキーでログイン", "Log in with a passkey"),
    "login_failed": ("口座番号またはパスワードが違います。", "Wrong account number or password."),
    "login_locked_hint": (
        "口座がロックまたは凍結されている場合は、こちらから再開できます。",
        "If your account is locked or frozen, you can reopen it here.",
    ),
    "login_refused": (
        "このログインはお受けできませんでした。ご不明な点はお問い合わせください。",
        "This sign-in was refused. Please contact us if you need help.",
    ),
    "bookmark_hint": (
        "当社サイトへは、ご自身で登録したブックマークまたは公式アプリからアクセスしてください。"
        "メールやSMSのリンクからはログインしないでください。",
        "Open this site only from your own bookmark or the official app; never sign in from a"
        " link in a mail or SMS.",
    ),
    "portfolio": ("資産状況", "Portfolio"),
    "cash": ("預り金", "Cash"),
    "positions": ("保有銘柄", "Holdings"),
    "symbol": ("銘柄", "Symbol"),
    "quantity": ("数量", "Quantity"),
    "price": ("価格", "Price"),
    "limit_price": ("指値（円）", "Limit price (JPY)"),
    "side": ("売買", "Side"),
    "buy": ("買い", "Buy"),
    "sell": ("売り", "Sell"),
    "order": ("注文", "Order"),
    "place_order": ("注文する", "Place order"),
    "orders": ("注文履歴", "Orders"),
    "status": ("状態", "Status"),
    "placed": ("約定", "filled"),
    "waiting": ("確認待ち", "awaiting confirmation"),
    "refused": ("お受けできません", "refused"),
    "order_placed": ("ご注文を約定しました。", "Your order was filled."),
    "order_bad_symbol": ("銘柄をお選びください。", "Choose a symbol."),
    "order_bad_side": ("売買をお選びください。", "Choose buy or sell."),
    "order_bad_quantity": (
        "数量は1〜1,000,000の整数で入力してください。",
        "Quantity: a whole number from 1 to 1,000,000.",
    ),
    "order_bad_price": (
        "指値は0より大きく1億円未満で入力してください（成行は空欄）。",
        "Limit price: above 0 and below ¥100,000,000 (empty for a market order).",
    ),
    "order_not_held": (
        "保有数量を超える売り注文はお受けできません。",
        "You cannot sell more shares than you hold.",
    ),
    "order_no_cash": (
        "ご注文の金額が預り金を超えています。",
        "The order costs more than your cash.",
    ),
    "order_refused": (
        "このご注文はお受けできませんでした。",
        "This order could not be accepted.",
    ),
    "order_rejected": (
        "ご注文を取り消しました。お心当たりのない操作は、お問い合わせ窓口へご連絡ください。",
        "The order was cancelled. If it was not yours, please contact us.",
    ),
    "order_rejected_signed_out": (
        "ご注文を取り消し、安全のためログアウトしました。お心当たりのない操作は、"
        "パスワードを変更のうえお問い合わせ窓口へご連絡ください。",
        "The order was cancelled and this session signed out for safety. If it was not yours,"
        " change your password and contact us.",
    ),
    "settings": ("セキュリティ設定", "Security settings"),
    "recent_logins": ("最近のログイン", "Recent sign-ins"),
    "time": ("日時（日本時間）", "Time (Japan time)"),
    "market_order": ("成行", "market"),
    "place": ("場所", "Place"),
    "network": ("ネットワーク", "Network"),
    "device": ("端末・ブラウザ", "Device and browser"),
    "factor": ("認証方法", "Method"),
    "result": ("結果", "Result"),
    "allowed": ("成功", "signed in"),
    "challenged": ("追加認証", "extra check"),
    "wrong_password": ("パスワード誤り", "wrong password"),
    "locked": ("ロック中", "locked"),
    "sessions": ("ログイン中のセッション", "Active sessions"),
    "started": ("開始（日本時間）", "Started (Japan time)"),
    "this_session": ("この端末", "this device"),
    "sign_out": ("ログアウトさせる", "Sign out"),
    "passkeys": ("パスキー", "Passkeys"),
    "passkey": ("パスキー", "Passkey"),  # a sign-in's factor, beside "password"
    "no_passkeys": (
        "パスキーは未登録です。フィッシングに強いパスキーの登録をおすすめします。",
        "No passkey yet. We recommend a passkey: it cannot be phished.",
    ),
    "name": ("名前", "Name"),
    "created": ("登録日時", "Added"),
    "last_used": ("最終利用", "Last used"),
    "rename": ("名前を変更", "Rename"),
    "remove": ("削除", "Remove"),
    "add_passkey": ("パスキーを追加", "Add a passkey"),
    "passkey_name": ("パスキーの名前", "Passkey name"),
    "passkey_name_invalid": (
        "名前は1〜64文字で入力してください（空白だけにはできません）。",
        "A name has 1 to 64 characters (not only spaces).",
    ),
    "passkey_name_blank": (
        "パスキーの名前を入力してください（例: 「自宅のパソコン」「私のスマートフォン」）。"
        "どの端末のパスキーかを、あとで見分けるための名前です。",
        "Please give the passkey a name (for example \u201chome PC\u201d or \u201cmy phone\u201d):"
        " it tells you later which device the passkey is on.",
    ),
    "flagged": ("複製の疑いにより停止中", "suspended: it looks cloned"),
    "reauth_needed": (
        "パスキーの削除には、パスキーでの再認証が必要です。",
        "Removing a passkey needs a fresh passkey verification.",
    ),
    "reauth": ("パスキーで再認証", "Verify with a passkey"),
    "reauth_done": ("再認証済み（5分間有効）", "Verified (valid for 5 minutes)"),
    "notifications": ("通知設定", "Notifications"),
    "notice_new_login": ("ログインのお知らせ", "New sign-ins"),
    "notice_new_device": ("新しい端末からのログイン", "Sign-ins from a new device"),
    "notice_unusual_order": ("普段と異なるご注文", "Orders unlike your usual trading"),
    "notice_order_held": ("保留したご注文", "Held orders"),
    "always_sent": (
        "口座のロック、確認コード、パスキーや連絡先の変更のお知らせは、常にすべての経路で送信します。",
        "Notices of a lock, confirmation codes and changes of passkeys or contact details are"
        " always sent on every channel.",
    ),
    "channel_email": ("メール", "E-mail"),
    "channel_sms": ("SMS・プッシュ通知", "SMS / push"),
    "save": ("保存", "Save"),
    "saved": ("保存しました。", "Saved."),
    "freeze_title": ("緊急停止", "Emergency freeze"),
    "freeze_text": (
        "身に覚えのない操作があった場合は、ただちに口座を凍結してください。"
        "お取引と出金がすぐに停止し、すべてのセッションがログアウトされます。"
        "再開には本人確認が必要です。",
        "If you see anything you did not do, freeze your account now: trading and withdrawals"
        " stop at once and every session is signed out. Reopening needs an identity check.",
    ),
    "freeze_confirm": ("口座を凍結することに同意します", "Yes, freeze my account"),
    "freeze": ("口座を凍結する", "Freeze my account"),
    "stepup": ("ご本人確認", "Confirm it is you"),
    "stepup_intro": (
        "安全のため、次の操作の前にご本人確認をお願いします。",
        "For your safety, please confirm it is you before this operation goes ahead.",
    ),
    "operation": ("操作", "Operation"),
    "op_login": ("ログイン", "Sign-in"),
    "op_passkey": ("パスキーの登録", "Adding a passkey"),
    "op_notifications": ("通知設定の変更", "Changing notification settings"),
    "why": ("確認の理由", "Why we ask"),
    "use_passkey": ("パスキーで確認", "Confirm with a passkey"),
    "send_code": ("登録メールアドレスに確認コードを送る", "Send a code to my registered e-mail"),
    "code_sent": ("確認コードを送信しました（宛先: {0}）。", "We sent a code to {0}."),
    "code": ("確認コード", "Code"),
    "confirm": ("確認する", "Confirm"),
    "not_me": ("私の操作ではありません", "This was not me"),
    "hold_intro": (
        "このご注文は普段のお取引と異なるため保留しています。登録メールアドレスに送った確認コードを"
        "入力すると実行されます。",
        "This order differs from your usual trading, so it is held. Enter the code we sent to"
        " your registered e-mail address to let it go ahead.",
    ),
    "wrong_code": ("確認できませんでした。残り{0}回です。", "That did not verify; {0} tries left."),
    "stepup_failed": (
        "ご本人確認ができなかったため、操作を中止しました。",
        "We could not confirm it was you, so the operation was stopped.",
    ),
    "stepup_gone": (
        "この確認は終了しているか、期限が切れています。もう一度操作してください。",
        "This check has ended or expired. Please start the operation again.",
    ),
    "unlock": ("ロック解除・再開", "Unlock and reopen"),
    "unlock_intro": (
        "ロックまたは凍結した口座は、ここで再開できます。口座番号を入力し、登録済みのパスキーで"
        "本人確認してください。",
        "A locked or frozen account is reopened here. Enter the account number and confirm it "
        "is you with your registered passkey.",
    ),
    "unlock_no_passkey": (
        "パスキーをお持ちでない場合は、お問い合わせ窓口で本人確認のうえ再開します。",
        "Without a passkey, our support desk reopens the account after checking your identity.",
    ),
    "unlock_ask": ("窓口での再開を依頼する", "Ask the support desk to reopen"),
    "unlock_asked": (
        "ご依頼を受け付けました。ロック中の口座であれば、担当者が登録済みの電話番号などで本人確認"
        "のうえ再開します。数日たっても連絡がない場合は、お問い合わせ窓口にお電話ください。",
        "We have your request. If the account is locked, our security team reopens it after "
        "checking your identity (for example by calling your registered phone number). If you "
        "hear nothing within a few days, please call our support desk.",
    ),
    "unlock_limited": (
        "お申し込みが多すぎます。しばらくたってからお試しいただくか、お問い合わせ窓口にお電話"
        "ください。",
        "Too many requests. Please try again later or call our support desk.",
    ),
    "unlock_with_passkey": ("パスキーで本人確認して再開", "Confirm with a passkey and reopen"),
    "unlocked": ("口座を再開しました。もう一度ログインしてください。", "Reopened. Please log in."),
    "passkey_failed": (
        "パスキーで確認できませんでした。",
        "The passkey could not be verified.",
    ),
    "error": ("エラー", "Error"),
    "back": ("戻る", "Back"),
    "place_unknown": ("不明", "unknown"),
    "network_isp": ("プロバイダー", "internet provider"),
    "network_hosting": ("データセンター・VPN", "data centre or VPN"),
    "network_anonymizer": ("匿名化サービス", "anonymizer"),
    "network_private": ("社内・家庭内ネットワーク", "private network"),
    "network_unknown": ("不明なネットワーク", "unknown network"),
    "device_pc": ("パソコン", "computer"),
    "device_phone": ("スマートフォン", "phone"),
    "device_tablet": ("タブレット", "tablet"),
    "device_other": ("その他の端末", "other device"),
    "not_found": (
        "お探しのページは見つかりませんでした。",
        "There is no such page on this site.",
    ),
    "bad_method": (
        "このページではその操作はできません。",
        "This page does not take that request.",
    ),
    "guard_down": (
        "ただいま確認ができません。しばらくしてからお試しください。",
        "We cannot check this right now. Please try again shortly.",
    ),
    "frozen": (
        "口座は凍結中のため、この操作はできません。",
        "The account is frozen; this operation is not possible.",
    ),
}


def translator(lang: str) -> Callable[..., str]:
    """``t(key, *args)``; an unknown key shows itself, so a gap is visible, not fatal."""
    index = 0 if lang == "ja" else 1

    def t(key: str, *args: object) -> str:
        pair = MESSAGES.get(key)
        text = pair[index] if pair is not None else key
        return text.format(*args) if args else text

    return t
