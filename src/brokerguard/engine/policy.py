"""Policy: how signals become a decision, read from a TOML file the broker can edit.

For each decision point the policy adds the weighted signals to a prior log-odds and squashes the
sum into a score in [0, 1]; the first rule whose ``min_score`` the score reaches names the action
(and, for a challenge, the factors that satisfy it). Every signal code has a reason in Japanese
and English, which is what the analyst and the customer read. Detector tunables live in the same
file, so a broker tunes by editing data, not code.

Loading is strict: an unknown key, a wrong type, a rule list out of order, a challenge without
factors or a signal without a reason is a :class:`PolicyError` that names the field.
"""

from __future__ import annotations

import functools
import math
import tomllib
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import msgspec
from msgspec import Meta

from brokerguard.engine.signals import SIGNAL_CODES, Signal
from brokerguard.events import Factor, field_of_error, leaves
from brokerguard.guard import Action, Decision, Reason
from brokerguard.netinfo import NetworkKindName, NetworkLookup, load_networks, shared_lookup

if TYPE_CHECKING:
    from brokerguard.phishing import Blocklist

__all__ = [
    "INSTRUCTION_CODES",
    "Policy",
    "PolicyError",
    "PointPolicy",
    "Rule",
    "default_policy_path",
    "load_policy",
    "load_policy_blocklist",
    "load_policy_lookup",
]

Point = Literal["login", "order", "withdrawal", "settings"]
INSTRUCTION_CODES: tuple[str, ...] = (
    "orders_cancelled",
    "orders_cancelled_fraud",
    "session_ended",
    "session_ended_fraud",
)
"""Reasons the engine gives with an instruction (see :class:`~brokerguard.guard.Instruction`)."""
Positive = Annotated[float, Meta(gt=0)]
Share = Annotated[float, Meta(ge=0, le=1)]


class _Strict(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    pass


class Rule(_Strict):
    min_score: Share
    action: Action
    factors: list[Factor] = []


class PointPolicy(_Strict):
    """How one decision point turns signals into an action."""

    prior: float  # log-odds of an attack before any signal
    weights: dict[str, Annotated[float, Meta(ge=0)]] = {}
    rules: list[Rule] = []
    always_step_up: list[str] = []  # settings fields that always need a strong factor
    step_up_factors: list[Factor] = []


class LoginParams(_Strict):
    """Tunables of the login-risk model (see detectors.login)."""

    novelty_concentration: Positive = 1.0
    ua_novelty_concentration: Positive = 4.0  # browser updates make new UA strings common
    novelty_discount: Share = 0.5
    population_weight: Positive = 2.0  # how many sign-ins' worth the population prior counts
    # where attackers sign in from, by network kind
    attacker_network: dict[NetworkKindName, Share] = {}
    # Where customers sign in from, by network kind, before the broker's own sign-ins say it
    # (kinds not given keep the shipped belief), and how many accounts' worth that belief
    # counts (the population counts each account once; 0: none; see detectors.login).
    customer_network: dict[NetworkKindName, Share] = {}
    customer_network_weight: Annotated[float, Meta(ge=0)] = 100.0
    # Share of customers whose first sign-in the engine sees comes without a device cookie,
    # before the broker's own sign-ins say it (worth customer_network_weight accounts).
    customer_no_cookie: Share = 0.05
    # Share of the accounts that sign in with a passkey that also sign in with the password from
    # a browser they use the passkey in, before the broker's own accounts say it (worth
    # customer_network_weight accounts); see detectors.login, password_fallback.
    customer_password_fallback: Share = 0.3
    attacker_reuse: dict[str, Share] = {}  # chance an attacker presents a value the account used
    attacker_home_share: Share = 0.5  # attackers signing in from the broker's home country
    attacker_countries: Annotated[int, Meta(gt=0)] = 40  # ... and from how many others, evenly
    level_cap: Positive = 6.0  # no single hierarchy level moves the score by more (nats)
    hour_cap: Positive = 1.0
    infrastructure_window_hours: Positive = 24.0
    infrastructure_per_account: Positive = 0.8  # nats per other account behind the same address
    infrastructure_cap: Positive = 5.0
    unfamiliar_llr: float = 1.0  # a sign-in above this counts as unfamiliar for infrastructure
    risky_llr: float = 3.0  # ... and above this as risky
    learn_below: float = 2.0  # sign-ins allowed below this teach the account's profile
    failure_window_minutes: Positive = 60.0
    failure_llr: Positive = 0.7
    lock_after_failures: Annotated[int, Meta(gt=0)] = 10
    step_up_failure_hours: Positive = 24.0
    step_up_failure_llr: Positive = 2.0
    travel_hours: Positive = 3.0
    travel_llr: Positive = 2.0
    canary_hours: Positive = 24.0  # how long a clone-page canary hit marks its address
    canary_llr: Positive = 6.0  # a sign-in from such an address (a relaying proxy's)
    # A sign-in whose Referer is a phishing page (detectors.login.ReferrerCheck): the block-list
    # file (`brokerguard phish blocklist` writes it; relative to the policy file), and the
    # evidence of a listed host and of a host only the URL scorer calls phishing for a brand.
    blocklist: str | None = None
    # The broker's own list of hosting and anonymizer networks (AS name patterns, address ranges
    # such as the Tor exit list), in the format of data/networks.toml; relative to the policy
    # file. Its entries are added to the shipped list.
    networks: str | None = None
    referrer_blocked_llr: Positive = 12.0
    referrer_phishing_llr: Positive = 4.0


class SessionParams(_Strict):
    network_change_llr: Positive = 3.0
    as_change_llr: Positive = 1.5
    device_change_llr: Positive = 3.0
    hijack_min_llr: Positive = 1.0  # weaker mid-life changes are ignored
    sensitive_window_minutes: Positive = 10.0
    sensitive_burst: Annotated[int, Meta(gt=0)] = 4
    sensitive_llr: Positive = 1.5
    idle_hours: Positive = 12.0
    trusted_llr: float = -3.0  # the llr a session carries after a phishing-resistant step-up
    failed_step_up_llr: Positive = 5.0  # the session failed a strong step-up for an operation
    unseen_login_llr: float = 1.5  # a session whose sign-in was never seen (a replayed cookie?)
    # A session that fails a strong step-up gets the orders it placed while it was doubtful
    # cancelled where still open (an Instruction to the broker): doubtful = not trusted, with
    # evidence above this (nats) when the order was placed. A familiar session whose customer
    # fails a confirmation keeps its orders, and so do a customer's orders placed before a thief
    # took the session over.
    cancel_orders_above_llr: float = 0.0
    # ... and such a session, doubtful by the same measure when it fails, is signed out (an
    # Instruction ``end_session``): whoever holds it must sign in again. A session an analyst
    # confirmed as fraud is signed out whatever this says.
    end_doubtful_sessions: bool = True
    # After such a failure in a session whose own sign-in was doubtful (not a stolen cookie),
    # the password is probably in other hands: for this long every password sign-in to the
    # account asks for a passkey or out-of-band confirmation, however familiar (until one
    # passes; with rules that offer relayable codes, those stay on offer). Off (0) by default:
    # the failed session's own sign-in is taken back out of the profile instead, and the
    # customer's familiar sign-ins stay free.
    confirm_sign_ins_hours: Annotated[float, Meta(ge=0)] = 0.0
    # How long the orders of a session that was not trusted are remembered after it ended, so
    # that a fraud confirmation can still have what is open of them cancelled (GTC orders).
    ended_orders_days: Positive = 7.0


class AccountParams(_Strict):
    field_llr: dict[str, float] = {}
    recent_change_days: Positive = 7.0
    recent_change_llr: Positive = 2.0
    withdrawal_share: Share = 0.8
    withdrawal_llr: Positive = 1.0


class TradingParams(_Strict):
    liquidation_share: Share = 0.5
    liquidation_llr: Positive = 1.5
    liquidation_then_buy_llr: Positive = 3.5
    first_market_llr: Positive = 1.0
    first_symbol_llr: Positive = 0.3
    thin_daily_value_jpy: Positive = 100e6  # below this average daily turnover a symbol is thin
    illiquid_llr_per_decade: Positive = 0.8
    illiquid_cap: Positive = 2.0
    limit_above_pct: Positive = 3.0
    limit_llr_per_pct: Positive = 0.25
    limit_cap: Positive = 2.5
    size_sigmas: Positive = 2.5
    size_llr: Positive = 0.8
    margin_first_llr: Positive = 0.7
    # how late a holdings snapshot may come after the fills and withdrawals from after its own
    # time and still be completed with them: they are kept this long (see engine.books)
    holdings_late_hours: Positive = 72.0


class CampaignParams(_Strict):
    window_minutes: Positive = 60.0
    min_accounts: Annotated[int, Meta(gt=0)] = 3
    compromised_llr: float = 6.0  # a session this doubtful counts twice toward min_accounts
    suspicious_llr: float = 4.0  # a first-time buy whose order llr exceeds this is suspicious
    infrastructure_accounts: Annotated[int, Meta(gt=0)] = 3  # risky sign-ins that make a cluster
    symbol_llr: Positive = 3.0
    infrastructure_llr: Positive = 2.0
    volume_multiple: Positive = 5.0  # bar volume over its usual level that counts as departing


class FeedbackParams(_Strict):
    """How much what analysts confirmed weighs (see engine.feedback)."""

    reverify_llr: Positive = 10.0  # an account awaiting a forced re-verification
    confirmed_fraud_llr: Positive = 6.0  # a sign-in from confirmed fraud infrastructure
    confirmed_fraud_days: Positive = 30.0  # ... for this long after the confirmation


class DetectorParams(_Strict):
    login: LoginParams = LoginParams()
    session: SessionParams = SessionParams()
    account: AccountParams = AccountParams()
    trading: TradingParams = TradingParams()
    campaign: CampaignParams = CampaignParams()
    feedback: FeedbackParams = FeedbackParams()


class ReasonText(_Strict):
    en: Annotated[str, Meta(min_length=1)]
    ja: Annotated[str, Meta(min_length=1)]


class Policy(_Strict):
    name: str
    login: PointPolicy
    order: PointPolicy
    withdrawal: PointPolicy
    settings: PointPolicy
    detectors: DetectorParams = DetectorParams()
    reasons: dict[str, ReasonText] = {}
    reason_min_llr: float = 0.7  # signals at least this strong are named in a decision
    max_reasons: Annotated[int, Meta(gt=0)] = 3

    def point(self, name: Point) -> PointPolicy:
        return getattr(self, name)


class PolicyError(ValueError):
    """A policy file that cannot be used; ``field`` names the offending key when known."""

    def __init__(self, message: str, field: str | None = None) -> None:
        self.field = field
        super().__init__(message)


def default_policy_path() -> Path:
    return Path(str(resources.files("brokerguard.policies").joinpath("default.toml")))


def _check(policy: Policy, source: str) -> None:
    for point in ("login", "order", "withdrawal", "settings"):
        pp = policy.point(point)  # type: ignore[arg-type]
        for code in pp.weights:
            if code not in SIGNAL_CODES:
                raise PolicyError(
                    f"{source}: `{point}.weights.{code}`: unknown signal code", f"{point}.weights"
                )
        previous = 2.0
        for i, rule in enumerate(pp.rules):
            where = f"{point}.rules[{i}]"
            if rule.min_score > previous:
                raise PolicyError(
                    f"{source}: `{where}.min_score`: rules must go from the highest score down",
                    where,
                )
            previous = rule.min_score
            if rule.action == "challenge" and not rule.factors:
                raise PolicyError(f"{source}: `{where}.factors`: a challenge needs factors", where)
        if pp.always_step_up and not pp.step_up_factors:
            raise PolicyError(
                f"{source}: `{point}.step_up_factors`: needed by `always_step_up`", point
            )
    known = SIGNAL_CODES + INSTRUCTION_CODES
    missing = [c for c in known if c not in policy.reasons]
    if missing:
        raise PolicyError(f"{source}: `reasons`: no text for codes {', '.join(missing)}", "reasons")
    unknown = [c for c in policy.reasons if c not in known and not c.startswith("rule_")]
    if unknown:
        raise PolicyError(f"{source}: `reasons`: unknown codes {', '.join(unknown)}", "reasons")


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{source}: not valid TOML: {exc}") from None
    _check_values(raw, source)
    try:
        policy = msgspec.convert(raw, type=Policy)
    except msgspec.ValidationError as exc:
        raise PolicyError(f"{source}: {exc}", field_of_error(str(exc))) from None
    policy = _with_shipped_texts(policy)
    _check(policy, source)
    return policy


def _check_values(raw: dict[str, object], source: str) -> None:
    """Refuse TOML's ``nan`` and ``inf`` anywhere: a NaN prior or weight makes every score NaN,
    which reaches no rule's ``min_score``, so every decision was a silent ``allow``. And U+0000
    in a text (the name, a reason's sentence), which every decision's record carries."""
    for path, value in leaves(raw):
        if isinstance(value, float) and not math.isfinite(value):
            raise PolicyError(f"{source}: `{path}`: must be a finite number, not {value}", path)
        if isinstance(value, str) and "\x00" in value:  # TOML's "\u0000": PostgreSQL refuses it
            raise PolicyError(f"{source}: `{path}`: contains the character U+0000 (NUL)", path)


def _with_shipped_texts(policy: Policy) -> Policy:
    """A code the policy gives no text for takes the shipped text, so that a broker's policy
    written for an earlier version keeps loading when a version adds a signal or instruction
    (its own texts, and unknown codes, are kept and checked as before)."""
    known = SIGNAL_CODES + INSTRUCTION_CODES
    if all(code in policy.reasons for code in known):
        return policy
    shipped = _shipped_reasons()
    added = {c: shipped[c] for c in known if c not in policy.reasons and c in shipped}
    return msgspec.structs.replace(policy, reasons={**policy.reasons, **added})


@functools.cache
def _shipped_reasons() -> dict[str, ReasonText]:
    raw = tomllib.loads(default_policy_path().read_text(encoding="utf-8"))
    return msgspec.convert(raw.get("reasons", {}), type=dict[str, ReasonText])


def load_policy(path: Path | str | None = None) -> Policy:
    """Read and validate a policy file; the shipped default when ``path`` is None."""
    path = Path(path) if path is not None else default_policy_path()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read policy: {exc.strerror}") from None
    except UnicodeDecodeError as exc:  # a ValueError, not an OSError: it was a traceback
        raise PolicyError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    policy = parse_policy(text, str(path))
    login = policy.detectors.login
    # Files named next to the policy file travel with it, wherever it is run from.
    beside = {
        name: str(path.parent / listed)
        for name in ("blocklist", "networks")
        if (listed := getattr(login, name)) and not Path(listed).is_absolute()
    }
    if beside:
        login = msgspec.structs.replace(login, **beside)
        detectors = msgspec.structs.replace(policy.detectors, login=login)
        policy = msgspec.structs.replace(policy, detectors=detectors)
    return policy


def load_policy_lookup(policy: Policy) -> NetworkLookup:
    """The address lookup the policy asks for: the shipped networks list plus the file named by
    ``detectors.login.networks``, if any. A file that cannot be used is a :class:`PolicyError`
    naming that key, the file and the entry."""
    path = policy.detectors.login.networks
    if not path:
        return shared_lookup()
    key = "detectors.login.networks"
    try:
        return NetworkLookup(table=load_networks(path))
    except OSError as exc:
        raise PolicyError(f"`{key}`: {path}: cannot read: {exc.strerror}", key) from None
    except ValueError as exc:
        raise PolicyError(f"`{key}`: {exc}", key) from None


def load_policy_blocklist(policy: Policy) -> Blocklist | None:
    """The phishing block-list the policy names (``detectors.login.blocklist``), or None.

    The guard loads it once and hands it to the login detector, which stays free of I/O; a bad
    line is a :class:`PolicyError` naming the file, the line and the problem.
    """
    from brokerguard.phishing import BlocklistError, load_blocklist

    path = policy.detectors.login.blocklist
    if not path:
        return None
    try:
        return load_blocklist(path)
    except BlocklistError as exc:
        raise PolicyError(
            f"`detectors.login.blocklist`: {exc}", "detectors.login.blocklist"
        ) from None


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


class Decider:
    """Applies one policy: signals at a decision point -> :class:`Decision`."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.reasons = {
            code: Reason(code=code, en=text.en, ja=text.ja) for code, text in policy.reasons.items()
        }

    def log_odds(self, point: Point, signals: list[Signal]) -> float:
        pp = self.policy.point(point)
        weights = pp.weights
        return pp.prior + sum(s.llr * weights.get(s.code, 1.0) for s in signals)

    def decide(
        self,
        point: Point,
        signals: list[Signal],
        *,
        passkey: bool,
        step_up: bool = False,
        floor: Action = "allow",
    ) -> Decision:
        """The action for these signals; ``step_up`` forces at least a strong-factor challenge."""
        pp = self.policy.point(point)
        score = _sigmoid(self.log_odds(point, signals))
        action: Action = "allow"
        factors: list[str] = []
        for rule in pp.rules:
            if score >= rule.min_score:
                action, factors = rule.action, list(rule.factors)
                break
        strong = list(pp.step_up_factors) or list(STRONG_FACTORS)
        if step_up and action == "allow":
            action, factors = "challenge", strong
        if floor != "allow" and _rank(floor) > _rank(action):
            action = floor
            factors = strong if floor == "challenge" else []
        if action == "challenge":
            if not passkey:
                factors = [f for f in factors if f != "passkey"] or ["oob"]
        else:
            factors = []
        weights = pp.weights
        named = sorted(
            (s for s in signals if s.llr * weights.get(s.code, 1.0) >= self.policy.reason_min_llr),
            key=lambda s: -s.llr * weights.get(s.code, 1.0),
        )[: self.policy.max_reasons]
        reasons = tuple(self.reasons[s.code] for s in named if s.code in self.reasons)
        return Decision(
            action=action,
            score=round(score, 6),
            factors=tuple(factors),  # type: ignore[arg-type]
            reasons=reasons,
        )


STRONG_FACTORS = ("passkey", "oob")  # what a step-up asks for when the point names nothing
_ORDER = {"allow": 0, "challenge": 1, "hold": 2, "deny": 3, "lock": 4}


def _rank(action: str) -> int:
    return _ORDER[action]
