"""E-mail delivery over SMTP (stdlib smtplib), with Japanese subjects encoded properly."""

from __future__ import annotations

import smtplib
import ssl
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from brokerguard.notify.templates import Rendered
from brokerguard.notify.webhook import PermanentDeliveryError

__all__ = ["SmtpChannel", "build_message"]


def build_message(sender: str, to: str, notice: Rendered, *, sender_name: str = "") -> EmailMessage:
    """A plain-text UTF-8 mail: EmailMessage encodes a Japanese subject as RFC 2047 words.

    Plain text on purpose: an HTML part could hide a link behind innocent text.

    ``to`` must be one address (``ValueError`` otherwise): the recipients are read from the
    ``To`` header, so a registered address ``me@example.jp, other@example.net`` would send
    every notice, one-time codes included, to a second mailbox.
    """
    try:
        recipient = Address(addr_spec=to)
    except (ValueError, IndexError):  # IndexError: the parser's answer to ""
        # the parser's message quotes the address, and errors go to the delivery log
        raise ValueError("the recipient is not one e-mail address") from None
    msg = EmailMessage()
    msg["Subject"] = notice.subject
    msg["From"] = Address(display_name=sender_name, addr_spec=sender) if sender_name else sender
    msg["To"] = recipient
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = make_msgid(domain=sender.partition("@")[2] or None)
    msg["Content-Language"] = notice.lang
    msg["X-BrokerGuard-Notice"] = notice.kind
    msg.set_content(notice.body, charset="utf-8")
    return msg


class SmtpChannel:
    """Sends notices to the registered e-mail address through one SMTP relay.

    One connection per message: notices are rare and a long-lived connection would need its
    own health checks. ``timeout`` bounds how long a dead relay can hold the delivery worker
    (never the caller: the notifier sends off the decision path).
    """

    name = "email"

    def __init__(
        self,
        host: str,
        port: int = 25,
        *,
        sender: str,
        sender_name: str = "",
        timeout: float = 10.0,
        starttls: bool = False,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.sender = sender
        self.sender_name = sender_name
        self.timeout = timeout
        self.starttls = starttls
        self.username = username
        self.password = password

    def send(self, to: str, notice: Rendered) -> None:
        """Deliver one notice; raises smtplib/OSError errors for the notifier to retry.

        An address that is not one mailbox is a :class:`PermanentDeliveryError`: no retry
        makes it one."""
        try:
            msg = build_message(self.sender, to, notice, sender_name=self.sender_name)
        except ValueError as exc:
            raise PermanentDeliveryError(str(exc)) from exc
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self.username is not None:
                    smtp.login(self.username, self.password or "")
                smtp.send_message(msg)
        except smtplib.SMTPRecipientsRefused as exc:
            raise PermanentDeliveryError(f"recipient refused: {exc.recipients}") from exc
        except smtplib.SMTPResponseException as exc:
            if 500 <= exc.smtp_code < 600:  # 5xx: the relay will say the same next time
                raise PermanentDeliveryError(f"SMTP {exc.smtp_code}: {exc.smtp_error!r}") from exc
            raise

    def __repr__(self) -> str:
        return f"SmtpChannel({self.host!r}, {self.port})"
