"""Account changes: contact details, payout account, credentials — and what follows them.

Criminals who point the registered e-mail or phone at themselves receive every later code and
notification; a new payout account is how cash leaves. So each change carries a weight by field,
is judged together with the risk of the session it comes from, and leaves a mark on the account
that raises the risk of withdrawals and trading in the days after.
"""

from __future__ import annotations

from brokerguard.engine.policy import AccountParams
from brokerguard.engine.signals import Signal
from brokerguard.engine.state import AccountState, Seen, extend_mark, run_first, run_last

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


def _change_before(mark: Seen, now: float, horizon: float) -> float:
    """When a change that ``mark`` holds came, by ``now`` and not before ``horizon`` (0.0: none):
    the run's last change, or, for a late operation inside the run, its first (a change known
    to be before it)."""
    if not mark or run_first(mark) > now or run_last(mark) < horizon:
        return 0.0
    last = run_last(mark)
    return last if last <= now else run_first(mark)


class AccountChanges:
    def __init__(self, params: AccountParams) -> None:
        self.p = params
        self.field_llr = {**_DEFAULT_FIELD_LLR, **params.field_llr}

    def change(self, acc: AccountState, field: str, now: float) -> list[Signal]:
        """The change itself; :meth:`recent` is asked separately for every operation."""
        return [Signal("sensitive_change", self.field_llr.get(field, 0.5), {"field": field})]

    def applied(self, acc: AccountState, field: str, now: float) -> None:
        """A change went through: remember it for what follows (the first and last change, so
        that a late one neither replaces the latest nor is lost)."""
        if field in CONTACT_FIELDS:
            acc.contact_changed = extend_mark(acc.contact_changed, now)
        elif field == "bank_account":
            acc.bank_changed = extend_mark(acc.bank_changed, now)

    def recent(self, acc: AccountState, now: float) -> Signal | None:
        """An operation within days after a contact or payout-account change (a late one, from
        before a change, is not after it; one between two changes is after the first)."""
        horizon = now - self.p.recent_change_days * DAY
        changed = max(
            _change_before(acc.contact_changed, now, horizon),
            _change_before(acc.bank_changed, now, horizon),
        )
        if changed:
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
