"""Notice fields from events: where and on what a sign-in happened, in words a customer reads.

The place is the country of the address (translated in the notice: ``JP`` becomes 日本 or
Japan); no city, because the offline database the guard uses knows none and a wrong city would
alarm more than inform. The network is the provider's name, the device the browser and system.
"""

from __future__ import annotations

from collections.abc import Callable

from brokerguard.events import LoginAttempt, SessionActivity
from brokerguard.netinfo import NetworkInfo, shared_lookup
from brokerguard.useragent import parse_user_agent

__all__ = ["device_text", "login_fields"]

_KIND = {"hosting": "hosting/VPN", "anonymizer": "anonymizer"}


def device_text(user_agent: str) -> str:
    """``Chrome / Windows (pc)``: enough to tell one's own devices apart."""
    browser, os, kind = parse_user_agent(user_agent)
    return f"{browser} / {os} ({kind})"


def login_fields(
    event: LoginAttempt | SessionActivity,
    lookup: Callable[[str], NetworkInfo] | None = None,
) -> dict[str, str]:
    """The ``place``, ``network`` and ``device`` fields of a ``new_login``/``new_device`` notice.

    A hosting provider or anonymizer is said so: a sign-in "from a data centre" is what a
    customer should notice.
    """
    info = (lookup or shared_lookup())(event.ip)
    network = info.asn if info.asn not in ("?", "private") else "unknown"
    if info.kind in _KIND:
        network = f"{network} [{_KIND[info.kind]}]"
    return {"place": info.country, "network": network, "device": device_text(event.user_agent)}
