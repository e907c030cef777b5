"""Where a customer is told things: the registered e-mail address, phone and language."""

from __future__ import annotations

import threading
from typing import Protocol, runtime_checkable

import msgspec

from brokerguard.notify.templates import Lang

__all__ = ["Contact", "Contacts", "MemoryContacts", "mask"]


class Contact(msgspec.Struct, frozen=True, kw_only=True):
    """A customer's registered contact details. ``push`` is a push-provider device token."""

    email: str | None = None
    phone: str | None = None
    push: str | None = None
    lang: Lang = "ja"

    def address(self, channel: str) -> str | None:
        """The address for a channel (``email``, ``sms``, ``push``), or None."""
        return {"email": self.email, "sms": self.phone, "push": self.push}.get(channel)


@runtime_checkable
class Contacts(Protocol):
    """The broker's register of contact details (its customer database, in production)."""

    def get(self, account: str) -> Contact | None: ...


class MemoryContacts:
    """Contacts in a dict, for tests and demos."""

    def __init__(self, contacts: dict[str, Contact] | None = None) -> None:
        self._contacts = dict(contacts or {})
        self._lock = threading.Lock()

    def get(self, account: str) -> Contact | None:
        return self._contacts.get(account)

    def set(self, account: str, contact: Contact) -> Contact | None:
        """Register new details; returns the old ones, which the change notice goes to too."""
        with self._lock:
            old = self._contacts.get(account)
            self._contacts[account] = contact
        return old


def mask(address: str) -> str:
    """Show enough of an address for a customer to recognise it, and no more.

    >>> mask("taro.yamada@example.jp"), mask("+819012345678")
    ('t***@example.jp', '*********5678')
    """
    if "@" in address:
        user, _, domain = address.partition("@")
        return f"{user[:1]}***@{domain}"
    return "*" * max(len(address) - 4, 0) + address[-4:]
