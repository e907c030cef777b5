"""Notification settings: which notices a customer gets, and by which channels.

The customer may switch off the informational notices (a new sign-in, an order unlike the usual)
and choose mail, the webhook channel (SMS/push provider) or both. Notices that protect the
account — a lock, a confirmation code, a passkey added or removed, a contact or payout account
changed — always go out on every channel: a criminal who took over the account must not be able
to silence them first. :class:`PreferredNotifier` applies the settings in front of the
:class:`~brokerguard.notify.Notifier`, so every module keeps calling ``notify`` as before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import msgspec

from brokerguard.auth.store import AuthStore, Records
from brokerguard.notify import Contact
from brokerguard.notify.outbox import Notify

__all__ = ["ALWAYS", "OPTIONAL", "NoticePrefs", "PreferredNotifier", "Preferences"]

OPTIONAL: tuple[str, ...] = ("new_login", "new_device", "unusual_order", "order_held")
ALWAYS: frozenset[str] = frozenset(
    {
        "account_locked",
        "one_time_code",
        "hold_confirmation",
        "passkey_registered",
        "passkey_removed",
        "contact_changed",
        "bank_account_changed",
    }
)


class NoticePrefs(msgspec.Struct, kw_only=True):
    kinds: dict[str, bool] = {}
    channels: list[str] = msgspec.field(default_factory=lambda: ["email", "sms"])

    def wants(self, kind: str) -> bool:
        return kind in ALWAYS or self.kinds.get(kind, True)


class Preferences:
    def __init__(self, store: AuthStore) -> None:
        self._prefs = Records(store, "site-notice-prefs", NoticePrefs)

    def get(self, account: str) -> NoticePrefs:
        return self._prefs.get(account) or NoticePrefs()

    def set(self, account: str, kinds: Mapping[str, bool], channels: Sequence[str]) -> NoticePrefs:
        """Store new settings; at least one channel must stay on (else nothing could reach)."""
        unknown = set(kinds) - set(OPTIONAL)
        if unknown:
            raise ValueError(f"notices {sorted(unknown)} cannot be switched off")
        chosen = [c for c in ("email", "sms") if c in channels]
        if not chosen:
            raise ValueError("at least one channel (email or sms) must stay on")
        prefs = NoticePrefs(kinds={k: bool(kinds.get(k, False)) for k in OPTIONAL}, channels=chosen)
        self._prefs.put(account, prefs)
        return prefs


class PreferredNotifier:
    """A :class:`~brokerguard.notify.outbox.Notify` that applies each customer's settings."""

    def __init__(self, inner: Notify, prefs: Preferences) -> None:
        self.inner = inner
        self.prefs = prefs

    def notify(
        self,
        account: str,
        kind: str,
        fields: Mapping[str, str],
        *,
        channels: Sequence[str] | None = None,
        to: Contact | None = None,
    ) -> list[str]:
        prefs = self.prefs.get(account)
        if not prefs.wants(kind):
            return []
        if channels is None and kind not in ALWAYS:
            channels = prefs.channels
        return self.inner.notify(account, kind, fields, channels=channels, to=to)
