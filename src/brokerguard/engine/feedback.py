"""What the security team confirmed, as engine state and signals.

Detectors learn from what passed; analysts know more. Four things an analyst says change what
the engine should conclude next time, so they reach it here rather than staying in the console:

- **a trusted device** — the cookie is the customer's: it counts as a device the account has
  used many times (still no more than what a stolen copy could claim, see
  :meth:`~brokerguard.engine.detectors.login.LoginRisk.familiarity`);
- **force re-verification** — until the customer passes a phishing-resistant check (passkey, or
  a confirmation to the registered contact), every sign-in and operation of the account carries
  ``reverify_required``; passing one clears it;
- **confirmed fraud** — the address the fraudulent sign-in came from (and its AS, when it is a
  hosting or anonymizer network) carries ``confirmed_fraud_infrastructure`` for every account
  for ``confirmed_fraud_days``; the victim must re-verify;
- **confirmed not fraud** — the sign-in an alert was about was the customer's: it is learned as
  a trusted sign-in and no longer counts against anyone as shared infrastructure;
- **a dismissed campaign** — not an attack (a retail frenzy, a shared office network): its
  symbols and infrastructure stop carrying containment signals, and the evidence that raised it
  is forgotten, so the same buyers do not raise it again at once. New evidence still can.

Everything is pure: the methods take the engine's records and return signals or change records;
the guard puts them back.
"""

from __future__ import annotations

from brokerguard.engine.detectors.login import LoginFeatures, LoginRisk, cookie_key
from brokerguard.engine.policy import FeedbackParams
from brokerguard.engine.signals import Signal
from brokerguard.engine.state import (
    LEVELS,
    AccountState,
    CampaignState,
    EntityState,
    SessionState,
    State,
    SymbolState,
    forget_until,
)

__all__ = ["AnalystFeedback", "unlink_campaign"]


def unlink_campaign(state: State, camp: CampaignState, now: float) -> list[tuple[str, str]]:
    """Free the campaign's symbols and infrastructure and forget the evidence that raised it;
    returns the keys freed (``symbol`` | ``entity``, key). Shared by the engine and the campaign
    stage, which has the same records but no sessions."""
    freed: list[tuple[str, str]] = []
    for key in camp.symbols:
        sym: SymbolState | None = state.get("symbol", key)
        if sym is not None and sym.campaign == camp.id:
            sym.campaign = ""
            sym.suspicious.clear()
            sym.compromised.clear()
            sym.counterparties.clear()
            state.put("symbol", key, sym)
            freed.append(("symbol", key))
    for key in camp.infrastructure:
        ent: EntityState | None = state.get("entity", key)
        if ent is not None and ent.campaign == camp.id:
            ent.campaign = ""
            ent.risky.clear()
            state.put("entity", key, ent)
            freed.append(("entity", key))
    camp.timeline.append((now, "dismissed", "analyst"))
    camp.updated_at = now
    state.put("campaign", camp.id, camp)
    return freed


class AnalystFeedback:
    def __init__(self, state: State, params: FeedbackParams, login: LoginRisk) -> None:
        self.state = state
        self.p = params
        self.login = login

    # --- what analysts say -------------------------------------------------------------------
    def trust_device(self, acc: AccountState, cookie: str) -> None:
        """Count ``cookie`` as a device present at every sign-in the account has made.

        The sign-in count itself stays as it is: the other levels' frequencies are relative to it.
        """
        key = cookie_key(cookie)
        seen = acc.seen
        if key not in seen:
            if not acc.distinct:
                acc.distinct = [0] * len(LEVELS)
            acc.distinct[LEVELS.index("d")] += 1
            LoginRisk._make_room(seen, "d")  # the per-account cap on cookies holds here too
        seen[key] = max(acc.n, 1, *(n for k, n in seen.items() if k[0] == "d"))

    def require_reverify(self, acc: AccountState, now: float) -> None:
        acc.reverify_at = acc.reverify_at or max(now, 1.0)

    def reverified(self, acc: AccountState, now: float) -> None:
        """The customer passed a phishing-resistant check at ``now``: the request is met, and so
        is the strong sign-in asked for after a session failed one (``session_failed_at``), as
        far as the failures came before it: a check passed earlier and delivered late does not
        answer a failure after it. (An analyst's request has no place in the broker's timeline
        — the service stamps it with the latest event time — so any pass meets it.)"""
        acc.reverify_at = 0.0
        acc.session_failed_at = forget_until(acc.session_failed_at, now)

    def confirm_fraud(self, f: LoginFeatures, now: float) -> list[str]:
        """Mark the infrastructure of a confirmed fraudulent sign-in; returns its keys."""
        keys = list(self.login.entity_keys(f))[:2]  # the address, and a hosting / anonymizer AS
        for key in keys:
            ent: EntityState | None = self.state.get("entity", key)
            ent = ent if ent is not None else EntityState()
            ent.confirmed_fraud = max(ent.confirmed_fraud, now)
            self.state.put("entity", key, ent)
        return keys

    def dismiss_campaign(self, camp: CampaignState, now: float) -> None:
        """Unlink the campaign from its symbols, infrastructure and sessions."""
        unlink_campaign(self.state, camp, now)
        for sid in list(self.state.keys("session")):
            sess: SessionState | None = self.state.get("session", sid)
            if sess is None:
                continue
            linked = [s for s in (sess, *sess.before) if s.campaign == camp.id]
            for each in linked:  # the sessions before it under its id too
                each.campaign = ""
            if linked:
                self.state.put("session", sid, sess)

    # --- what the engine concludes -----------------------------------------------------------
    def account_signals(self, acc: AccountState) -> list[Signal]:
        if acc.reverify_at <= 0:
            return []
        return [Signal("reverify_required", self.p.reverify_llr, {"since": acc.reverify_at})]

    def login_signals(self, f: LoginFeatures, now: float) -> list[Signal]:
        horizon = now - self.p.confirmed_fraud_days * 86400
        hits = []
        for key in self.login.entity_keys(f)[:2]:
            ent: EntityState | None = self.state.get("entity", key)
            # A late sign-in from before the confirmation sees it too: an analyst's conclusion
            # is not an event of the broker's timeline (the service stamps it with the latest
            # event time seen), and it says what the address was, before it as well.
            if ent is not None and ent.confirmed_fraud > horizon:
                hits.append(key)
        if not hits:
            return []
        return [
            Signal("confirmed_fraud_infrastructure", self.p.confirmed_fraud_llr, {"keys": hits})
        ]

    def keeps(self, ent: EntityState, now: float) -> bool:
        """Whether the hourly sweep must keep this entity for its confirmed-fraud mark."""
        return ent.confirmed_fraud > now - self.p.confirmed_fraud_days * 86400
