"""Server addresses fit for a log line or an error message.

Brokers write credentials into their connection URLs (``nats://user:secret@host:4222``,
``postgresql://guard:secret@db/guard``, ``redis://:secret@cache:6379``); what the commands
print about a server must name it without them.
"""

from __future__ import annotations

__all__ = ["shown_url"]


def shown_url(url: str) -> str:
    """``url`` (or a comma-separated list of them, as NATS takes) without user names,
    passwords or tokens; anything else, a file path say, is left as it is."""
    return ", ".join(_without_userinfo(u.strip()) for u in str(url).split(","))


def _without_userinfo(url: str) -> str:
    scheme, sep, rest = url.rpartition("://")
    authority, slash, path = rest.partition("/")
    host = authority.rpartition("@")[2]
    return f"{scheme}{sep}{host}{slash}{path}"
