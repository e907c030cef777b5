"""Telling customers what happens in their account: e-mail, SMS/push webhooks, JA/EN notices.

Notices never contain links and always tell the customer to use the bookmarked site or the
app; delivery happens on a worker thread, is retried with back-off and recorded, and never
blocks or fails the decision that caused it.
"""

from brokerguard.notify.contacts import Contact, Contacts, MemoryContacts, mask
from brokerguard.notify.describe import device_text, login_fields
from brokerguard.notify.outbox import (
    Channel,
    Delivery,
    DeliveryLog,
    Notifier,
    Notify,
    Retry,
    format_when,
)
from brokerguard.notify.smtp import SmtpChannel, build_message
from brokerguard.notify.templates import KINDS, Rendered, TemplateError, defang, fields_of, render
from brokerguard.notify.webhook import (
    SIGNATURE_HEADER,
    PermanentDeliveryError,
    WebhookChannel,
    sign,
    verify_signature,
)

__all__ = [
    "KINDS",
    "SIGNATURE_HEADER",
    "Channel",
    "Contact",
    "Contacts",
    "Delivery",
    "DeliveryLog",
    "MemoryContacts",
    "Notifier",
    "Notify",
    "PermanentDeliveryError",
    "Rendered",
    "Retry",
    "SmtpChannel",
    "TemplateError",
    "WebhookChannel",
    "build_message",
    "defang",
    "device_text",
    "fields_of",
    "format_when",
    "login_fields",
    "mask",
    "render",
    "sign",
    "verify_signature",
]
