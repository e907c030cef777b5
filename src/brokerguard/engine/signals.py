"""Signals: what a detector says about one event, before any policy turns it into an action.

A signal's ``llr`` is a log-likelihood ratio in nats — how much more likely the observation is
under "an attacker is doing this" than under "the customer is" — so signals from independent
detectors add up, and a policy can weigh them without knowing how each was computed. Negative
values are evidence for the customer (a known device, a familiar network).
"""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = ["Signal", "SIGNAL_CODES"]


class Signal(NamedTuple):
    code: str
    llr: float
    evidence: dict[str, Any]


SIGNAL_CODES: tuple[str, ...] = (
    # login risk (detectors.login)
    "login_network",  # the IP -> network kind -> country -> AS hierarchy
    "login_device",  # the user agent -> browser -> OS -> device kind hierarchy
    "login_cookie",  # the device cookie
    "login_hour",  # the hour of day
    "shared_infrastructure",  # the same IP / AS / UA behind unfamiliar sign-ins to many accounts
    "failure_velocity",  # failed credential checks on the account or from the address
    "impossible_travel",  # a country change faster than travel allows
    "failed_step_up",  # the account failed a phishing-resistant step-up recently
    "canary_proxy",  # a sign-in from an address (or hosting AS) a clone-page canary reported
    "phishing_referrer",  # the sign-in came from a page on the phishing block-list, or scored so
    "password_fallback",  # a password sign-in into an account that signs in with its passkey
    # session (detectors.session)
    "session_risk",  # the risk the session carries from its sign-in
    "session_hijack",  # the session seen from another network or device mid-life
    "sensitive_burst",  # many sensitive actions in a short time
    # account changes (detectors.account)
    "sensitive_change",  # a change of contact, payout account or credentials
    "recent_contact_change",  # an operation soon after the contact details changed
    "withdrawal_size",  # a withdrawal of most of the cash
    # trading (detectors.trading)
    "liquidation",  # selling most of the holdings in one session
    "liquidation_then_buy",  # buying right after such a sell-off
    "first_in_market",  # first purchase in this market
    "first_in_symbol",  # first purchase of this instrument
    "illiquid_symbol",  # a thin, low-priced or small-cap instrument
    "limit_above_market",  # a buy limit far above the last price
    "unusual_size",  # an order value unlike the account's history
    "margin_first_use",  # first margin order
    # campaign (detectors.campaign)
    "campaign_symbol",  # buying a symbol a campaign is pumping
    "campaign_infrastructure",  # a session on a campaign's infrastructure
    # analyst feedback (engine.feedback)
    "reverify_required",  # an analyst asked for a strong re-verification of the account
    "confirmed_fraud_infrastructure",  # an address or network of a confirmed fraudulent sign-in
)
