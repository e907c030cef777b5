"""Notices: JA/EN texts without links, real SMTP and webhook delivery, retries, no blocking."""

from __future__ import annotations

import re

import pytest
from aiosmtpd.controller import Controller
from servers import HangingServer, Hooks, Inbox, free_port, smtp_server

from brokerguard.notify import (
    KINDS,
    SIGNATURE_HEADER,
    Contact,
    MemoryContacts,
    Notifier,
    Retry,
    SmtpChannel,
    TemplateError,
    WebhookChannel,
    fields_of,
    login_fields,
    render,
    verify_signature,
)

URL = re.compile(r"(?i)https?://|www\.")
SAMPLE = {
    "when": "2025-03-20 10:00 JST",
    "place": "Tokyo, Japan",
    "network": "KDDI (home line)",
    "device": "Chrome on Windows",
    "name": "iPhone",
    "what": "email",
    "order": "BUY 7992 x1000 @144 limit",
    "reason": "failures",
    "code": "123456",
    "minutes": "10",
    "purpose": "login",
    "operation": "withdrawal of ¥500,000",
}
ALICE = Contact(email="alice@example.jp", phone="+819012345678", lang="ja")
BOB = Contact(email="bob@example.com", lang="en")
FAST = Retry(attempts=3, base=0.01, factor=2.0, cap=0.05)


@pytest.mark.parametrize("lang", ["ja", "en"])
@pytest.mark.parametrize("kind", KINDS)
def test_every_notice_has_no_link_and_points_to_the_bookmark_or_app(kind: str, lang: str) -> None:
    fields = {k: SAMPLE[k] for k in fields_of(kind)}
    notice = render(kind, lang, fields, broker="Example Securities")
    for text in (notice.subject, notice.body, notice.short):
        assert not URL.search(text), text
        assert "$" not in text, f"unfilled placeholder in {text!r}"
    if lang == "ja":
        assert "ブックマーク" in notice.body and "公式アプリ" in notice.body
    else:
        assert "bookmark" in notice.body and "official app" in notice.body


def test_attacker_chosen_values_cannot_put_a_link_in_a_notice() -> None:
    fields = {"when": "now", "name": "see https://sbisec.example-phish.top/login now"}
    notice = render("passkey_registered", "en", fields)
    assert not URL.search(notice.body)
    assert "sbisec.example-phish.top" not in notice.body  # no auto-linkable host name either
    assert "sbisec[.]example-phish[.]top" not in notice.body  # the URL went as a whole
    multi = render("passkey_registered", "en", {"when": "now", "name": "a\nCode: 000000"})
    assert "\nCode: 000000" not in multi.body  # a field cannot forge a line of its own


@pytest.mark.parametrize(
    "name", ["x_https://sbisec.example-phish.top/login", "私のhttps://phish.top", "1www.phish.top"]
)
def test_a_link_glued_to_a_word_is_removed_and_the_notice_still_goes(name: str) -> None:
    """A refused notice is a warning the customer never gets: an attacker who adds a passkey
    to a taken-over account would name it so, and the passkey stays while its notice is lost."""
    contacts = MemoryContacts({"A1": ALICE})
    smtp = SmtpChannel("127.0.0.1", 9, sender="n@broker.example.jp")
    notifier = Notifier(contacts, {"email": smtp})  # worker never started: queued is enough
    assert len(notifier.notify("A1", "passkey_registered", {"name": name})) == 1
    for lang in ("ja", "en"):
        notice = render("passkey_registered", lang, {"when": "now", "name": name})
        for text in (notice.subject, notice.body, notice.short):
            assert not URL.search(text) and "phish.top" not in text, text


def test_template_errors_name_the_missing_field_and_known_kinds() -> None:
    with pytest.raises(TemplateError, match="needs the field.*device"):
        render("new_login", "ja", {"when": "x", "place": "y", "network": "z"})
    with pytest.raises(TemplateError, match="unknown notice kind 'nope'.*new_login"):
        render("nope", "ja", {})
    with pytest.raises(TemplateError, match="unknown language 'fr'"):
        render("bank_account_changed", "fr", {"when": "x"})


def test_labels_are_translated() -> None:
    ja = render("contact_changed", "ja", {"when": "x", "what": "email"})
    assert "メールアドレス" in ja.subject
    assert (
        "after repeated" in render("account_locked", "en", {"when": "x", "reason": "failures"}).body
    )


def test_mail_arrives_at_a_real_smtp_server_with_an_encoded_japanese_subject() -> None:
    with smtp_server() as (inbox, port):
        contacts = MemoryContacts({"A1": ALICE})
        smtp = SmtpChannel("127.0.0.1", port, sender="notice@broker.example.jp", timeout=10)
        with Notifier(contacts, {"email": smtp}, broker="Example証券") as notifier:
            fields = {k: SAMPLE[k] for k in ("place", "network", "device")}
            (delivery,) = notifier.notify("A1", "new_login", fields)
            assert notifier.wait_idle(30)
        assert notifier.log.get(delivery).status == "sent"
        assert notifier.log.get(delivery).attempts == 1
        assert notifier.log.get(delivery).recipient == "a***@example.jp"
    mail_from, rcpts, raw = inbox.messages[0]
    assert mail_from == "notice@broker.example.jp" and rcpts == ["alice@example.jp"]
    subject_line = next(line for line in raw.split(b"\r\n") if line.startswith(b"Subject:"))
    assert b"=?utf-8?" in subject_line.lower()  # RFC 2047: no raw 8-bit bytes in the header
    msg = inbox.parsed()
    assert msg["Subject"] == "【Example証券】ログインのお知らせ"
    body = msg.get_content()
    assert "Tokyo, Japan" in body and "Chrome on Windows" in body
    assert not URL.search(body)
    assert "ブックマーク" in body
    assert msg.get_content_type() == "text/plain"


def test_a_dead_smtp_server_neither_delays_nor_fails_the_caller() -> None:
    """The relay accepts the connection and then says nothing, as long as the test wants.

    If ``notify`` waited for the relay, it could only return after the relay let go (or the
    ten-second timeout), and the attempt would no longer be in flight when we look.
    """
    dead = HangingServer()
    try:
        contacts = MemoryContacts({"A1": ALICE})
        smtp = SmtpChannel("127.0.0.1", dead.port, sender="n@broker.example.jp", timeout=10)
        with Notifier(contacts, {"email": smtp}, retry=FAST) as notifier:
            (delivery,) = notifier.notify("A1", "bank_account_changed", {})
            assert dead.accepted.wait(10)  # the worker is inside the SMTP conversation now
            assert not dead.release.is_set()
            assert notifier.log.get(delivery).status == "sending"
            dead.release.set()  # the relay now drops every connection without a greeting
            assert notifier.wait_idle(30)
        record = notifier.log.get(delivery)
        assert record.status == "failed"
        assert record.attempts == FAST.attempts
        assert "SMTPServerDisconnected" in (record.last_error or "")
    finally:
        dead.close()


def test_a_transient_smtp_refusal_is_retried_and_a_permanent_one_is_not() -> None:
    with smtp_server(replies=["451 4.3.0 try again later"]) as (inbox, port):
        contacts = MemoryContacts({"A1": ALICE})
        smtp = SmtpChannel("127.0.0.1", port, sender="n@broker.example.jp")
        with Notifier(contacts, {"email": smtp}, retry=FAST) as notifier:
            (delivery,) = notifier.notify("A1", "bank_account_changed", {})
            assert notifier.wait_idle(30)
        assert notifier.log.get(delivery).status == "sent"
        assert notifier.log.get(delivery).attempts == 2
        assert len(inbox.messages) == 1
    with smtp_server(replies=["550 5.1.1 no such user"]) as (inbox, port):
        smtp = SmtpChannel("127.0.0.1", port, sender="n@broker.example.jp")
        with Notifier(contacts, {"email": smtp}, retry=FAST) as notifier:
            (delivery,) = notifier.notify("A1", "bank_account_changed", {})
            assert notifier.wait_idle(30)
        assert notifier.log.get(delivery).status == "failed"
        assert notifier.log.get(delivery).attempts == 1
        assert inbox.messages == []


def test_webhook_is_signed_retried_and_carries_the_short_text() -> None:
    hooks = Hooks(statuses=[503])
    secret = b"shared-secret"
    try:
        contacts = MemoryContacts({"A1": ALICE})
        sms = WebhookChannel(hooks.url, secret, name="sms")
        with Notifier(contacts, {"sms": sms}, retry=FAST) as notifier:
            (delivery,) = notifier.notify("A1", "one_time_code", {**SAMPLE, "purpose": "login"})
            assert notifier.wait_idle(30)
        sms.close()
        assert notifier.log.get(delivery).status == "sent"
        assert notifier.log.get(delivery).attempts == 2
        headers, body = hooks.requests[-1]
        assert verify_signature(secret, body, headers[SIGNATURE_HEADER])
        assert not verify_signature(b"other", body, headers[SIGNATURE_HEADER])
        assert not verify_signature(secret, body + b" ", headers[SIGNATURE_HEADER])
        payload = hooks.payload()
        assert payload["to"] == "+819012345678" and payload["channel"] == "sms"
        assert "123456" in payload["text"] and not URL.search(payload["text"])
    finally:
        hooks.close()


@pytest.mark.parametrize("mac", ["é" * 64, "\udcff", "０" * 64])
def test_a_signature_with_non_ascii_characters_is_refused_not_an_error(mac: str) -> None:
    # hmac.compare_digest raises TypeError on a str that is not ASCII
    header = f"t=1700000000,v1={mac}"
    assert verify_signature(b"s", b"{}", header, now=1700000000) is False


def test_a_signature_time_too_large_for_a_float_is_refused_not_an_error() -> None:
    # now - t raised OverflowError for a t= of more than 308 digits
    assert verify_signature(b"s", b"{}", "t=" + "9" * 400 + ",v1=00", now=1.7e9) is False


def test_webhook_client_errors_are_permanent() -> None:
    hooks = Hooks(statuses=[400])
    try:
        sms = WebhookChannel(hooks.url, b"s", name="sms")
        with Notifier(MemoryContacts({"A1": ALICE}), {"sms": sms}, retry=FAST) as notifier:
            (delivery,) = notifier.notify("A1", "bank_account_changed", {})
            assert notifier.wait_idle(30)
        sms.close()
        assert notifier.log.get(delivery).status == "failed"
        assert len(hooks.requests) == 1
    finally:
        hooks.close()


def test_a_change_of_contact_is_told_to_the_old_address_in_its_language() -> None:
    with smtp_server() as (inbox, port):
        contacts = MemoryContacts({"A2": BOB})
        smtp = SmtpChannel("127.0.0.1", port, sender="n@broker.example.jp")
        with Notifier(contacts, {"email": smtp}) as notifier:
            old = contacts.set("A2", Contact(email="attacker@example.net", lang="en"))
            notifier.notify("A2", "contact_changed", {"what": "email"}, to=old)
            notifier.notify("A2", "contact_changed", {"what": "email"})
            assert notifier.wait_idle(30)
    assert sorted(m[1][0] for m in inbox.messages) == ["attacker@example.net", "bob@example.com"]
    assert inbox.parsed(0)["Subject"] == "[BrokerGuard] Your e-mail address was changed"


def test_a_full_queue_drops_and_records_instead_of_blocking() -> None:
    contacts = MemoryContacts({"A1": ALICE})
    smtp = SmtpChannel("127.0.0.1", 9, sender="n@broker.example.jp")
    notifier = Notifier(contacts, {"email": smtp}, max_queue=1)  # worker never started
    first = notifier.notify("A1", "bank_account_changed", {})
    second = notifier.notify("A1", "bank_account_changed", {})
    assert len(first) == 1 and second == []
    statuses = [d.status for d in notifier.log.for_account("A1")]
    assert sorted(statuses) == ["dropped", "queued"]


def test_nobody_to_reach_is_not_an_error() -> None:
    notifier = Notifier(MemoryContacts(), {})
    assert notifier.notify("ghost", "bank_account_changed", {}) == []
    with pytest.raises(TemplateError):
        notifier.notify("ghost", "no_such_notice", {})


def test_login_notice_fields_say_where_and_on_what() -> None:
    from datetime import UTC, datetime

    from brokerguard.events import LoginAttempt
    from brokerguard.netinfo import NetworkInfo

    login = LoginAttempt(
        id="l1",
        ts=datetime(2025, 3, 20, tzinfo=UTC),
        account="A1",
        session="s1",
        ip="203.0.113.9",
        user_agent="Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36"
        " (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
        factors=["password"],
        success=True,
    )
    fields = login_fields(login, lambda ip: NetworkInfo("HK", "Alibaba Cloud", "hosting"))
    assert fields == {
        "place": "HK",
        "network": "Alibaba Cloud [hosting/VPN]",
        "device": "Chrome / Windows (pc)",
    }
    ja = render("new_login", "ja", {"when": "x", **fields})
    en = render("new_login", "en", {"when": "x", **fields})
    assert "場所: 香港" in ja.body and "Where: Hong Kong" in en.body


class _RefusingRcpt(Inbox):
    """A relay that refuses the recipient, echoing the address as real relays do (Postfix)."""

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"


def test_a_refused_recipient_stays_masked_in_the_delivery_log() -> None:
    """The log is no address book: the error of a refused recipient names it masked."""
    inbox = _RefusingRcpt()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        smtp = SmtpChannel("127.0.0.1", port, sender="n@broker.example.jp")
        contacts = MemoryContacts({"A1": ALICE})
        with Notifier(contacts, {"email": smtp}, retry=FAST) as notifier:
            (delivery,) = notifier.notify("A1", "bank_account_changed", {})
            assert notifier.wait_idle(30)
    finally:
        controller.stop()
    record = notifier.log.get(delivery)
    assert record.status == "failed" and record.attempts == 1
    assert "a***@example.jp" in (record.last_error or "")
    assert "alice@example.jp" not in (record.last_error or "").lower()


@pytest.mark.parametrize(
    "email",
    [
        "alice@example.jp, attacker@example.net",
        "alice@example.jp\r\nBcc: attacker@example.net",
        "Alice <alice@example.jp>, attacker@example.net",
    ],
)
def test_a_registered_address_is_one_mailbox_and_a_bad_one_fails_at_once(email: str) -> None:
    """A contact's e-mail is one mailbox: a comma made every notice (one-time codes, hold
    confirmations) go to a second recipient too; CR/LF was retried as if the relay were away."""
    with smtp_server() as (inbox, port):
        contacts = MemoryContacts({"A1": Contact(email=email, lang="en")})
        smtp = SmtpChannel("127.0.0.1", port, sender="n@broker.example.jp")
        with Notifier(contacts, {"email": smtp}, retry=FAST) as notifier:
            (delivery,) = notifier.notify("A1", "one_time_code", {**SAMPLE, "purpose": "login"})
            assert notifier.wait_idle(30)
    assert inbox.messages == []
    record = notifier.log.get(delivery)
    assert record.status == "failed" and record.attempts == 1
    assert "alice@example.jp" not in (record.last_error or "")
