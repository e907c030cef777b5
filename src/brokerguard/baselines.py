"""Three baseline guards: the defenses brokers actually ran in 2025, to measure ours against.

- ``allow-all``: no defense at all (the counterfactual).
- ``otp-at-login``: every successful sign-in must also pass the customer's one-time password.
- ``passkey-at-login``: the October 2025 guideline with partial enrolment — customers who enrolled
  a passkey must use it at login, withdrawal and bank-account change; the rest get an OTP there.

They know only what a broker's login system knows: the account's enrolled factors (from
:class:`~brokerguard.events.AccountSnapshot`) and the factors a login presented.
"""

from __future__ import annotations

from brokerguard.events import (
    AccountSnapshot,
    Event,
    Factor,
    LoginAttempt,
    SettingsChange,
    Withdrawal,
)
from brokerguard.guard import Decision, Reason

__all__ = ["AllowAll", "OtpAtLogin", "PasskeyAtLogin", "BASELINES"]

BAD_CREDENTIALS = Reason(
    code="credentials_invalid",
    en="The ID or password was wrong.",
    ja="IDまたはパスワードが正しくありません。",
)
OTP_REQUIRED = Reason(
    code="otp_required",
    en="A one-time password is required at every login.",
    ja="ログインのたびにワンタイムパスワードが必要です。",
)
PASSKEY_REQUIRED = Reason(
    code="passkey_required",
    en="This account has a passkey; it is required for this operation.",
    ja="この口座にはパスキーが登録されているため、この操作にはパスキーが必要です。",
)
PASSKEY_SIGN_IN = Reason(
    code="passkey_sign_in",
    en="Signed in with a registered passkey.",
    ja="登録済みのパスキーでログインしました。",
)
OTP_FALLBACK = Reason(
    code="otp_fallback",
    en="No passkey is registered; a one-time password is required.",
    ja="パスキーが未登録のため、ワンタイムパスワードが必要です。",
)
ALLOWED = Decision(action="allow")


class _AccountBook:
    """The enrolled factors of each account, learned from account snapshots."""

    def __init__(self) -> None:
        self.passkey: set[str] = set()
        self.otp_channel: dict[str, Factor] = {}

    def learn(self, event: Event) -> None:
        if isinstance(event, AccountSnapshot):
            if event.passkey_enrolled:
                self.passkey.add(event.account)
            else:
                self.passkey.discard(event.account)
            if event.otp_channel != "none":
                self.otp_channel[event.account] = event.otp_channel
            else:
                self.otp_channel.pop(event.account, None)

    def otp(self, account: str) -> Factor:
        # An account without a registered OTP channel gets a code by e-mail, the brokers' default.
        return self.otp_channel.get(account, "email")


class AllowAll:
    """No defense: every operation goes ahead (failed credentials aside)."""

    name = "allow-all"

    def decide(self, event: Event) -> Decision:
        if isinstance(event, LoginAttempt) and not event.success:
            return Decision(action="deny", score=0.0, reasons=(BAD_CREDENTIALS,))
        return ALLOWED

    def observe(self, event: Event) -> None:
        return None


class OtpAtLogin:
    """Every successful sign-in is stepped up with the account's one-time password."""

    name = "otp-at-login"

    def __init__(self) -> None:
        self.accounts = _AccountBook()

    def decide(self, event: Event) -> Decision:
        self.accounts.learn(event)
        if isinstance(event, LoginAttempt):
            if not event.success:
                return Decision(action="deny", reasons=(BAD_CREDENTIALS,))
            return Decision(
                action="challenge",
                score=0.5,
                factors=(self.accounts.otp(event.account),),
                reasons=(OTP_REQUIRED,),
            )
        return ALLOWED

    def observe(self, event: Event) -> None:
        self.accounts.learn(event)


class PasskeyAtLogin:
    """Passkey at login, withdrawal and bank-account change where enrolled; OTP elsewhere."""

    name = "passkey-at-login"

    def __init__(self) -> None:
        self.accounts = _AccountBook()

    def _step_up(self, account: str) -> Decision:
        if account in self.accounts.passkey:
            return Decision(
                action="challenge", score=0.5, factors=("passkey",), reasons=(PASSKEY_REQUIRED,)
            )
        return Decision(
            action="challenge",
            score=0.5,
            factors=(self.accounts.otp(account),),
            reasons=(OTP_FALLBACK,),
        )

    def decide(self, event: Event) -> Decision:
        self.accounts.learn(event)
        if isinstance(event, LoginAttempt):
            if not event.success:
                return Decision(action="deny", reasons=(BAD_CREDENTIALS,))
            if "passkey" in event.factors:
                return Decision(action="allow", reasons=(PASSKEY_SIGN_IN,))
            return self._step_up(event.account)
        if isinstance(event, Withdrawal) or (
            isinstance(event, SettingsChange) and event.field == "bank_account"
        ):
            return self._step_up(event.account)
        return ALLOWED

    def observe(self, event: Event) -> None:
        self.accounts.learn(event)


BASELINES = {g.name: g for g in (AllowAll, OtpAtLogin, PasskeyAtLogin)}
