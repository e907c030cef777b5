"""BrokerGuard: the guard a broker deploys — detectors, state and a policy behind ``decide``.

Each event goes to the detectors that care about it; at a decision point their signals go through
the policy, which returns the action and its reasons. What the guard learns (an account's usual
networks and devices, its trading habits, the market's prices) is learned only from what passed:
sign-ins that were allowed with low risk or passed a phishing-resistant step-up, orders that went
ahead. Everything it keeps is in :class:`~brokerguard.engine.state.State`, so a restart from the
persisted state continues where it stopped.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from brokerguard.engine.books import book, take_snapshot
from brokerguard.engine.detectors.account import AccountChanges
from brokerguard.engine.detectors.campaign import CampaignWatch, StagedCampaigns
from brokerguard.engine.detectors.login import (
    FALLBACK,
    LoginFeatures,
    LoginRisk,
    ReferrerCheck,
    cookie_key,
    device_keys,
    login_features,
    profile_keys,
)
from brokerguard.engine.detectors.session import SessionWatch
from brokerguard.engine.detectors.trading import TradingWatch, holdings_value
from brokerguard.engine.feedback import AnalystFeedback
from brokerguard.engine.policy import (
    Decider,
    Policy,
    load_policy,
    load_policy_blocklist,
    load_policy_lookup,
)
from brokerguard.engine.signals import Signal
from brokerguard.engine.state import (
    AccountState,
    EndedSessionState,
    KeptOrders,
    MemoryState,
    Move,
    PendingState,
    SessionState,
    State,
    SymbolState,
    extend_mark,
    prune_window,
    run_last,
    seen_at,
    session_key,
)
from brokerguard.events import (
    AccountSnapshot,
    AnalystAction,
    CanaryHit,
    ChallengeResult,
    Event,
    Execution,
    HoldingsSnapshot,
    Instrument,
    LoginAttempt,
    MarketBar,
    Order,
    SessionActivity,
    SettingsChange,
    Withdrawal,
)
from brokerguard.guard import Decision, Instruction, Reason
from brokerguard.markets import price_known
from brokerguard.netinfo import NetworkInfo

if TYPE_CHECKING:
    from brokerguard.engine.stage import StageLink
    from brokerguard.phishing import Blocklist

__all__ = ["BrokerGuard"]

STRONG_FACTORS = ("passkey", "oob")
SWEEP_EVERY_S = 3600.0
ENDED_SWEEP_EVERY_S = 86400.0
PENDING_TTL_S = 6 * 3600.0
LAST_TIMESTAMP = datetime(9999, 12, 30, tzinfo=UTC).timestamp()  # a datetime in any zone
REWOUND_S = 86400.0  # a stream this far behind its last sweep restarts the schedule
JUMP_S = 86400.0  # an event this far ahead of the one before it does not sweep by itself
THIN_SHARE = 0.01  # an order worth this share of a day's turnover moves a price by itself
SESSION_ORDERS_KEPT = 32  # order ids a session remembers, for cancelling what is still open
SESSIONS_BEFORE_KEPT = 4  # ended sessions kept under an id given again (see _after)
INSTRUCTIONS_KEPT = 1000  # untaken instructions kept (a caller that never takes them: the latest)
RECENT_IDS_KEPT = 20_000  # event ids remembered, so that a repeated delivery changes nothing
# What a repeat would count twice, among the events that need no answer: fills (positions),
# step-up outcomes (failures), analysts' conclusions, canary hits. The rest — market data, page
# views, snapshots — is most of a stream, and taking one again changes nothing that matters.
COUNTED_TWICE = (Execution, ChallengeResult, AnalystAction, CanaryHit)

BAD_CREDENTIALS = Reason(
    code="credentials_invalid",
    en="The ID or password was wrong.",
    ja="IDまたはパスワードが正しくありません。",
)
ALLOW = Decision(action="allow")


class BrokerGuard:
    """The detection engine behind the guard interface (``decide`` / ``observe``)."""

    def __init__(
        self,
        policy: Policy | None = None,
        state: State | None = None,
        lookup: Callable[[str], NetworkInfo] | None = None,
        name: str = "brokerguard",
        blocklist: Blocklist | None = None,
        stage: StageLink | None = None,
    ) -> None:
        self.name = name
        self.policy = policy if policy is not None else load_policy()
        self.state: State = state if state is not None else MemoryState(track_changes=False)
        self.lookup = lookup if lookup is not None else load_policy_lookup(self.policy)
        params = self.policy.detectors
        self.login = LoginRisk(self.state, params.login)
        if blocklist is None:
            blocklist = load_policy_blocklist(self.policy)
        self.referrers = ReferrerCheck(params.login, blocklist)
        self.sessions = SessionWatch(params.session)
        self.changes = AccountChanges(params.account)
        self.trading = TradingWatch(params.trading)
        infrastructure_span = params.login.infrastructure_window_hours * 3600
        self.campaigns: CampaignWatch = (
            CampaignWatch(self.state, params.campaign, infrastructure_span)
            if stage is None
            else StagedCampaigns(self.state, params.campaign, stage, infrastructure_span)
        )
        if stage is not None:  # population and infrastructure are kept over all partitions
            self.login.on_learn = lambda keys, hour: stage.send("learn", keys=keys, hour=hour)
            self.login.on_entity = stage.send
        self.feedback = AnalystFeedback(self.state, params.feedback, self.login)
        self.campaign_tag = ""
        """Prefix of this engine's campaign ids outside it (a partition's, see cluster)."""
        self.decider = Decider(self.policy)
        self.always_step_up = set(self.policy.settings.always_step_up)
        self._next_sweep = 0.0
        self._next_ended_sweep = 0.0  # ended sessions are swept daily, not hourly (see sweep)
        self._last_event = 0.0  # the time of the event before (for jumps: see _clock)
        self._newest = 0.0  # the latest event time taken so far
        self._late = False  # the event being taken is older than one taken before it
        self._tz: tzinfo = UTC
        self.trace: Callable[[Event, list[Signal], Decision], None] | None = None
        """Called with every decision and the signals behind it (for replay's alerts, tests)."""
        self._locked = self.decider.reasons.get("rule_locked")
        self._instructions: list[Instruction] = []
        self._recent: dict[str, tuple[Decision | None, str | None, datetime]] = {}  # _remember
        self.repeated = False  # the last decide() answered a repeated event (see decide)
        self._recent_ring: list[str | None] = [None] * RECENT_IDS_KEPT
        self._recent_at = 0
        self._deciders: dict[type, Callable[[Any], Decision]] = {
            LoginAttempt: self._decide_login,
            Order: self._decide_order,
            SettingsChange: self._decide_settings,
            Withdrawal: self._decide_withdrawal,
        }
        self._observers: dict[type, Callable[[Any], None]] = {
            ChallengeResult: self._challenge,
            SessionActivity: self._activity,
            Execution: self._execution,
            HoldingsSnapshot: self._holdings,
            AccountSnapshot: self._account_snapshot,
            Instrument: self._instrument,
            MarketBar: self._bar,
            Order: self._order_cancel,
            CanaryHit: self._canary,
            AnalystAction: self._analyst,
        }

    # --- the guard interface ---------------------------------------------------------------
    def decide(self, event: Event) -> Decision:
        """The decision on ``event``; the same one again, with nothing learned twice, when the
        event was already decided (a broker's system that retries after a timeout, a log
        delivered at least once): see :meth:`_remember`. :attr:`repeated` says which."""
        earlier = self._earlier(event)
        self.repeated = earlier is not None
        if earlier is not None:
            return earlier[0] or ALLOW
        handler = self._deciders.get(type(event))
        if handler is None:
            self.observe(event)
            return ALLOW
        decision = handler(event)
        self._remember(event, decision)
        return decision

    def observe(self, event: Event) -> None:
        """Take in an event that needs no answer; one that a repeat would count twice
        (:data:`COUNTED_TWICE`) only once."""
        kind = type(event)
        handler = self._observers.get(kind)
        if kind not in COUNTED_TWICE:
            if handler is not None:
                handler(event)
            return
        if self._earlier(event) is not None:
            return
        if handler is not None:
            handler(event)
        self._remember(event, None)

    def _earlier(self, event: Event) -> tuple[Decision | None, str | None, datetime] | None:
        """What was remembered of this event, if it is a repeat: the same id, account and time.
        An id that comes back with another account or time is another event (a producer whose
        ids are not unique must not have its new events answered with old decisions)."""
        seen = self._recent.get(event.id)
        if seen is None or seen[1] != getattr(event, "account", None) or seen[2] != event.ts:
            return None
        return seen

    def _remember(self, event: Event, decision: Decision | None) -> None:
        """Keep the latest :data:`RECENT_IDS_KEPT` event ids (with account, time and decision).
        A sign-in taken twice started its session over (its trust lost), an order twice counted
        its sale twice (a liquidation that was not). In memory only: a repeat after a restart,
        or further back than the ids kept, is taken again."""
        # a ring of the ids in arrival order, the oldest overwritten (deleting a dict's first
        # key instead costs a scan over the deleted ones before it: a third of the throughput)
        ring, at = self._recent_ring, self._recent_at
        oldest = ring[at]
        if oldest is not None:
            self._recent.pop(oldest, None)
        ring[at] = event.id
        self._recent_at = (at + 1) % RECENT_IDS_KEPT
        self._recent[event.id] = (decision, getattr(event, "account", None), event.ts)

    def take_instructions(self) -> list[Instruction]:
        """What the broker should do about operations already let through (see
        :class:`~brokerguard.guard.Instruction`), raised since the last call."""
        taken, self._instructions = self._instructions, []
        return taken

    def _instruct(
        self,
        kind: Literal["cancel_orders", "end_session"],
        account: str,
        session_id: str,
        orders: tuple[str, ...],
        cause: str,
        ts: datetime,
        reason: str,
    ) -> None:
        """Ask the broker to cancel what is still open of ``orders`` (placed in ``session_id``;
        nothing when there are none), or to sign ``session_id`` out. Only the engine's
        conclusion: the broker's systems know which orders are open, which sessions live."""
        if kind == "cancel_orders" and not orders:
            return
        text = self.decider.reasons.get(reason)
        if len(self._instructions) >= INSTRUCTIONS_KEPT:
            del self._instructions[0]
        self._instructions.append(
            Instruction(
                kind=kind,
                ts=ts,
                account=account,
                session=session_id,
                orders=orders,
                cause=cause,
                reasons=(text,) if text is not None else (),
            )
        )

    def _unlearn_sign_in(self, acc: AccountState, sess: SessionState) -> None:
        """The session's sign-in, learned although doubtful, was not the customer's habit after
        all: take it back out of the profile (a value it pushed out is not restored)."""
        if sess.learned:
            self.login.unlearn(acc, sess.learned, sess.learned_hour)
            sess.learned, sess.learned_hour = (), -1

    def _confirm_sign_in(self, acc: AccountState, now: float) -> bool:
        hours = self.policy.detectors.session.confirm_sign_ins_hours
        # after a failure: a late sign-in from before them was asked to confirm (at 0 hours too),
        # and one between two failures, judged by the later, was not
        return seen_at(acc.session_failed_at, now, hours * 3600)

    def _doubtful(self, sess: SessionState) -> bool:
        """Not trusted, with evidence above ``cancel_orders_above_llr``: what the session does
        now may not be the customer's doing."""
        threshold = self.policy.detectors.session.cancel_orders_above_llr
        return not sess.trusted and sess.llr + sess.hijack > threshold

    @staticmethod
    def _forget_orders(sess: SessionState, orders: tuple[str, ...]) -> None:
        """Orders named in an instruction are not named again by a later one."""
        sess.orders = tuple(o for o in sess.orders if o not in orders)
        sess.doubtful = tuple(o for o in sess.doubtful if o not in orders)

    def _apply(self, point, event: Event, signals: list[Signal], **kw: Any) -> Decision:
        if any(s.code == "reverify_required" for s in signals):
            # An analyst's request is a rule, not evidence: no familiar device outweighs it.
            kw["floor"] = "hold" if point == "order" else "challenge"
        decision = self.decider.decide(point, signals, **kw)
        if self.trace is not None:
            self.trace(event, signals, decision)
        return decision

    # --- what analysts confirm (see engine.feedback) ------------------------------------------
    def trust_device(self, account: str, cookie: str) -> None:
        """The device cookie is the customer's (an analyst checked)."""
        acc = self._account(account)
        self.feedback.trust_device(acc, cookie)
        self.state.put("account", account, acc)

    def require_reverify(self, account: str, ts: datetime) -> None:
        """Until the customer passes a passkey or out-of-band check, everything asks for one."""
        acc = self._account(account)
        self.feedback.require_reverify(acc, ts.timestamp())
        self.state.put("account", account, acc)

    def confirm_fraud(self, login: LoginAttempt, ts: datetime) -> list[str]:
        """This sign-in was an attacker's: its infrastructure is marked, its victim re-verifies.

        Returns the infrastructure keys marked.
        """
        keys = self.mark_fraud_infrastructure(login, ts)
        self.require_reverify(login.account, ts)
        self._fraud_session(login, login.id, ts)
        return keys

    def _fraud_session(self, login: LoginAttempt, cause: str, ts: datetime) -> None:
        """The session a fraudulent sign-in opened: nothing it placed should still execute,
        doubtful or not (a takeover can look familiar), and whoever holds it is signed out.

        The sign-out is asked for even when the engine no longer keeps the session (ended, or
        idle past ``idle_hours``): the broker's session, or a stolen cookie, can outlive the
        engine's memory of it, and a broker ignores a session it already closed. It is not
        asked when a later sign-in was given the id after the logout: the id names that session
        now, which is not the fraud's (nor is anything of it touched). Each session under the
        id keeps its own orders (:meth:`_keep_orders`): the fraud's are named, not those of the
        session given its id after it, nor of one before it."""
        account, session_id = login.account, login.session
        cancelled = "orders_cancelled_fraud"
        asked_before = False
        key = session_key(account, session_id)
        at = login.ts.timestamp()
        record: SessionState | None = self._session_record("session", account, session_id)
        # a later session under the id (the fraudulent one logged out): not the fraud's
        later = record is not None and at < record.follows
        sess = record if record is not None and not record.ended and not later else None
        if sess is not None:
            sess.trusted = False
            if sess.learned:
                acc = self._account(account)
                self._unlearn_sign_in(acc, sess)
                self.state.put("account", account, acc)
            orders = sess.orders
            self._instruct("cancel_orders", account, session_id, orders, cause, ts, cancelled)
            self._forget_orders(sess, orders)
            asked_before, sess.signed_out = sess.signed_out, True
            self.state.put("session", key, sess)
        else:
            ended: EndedSessionState | None = self._session_record("ended", account, session_id)
            kept = None if ended is None else self._kept_for(ended, record, at)
            if ended is not None and kept is not None and not self._expired(kept, ts.timestamp()):
                orders = kept.orders  # days later, still kept
                self._instruct("cancel_orders", account, session_id, orders, cause, ts, cancelled)
                rest = [k for k in self._kept(ended) if k != kept]
                if rest:
                    self.state.put("ended", key, self._kept_record(account, rest))
                else:
                    self.state.delete("ended", key)
                if record is not None:  # ended, kept for its late requests: named once
                    for each in (record, *record.before):
                        self._forget_orders(each, orders)
                    self.state.put("session", key, record)
        if not asked_before and not later:
            signed_out = "session_ended_fraud"
            self._instruct("end_session", account, session_id, (), cause, ts, signed_out)

    def mark_fraud_infrastructure(self, login: LoginAttempt, ts: datetime) -> list[str]:
        """The address (and hosting AS) of a confirmed fraudulent sign-in, for every account."""
        f = self._features(login.ip, login.user_agent, login.device, login.ts)
        return self.feedback.confirm_fraud(f, ts.timestamp())

    def dismiss_campaign(self, campaign_id: str, ts: datetime) -> bool:
        """Not an attack: the campaign stops containing anything. False if it is not this
        engine's (``campaign_tag`` names a partition's ids; with a campaign stage the stage
        holds the campaigns and this engine passes the dismissal on)."""
        if self.campaign_tag:
            if not campaign_id.startswith(self.campaign_tag):
                return False
            campaign_id = campaign_id.removeprefix(self.campaign_tag)
        if isinstance(self.campaigns, StagedCampaigns):
            self.campaigns.dismiss(campaign_id, ts.timestamp())
            return True
        camp = self.state.get("campaign", campaign_id)
        if camp is None:
            return False
        self.feedback.dismiss_campaign(camp, ts.timestamp())
        return True

    def confirm_customer(self, login: LoginAttempt) -> None:
        """This sign-in was the customer's own: learn it, and unlink it from other accounts."""
        acc = self._account(login.account)
        f = self._features(login.ip, login.user_agent, login.device, login.ts)
        self._cleared(login.account, f)
        self.login.learn(acc, f, login.ts.timestamp())
        self.state.put("account", login.account, acc)

    def _analyst(self, action: AnalystAction) -> None:
        """An analyst's conclusion that came as an event (recorded, replayed, streamed)."""
        match action.action:
            case "force_reverify":
                self.require_reverify(action.account, action.ts)  # type: ignore[arg-type]
            case "trust_device":
                self.trust_device(action.account, action.device)  # type: ignore[arg-type]
            case "confirm_customer":
                self.confirm_customer(action.login)  # type: ignore[arg-type]
            case "confirm_fraud":
                self.mark_fraud_infrastructure(action.login, action.ts)  # type: ignore[arg-type]
                self._fraud_session(action.login, action.id, action.ts)  # type: ignore[arg-type]
            case "dismiss_campaign":
                self.dismiss_campaign(action.campaign, action.ts)  # type: ignore[arg-type]

    def set_blocklist(self, blocklist: Blocklist | None) -> None:
        """Load a new phishing block-list into the running guard (e.g. after each export)."""
        self.referrers.set_blocklist(blocklist)

    # --- records -----------------------------------------------------------------------------
    def _account(self, account: str) -> AccountState:
        acc = self.state.get("account", account)
        if acc is None:
            acc = AccountState()
            self.state.put("account", account, acc)
        return acc

    def _symbol(self, market: str, symbol: str) -> SymbolState | None:
        return self.state.get("symbol", f"{market}:{symbol}")

    def _price(self, key: str) -> float:
        sym = self.state.get("symbol", key)
        if sym is None:
            return 0.0
        return sym.last_price or sym.ref_price

    def _features(
        self, ip: str, user_agent: str, cookie: str | None, ts: datetime
    ) -> LoginFeatures:
        return login_features(ip, user_agent, cookie, ts, self.lookup(ip))

    def clock(self) -> dict[str, str]:
        """The hourly sweep's schedule and the zone of its day boundaries, as text: a store
        keeps them with the state, so that an engine started on it sweeps on time."""
        # An event in the last hour of year 9999 schedules the sweep past what a datetime
        # holds: the offset is then taken a day earlier (the zone's, not the schedule's).
        at = min(self._next_sweep or 0.0, LAST_TIMESTAMP)
        offset = datetime.fromtimestamp(at, self._tz).utcoffset()
        return {  # the offset then (a named zone such as Asia/Tokyo has no offset of its own)
            "next_sweep": repr(self._next_sweep),
            "tz": repr(offset.total_seconds() if offset is not None else 0.0),
            # the event before, so that an engine started on the state (a restart, a worker
            # taking over the partition) does not sweep on one bad timestamp either
            "last_event": repr(self._last_event),
            "newest": repr(self._newest),  # so that a late event after a restart is known
        }

    def set_clock(self, saved: dict[str, str]) -> None:
        """Continue the schedule :meth:`clock` gave (nothing when ``saved`` has none)."""
        if "next_sweep" in saved:
            self._next_sweep = float(saved["next_sweep"])
            self._tz = timezone(timedelta(seconds=float(saved.get("tz", "0"))))
            self._last_event = float(saved.get("last_event", "0"))
            self._newest = float(saved.get("newest", saved.get("last_event", "0")))

    def _clock(self, ts: datetime, deciding: bool = True) -> float:
        """Event time; sweeps the state once an hour, preferably on an event nobody waits for.

        A stream more than a day behind its last sweep restarts the schedule from its own time:
        the schedule was set by an event stamped far ahead (a clock years off), or the state
        was written by a later stream, and waiting for the stream to reach it stopped the sweep
        (every session, ended session and window kept) for as long as the clock was off.

        An event more than a day ahead of the one before it does not sweep by itself: swept at
        its time, every session and window would be forgotten as idle, because of one bad
        timestamp. The next event sweeps if it is as late (the stream really moved on: a quiet
        weekend), and restarts nothing if it is back at the stream's time."""
        now = ts.timestamp()
        self._late = now < self._newest
        if not self._late:
            self._newest = now
        jumped = self._last_event and now - self._last_event > JUMP_S
        self._last_event = now
        due = self._next_sweep
        if due and now < due - SWEEP_EVERY_S - REWOUND_S:
            self._next_sweep = due = now + SWEEP_EVERY_S
            self._next_ended_sweep = 0.0
        if jumped and due:
            return now
        if now >= due and (not deciding or now >= due + SWEEP_EVERY_S or not due):
            if due:
                self.sweep(now)
            self._tz = ts.tzinfo or UTC
            self._next_sweep = now + SWEEP_EVERY_S
        return now

    # --- sign-in -----------------------------------------------------------------------------
    def _judge_origin(
        self, account: str, acc: AccountState, f: LoginFeatures, now: float, login_seen: bool = True
    ) -> tuple[list[Signal], float, str]:
        """Signals of a sign-in (or a session's first request): familiarity plus infrastructure.

        For a session whose sign-in was never seen, the device cookie and browser are exactly
        what an infostealer copies, so only the network speaks for the request.
        """
        fam = self.login.familiarity(acc, f)
        if not login_seen:
            fam = fam[:1]
        infra = self.login.infrastructure(account, acc, f, now)
        familiarity = sum(s.llr for s in fam)
        self.login.note_unfamiliar(account, f, familiarity, now)
        # Campaign infrastructure counts against a sign-in only where the account does not
        # already know that network (customers of a VPN provider that criminals also use): its
        # kind, country or AS is new to the account. (Not "the network's ratio is positive": that
        # also weighs where the broker's other customers sign in from, which is not this
        # account's knowledge.)
        knows_network = fam[0].evidence["new"] in ("", "i")
        campaign = "" if knows_network else self._campaign_of(f)
        signals = fam + infra + self.feedback.login_signals(f, now)
        signals += self.feedback.account_signals(acc)
        if campaign:
            signals.append(
                Signal(
                    "campaign_infrastructure",
                    self.policy.detectors.campaign.infrastructure_llr,
                    {"campaign": campaign},
                )
            )
        return signals, sum(s.llr for s in signals), campaign

    def _campaign_of(self, f: LoginFeatures) -> str:
        return self.campaigns.infrastructure_of(self.login.entity_keys(f))

    def _cleared(self, account: str, f: LoginFeatures) -> None:
        """The account holder proved it was them: their sign-in counts against no one."""
        self.login.clear(account, f)
        self.campaigns.cleared(account, self.login.entity_keys(f))

    def _risky(self, account: str, f: LoginFeatures, now: float) -> str:
        touched = self.login.note_risky(account, f, now)
        return self.campaigns.risky_login(account, touched, now)

    def _decide_login(self, e: LoginAttempt) -> Decision:
        now = self._clock(e.ts)
        acc = self._account(e.account)
        if not e.success:
            failures = self.login.note_failure(e.account, acc, e.ip, e.id, now)
            if failures >= self.policy.detectors.login.lock_after_failures:
                reasons = (self._locked,) if self._locked else ()
                return Decision(action="lock", score=1.0, reasons=reasons)
            return Decision(action="deny", score=0.0, reasons=(BAD_CREDENTIALS,))
        f = self._features(e.ip, e.user_agent, e.device, e.ts)
        signals, total, campaign = self._judge_origin(e.account, acc, f, now)
        referred = self.referrers.signal(e.referrer)
        if referred is not None:
            signals.append(referred)
            total += referred.llr
        fallback = self.login.password_fallback(acc, f, e.factors)
        if fallback is not None:
            signals.append(fallback)
            total += fallback.llr
        if "passkey" in e.factors:
            # Origin-bound and unrelayable: the person holds the enrolled authenticator.
            decision = Decision(action="allow", score=0.0)
        elif self._confirm_sign_in(acc, now):
            # A session whose own sign-in was doubtful failed a strong step-up lately (the
            # password is probably in other hands): whoever signs in now confirms by passkey or
            # to the registered contact, however familiar it looks (a broker's choice).
            decision = self._apply("login", e, signals, passkey=acc.passkey, floor="challenge")
        else:
            decision = self._apply("login", e, signals, passkey=acc.passkey)
        if decision.action in ("deny", "lock"):
            self._risky(e.account, f, now)
            return decision
        sess, opens = self._signed_in_session(e, f, total, now)
        if sess is not None:
            sess.campaign = sess.campaign or campaign
        if "passkey" in e.factors:
            if sess is not None and opens:  # a late one vouches for no session in use since
                sess.trusted = True
            self.feedback.reverified(acc, now)
            self._cleared(e.account, f)
            self.login.learn(acc, f, now, passkey=True)
        elif decision.action == "allow":
            params = self.policy.detectors.login
            if total < params.learn_below:
                fell_back = self.login.learn(acc, f, now)
                # learned although doubtful: kept to take back out
                if sess is not None and not sess.learned and self._doubtful(sess):
                    sess.learned = (*profile_keys(f), FALLBACK) if fell_back else profile_keys(f)
                    sess.learned_hour = f.hour
            if total > params.risky_llr:
                if sess is None:
                    self._risky(e.account, f, now)
                elif not sess.campaign:
                    sess.campaign = self._risky(e.account, f, now)
        else:
            self._wait(
                e.id,
                PendingState(point="login", account=e.account, session=e.session, at=now, login=e),
            )
        if sess is not None:
            self._put_session(e.account, e.session, sess)
        self.state.put("account", e.account, acc)
        return decision

    def _signed_in_session(
        self, e: LoginAttempt, f: LoginFeatures, total: float, now: float
    ) -> tuple[SessionState | None, bool]:
        """The session a sign-in goes with, and whether the sign-in opens it.

        It opens a new one, unless it is late (older than an event taken before it: only then
        is the session looked up) and its session already made a request after it (its first
        requests came before the sign-in was delivered), or ended after it. A late
        sign-in neither starts that session over (its trust lost or restored, its orders and
        last request gone: a failed step-up undone, a session in use swept as idle) nor revives
        one that ended (a fraud confirmation found the revived session, empty, and not the
        orders of the one that ended). It only adds doubt to a session in use: the session
        keeps the worse of its own judgement and the sign-in's. A sign-in after the logout of a
        session with its id (or after its last request: :meth:`_after`) opens a new session,
        which :attr:`~SessionState.follows` it; one from before that logout, delivered after
        the new session started, opens nothing: it adds its doubt to the session before, which
        ended, if that one was in use after it.
        """
        sess = self._session_record("session", e.account, e.session)
        if self._late:
            if sess is not None and now < sess.follows:  # of a session before, which ended
                sess = self._session_before(sess, now)
                if sess is not None and now < sess.last:
                    sess.llr = max(sess.llr, total)
                    return sess, False
                return None, False
            if sess is not None and now < sess.last:
                sess.llr = max(sess.llr, total)
                return sess, False
            if sess is not None and sess.ended and now <= sess.ended:
                return None, False
            if sess is None:
                ended = self._session_record("ended", e.account, e.session)
                if ended is not None and now <= ended.ended:
                    return None, False
        new = self.sessions.start(e.account, e.session, f, total, now, login_seen=True)
        if sess is not None and not sess.ended:  # replaced in use: its orders kept as at a logout
            self._keep_orders(session_key(e.account, e.session), sess)
        return self._after(new, sess, e.session), True

    def _after(
        self, new: SessionState, before: SessionState | None, session_id: str
    ) -> SessionState:
        """A new session over the record ``before`` under its id. If that session was logged
        out (the id used again), the new one :attr:`~SessionState.follows` it, so that its
        step-ups and fraud stay its own, and keeps it (:attr:`~SessionState.before`, the latest
        :data:`SESSIONS_BEFORE_KEPT`), so that its requests delivered late are judged in it: in
        the new session, a thief's late order from abroad was a hijack of the customer's
        session (its trust taken away) and was listed with her orders.

        A session replaced while in use (a sign-in given an id no logout freed) is taken as
        ended when the new one started: the broker gave its id away, so a request from before
        then is the old session's and one after it the new one's. Before, it was not kept: its
        late requests were judged in the new session, a step-up it asked for vouched for the new
        one, and its sign-in confirmed as fraud named the new session's orders and signed it
        out.

        With no record under the id, a session the idle sweep forgot may have kept its orders
        there (:meth:`_keep_orders`): one that starts after its last request follows it, as it
        would follow a logout then. Before, it followed nothing, and the forgotten session's
        sign-in, confirmed as fraud, named the new session's orders and signed it out instead
        of naming its own (a broker whose sessions time out before ``idle_hours`` gives their
        ids to new sign-ins)."""
        if before is None:
            ended = self._session_record("ended", new.account, session_id)
            if ended is not None and new.started >= ended.ended:
                new.follows = ended.ended
        else:
            if not before.ended:
                before = msgspec.structs.replace(before, ended=max(before.last, new.started))
            new.follows = before.ended
            earlier = (*before.before, msgspec.structs.replace(before, before=()))
            new.before = earlier[-SESSIONS_BEFORE_KEPT:]
        return new

    @staticmethod
    def _session_before(sess: SessionState, now: float) -> SessionState | None:
        """The session before ``sess`` under its id that was in use at ``now`` (before
        ``sess`` :attr:`~SessionState.follows` it), if it is still kept."""
        for before in sess.before:
            if now < before.ended:
                return before if now >= before.follows else None
        return None

    def _put_session(self, account: str, session_id: str, sess: SessionState) -> None:
        """Put back a session that :meth:`_session_at` gave: a session before the latest under
        its id is kept in the latest's record, in its place there.

        It is found there by its start and end, which no change to it moves, not by being the
        same object: a store that decodes a fresh copy on each ``get`` (no cache in front of
        it) hands out another one, and the session before was written over the latest."""
        key = session_key(account, session_id)
        if sess.ended:  # perhaps one before
            record: SessionState | None = self.state.get("session", key)
            if record is not None and record is not sess:
                for at, before in enumerate(record.before):
                    if before.started == sess.started and before.ended == sess.ended:
                        if before is not sess:
                            record.before = (*record.before[:at], sess, *record.before[at + 1 :])
                        sess = record
                        break
        self.state.put("session", key, sess)

    @staticmethod
    def _opened_by(sess: SessionState, pending: PendingState) -> bool:
        """Whether the session is the one the waiting sign-in opened (not one in use before a
        late sign-in of it was delivered: that one started after the sign-in)."""
        return pending.login is None or sess.started == pending.at

    def _wait(self, event_id: str, pending: PendingState, sess: SessionState | None = None) -> None:
        """Keep a decision waiting for its answer, with the session's doubtful orders then (the
        session may have ended when the answer comes)."""
        if sess is not None:
            pending.doubtful = sess.doubtful
        self.state.put("pending", event_id, pending)

    def _challenge(self, e: ChallengeResult) -> None:
        pending: PendingState | None = self.state.get("pending", e.ref)
        if pending is None:
            return
        self.state.delete("pending", e.ref)
        kind, account, session_id = pending.point, pending.account, pending.session
        now = self._clock(e.ts, deciding=False)
        acc = self._account(account)
        key = session_key(account, session_id)
        sess, logged_out = self._answered_in(account, session_id, pending, now)
        strong = e.factor in STRONG_FACTORS
        login = pending.login
        f = (
            self._features(login.ip, login.user_agent, login.device, login.ts)
            if login is not None
            else None
        )
        if e.outcome == "failed" and strong:  # customers abandon too; failing is telling
            recent = tuple(t for t in acc.challenge_failures if t > now - 86400)
            at = bisect_right(recent, now)  # in time order (a late answer): the latest 10 kept
            acc.challenge_failures = (*recent[:at], now, *recent[at:])[-10:]
        if e.outcome != "passed":
            if f is None and strong and e.outcome == "failed":
                self._failed_in_session(acc, session_id, sess, pending, e, now)
            if f is not None:
                failed = strong and e.outcome == "failed"  # customers give up; they rarely fail
                if failed:
                    self._risky(account, f, now)
                if sess is not None and self._opened_by(sess, pending):
                    if not logged_out:  # ended, it stays marked for its late requests
                        self.state.delete("session", key)  # never established
                elif sess is not None and failed:  # a late sign-in of a session in use
                    self._failed_in_session(acc, session_id, sess, pending, e, now)
            self.state.put("account", account, acc)
            return
        if logged_out:  # the operation was not carried out: nothing to learn, no one to trust
            return
        if strong:
            self.feedback.reverified(acc, now)
        if strong and sess is not None and self._opened_by(sess, pending):
            sess.trusted = True
            sess.hijack = 0.0
            sess.doubtful = ()  # the customer, all along
        if f is not None:
            if strong:
                self._cleared(account, f)
                self.login.learn(acc, f, now)
        elif kind == "order" and pending.order is not None:
            self._placed(pending.order, acc, sess, pending.value)
        elif kind == "settings":
            self.changes.applied(acc, pending.field, now)
        elif kind == "withdrawal":  # it leaves now, when it is confirmed
            self._withdrawn(acc, pending.amount, now)
        self.state.put("account", account, acc)
        if sess is not None:
            self.state.put("session", key, sess)

    def _answered_in(
        self, account: str, session_id: str, pending: PendingState, now: float
    ) -> tuple[SessionState | None, bool]:
        """The session a challenge answered at ``now`` belongs to, and whether it was logged out
        by then.

        A step-up passed after the logout neither reopens the session (it stays ended, marked
        for its late requests) nor carries out the operation it held: the broker does not
        resume a session that ended, and learned as placed, a held buy of a small cap made the
        next one no first-time buy; a sign-in learned, its network familiar. A failure after
        the logout still counts against the session and the account (its doubtful orders
        named, the next sign-ins told). An answer from before the logout, delivered after it,
        finds no session, as before. The answer to what was asked in an earlier session under
        the same id (logged out, its id given to a new sign-in) is that session's, which ended
        (while it is kept: :attr:`~SessionState.before`): its step-up passed must not vouch for
        the new one, and failed, it names that session's doubtful orders."""
        sess: SessionState | None = self._session_record("session", account, session_id)
        if sess is not None and pending.at < sess.follows:
            return self._session_before(sess, pending.at), True
        if sess is None or not sess.ended:
            return sess, False
        if now >= sess.ended:
            return sess, True
        return None, False

    def _failed_in_session(
        self,
        acc: AccountState,
        session_id: str,
        sess: SessionState | None,
        pending: PendingState,
        e: ChallengeResult,
        now: float,
    ) -> None:
        """Whoever holds this session could not confirm by passkey or to the registered contact.

        What they did while the session was doubtful is not the customer's doing either (a
        market sell placed before the held buy executes when its market opens, hours later); if
        the session is not at hand (swept as idle, or an answer from before its logout delivered
        after it), the doubtful orders it had when the answer was asked for. What they do next
        in it is not the customer's doing either: a doubtful session is signed out (a customer
        who fumbles a confirmation in a session already proven theirs is not; one logged out is
        signed out already), and its next orders (late ones, if it ended) carry
        ``failed_step_up_llr``.
        """
        account = pending.account
        doubtful = sess.doubtful if sess is not None else pending.doubtful
        reason = "orders_cancelled"
        self._instruct("cancel_orders", account, session_id, doubtful, e.id, e.ts, reason)
        if sess is None:
            return
        params = self.policy.detectors.session
        if self._doubtful(sess):
            if sess.hijack == 0:  # the doubt is the sign-in's: the password's holder
                # the next sign-ins may have to confirm (a late answer is not the latest)
                acc.session_failed_at = extend_mark(acc.session_failed_at, now)
                self._unlearn_sign_in(acc, sess)
            if params.end_doubtful_sessions and not sess.signed_out and not sess.ended:
                sess.signed_out = True  # asked once
                signed_out = "session_ended"
                self._instruct("end_session", account, session_id, (), e.id, e.ts, signed_out)
        self._forget_orders(sess, sess.doubtful)
        sess.llr = max(sess.llr, 0.0) + params.failed_step_up_llr
        sess.trusted = False
        self._put_session(account, session_id, sess)

    # --- inside a session --------------------------------------------------------------------
    def _session_for(
        self,
        account: str,
        session_id: str,
        ip: str | None,
        user_agent: str | None,
        cookie: str | None,
        ts: datetime,
        now: float,
    ) -> SessionState | None:
        """The session's state after this request, creating it for a session never seen start
        (not for a request of a session before the latest under its id that is no longer kept:
        it is judged in no session).

        A late request of a session the idle sweep forgot, from before its last request, finds
        the orders it kept (:meth:`_keep_orders`): the session is taken up again with them,
        ended as it was, and judged like one whose sign-in was never seen (nothing else of it
        is kept). Opened as a new session over them, the fraud confirmation of its sign-in
        named only the late request's orders, and the new session's own sweep replaced the
        orders kept with those."""
        key = session_key(account, session_id)
        sess = self._session_at(account, session_id, now)
        if ip is None:
            return sess
        if sess is not None:
            ua_key = device_keys(user_agent or "")[3][2:]
            ck = sess.cookie if cookie is None else cookie_key(cookie)  # orders carry no cookie
            if ip == sess.ip and ua_key == sess.ua and ck == sess.cookie:
                sess.last = max(sess.last, now)  # a late request does not move it back
                self._put_session(account, session_id, sess)
                return sess
            f = self._features(ip, user_agent or "", cookie, ts)._replace(cookie=ck)
            acc = self._account(account)
            network_llr = self.login.familiarity(acc, f)[0].llr
            self.sessions.request(sess, f, network_llr, now)
            self._put_session(account, session_id, sess)
            return sess
        before = self.state.get("session", key)  # one that ended, if any
        if before is not None and now < before.follows:  # of a session before it, forgotten
            return None
        forgotten: KeptOrders | None = None
        if before is None:  # perhaps one the idle sweep forgot, its orders kept
            ended = self._session_record("ended", account, session_id)
            entries = self._kept(ended) if ended is not None else []
            for at, kept in enumerate(entries):
                if kept.follows <= now <= kept.ended:
                    if at < len(entries) - 1:  # of a session before the latest, forgotten
                        return None
                    forgotten = kept
                    break
        # A session whose sign-in the guard never saw (a remember-me cookie, or a cookie used
        # from elsewhere): its first request is judged like a sign-in.
        acc = self._account(account)
        f = self._features(ip, user_agent or "", cookie, ts)
        _, total, campaign = self._judge_origin(account, acc, f, now, login_seen=False)
        total += self.policy.detectors.session.unseen_login_llr
        sess = self._after(
            self.sessions.start(account, session_id, f, total, now, login_seen=False),
            before,
            session_id,
        )
        if forgotten is not None:
            sess.follows, sess.orders = forgotten.follows, forgotten.orders
            sess.last = sess.ended = forgotten.ended
        if total > self.policy.detectors.login.risky_llr:
            campaign = campaign or self._risky(account, f, now)
        sess.campaign = campaign
        self.state.put("session", key, sess)
        return sess

    def _session_record(self, kind: str, account: str, session_id: str) -> Any:
        """The ``session`` or ``ended`` record of an account's session, under its
        :func:`session_key`.

        State written before the account was part of the key holds the record under the session
        id alone: it is taken (moved to the new key) when its account is this one, so that an
        upgrade neither forgets a live session's trust and orders nor the orders of one that
        ended (a fraud confirmed after the upgrade would name none). The sweep ends or drops
        the records no request comes for, by the key they have."""
        key = session_key(account, session_id)
        record = self.state.get(kind, key)
        if record is None and key != session_id:
            old = self.state.get(kind, session_id)
            if old is not None and old.account == account:
                self.state.delete(kind, session_id)
                self.state.put(kind, key, old)
                record = old
        return record

    def _live_session(self, account: str, session_id: str) -> SessionState | None:
        """The session, unless it ended (a logout)."""
        sess: SessionState | None = self._session_record("session", account, session_id)
        return None if sess is None or sess.ended else sess

    def _session_at(self, account: str, session_id: str, now: float) -> SessionState | None:
        """The session an event at ``now`` belongs to: a live one, or one that ended after
        ``now`` (the event is from before the logout, delivered late: it is judged in its
        session, which stays ended). After the logout there is none (a request then starts a
        session whose sign-in the guard never saw). An event from before the session started
        under an id given again is of the session before it, which ended (while kept: put it
        back with :meth:`_put_session`)."""
        sess: SessionState | None = self._session_record("session", account, session_id)
        if sess is not None and now < sess.follows:
            return self._session_before(sess, now)
        if sess is None or (sess.ended and now >= sess.ended):
            return None
        return sess

    def _activity(self, e: SessionActivity) -> None:
        now = self._clock(e.ts, deciding=False)
        sess = self._session_for(e.account, e.session, e.ip, e.user_agent, e.device, e.ts, now)
        # A logout older than the session's last request (delivered late) does not end it: the
        # session was in use after it, and ended, its next request opened it again as a session
        # whose sign-in was never seen (its trust lost, the customer's order judged with doubt).
        if e.action == "logout" and (sess is None or now >= sess.last):
            self._end_session(session_key(e.account, e.session), now)

    def _end_session(self, key: str, logout: float | None = None) -> None:
        """End a session (by its :func:`session_key`): at a ``logout`` it is kept, marked ended,
        until the idle sweep (``logout`` None) forgets it. Before, a logout forgot it at once, and
        a request from before the logout delivered after it opened it again as a session whose
        sign-in the guard never saw: the customer's own order judged with that doubt, a thief's
        order kept in the reopened session, whose end then replaced the orders kept of the first.
        The orders of one that was not trusted are kept a while longer (counted from its last
        request: :meth:`_keep_orders`)."""
        sess: SessionState | None = self.state.get("session", key)
        if sess is None:
            return
        if logout is not None and logout < sess.follows:  # of a session before it, ended
            return
        if not sess.ended:
            self._keep_orders(key, sess)
        if logout is None:
            self.state.delete("session", key)
        elif not sess.ended:
            sess.ended = max(sess.last, logout)
            self.state.put("session", key, sess)

    def _keep_orders(self, key: str, sess: SessionState) -> None:
        """Keep the orders of a session that ended untrusted, for a fraud confirmation.

        Each session under the id keeps its own: a session given the id after the logout of one
        that kept its orders keeps them beside it (the latest :data:`SESSIONS_BEFORE_KEPT`
        before it, while not past ``ended_orders_days``), and a late order of one of them joins
        its own. Before, the latest session's replaced them, and a fraud confirmation of the
        sign-in before named the new session's orders. A session is told apart by the end of
        the one before it (``follows``); one swept as idle had none, and is told apart by its
        last request, before the next session under the id started."""
        if not sess.orders or sess.trusted:
            return
        ended: EndedSessionState | None = self.state.get("ended", key)
        if ended is None:
            ended = EndedSessionState(
                account=sess.account, ended=sess.last, orders=sess.orders, follows=sess.follows
            )
        else:
            days = self.policy.detectors.session.ended_orders_days
            horizon = sess.last - days * 86400
            others = [
                kept
                for kept in self._kept(ended)
                if kept.ended >= horizon
                and not (kept.follows == sess.follows and sess.started <= kept.ended)
            ]
            own = KeptOrders(follows=sess.follows, ended=sess.last, orders=sess.orders)
            entries = sorted([*others, own], key=lambda kept: kept.ended)
            ended = self._kept_record(sess.account, entries[-SESSIONS_BEFORE_KEPT - 1 :])
        self.state.put("ended", key, ended)

    @staticmethod
    def _kept(ended: EndedSessionState) -> list[KeptOrders]:
        """The orders kept under an id, each session's, oldest first."""
        latest = KeptOrders(follows=ended.follows, ended=ended.ended, orders=ended.orders)
        return [*ended.earlier, latest]

    @staticmethod
    def _kept_record(account: str, entries: list[KeptOrders]) -> EndedSessionState:
        latest = entries[-1]
        return EndedSessionState(
            account=account,
            ended=latest.ended,
            orders=latest.orders,
            follows=latest.follows,
            earlier=tuple(entries[:-1]),
        )

    @staticmethod
    def _kept_for(
        ended: EndedSessionState, record: SessionState | None, at: float
    ) -> KeptOrders | None:
        """The orders kept of the session under the id that a sign-in at ``at`` opened: the
        session that had begun by then (its ``follows``) and was in use after it (its last
        request); for a sign-in after the latest's last request, the latest, unless a later
        session under the id is known (``record``: it is that one's, and it kept none)."""
        entries = BrokerGuard._kept(ended)
        for kept in entries:
            if kept.follows <= at <= kept.ended:
                return kept
        latest = entries[-1]
        if at < latest.follows:
            return None
        if record is not None and (
            record.follows > latest.follows or record.started > latest.ended
        ):
            return None
        return latest

    def _common(self, acc: AccountState, sess: SessionState | None, now: float) -> list[Signal]:
        signals = self.sessions.risk(sess) + self.feedback.account_signals(acc)
        recent = self.changes.recent(acc, now)
        if recent is not None:
            signals.append(recent)
        link = self.campaigns.infrastructure_signal(sess)
        if link is not None:
            signals.append(link)
        return signals

    def _decide_order(self, e: Order) -> Decision:
        if e.action != "new":
            self._order_cancel(e)
            return ALLOW
        now = self._clock(e.ts)
        acc = self._account(e.account)
        sess = self._session_for(e.account, e.session, e.ip, e.user_agent, None, e.ts, now)
        key = f"{e.market}:{e.symbol}"
        sym = self.state.get("symbol", key)
        price = e.limit_price or (sym.last_price or sym.ref_price if sym is not None else 0.0)
        value = e.quantity * price
        if sess is not None and sess.holdings_value == 0.0 and sess.sold_value == 0.0:
            sess.holdings_value = holdings_value(acc, self._price)
        signals = self._common(acc, sess, now)
        signals += self.trading.order(e, acc, sess, sym, value)
        if e.side == "buy" and sym is not None:
            first_time = key not in acc.bought and key not in acc.positions
            suspicion = sum(s.llr for s in signals)
            daily_value = sym.adv * (sym.last_price or sym.ref_price)
            thin = value >= THIN_SHARE * daily_value or any(
                s.code == "illiquid_symbol" for s in signals
            )
            # right after a sell-off, in a session that is not the customer's familiar one
            liquidated = (sess is None or sess.llr > 0 or sess.hijack > 0) and any(
                s.code == "liquidation_then_buy" for s in signals
            )
            found = self.campaigns.buy(
                e.account, sym, sess, first_time, thin, suspicion, now, liquidated
            )
            if found is not None:
                signals.append(found)
            self.state.put("symbol", key, sym)
        decision = self._apply("order", e, signals, passkey=acc.passkey)
        if decision.action == "allow":
            self._placed(e, acc, sess, value)
            if sess is not None and sess.ended:  # late, in a session that ended since
                self._keep_orders(session_key(e.account, e.session), sess)
        elif decision.action in ("challenge", "hold"):
            self._wait(
                e.id,
                PendingState(
                    point="order",
                    account=e.account,
                    session=e.session,
                    at=now,
                    order=e,
                    value=value,
                ),
                sess,
            )
        self.state.put("account", e.account, acc)
        if sess is not None:
            self._put_session(e.account, e.session, sess)
        return decision

    def _placed(self, e: Order, acc: AccountState, sess: SessionState | None, value: float) -> None:
        """An order went ahead: the account's habits learn it, and its session remembers it, in
        case the session fails a strong step-up later or its sign-in is confirmed as fraud
        (:meth:`_instruct`); the first names only the orders placed while it was doubtful.

        Doubtful means not trusted and with evidence above ``cancel_orders_above_llr`` when the
        order was placed: the orders a customer placed in their own session before a thief took
        it over (a stolen cookie) are not named, nor those of a familiar customer who fumbles a
        confirmation afterwards."""
        self.trading.placed(e, acc, sess, value)
        if sess is None or sess.account != e.account:
            return
        sess.orders = (*sess.orders[-(SESSION_ORDERS_KEPT - 1) :], e.order_id)
        if self._doubtful(sess):
            sess.doubtful = (*sess.doubtful[-(SESSION_ORDERS_KEPT - 1) :], e.order_id)

    def _order_cancel(self, e: Order) -> None:
        return None

    def _sensitive(
        self, acc: AccountState, sess: SessionState | None, now: float, own: list[Signal]
    ) -> list[Signal]:
        """Signals of a settings change or withdrawal: the session's, its own, and any burst."""
        signals = self._common(acc, sess, now) + own
        burst = self.sessions.sensitive(sess, now)
        if burst is not None:
            signals.append(burst)
        return signals

    def _decide_settings(self, e: SettingsChange) -> Decision:
        now = self._clock(e.ts)
        acc = self._account(e.account)
        sess = self._session_at(e.account, e.session, now)
        signals = self._sensitive(acc, sess, now, self.changes.change(acc, e.field, now))
        decision = self._apply(
            "settings", e, signals, passkey=acc.passkey, step_up=e.field in self.always_step_up
        )
        if decision.action == "allow":
            self.changes.applied(acc, e.field, now)
        elif decision.action in ("challenge", "hold"):
            self._wait(
                e.id,
                PendingState(
                    point="settings", account=e.account, session=e.session, at=now, field=e.field
                ),
                sess,
            )
        self.state.put("account", e.account, acc)
        if sess is not None:
            self._put_session(e.account, e.session, sess)
        return decision

    def _decide_withdrawal(self, e: Withdrawal) -> Decision:
        now = self._clock(e.ts)
        acc = self._account(e.account)
        sess = self._session_at(e.account, e.session, now)
        signals = self._sensitive(acc, sess, now, self.changes.withdrawal(acc, e.amount_jpy, now))
        decision = self._apply("withdrawal", e, signals, passkey=acc.passkey)
        if decision.action == "allow":
            self._withdrawn(acc, e.amount_jpy, now)
        elif decision.action in ("challenge", "hold"):
            self._wait(
                e.id,
                PendingState(
                    point="withdrawal",
                    account=e.account,
                    session=e.session,
                    at=now,
                    amount=e.amount_jpy,
                ),
                sess,
            )
        self.state.put("account", e.account, acc)
        if sess is not None:
            self._put_session(e.account, e.session, sess)
        return decision

    # --- what the broker's books say ---------------------------------------------------------
    def _execution(self, e: Execution) -> None:
        acc = self._account(e.account)
        key = f"{e.market}:{e.symbol}"
        self._book_fill(acc, e, key)
        self.state.put("account", e.account, acc)
        sym = self.state.get("symbol", key)
        if sym is not None:
            self._last_price(sym, e.price, price_known(e.market, e.ts))
            self.campaigns.fill(sym, e.account, e.side, e.price, e.ts.timestamp())
            self.state.put("symbol", key, sym)

    def _book_fill(self, acc: AccountState, e: Execution, key: str) -> None:
        """The fill's shares and cash, on top of the holdings snapshot, kept for a snapshot
        delivered later from before it (:mod:`brokerguard.engine.books`). A fill older than the
        snapshot, delivered after it, is in the snapshot already: counted again, a buy doubled
        the position (a sell-off of it was no liquidation) and a sell took it away."""
        sign = 1.0 if e.side == "buy" else -1.0
        move = Move(e.ts.timestamp(), key, sign * e.quantity, -sign * e.value_jpy)
        book(acc, move, self.policy.detectors.trading.holdings_late_hours * 3600)

    def _withdrawn(self, acc: AccountState, amount: float, now: float) -> None:
        """Cash paid out at ``now``, kept for a late snapshot as fills are (one older than the
        snapshot held is in it already)."""
        book(
            acc,
            Move(now, "", 0.0, -float(amount)),
            self.policy.detectors.trading.holdings_late_hours * 3600,
        )

    def _holdings(self, e: HoldingsSnapshot) -> None:
        """The broker's books: the account's cash and positions as of the snapshot's time, with
        the fills and withdrawals taken since that time on top (:mod:`brokerguard.engine.books`:
        taken as it was, a snapshot delivered after them put back what was sold and lost what
        was bought and withdrawn). One older than the snapshot already held (delivered late) is
        not taken: it put back what the account held days before (a sell-off of today's
        holdings was no liquidation)."""
        acc = self._account(e.account)
        positions = ((f"{p.market}:{p.symbol}", float(p.quantity)) for p in e.positions)
        if take_snapshot(acc, e.ts.timestamp(), e.cash_jpy, positions):
            self.state.put("account", e.account, acc)

    def _account_snapshot(self, e: AccountSnapshot) -> None:
        """The account's set-up. One older than the snapshot already taken (delivered late) is
        not taken: a snapshot from before the customer enrolled a passkey took the passkey away
        (a step-up asked for a code to her phone instead)."""
        acc = self._account(e.account)
        at = e.ts.timestamp()
        if at < acc.account_at:
            return
        acc.account_at = at
        acc.opened = e.opened.timestamp()
        acc.passkey = e.passkey_enrolled
        acc.otp_channel = e.otp_channel
        self.state.put("account", e.account, acc)

    def _instrument(self, e: Instrument) -> None:
        """The symbol's reference data, unless the data held became known later (the rule of
        :mod:`brokerguard.markets`, as for fills and bars): a reference file from days before,
        delivered late, put back an old price and volume, and a pumped small cap's orders were
        measured against them (its limits far above, or not, the volume thin, or not)."""
        key = f"{e.market}:{e.symbol}"
        at = price_known(e.market, e.ts).timestamp()
        sym: SymbolState | None = self.state.get("symbol", key)
        if sym is None:
            sym = SymbolState(market=e.market, symbol=e.symbol)
        elif at < sym.ref_at:
            return
        sym.ref_at = at
        sym.lot = e.lot_size
        sym.ref_price = e.price
        sym.adv = float(e.avg_daily_volume)
        sym.market_cap = e.market_cap_jpy
        self.state.put("symbol", key, sym)

    def _bar(self, e: MarketBar) -> None:
        self._clock(e.ts, deciding=False)
        key = f"{e.market}:{e.symbol}"
        sym = self.state.get("symbol", key)
        if sym is None:
            return
        known = price_known(e.market, e.ts, e.minutes)
        self._last_price(sym, e.close, known)
        self.campaigns.bar(sym, e, known.timestamp())
        self.state.put("symbol", key, sym)

    @staticmethod
    def _last_price(sym: SymbolState, price: float, known: datetime) -> None:
        """A fill's or bar's price becomes the symbol's last price unless the one held became
        known later (see :mod:`brokerguard.markets`): a fill or bar delivered late put an old
        price back, and an order's limit was measured against it."""
        at = known.timestamp()
        if at >= sym.price_at:
            sym.last_price, sym.price_at = price, at

    def _canary(self, e: CanaryHit) -> None:
        now = self._clock(e.ts, deciding=False)
        self.login.note_canary(e.ip, self.lookup(e.ip), e.origin, now)

    # --- housekeeping and output -----------------------------------------------------------
    def sweep(self, now: float) -> None:
        """Forget idle sessions, empty windows and unanswered challenges: state stays bounded."""
        params = self.policy.detectors.session
        idle = now - params.idle_hours * 3600
        for sid in self.state.keys("session"):
            sess = self.state.get("session", sid)
            if sess is None:
                continue
            if sess.last < idle:
                self._end_session(sid)
            elif sess.before and sess.before[0].last < idle:  # as if each were a session
                sess.before = tuple(b for b in sess.before if b.last >= idle)
                self.state.put("session", sid, sess)
        if now >= self._next_ended_sweep:
            # Ended sessions outnumber live ones and are kept for days: walking them every hour
            # was most of the sweep's time. Once a day bounds them as well, and an older record
            # still here is not used (:meth:`_expired`).
            self._next_ended_sweep = now + ENDED_SWEEP_EVERY_S
            for sid in self.state.keys("ended"):
                ended = self.state.get("ended", sid)
                if ended is not None and self._expired(ended, now):
                    self.state.delete("ended", sid)
        span = self.policy.detectors.login.infrastructure_window_hours * 3600
        for key in self.state.keys("entity"):
            ent = self.state.get("entity", key)
            if ent is None or ent.campaign or self.feedback.keeps(ent, now):
                continue
            for window in (ent.unfamiliar, ent.risky):
                prune_window(window, now, span, 64)
            prune_window(ent.failures, now, 3600 * 24, 64)
            canary_since = now - self.policy.detectors.login.canary_hours * 3600
            canary = run_last(ent.canary) > canary_since
            if not (ent.unfamiliar or ent.risky or ent.failures or canary):
                self.state.delete("entity", key)
            else:
                self.state.put("entity", key, ent)
        for key in self.state.keys("pending"):
            pending = self.state.get("pending", key)
            if pending is not None and pending.at < now - PENDING_TTL_S:
                self.state.delete("pending", key)

    def _expired(self, ended: EndedSessionState | KeptOrders, now: float) -> bool:
        """Whether an ended session's orders are past ``ended_orders_days`` (forgotten)."""
        return ended.ended < now - self.policy.detectors.session.ended_orders_days * 86400

    def campaign_records(self) -> list[dict[str, Any]]:
        """Campaign lines not yet written (see :meth:`CampaignWatch.records`)."""
        tz = self._tz

        def iso(t: float) -> str:
            return datetime.fromtimestamp(t, tz).isoformat()

        return list(self.campaigns.records(iso))
