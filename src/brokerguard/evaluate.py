"""Metrics of a run against its ground truth: what the guard stopped, what it let through, and
what it cost legitimate customers.

A run directory holds ``events.ndjson`` (what the broker logged), ``decisions.ndjson`` (what the
guard answered), ``truth.json`` (which events the attackers caused) and, once a detection engine
raises them, ``campaigns.ndjson`` and ``instructions.ndjson`` (orders the guard asked the broker
to cancel; a cancel the log shows for one of those counts as the guard's doing). The metrics are
computed from those files only — events, decisions and labels — so that the same evaluation
scores a broker's own labelled history, not just the simulator's runs.

Runs have about a million events, so both NDJSON files are streamed once each. What is kept in
memory is proportional to the attack (the attackers' events, decisions, challenge results and
fills) plus the non-``allow`` decisions on legitimate logins and orders — never the whole stream.

Two choices where the labels leave room, both made so that a guard is never flattered:

- A decision-point event with no decision record counts as allowed (the broker went ahead
  without asking; fail-open is what happens when a guard is down).
- A ``hold`` is passed only by an out-of-band confirmation (factor ``oob``); a ``challenge`` by
  any passed factor.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from msgspec import Meta
from rich.table import Table

from brokerguard.events import (
    ChallengeResult,
    Event,
    EventError,
    Execution,
    LoginAttempt,
    MarketBar,
    Order,
    SeenOnce,
    SessionActivity,
    SettingsChange,
    Withdrawal,
    decode_line,
    read_ndjson,
)
from brokerguard.guard import DecisionRecord, Instruction
from brokerguard.money import exact, yen, yen_sum
from brokerguard.truth import Truth, load_truth

__all__ = [
    "Campaign",
    "CampaignSymbol",
    "SymbolTimeline",
    "campaign_timelines",
    "evaluate_run",
    "evaluate_run_and_timeline",
    "format_table",
    "orders_named_for_cancelling",
    "sessions_signed_out",
    "unauthorized_value_timeline",
]

EVENTS = "events.ndjson"
DECISIONS = "decisions.ndjson"
TRUTH = "truth.json"
CAMPAIGNS = "campaigns.ndjson"
INSTRUCTIONS = "instructions.ndjson"

#: Events that can only be sent from inside an authenticated session: an attacker sending one
#: holds a session, whether from a login or a stolen cookie.
_SESSION_EVENTS = (SessionActivity, Order, Withdrawal, SettingsChange)


class CampaignSymbol(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    symbol: str
    market: str


class Campaign(msgspec.Struct, frozen=True, kw_only=True):
    """One line of ``campaigns.ndjson``: a cross-account campaign the detection engine raised."""

    id: str
    raised_at: Annotated[datetime, Meta(tz=True)]
    symbols: list[CampaignSymbol] = []
    accounts: list[str] = []


# --- reading a run -------------------------------------------------------------------------

T = TypeVar("T")


def _require(run_dir: Path, name: str) -> Path:
    path = Path(run_dir) / name
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: not found; a run directory needs {EVENTS}, {DECISIONS} and {TRUTH} "
            "(as written by `brokerguard simulate`)"
        )
    return path


def _read_events(path: Path) -> Iterator[Event]:
    with path.open("rb") as stream:
        try:
            yield from read_ndjson(stream)
        except EventError as exc:
            error = EventError(f"{path}: {exc}", field=exc.field)
            error.line = exc.line
            raise error from None


def _read_lines(path: Path, kind: type[T]) -> Iterator[T]:
    decoder = msgspec.json.Decoder(kind)
    with path.open("rb") as stream:
        for number, raw in enumerate(stream, start=1):
            if not raw.strip():
                continue
            try:
                yield decoder.decode(raw)
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                raise ValueError(f"{path}: line {number}: {exc}") from None


def orders_named_for_cancelling(run_dir: Path) -> dict[tuple[str, str], datetime]:
    """(account, order id) -> when the guard first asked the broker to cancel that order, from
    the run's ``instructions.ndjson`` (empty when the guard wrote none). A cancel in the log at
    or after that time is the guard's doing; the customer's own cancels are not."""
    named: dict[tuple[str, str], datetime] = {}
    for ins in _instructions(run_dir, "cancel_orders"):
        for order_id in ins.orders:
            named.setdefault((ins.account, order_id), ins.ts)
    return named


def sessions_signed_out(run_dir: Path) -> dict[str, str]:
    """Session -> account, for every session the guard asked the broker to sign out
    (``end_session`` in the run's ``instructions.ndjson``; empty when the guard wrote none)."""
    return {ins.session: ins.account for ins in _instructions(run_dir, "end_session")}


def _instructions(run_dir: Path, kind: str) -> Iterator[Instruction]:
    """The run's instructions of one kind (none when the guard wrote no file)."""
    path = Path(run_dir) / INSTRUCTIONS
    if path.is_file():
        yield from (ins for ins in _read_lines(path, Instruction) if ins.kind == kind)


# --- one pass over a run -------------------------------------------------------------------


@dataclass
class _Scan:
    """What one pass over a run's files leaves behind: enough for every metric, no more."""

    truth: Truth
    events: int = 0
    legit: dict[str, int] = field(default_factory=dict)
    accounts_locked: int = 0
    takeovers: set[int] = field(default_factory=set)
    traded: set[int] = field(default_factory=set)
    orders_executed: int = 0
    orders_cancelled: int = 0  # unauthorized orders the guard's instructions cancelled
    sessions_signed_out: int = 0  # attackers' sessions the guard had signed out
    # (ts, value in JPY, "trade" | "withdrawal") of every unauthorized value that went through
    losses: list[tuple[datetime, float, str]] = field(default_factory=list)
    detection_delays: list[float] = field(default_factory=list)


def _got_past(decision: DecisionRecord | None, results: list[ChallengeResult]) -> bool:
    """Whether the broker went ahead with an event after the guard's decision on it."""
    if decision is None:  # nobody asked the guard: the broker went ahead
        return True
    if decision.action == "allow":
        return True
    if decision.action == "challenge":
        return any(r.outcome == "passed" for r in results)
    if decision.action == "hold":
        return any(r.outcome == "passed" and r.factor == "oob" for r in results)
    return False  # deny, lock


def _scan(run_dir: Path) -> _Scan:
    """Stream decisions, then events, once each; join them to the labels at the end."""
    run_dir = Path(run_dir)
    truth = load_truth(_require(run_dir, TRUTH))
    events_path = _require(run_dir, EVENTS)
    decisions_path = _require(run_dir, DECISIONS)
    scan = _Scan(truth=truth)

    victim_of = {eid: i for i, v in enumerate(truth.victims) for eid in v.events}
    victim_accounts = {v.account for v in truth.victims}
    criminals = set(truth.criminal_accounts)
    # Attack orders by (account, order id) -> victim: labels may name an order by its id only.
    labelled_orders = {(v.account, oid): i for i, v in enumerate(truth.victims) for oid in v.orders}

    # Decisions first, so that the events pass can join legit events to their decisions.
    attacker_decisions: dict[str, DecisionRecord] = {}
    legit_actions: dict[str, str] = {}  # non-allow decisions on legit logins and orders
    locked: set[str] = set()
    for rec in _read_lines(decisions_path, DecisionRecord):
        if rec.event in victim_of:
            attacker_decisions.setdefault(rec.event, rec)
            continue
        if rec.account in criminals:
            continue
        if rec.action == "lock" and rec.account not in victim_accounts:
            locked.add(rec.account)
        if rec.point in ("login", "order") and rec.action != "allow":
            legit_actions[rec.event] = rec.action
    scan.accounts_locked = len(locked)
    named = orders_named_for_cancelling(run_dir)

    legit = dict.fromkeys(
        (
            "logins",
            "failed_credentials",
            "login_challenges",
            "logins_denied",
            "orders",
            "orders_challenged",
            "orders_held",
            "orders_denied",
            "orders_cancelled",
            "sessions_signed_out",
        ),
        0,
    )
    attackers_sessions = {s for v in truth.victims for s in v.sessions}
    for session, account in sessions_signed_out(run_dir).items():
        if session in attackers_sessions:
            scan.sessions_signed_out += 1
        elif account not in criminals:
            legit["sessions_signed_out"] += 1
    first_seen: dict[int, datetime] = {}
    logins: list[tuple[int, str]] = []  # attacker logins with valid credentials
    wrong_passwords: set[str] = set()  # attacker logins the broker's own check refused
    withdrawals: list[tuple[datetime, str, float]] = []
    unauthorized: dict[tuple[str, str], int] = {}  # attacker new orders -> victim
    fills: list[tuple[datetime, tuple[str, str], float]] = []
    results: dict[str, list[ChallengeResult]] = {}  # challenge results on attacker events

    once = SeenOnce()  # a repeated fill, withdrawal or attacker sign-in line counts once
    for event in _read_events(events_path):
        scan.events += 1
        if isinstance(event, ChallengeResult) and event.ref in victim_of:
            results.setdefault(event.ref, []).append(event)
        if isinstance(event, Execution):
            key = (event.account, event.order_id)
            # Every fill in a victim's account is kept and matched to the attack orders at the
            # end: a log merged from the order and execution systems can put a fill before its
            # order, which is known to be the attacker's only when its line comes.
            if event.account in victim_accounts and once.first(event.id):
                fills.append((event.ts, key, event.value_jpy))
        elif isinstance(event, Order) and event.action == "cancel" and named:
            key = (event.account, event.order_id)
            if key in named and event.ts >= named[key]:  # a cancel before it was the customer's
                del named[key]  # counted once
                if key in labelled_orders or key in unauthorized:
                    scan.orders_cancelled += 1
                elif event.account not in criminals:
                    legit["orders_cancelled"] += 1

        victim = victim_of.get(event.id)
        if victim is None and isinstance(event, Order) and event.action == "new":
            # An order the labels name by its id is the attacker's, as in the reports.
            victim = labelled_orders.get((event.account, event.order_id))
        if victim is not None:
            if victim not in first_seen or event.ts < first_seen[victim]:
                first_seen[victim] = event.ts
            if isinstance(event, LoginAttempt) and event.success:
                if once.first(event.id):  # a repeated line is one sign-in
                    logins.append((victim, event.id))
            elif isinstance(event, LoginAttempt):
                wrong_passwords.add(event.id)
            elif isinstance(event, _SESSION_EVENTS):
                scan.takeovers.add(victim)
            if isinstance(event, Order) and event.action == "new":
                unauthorized[(event.account, event.order_id)] = victim
            elif isinstance(event, Withdrawal) and once.first(event.id):
                withdrawals.append((event.ts, event.id, event.amount_jpy))
            continue

        account = getattr(event, "account", None)
        if account is None or account in criminals:
            continue
        if isinstance(event, LoginAttempt) and not event.success:
            legit["failed_credentials"] += 1  # the broker's own check refused it; no friction
        elif isinstance(event, LoginAttempt):
            action = legit_actions.get(event.id, "allow")
            legit["logins"] += 1
            legit["login_challenges"] += action == "challenge"
            legit["logins_denied"] += action in ("deny", "lock")
        elif isinstance(event, Order) and event.action == "new":
            action = legit_actions.get(event.id, "allow")
            legit["orders"] += 1
            legit["orders_challenged"] += action == "challenge"
            legit["orders_held"] += action == "hold"
            legit["orders_denied"] += action in ("deny", "lock")
    scan.legit = legit

    def passed(event_id: str) -> bool:
        return _got_past(attacker_decisions.get(event_id), results.get(event_id, []))

    scan.takeovers.update(victim for victim, login in logins if passed(login))

    executed: dict[tuple[str, str], int] = {}  # attack orders with a fill -> victim
    for ts, key, value in fills:
        victim = unauthorized.get(key, labelled_orders.get(key))
        if victim is not None:
            executed[key] = victim
            scan.losses.append((ts, value, "trade"))
    scan.orders_executed = len(executed)
    scan.traded = set(executed.values())
    scan.losses.extend((ts, amount, "withdrawal") for ts, wid, amount in withdrawals if passed(wid))
    scan.losses.sort(key=lambda loss: loss[0])

    detected_at: dict[int, datetime] = {}
    for event_id, rec in attacker_decisions.items():
        if event_id in wrong_passwords and rec.action != "lock":
            # Invalid credentials never get in, whatever the guard says (allow-all denies them
            # too): the broker's check stopped him, not the guard. A lock is the guard's doing.
            continue
        victim = victim_of[event_id]
        if not passed(event_id) and (victim not in detected_at or rec.ts < detected_at[victim]):
            detected_at[victim] = rec.ts
    scan.detection_delays = [
        max(0.0, (ts - first_seen[victim]).total_seconds())
        for victim, ts in detected_at.items()
        if victim in first_seen
    ]
    return scan


# --- metrics -------------------------------------------------------------------------------


def _quantile(values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _rate(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def _campaign_metrics(run_dir: Path, truth: Truth) -> dict[str, Any]:
    """Which pumped symbols a raised campaign named, and how long after the first pump buy."""
    raised: dict[tuple[str, str], datetime] = {}
    path = Path(run_dir) / CAMPAIGNS
    if path.is_file():
        for campaign in _read_lines(path, Campaign):
            for s in campaign.symbols:
                key = (s.symbol, s.market)
                if key not in raised or campaign.raised_at < raised[key]:
                    raised[key] = campaign.raised_at
    delays = [
        max(0.0, (raised[(p.symbol, p.market)] - p.first_buy).total_seconds())
        for p in truth.pumped_symbols
        if (p.symbol, p.market) in raised
    ]
    return {
        "pumped_symbols": len(truth.pumped_symbols),
        "detected": len(delays),
        "detection_delay_s": {
            "median": _seconds(statistics.median(delays) if delays else None),
            "p95": _seconds(_quantile(delays, 0.95)),
        },
    }


def evaluate_run(run_dir: Path) -> dict[str, Any]:
    """Score one run directory: attacks stopped and where, value lost, friction for customers.

    Raises FileNotFoundError naming the missing file when the directory is not a complete run,
    and ValueError naming file and line when a line cannot be read.
    """
    return _metrics(_scan(run_dir), run_dir)


def evaluate_run_and_timeline(
    run_dir: Path,
) -> tuple[dict[str, Any], list[tuple[datetime, float]]]:
    """:func:`evaluate_run` and :func:`unauthorized_value_timeline` from one pass over the run."""
    scan = _scan(run_dir)
    return _metrics(scan, run_dir), _timeline(scan)


def _metrics(scan: _Scan, run_dir: Path) -> dict[str, Any]:
    truth = scan.truth
    victims = len(truth.victims)
    takeovers = len(scan.takeovers)
    # Whole yen of the exact sums, halves up: the reports' rule (brokerguard.money), so that a
    # half yen is not ¥0 here and ¥1 in the monthly table.
    trades = [value for _, value, kind in scan.losses if kind == "trade"]
    withdrawn = [value for _, value, kind in scan.losses if kind == "withdrawal"]
    legit = scan.legit
    delays = scan.detection_delays
    return {
        "guard": truth.guard,
        "scenario": truth.scenario,
        "seed": truth.seed,
        "investors": truth.investors,
        "events": scan.events,
        "attack": {
            "victims": victims,
            "takeovers": takeovers,
            "blocked_at_login": victims - takeovers,
            "stopped_before_trade": len(scan.takeovers - scan.traded),
            "victims_with_unauthorized_trades": len(scan.traded),
            "unauthorized_orders_executed": scan.orders_executed,
            "unauthorized_orders_cancelled": scan.orders_cancelled,
            "sessions_signed_out": scan.sessions_signed_out,
            "unauthorized_value_jpy": float(yen_sum([*trades, *withdrawn])),
            "unauthorized_trade_value_jpy": float(yen_sum(trades)),
            "unauthorized_withdrawals": len(withdrawn),
            "unauthorized_withdrawals_jpy": float(yen_sum(withdrawn)),
            "detected": len(delays),
            "detection_delay_s": {
                "median": _seconds(statistics.median(delays) if delays else None),
                "p95": _seconds(_quantile(delays, 0.95)),
            },
        },
        "legit": {
            "logins": legit["logins"],
            "login_challenges": legit["login_challenges"],
            "login_challenge_rate": _rate(legit["login_challenges"], legit["logins"]),
            "logins_denied": legit["logins_denied"],
            "failed_credentials": legit["failed_credentials"],
            "orders": legit["orders"],
            "orders_held": legit["orders_held"],
            "order_hold_rate": _rate(legit["orders_held"], legit["orders"]),
            "orders_challenged": legit["orders_challenged"],
            "orders_denied": legit["orders_denied"],
            "orders_cancelled": legit["orders_cancelled"],
            "sessions_signed_out": legit["sessions_signed_out"],
            "accounts_locked": scan.accounts_locked,
        },
        "campaigns": _campaign_metrics(run_dir, truth),
    }


def unauthorized_value_timeline(run_dir: Path) -> list[tuple[datetime, float]]:
    """Cumulative unauthorized value (JPY) after each unauthorized fill or withdrawal paid out.

    The points of a step chart: how fast the damage grew, and where a guard cut it off.
    """
    return _timeline(_scan(run_dir))


def _timeline(scan: _Scan) -> list[tuple[datetime, float]]:
    total = Decimal(0)
    timeline: list[tuple[datetime, float]] = []
    for ts, value, _ in scan.losses:
        total += exact(value)
        timeline.append((ts, float(yen(total))))
    return timeline


@dataclass
class SymbolTimeline:
    """One symbol in a campaign timeline: when the pump began, when a campaign named it, prices.

    A symbol is here because the labels say attackers pumped it (``attack`` and ``first_buy``
    set), because a raised campaign named it (``campaign`` and ``raised_at`` set), or both. A
    pumped symbol with no campaign was missed; a named symbol that was never pumped is a false
    alarm (or, on a broker's own history, an attack nobody labelled).
    """

    market: str
    symbol: str
    attack: int | None = None
    first_buy: datetime | None = None
    campaign: str | None = None
    raised_at: datetime | None = None
    prices: list[tuple[datetime, float]] = field(default_factory=list)  # intraday bar closes
    daily: list[tuple[datetime, float]] = field(default_factory=list)  # daily bar closes

    @property
    def delay_s(self) -> float | None:
        if self.first_buy is None or self.raised_at is None:
            return None
        return max(0.0, (self.raised_at - self.first_buy).total_seconds())


def campaign_timelines(run_dir: Path) -> list[SymbolTimeline]:
    """Pumped symbols (from the labels) and symbols named by campaigns, with their bar prices.

    Pumped symbols come first, by first attack buy, then the others by when they were named.
    ``campaigns.ndjson`` is optional (a run of a guard that raises no campaigns has none).
    """
    run_dir = Path(run_dir)
    truth = load_truth(_require(run_dir, TRUTH))
    events_path = _require(run_dir, EVENTS)
    found: dict[tuple[str, str], SymbolTimeline] = {}
    for p in sorted(truth.pumped_symbols, key=lambda p: p.first_buy):
        found[(p.market, p.symbol)] = SymbolTimeline(
            market=p.market, symbol=p.symbol, attack=p.attack, first_buy=p.first_buy
        )
    path = run_dir / CAMPAIGNS
    named: list[tuple[datetime, str, str, str]] = []
    if path.is_file():
        for campaign in _read_lines(path, Campaign):
            named.extend(
                (campaign.raised_at, s.market, s.symbol, campaign.id) for s in campaign.symbols
            )
    for raised_at, market, symbol, cid in sorted(named):
        line = found.setdefault((market, symbol), SymbolTimeline(market=market, symbol=symbol))
        if line.raised_at is None or raised_at < line.raised_at:
            line.raised_at, line.campaign = raised_at, cid
    if not found:
        return []
    needles = {f'"{symbol}"'.encode() for _, symbol in found}
    for event in _read_events_matching(events_path, b'"bar"', needles):
        if isinstance(event, MarketBar):
            line = found.get((event.market, event.symbol))
            if line is not None:
                series = line.daily if event.minutes >= 1440 else line.prices
                series.append((event.ts, event.close))
    for line in found.values():
        line.prices.sort()
        line.daily.sort()
    return list(found.values())


def _read_events_matching(path: Path, kind: bytes, needles: set[bytes]) -> Iterator[Event]:
    """Events whose line holds ``kind`` and one of ``needles``: a cheap filter before decoding."""
    with path.open("rb") as stream:
        for number, raw in enumerate(stream, start=1):
            if kind in raw and any(n in raw for n in needles):
                try:
                    yield decode_line(raw, line=number)
                except EventError as exc:
                    raise ValueError(f"{path}: {exc}") from None


# --- presentation --------------------------------------------------------------------------

_LABELS: dict[str, tuple[str, str]] = {
    "scenario": ("scenario", "シナリオ"),
    "seed": ("seed", "シード"),
    "investors": ("investors", "投資家数"),
    "events": ("events", "イベント数"),
    "attack.victims": ("victims", "被害口座"),
    "attack.takeovers": ("takeovers", "乗っ取り成立"),
    "attack.blocked_at_login": ("blocked at login", "ログインで阻止"),
    "attack.stopped_before_trade": ("stopped before trade", "取引前に阻止"),
    "attack.victims_with_unauthorized_trades": (
        "victims with unauthorized trades",
        "不正取引の被害口座",
    ),
    "attack.unauthorized_orders_executed": ("unauthorized orders executed", "約定した不正注文"),
    "attack.unauthorized_orders_cancelled": (
        "unauthorized orders cancelled while open",
        "未約定のうちに取り消した不正注文",
    ),
    "attack.sessions_signed_out": (
        "attackers' sessions signed out",
        "ログアウトさせた攻撃者のセッション",
    ),
    "attack.unauthorized_value_jpy": ("unauthorized value", "不正取引・出金額"),
    "attack.unauthorized_trade_value_jpy": ("  of which trades", "  うち売買"),
    "attack.unauthorized_withdrawals": ("unauthorized withdrawals", "不正出金件数"),
    "attack.unauthorized_withdrawals_jpy": ("  of which withdrawals", "  うち出金"),
    "attack.detected": ("victims detected", "検知した被害口座"),
    "attack.detection_delay_s.median": ("detection delay, median", "検知までの時間(中央値)"),
    "attack.detection_delay_s.p95": ("detection delay, p95", "検知までの時間(95%)"),
    "legit.logins": ("customer logins", "顧客ログイン"),
    "legit.login_challenges": ("login challenges", "ログイン時の追加認証"),
    "legit.login_challenge_rate": ("login challenge rate", "追加認証率"),
    "legit.logins_denied": ("logins denied", "拒否したログイン"),
    "legit.orders": ("customer orders", "顧客注文"),
    "legit.orders_held": ("orders held", "保留した注文"),
    "legit.order_hold_rate": ("order hold rate", "注文保留率"),
    "legit.orders_challenged": ("orders challenged", "追加認証した注文"),
    "legit.failed_credentials": (
        "wrong passwords (no session)",
        "パスワード誤り（ログイン不成立）",
    ),
    "legit.orders_denied": ("orders denied", "拒否した注文"),
    "legit.orders_cancelled": ("open orders cancelled", "取り消した未約定注文"),
    "legit.sessions_signed_out": ("sessions signed out", "ログアウトさせたセッション"),
    "legit.accounts_locked": ("accounts locked", "凍結した顧客口座"),
    "campaigns.pumped_symbols": ("pumped symbols", "株価操作銘柄"),
    "campaigns.detected": ("campaigns detected", "検知した銘柄"),
    "campaigns.detection_delay_s.median": ("campaign delay, median", "銘柄検知までの時間(中央値)"),
    "campaigns.detection_delay_s.p95": ("campaign delay, p95", "銘柄検知までの時間(95%)"),
}
_SECTIONS = {
    "attack": ("attack", "攻撃"),
    "legit": ("customers", "顧客"),
    "campaigns": ("campaigns", "キャンペーン"),
}


def _flatten(metrics: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def _cell(key: str, value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if key.endswith("_rate"):
        return f"{value:.2%}"
    if key.endswith("_jpy"):
        return f"¥{value:,.0f}"
    if ".detection_delay_s." in key:
        return _duration(value)
    return f"{value:,}"


def _say(pair: tuple[str, str], lang: str) -> str:
    if lang == "en":
        return pair[0]
    if lang == "ja":
        return pair[1]
    return f"{pair[0]} / {pair[1].strip()}"


def format_table(
    results: list[dict[str, Any]], *, lang: Literal["en", "ja", "both"] = "en"
) -> Table:
    """Several runs' metrics side by side, one column per guard, for ``brokerguard compare``.

    Rows follow the metrics dict (keys only some runs have are appended); a metric a run lacks
    shows as a dash. Labels are English, Japanese or both (``lang``: ``en``, ``ja``, ``both``).
    """
    flats = [_flatten(result) for result in results]
    keys: list[str] = []
    for flat in flats:
        keys.extend(k for k in flat if k != "guard" and k not in keys)

    table = Table(title=_say(("Evaluation", "評価結果"), lang))
    table.add_column(_say(("metric", "指標"), lang))
    for result, flat in zip(results, flats, strict=True):
        widest = max((len(_cell(k, flat.get(k))) for k in keys), default=1)
        # Figures are never cut short: on a narrow screen the labels wrap instead.
        table.add_column(
            str(result.get("guard", "?")), justify="right", no_wrap=True, min_width=widest
        )
    section = ""
    for key in keys:
        group = key.split(".", 1)[0] if "." in key else ""
        if group != section:
            table.add_section()
            section = group
            if group in _SECTIONS:
                table.add_row(f"[bold]{_say(_SECTIONS[group], lang)}[/bold]")
        label = _say(_LABELS.get(key, (key, key)), lang) if key in _LABELS else key
        table.add_row(label, *(_cell(key, flat.get(key)) for flat in flats))
    return table
