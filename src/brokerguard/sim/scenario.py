"""Scenario files: the broker, the attacks and the confounders of one simulated run.

A scenario is TOML decoded into strict Structs, so a misspelt key or a bad value fails with the
key's path (``attack[0].relay_otp: Expected `bool`, got `str```) before anything runs. Every
field has a default; a file may say as little as ``name = "x"``.
"""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

__all__ = [
    "Attack",
    "Broker",
    "Confounder",
    "Scenario",
    "ScenarioError",
    "load_scenario",
    "parse_scenario",
]

Share = Annotated[float, Meta(ge=0.0, le=1.0)]
Positive = Annotated[int, Meta(gt=0)]
NonNegative = Annotated[int, Meta(ge=0)]
Aware = Annotated[datetime, Meta(tz=True)]

DEFAULT_START = datetime.fromisoformat("2025-03-17T00:00:00+09:00")


class ScenarioError(ValueError):
    """A scenario file that cannot be run; the message names the key and the problem."""


class Broker(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The simulated broker and its customers."""

    investors: Annotated[int, Meta(gt=0, le=5_000_000)] = 20_000
    passkey_enrolled: Share = 0.05
    """Share of customers who enrolled a passkey and sign in with it."""
    password_fallback: bool = True
    """Whether passkey-enrolled accounts still accept ID + password (the phisher's door)."""
    otp_channel: Literal["sms", "email", "totp", "none"] = "sms"
    otp_pass_rate: Share = 0.97
    """Chance that a customer completes an OTP challenge."""
    passkey_pass_rate: Share = 0.98
    """Chance that a customer completes a passkey challenge (on a device that has the passkey)."""
    oob_confirm_rate: Share = 0.9
    """Chance that a customer confirms a held operation out of band."""
    give_up_rate: Share = 0.02
    """Chance that a customer abandons a challenge instead of trying."""
    travel_rate: Share = 0.005
    """Share of customers abroad on an ordinary day (a travel confounder adds to it)."""
    new_device_rate: Share = 0.002
    """Share of customers who start using a new phone on an ordinary day."""


class Attack(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One attack campaign: credential theft, takeover, liquidation and pump."""

    kind: Literal["phishing", "session_theft"] = "phishing"
    start: Aware = datetime.fromisoformat("2025-03-20T09:00:00+09:00")
    victims: NonNegative = 300
    relay_otp: bool = True
    """Adversary-in-the-middle relay of one-time passwords (phishing only; never a passkey)."""
    origin: Literal["overseas_hosting", "jp_proxy", "mixed", "tor"] = "overseas_hosting"
    ip_pool: Positive = 25
    """Size of the shared pool of attacker IP addresses (and user agents)."""
    change_contact_share: Share = 0.2
    """Share of takeovers where the e-mail/phone is changed before trading."""
    liquidate_share: Share = 0.9
    """Share of each victim's holdings sold."""
    target_markets: list[Literal["TSE", "HK", "CN", "US"]] = msgspec.field(
        default_factory=lambda: ["HK", "CN"]
    )
    targets: Positive = 2
    """Number of thin target symbols to pump."""
    waves: Positive = 3
    wave_interval_minutes: Positive = 60
    takeover_days: Positive = 1
    """Days over which the victims are phished and taken over (the wave's spread)."""
    criminal_accounts: NonNegative = 3
    """The criminals' own accounts here: they buy the targets early and sell into the pump."""
    withdraw_share: Share = 0.0
    """Share of takeovers where the attacker changes the payout bank account and withdraws."""
    relogins: Annotated[int, Meta(ge=0, le=20)] = 1
    """Times a phisher whose session the broker signed out signs in again with the password
    (phishing only: a stolen cookie ends with its session). Persistent crews retry more."""


class Confounder(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Legitimate behaviour that looks like an attack."""

    kind: Literal["frenzy", "selloff", "travel", "new_device"]
    start: Aware
    buyers: NonNegative = 400
    """frenzy: customers who buy the symbol for the first time within the hour."""
    market: Literal["TSE", "HK", "CN", "US"] = "TSE"
    """frenzy: market of the thin symbol."""
    share: Share = 0.15
    """selloff: share of customers who sell most holdings; travel/new_device: share per day."""
    days: Positive | None = None
    """travel, new_device: how many days it lasts (default: to the end of the scenario)."""


class Scenario(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Annotated[str, Meta(min_length=1)] = "scenario"
    seed: int = 7
    start: Aware = DEFAULT_START
    days: Annotated[int, Meta(gt=0, le=366)] = 21
    broker: Broker = msgspec.field(default_factory=Broker)
    attack: list[Attack] = []
    confounder: list[Confounder] = []

    @property
    def end(self) -> datetime:
        return self.start + timedelta(days=self.days)

    def __post_init__(self) -> None:
        try:  # else an OverflowError (not a ValueError) escaped as a traceback
            self.start.astimezone(UTC)
            self.end.astimezone(UTC)
        except OverflowError:
            raise ValueError(
                f"start: {self.start.isoformat()} with days = {self.days} runs outside the "
                "years 1 to 9999 (UTC)"
            ) from None
        for i, attack in enumerate(self.attack):
            if not self.start <= attack.start < self.end:
                raise ValueError(f"attack[{i}].start {attack.start} is outside the scenario's days")
            if attack.victims > self.broker.investors:
                raise ValueError(f"attack[{i}].victims exceeds broker.investors")
            if not attack.target_markets:
                raise ValueError(f"attack[{i}].target_markets must name at least one market")
        for i, conf in enumerate(self.confounder):
            if not self.start <= conf.start < self.end:
                raise ValueError(
                    f"confounder[{i}].start {conf.start} is outside the scenario's days"
                )


def _with_path(message: str) -> str:
    # msgspec: "Expected `bool`, got `str` - at `$.attack[0].relay_otp`" -> key path first.
    if " - at `$." in message:
        text, path = message.rsplit(" - at `$.", 1)
        return f"{path.rstrip('`')}: {text}"
    return message


def parse_scenario(text: str, *, source: str = "<scenario>") -> Scenario:
    """Parse a scenario from TOML text; errors name the source and the key."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{source}: not valid TOML: {exc}") from None
    try:
        return msgspec.convert(raw, type=Scenario)
    except msgspec.ValidationError as exc:
        raise ScenarioError(f"{source}: {_with_path(str(exc))}") from None


def load_scenario(path: str | Path) -> Scenario:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read scenario: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ScenarioError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    return parse_scenario(text, source=str(path))
