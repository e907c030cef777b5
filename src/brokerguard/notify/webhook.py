"""Webhook delivery (httpx) for SMS and push providers, signed with HMAC-SHA256.

The body is JSON; the header ``X-BrokerGuard-Signature: t=<unix seconds>,v1=<hex>`` carries
the HMAC of ``"<t>." + body`` under a shared secret, so the provider can check that the message
comes from the broker and is fresh (:func:`verify_signature` is what a receiver runs).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import httpx

from brokerguard.notify.templates import Rendered

__all__ = [
    "SIGNATURE_HEADER",
    "PermanentDeliveryError",
    "WebhookChannel",
    "sign",
    "verify_signature",
]

SIGNATURE_HEADER = "X-BrokerGuard-Signature"


class PermanentDeliveryError(Exception):
    """A refusal that retrying will not change (a 4xx answer, a rejected recipient)."""


def sign(secret: bytes, body: bytes, timestamp: int) -> str:
    """The signature header value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_signature(
    secret: bytes, body: bytes, header: str, *, now: float | None = None, tolerance: float = 300
) -> bool:
    """True when ``header`` signs ``body`` with ``secret`` and is at most ``tolerance`` s old."""
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        timestamp = int(parts["t"])
        given = parts["v1"]
    except (KeyError, ValueError):
        return False
    if not given.isascii():
        return False  # compare_digest raises TypeError on a str with non-ASCII characters
    now = time.time() if now is None else now
    try:
        if abs(now - timestamp) > tolerance:
            return False
    except OverflowError:  # a t= of more than 308 digits is no float
        return False
    expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    return hmac.compare_digest(expected, given)


class WebhookChannel:
    """POSTs each notice to a provider's endpoint; ``name`` is the channel it serves (sms, push).

    The payload carries the short text (``text``) for SMS/push and the subject, never a link.
    5xx answers and network errors are retried by the notifier; other non-2xx answers (except
    408 and 429) are permanent.
    """

    def __init__(
        self,
        url: str,
        secret: bytes,
        *,
        name: str = "sms",
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not secret:
            raise ValueError("a webhook needs a non-empty signing secret")
        self.url = url
        self.secret = secret
        self.name = name
        self._client = httpx.Client(timeout=timeout, transport=transport)

    def send(self, to: str, notice: Rendered) -> None:
        payload = {
            "channel": self.name,
            "to": to,
            "kind": notice.kind,
            "lang": notice.lang,
            "subject": notice.subject,
            "text": notice.short,
        }
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            SIGNATURE_HEADER: sign(self.secret, body, int(time.time())),
        }
        response = self._client.post(self.url, content=body, headers=headers)
        status = response.status_code
        if 200 <= status < 300:
            return
        if status < 500 and status not in (408, 429):
            raise PermanentDeliveryError(f"webhook answered {status}")
        response.raise_for_status()
        raise httpx.HTTPStatusError(
            f"webhook answered {status}", request=response.request, response=response
        )

    def close(self) -> None:
        self._client.close()

    def __repr__(self) -> str:
        return f"WebhookChannel({self.url!r}, name={self.name!r})"
