"""Building realistic events for engine tests and reading what the engine said about them.

Addresses are real ones from :mod:`brokerguard.sim.networks` (so the IP -> country -> AS lookup
the engine does is the real one), user agents come from :mod:`brokerguard.sim.devices`, and every
timestamp is timezone-aware JST, as a Japanese broker logs it.
"""

from __future__ import annotations

import itertools
import random
from datetime import datetime, timedelta, timezone

from brokerguard.engine import BrokerGuard
from brokerguard.engine.policy import Policy
from brokerguard.engine.signals import Signal
from brokerguard.engine.state import SessionState, session_key
from brokerguard.events import (
    AccountSnapshot,
    ChallengeResult,
    Event,
    Execution,
    HoldingsSnapshot,
    Instrument,
    LoginAttempt,
    MarketBar,
    Order,
    Position,
    SessionActivity,
    SettingsChange,
    Withdrawal,
)
from brokerguard.guard import Decision, decision_point
from brokerguard.netinfo import shared_lookup
from brokerguard.sim.devices import attacker_user_agents, random_device
from brokerguard.sim.networks import Block, blocks_of, random_ip

JST = timezone(timedelta(hours=9), "JST")
T0 = datetime(2025, 4, 7, 9, 0, tzinfo=JST)  # a Monday morning, April 2025


def block(kind: str, label_part: str) -> Block:
    """The first block of ``kind`` whose provider label contains ``label_part``."""
    for b in blocks_of(kind):  # type: ignore[arg-type]
        if label_part in b.label:
            return b
    raise LookupError(f"no {kind} block labelled like {label_part!r}")


def ip_in(b: Block, seed: int) -> str:
    """A reproducible real address of ``b``."""
    return random_ip(b, random.Random(seed))


# Named networks, so a test says where a sign-in comes from in words.
OCN = block("jp_home", "OCN")  # a home fibre line (NTT Communications)
SOFTBANK_HIKARI = block("jp_home", "SoftBank Hikari")
DOCOMO = block("jp_mobile", "DOCOMO")  # a mobile carrier: a new address per connection
KDDI_MOBILE = block("jp_mobile", "KDDI")
HINET = block("overseas_home", "HiNet")  # a home ISP in Taiwan (a traveller's hotel line)
KT = block("overseas_home", "KT (Korea)")
ALIBABA_HK = block("overseas_hosting", "Alibaba Cloud (Hong Kong)")
TENCENT_CN = block("overseas_hosting", "Tencent Cloud (China)")
DIGITALOCEAN_SG = block("overseas_hosting", "DigitalOcean (Singapore)")
TOR = block("tor", "Erneuerbare Freiheit")


def device(seed: int, kind: str | None = "pc") -> str:
    """A customer's real browser user agent."""
    return random_device(random.Random(seed), kind).user_agent


def attacker_ua(seed: int) -> str:
    return attacker_user_agents(random.Random(seed), 1)[0]


def chrome_on_windows(major: int) -> str:
    """Chrome's reduced UA on Windows: only the major version moves between updates."""
    return (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        f"Chrome/{major}.0.0.0 Safari/537.36"
    )


# A UA no Japanese customer sends: a headless automation browser on Linux.
HEADLESS_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "HeadlessChrome/120.0.6099.109 Safari/537.36"
)


class Rig:
    """A :class:`BrokerGuard` with a clock, event builders and a record of every trace."""

    def __init__(self, policy: Policy | None = None, start: datetime = T0) -> None:
        self.engine = BrokerGuard(policy)
        self.now = start
        self.traced: dict[str, tuple[list[Signal], Decision]] = {}
        self.engine.trace = self._trace
        self._ids = itertools.count(1)

    def _trace(self, event: Event, signals: list[Signal], decision: Decision) -> None:
        self.traced[event.id] = (list(signals), decision)

    # --- clock and ids ----------------------------------------------------------------------
    def tick(self, **delta: float) -> datetime:
        self.now = self.now + timedelta(**delta)
        return self.now

    def new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids)}"

    # --- what the engine said -----------------------------------------------------------------
    def signals(self, event_id: str) -> list[Signal]:
        return self.traced[event_id][0]

    def signal(self, event_id: str, code: str) -> Signal | None:
        found = [s for s in self.signals(event_id) if s.code == code]
        assert len(found) <= 1, f"{code} appears {len(found)} times"
        return found[0] if found else None

    def llr(self, event_id: str, code: str) -> float:
        """The llr of ``code`` at this event; 0 when the detector did not emit it."""
        s = self.signal(event_id, code)
        return s.llr if s is not None else 0.0

    def codes(self, event_id: str) -> set[str]:
        return {s.code for s in self.signals(event_id) if s.llr > 0}

    def total(self, event_id: str) -> float:
        return sum(s.llr for s in self.signals(event_id))

    def score(self, event_id: str) -> float:
        return self.traced[event_id][1].score

    # --- events -------------------------------------------------------------------------------
    def account(self, account: str, *, passkey: bool = False, opened_days: float = 900) -> None:
        self.engine.observe(
            AccountSnapshot(
                id=self.new_id("acct"),
                ts=self.now,
                account=account,
                opened=self.now - timedelta(days=opened_days),
                passkey_enrolled=passkey,
            )
        )

    def login(
        self,
        account: str,
        ip: str,
        ua: str,
        cookie: str | None,
        *,
        session: str | None = None,
        factors: tuple[str, ...] = ("password",),
        success: bool = True,
        referrer: str | None = None,
    ) -> tuple[str, Decision]:
        """A sign-in; returns (event id, decision). The session id is the event id."""
        eid = self.new_id("login")
        e = LoginAttempt(
            id=eid,
            ts=self.now,
            account=account,
            session=session or f"s-{eid}",
            ip=ip,
            user_agent=ua,
            device=cookie,
            factors=list(factors),  # type: ignore[arg-type]
            success=success,
            referrer=referrer,
        )
        return eid, self.engine.decide(e)

    def login_event(self, account: str, ip: str, ua: str, cookie: str | None) -> LoginAttempt:
        """A password sign-in at the rig's time, not yet decided (for what analysts conclude)."""
        return LoginAttempt(
            id=self.new_id("login"),
            ts=self.now,
            account=account,
            session="s-x",
            ip=ip,
            user_agent=ua,
            device=cookie,
            factors=["password"],
            success=True,
        )

    def session_of(self, login_id: str) -> str:
        return f"s-{login_id}"

    def session_state(self, account: str, session: str) -> SessionState | None:
        """What the engine keeps of one of ``account``'s live sessions (None once it ended:
        an ended session is kept, marked, until the idle sweep; see :meth:`ended_session`)."""
        sess = self.ended_session(account, session)
        return None if sess is None or sess.ended else sess

    def ended_session(self, account: str, session: str) -> SessionState | None:
        """The engine's record of one of ``account``'s sessions, live or ended."""
        return self.engine.state.get("session", session_key(account, session))

    def challenge(
        self, account: str, ref: str, factor: str, outcome: str, session: str | None = None
    ) -> None:
        self.engine.observe(
            ChallengeResult(
                id=self.new_id("chal"),
                ts=self.now,
                account=account,
                session=session,
                ref=ref,
                factor=factor,  # type: ignore[arg-type]
                outcome=outcome,  # type: ignore[arg-type]
            )
        )

    def activity(
        self, account: str, session: str, ip: str, ua: str, cookie: str | None, action="view"
    ) -> None:
        self.engine.observe(
            SessionActivity(
                id=self.new_id("act"),
                ts=self.now,
                account=account,
                session=session,
                ip=ip,
                user_agent=ua,
                device=cookie,
                action=action,
            )
        )

    def instrument(
        self,
        market: str,
        symbol: str,
        price: float,
        adv: int,
        cap_jpy: float,
        *,
        currency: str = "JPY",
        segment: str = "Prime",
        lot: int = 100,
    ) -> None:
        self.engine.observe(
            Instrument(
                id=self.new_id("ins"),
                ts=self.now,
                symbol=symbol,
                market=market,  # type: ignore[arg-type]
                segment=segment,
                currency=currency,  # type: ignore[arg-type]
                lot_size=lot,
                price=price,
                avg_daily_volume=adv,
                market_cap_jpy=cap_jpy,
            )
        )

    def bar(
        self, key: str, close: float, *, minutes: int = 5, volume: int = 1000, open_: float = 0.0
    ) -> None:
        """A market bar of ``key`` ("TSE:1234") starting at the rig's time."""
        market, symbol = key.split(":")
        open_ = open_ or close
        self.engine.observe(
            MarketBar(
                id=self.new_id("bar"),
                ts=self.now,
                symbol=symbol,
                market=market,  # type: ignore[arg-type]
                minutes=minutes,
                open=open_,
                high=max(open_, close),
                low=min(open_, close),
                close=close,
                volume=volume,
            )
        )

    def holdings(self, account: str, cash: float, positions: dict[str, int]) -> None:
        self.engine.observe(
            HoldingsSnapshot(
                id=self.new_id("hold"),
                ts=self.now,
                account=account,
                cash_jpy=cash,
                positions=[
                    Position(market=k.split(":")[0], symbol=k.split(":")[1], quantity=q)  # type: ignore[arg-type]
                    for k, q in positions.items()
                ],
            )
        )

    def order(
        self,
        account: str,
        session: str,
        key: str,
        side: str,
        quantity: int,
        limit: float | None = None,
        *,
        ip: str | None = None,
        ua: str | None = None,
        margin: bool = False,
    ) -> tuple[str, Decision]:
        market, symbol = key.split(":")
        eid = self.new_id("ord")
        e = Order(
            id=eid,
            ts=self.now,
            account=account,
            session=session,
            order_id=f"o-{eid}",
            symbol=symbol,
            market=market,  # type: ignore[arg-type]
            side=side,  # type: ignore[arg-type]
            quantity=quantity,
            price_type="limit" if limit is not None else "market",
            limit_price=limit,
            margin=margin,
            ip=ip,
            user_agent=ua,
        )
        return eid, self.engine.decide(e)

    def execution(
        self, account: str, order_id: str, key: str, side: str, quantity: int, price: float
    ) -> None:
        market, symbol = key.split(":")
        self.engine.observe(
            Execution(
                id=self.new_id("exe"),
                ts=self.now,
                account=account,
                order_id=f"o-{order_id}",
                symbol=symbol,
                market=market,  # type: ignore[arg-type]
                side=side,  # type: ignore[arg-type]
                quantity=quantity,
                price=price,
                value_jpy=quantity * price,
            )
        )

    def settings(self, account: str, session: str, field: str) -> tuple[str, Decision]:
        eid = self.new_id("set")
        e = SettingsChange(
            id=eid,
            ts=self.now,
            account=account,
            session=session,
            field=field,  # type: ignore[arg-type]
            new_value_hash="h-" + eid,
        )
        return eid, self.engine.decide(e)

    def withdrawal(self, account: str, session: str, amount: float) -> tuple[str, Decision]:
        eid = self.new_id("wd")
        e = Withdrawal(id=eid, ts=self.now, account=account, session=session, amount_jpy=amount)
        return eid, self.engine.decide(e)

    # --- scripted habits -----------------------------------------------------------------------
    def history(
        self,
        account: str,
        ip: str | list[str],
        ua: str,
        cookie: str | None,
        *,
        days: int = 20,
        hour: int = 9,
        first_step_up: bool = False,
    ) -> None:
        """``days`` daily sign-ins at about ``hour`` JST, each allowed (asserted, but see
        ``first_step_up``) and logged out.

        ``ip`` is one fixed address, or one address per day (a mobile carrier).
        ``first_step_up``: the first sign-in may be challenged (a customer on a cloud or VPN
        exit, unknown to the engine); the customer passes the out-of-band confirmation.
        """
        ips = [ip] * days if isinstance(ip, str) else list(ip)
        assert len(ips) == days
        for n, day_ip in enumerate(ips):
            self.tick(days=1)
            self.now = self.now.replace(hour=hour, minute=(self.now.minute + 7) % 60)
            eid, d = self.login(account, day_ip, ua, cookie)
            if first_step_up and n == 0 and d.action == "challenge":
                self.challenge(account, eid, "oob", "passed", session=self.session_of(eid))
            else:
                assert d.action == "allow", (account, day_ip, d)
            self.tick(minutes=5)
            self.activity(account, self.session_of(eid), day_ip, ua, cookie, action="logout")


def lookup_kind(ip: str) -> str:
    return shared_lookup()(ip).kind


def replay(guard: BrokerGuard, events: list[Event], flush_every: int = 0) -> list[tuple]:
    """(event id, action, score) of every decision point, flushing every ``flush_every`` events."""
    decisions = []
    for i, event in enumerate(events, start=1):
        if decision_point(event):
            decision = guard.decide(event)
            decisions.append((event.id, decision.action, decision.score))
        else:
            guard.observe(event)
        if flush_every and i % flush_every == 0:
            guard.state.flush()  # type: ignore[attr-defined]
    return decisions


def cut_point(events: list[Event]) -> int:
    """Past the middle, just after a sign-in whose challenge is answered after the cut: a
    restart there must carry the waiting challenge over."""
    answered = {e.ref for e in events if isinstance(e, ChallengeResult)}
    for i in range(len(events) // 2, len(events)):
        event = events[i]
        if isinstance(event, LoginAttempt) and event.id in answered:
            return i + 1
    return len(events) // 2
