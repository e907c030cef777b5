"""Account changes: contact details, payout account, credentials — and what follows them.

Criminals who point the registered e-mail or phone at themselves receive every later code and
notification; a new payout account is how cash leaves. So each change carries a weight by field,
is judged together with the risk of the session it comes from, and leaves a mark on the account
that raises the risk of withdrawals and trading in the days after.
"""

from __future__ import annotations

from brokerguard.engine.policy import AccountParams
from brokerguard.engine.signals import Signal
from brokerguard.engine.state import AccountState

__all__ = ["AccountChanges"]

CONTACT_FIELDS = ("email", "phone")
DAY = 86400.0
_DEFAULT_FIELD_LLR = {
    "email": 1.0,
    "phone": 1.0,
    "bank_account": 1.5,
    "mfa": 1.5,
    "passkey": 1.0,
    "password": 0.5,
    "notifications": 0.5,
}


class AccountChanges:
    def __init__(self, params: AccountParams) -> None:
        self.p = params
        self.field_llr = {**_DEFAULT_FIELD_LLR, **params.field_llr}

    def change(self, acc: AccountState, field: str, now: float) -> list[Signal]:
        """The change itself; :meth:`recent` is asked separately for every operation."""
        return [Signal("sensitive_change", self.field_llr.get(field, 0.5), {"field": field})]

    def applied(self, acc: AccountState, field: str, now: float) -> None:
        """A change went through: remember it for what follows (the latest: a late change is
        not)."""
        if field in CONTACT_FIELDS:
            acc.contact_changed = max(acc.contact_changed, now)
        elif field == "bank_account":
            acc.bank_changed = max(acc.bank_changed, now)

    def recent(self, acc: AccountState, now: float) -> Signal | None:
        """An operation within days after a contact or payout-account change (a late one, from
        before a change, is not after it)."""
        horizon = now - self.p.recent_change_days * DAY
        contact, bank = acc.contact_changed, acc.bank_changed
        changed = max(contact if contact <= now else 0.0, bank if bank <= now else 0.0)
        if changed and changed >= horizon:
            return Signal(
                "recent_contact_change",
                self.p.recent_change_llr,
                {"hours_ago": round((now - changed) / 3600, 1)},
            )
        return None

    def withdrawal(self, acc: AccountState, amount: float, now: float) -> list[Signal]:
        signals: list[Signal] = []
        if acc.cash > 0 and amount >= self.p.withdrawal_share * acc.cash:
            signals.append(
                Signal(
                    "withdrawal_size", self.p.withdrawal_llr, {"share": round(amount / acc.cash, 2)}
                )
            )
        return signals
