"""Attack campaigns as they ran in 2025: phish, take over, liquidate, pump, dump.

The attackers work from a shared pool of IP addresses and user agents (the infrastructure that
links hijacked accounts), log in in real time while the victim is still on the phishing page (so
a relayed one-time password works, a passkey never does), optionally change the contact details
so that notifications and codes come to them, sell the victim's holdings and buy thin target
symbols in waves at rising limit prices, while the criminals' own accounts sell into the pump.
"""

from __future__ import annotations

import math
import random
from collections.abc import Generator

from brokerguard.events import AccountSnapshot
from brokerguard.guard import Decision
from brokerguard.sim.customers import change_setting, lots_for, withdraw
from brokerguard.sim.devices import attacker_user_agents
from brokerguard.sim.flows import Session, Step, answer, go_ahead, login_event, submit_order, view
from brokerguard.sim.market import SimInstrument
from brokerguard.sim.networks import random_ip_of
from brokerguard.sim.population import Investor
from brokerguard.sim.runner import Actor, Simulation
from brokerguard.sim.scenario import Attack
from brokerguard.sim.streams import Stream
from brokerguard.truth import Victim

__all__ = ["plan_attack"]

RELAY_WINDOW_S = 3600
"""How long a phished victim keeps typing codes into the fake site."""

_ORIGIN_KINDS = {
    "overseas_hosting": ("overseas_hosting",),
    "jp_proxy": ("jp_hosting",),
    "mixed": ("overseas_hosting", "jp_hosting", "vpn"),
    "tor": ("tor",),
}


class Campaign:
    """What the criminals of one attack share: infrastructure, targets and wave schedule."""

    def __init__(self, sim: Simulation, index: int, attack: Attack, rng: random.Random) -> None:
        self.index = index
        self.attack = attack
        kinds = _ORIGIN_KINDS[attack.origin]
        self.ips = [random_ip_of(kinds[i % len(kinds)], rng) for i in range(attack.ip_pool)]
        self.user_agents = attacker_user_agents(rng, max(2, math.ceil(attack.ip_pool / 4)))
        taken = sim.reserved_symbols
        pool = [
            i
            for m in attack.target_markets
            for i in sim.thin_by_market[m]
            if (i.market, i.symbol) not in taken
        ]
        self.targets: list[SimInstrument] = rng.sample(pool, min(attack.targets, len(pool)))
        taken.update((i.market, i.symbol) for i in self.targets)
        # Waves: `waves` per day over `takeover_days` days, the days split among the targets.
        self.waves: list[tuple[int, SimInstrument, int]] = []  # (time, target, wave number)
        slots = attack.takeover_days * attack.waves
        start = int(attack.start.timestamp())
        for slot in range(slots):
            day, wave = divmod(slot, attack.waves)
            target = self.targets[slot * len(self.targets) // slots]
            base = sim.calendar.next_open(target.market, start + day * 86400)
            when = sim.calendar.next_open(
                target.market, base + 600 + wave * attack.wave_interval_minutes * 60
            )
            self.waves.append((when, target, wave))


def plan_attack(sim: Simulation, index: int, attack: Attack) -> None:
    """Choose victims and targets, and schedule every attacker actor of one attack."""
    rng = random.Random(f"{sim.scenario.seed}-attack-{index}")
    campaign = Campaign(sim, index, attack, rng)
    if not campaign.targets:
        return
    candidates = [
        inv
        for inv in sim.investors
        if inv.positions and not inv.victim and inv.account not in sim.reserved_accounts
    ]
    if attack.kind == "session_theft":  # infostealers hit people whose browsers stay signed in
        candidates = [inv for inv in candidates if inv.logins_per_day >= 0.3] or candidates
    victims = rng.sample(candidates, min(attack.victims, len(candidates)))
    for n, inv in enumerate(victims):
        sim.reserved_accounts.add(inv.account)
        when, target, wave = campaign.waves[n * len(campaign.waves) // max(1, len(victims))]
        capture = max(sim.start, when - rng.randint(60, 45 * 60))
        flow = phishing_victim if attack.kind == "phishing" else session_theft
        own = random.Random(rng.getrandbits(64))  # one stream per victim, as for customers
        sim.spawn(capture, flow(sim, campaign, inv, when, target, wave, own))
    first = min(w for w, _, _ in campaign.waves)
    for k in range(attack.criminal_accounts):
        criminal = sim.add_account(cash=rng.uniform(30e6, 80e6))
        sim.truth.criminal_accounts.append(criminal.account)
        sim.spawn(
            max(sim.start, first - rng.randint(2, 4) * 86400),
            criminal_account(sim, campaign, criminal, k, rng),
        )


class _Attacker:
    """One attacker working one victim: what he knows and can do."""

    def __init__(self, campaign: Campaign, capture: int, kind: str) -> None:
        self.campaign = campaign
        self.capture = capture
        self.kind = kind
        self.contact_changed = False

    def responder(self, session: Session, rng: random.Random):
        attack = self.campaign.attack
        rng = Stream(rng.getrandbits(64))  # answering has its own stream (see customers)

        def respond(sim: Simulation, decision: Decision, ref: str) -> Step:
            yield rng.randint(10, 45)
            if decision.action == "hold":
                yield rng.randint(60, 300)
                answer(sim, session, ref, "oob", self.contact_changed)
                return self.contact_changed
            factors = decision.factors
            relay = (
                self.kind == "phishing"
                and attack.relay_otp
                and sim.now - self.capture <= RELAY_WINDOW_S
            )
            for factor in factors:
                if factor in ("sms", "email", "totp") and (
                    relay or (self.contact_changed and factor in ("sms", "email"))
                ):
                    answer(sim, session, ref, factor, True)
                    return True
                if factor == "oob" and self.contact_changed:
                    answer(sim, session, ref, factor, True)
                    return True
            answer(sim, session, ref, factors[0], False)  # a passkey cannot be relayed
            return False

        return respond


def phishing_victim(
    sim: Simulation,
    campaign: Campaign,
    inv: Investor,
    wave_time: int,
    target: SimInstrument,
    wave: int,
    rng: random.Random,
) -> Actor:
    victim = sim.victim(inv.account, campaign.index)
    attacker = _Attacker(campaign, sim.now, "phishing")
    relogins = campaign.attack.relogins
    for sign_in in range(relogins + 1):
        session = yield from _phished_sign_in(sim, campaign, attacker, inv, victim, rng)
        if session is None:
            return
        yield from _work_account(
            sim, campaign, attacker, session, inv, wave_time, target, wave, rng
        )
        if sign_in == relogins or not sim.signed_out(session.session):
            return
        # The broker signed the session out; the phisher still has the password (and, within
        # the hour, the victim's relayed codes): he signs in again, up to `relogins` times.
        yield rng.randint(60, 600)


def _phished_sign_in(
    sim: Simulation,
    campaign: Campaign,
    attacker: _Attacker,
    inv: Investor,
    victim: Victim,
    rng: random.Random,
) -> Generator[int, None, Session | None]:
    """Sign in with the phished password, from up to three addresses of the pool; the session,
    or None when the guard (or the broker's passkey-only sign-in) kept him out."""
    broker = sim.scenario.broker
    for attempt in range(3):
        # An adversary-in-the-middle kit forwards the victim's own browser headers; a kit that
        # only harvested the password logs in with the operators' own tooling.
        relayed_ua = campaign.attack.relay_otp and rng.random() < 0.5
        session = Session(
            inv.account,
            sim.new_id("s"),
            rng.choice(campaign.ips),
            inv.devices[0].user_agent if relayed_ua else rng.choice(campaign.user_agents),
            None if rng.random() < 0.5 else sim.new_id("d"),
            True,
            victim,
        )
        victim.sessions.append(session.session)
        accepted = not (inv.passkey and not broker.password_fallback)
        login = login_event(sim, session, "password", accepted)
        decision = sim.decide(login, inv.account)
        if decision.action == "lock" or not accepted:
            return None
        if (yield from go_ahead(sim, decision, login.id, attacker.responder(session, rng))):
            return session
        if decision.action != "deny" or attempt == 2:
            return None  # a failed challenge: the victim's code no longer works
        yield rng.randint(60, 600)  # try again from another address in the pool
    return None


def session_theft(
    sim: Simulation,
    campaign: Campaign,
    inv: Investor,
    wave_time: int,
    target: SimInstrument,
    wave: int,
    rng: random.Random,
) -> Actor:
    """An infostealer's cookie: the victim's live session, used from the attackers' network."""
    if inv.last_session is None:  # a remember-me cookie set before the logs begin
        device = inv.devices[0]
        inv.last_session = (sim.new_id("s"), device.cookie, inv.home_ip, device.user_agent)
    victim = sim.victim(inv.account, campaign.index)
    sid, cookie, _, user_agent = inv.last_session
    session = Session(
        inv.account,
        sid,
        rng.choice(campaign.ips),
        user_agent if rng.random() < 0.6 else rng.choice(campaign.user_agents),
        cookie,
        True,
        victim,
    )
    victim.sessions.append(sid)
    attacker = _Attacker(campaign, sim.now, "session_theft")
    yield from _work_account(sim, campaign, attacker, session, inv, wave_time, target, wave, rng)


def _work_account(
    sim: Simulation,
    campaign: Campaign,
    attacker: _Attacker,
    session: Session,
    inv: Investor,
    wave_time: int,
    target: SimInstrument,
    wave: int,
    rng: random.Random,
) -> Step:
    """After the takeover: contact change, liquidation, then the buy wave."""

    attack = campaign.attack
    respond = attacker.responder(session, rng)
    view(sim, session, "portfolio")
    yield rng.randint(20, 90)
    if rng.random() < attack.change_contact_share:
        view(sim, session, "settings")
        for what in ("email", "phone"):
            if (yield from change_setting(sim, inv, session, respond, what)):
                attacker.contact_changed = True
            yield rng.randint(20, 60)
    if rng.random() < attack.withdraw_share and (
        yield from change_setting(sim, inv, session, respond, "bank_account")
    ):
        yield from withdraw(sim, session, respond, round(inv.cash * 0.95, -3))
    view(sim, session, "orders")
    for key, held in list(inv.positions.items()):
        inst = sim.market.by_symbol[key]
        qty = int(held * attack.liquidate_share) // inst.lot_size * inst.lot_size
        if qty <= 0:
            continue
        yield rng.randint(5, 40)
        if not (yield from submit_order(sim, session, inst, "sell", qty, None, respond)):
            return False
    if wave_time > sim.now:
        yield wave_time - sim.now + rng.randint(0, 900)
    view(sim, session, "orders")
    price = sim.market.price(target, sim.now)
    limit = price * (1.03 + 0.04 * wave + rng.uniform(0.0, 0.03))
    margin = rng.random() < 0.2
    budget = max(0.0, inv.cash) * (2.0 if margin else 0.97)
    qty = lots_for(target, budget, limit)
    parts = rng.choice((1, 2, 3))
    for part in range(parts):
        chunk = (
            qty // parts // target.lot_size * target.lot_size
            if part < parts - 1
            else (qty - (qty // parts // target.lot_size * target.lot_size) * (parts - 1))
        )
        if chunk <= 0:
            continue
        if not (
            yield from submit_order(
                sim, session, target, "buy", chunk, limit * (1 + 0.01 * part), respond, margin
            )
        ):
            return False
        yield rng.randint(10, 120)
    return True


def criminal_account(
    sim: Simulation, campaign: Campaign, holder: Investor, k: int, rng: random.Random
) -> Actor:
    """The criminals' own account: buys the targets early, sells into the pump at rising prices."""
    sim.emit(
        AccountSnapshot(
            id=sim.new_id("a"),
            ts=sim.ts,
            account=holder.account,
            opened=sim.ts,
            otp_channel="email",
        )
    )
    respond = _own_responder(holder)
    ip = rng.choice(campaign.ips) if rng.random() < 0.7 else random_ip_of("jp_mobile", rng)
    ua = rng.choice(campaign.user_agents)
    device = sim.new_id("d")
    session = yield from _own_login(sim, holder, ip, ua, device, rng, respond)
    if session is None:
        return
    budget = holder.cash / max(1, len(campaign.targets))
    for target in campaign.targets:  # accumulate cheaply, before anyone pumps
        price = sim.market.price(target, sim.now)
        qty = lots_for(target, budget * 0.6, price)
        if qty:
            yield from submit_order(sim, session, target, "buy", qty, price * 1.01, respond)
        yield rng.randint(60, 600)
    for when, target, wave in sorted(campaign.waves, key=lambda w: w[0]):
        if when - 300 > sim.now:
            yield when - 300 - sim.now
        session = yield from _own_login(sim, holder, ip, ua, device, rng, respond)
        if session is None:
            return
        held = holder.positions.get((target.market, target.symbol), 0)
        price = sim.market.price(target, sim.now)
        steps = 4
        for step in range(steps):  # a ladder of sells just above the victims' coming buys
            qty = held // (steps * campaign.attack.waves) // target.lot_size * target.lot_size
            if qty > 0:
                limit = price * (1.02 + 0.04 * wave + 0.01 * step)
                yield from submit_order(sim, session, target, "sell", qty, limit, respond)
            yield rng.randint(5, 30)
    yield 3 * 3600
    session = yield from _own_login(sim, holder, ip, ua, device, rng, respond)
    if session is None:
        return
    for key, held in list(holder.positions.items()):  # dump what is left
        inst = sim.market.by_symbol[key]
        yield from submit_order(sim, session, inst, "sell", held, None, respond)
        yield rng.randint(30, 300)


def _own_responder(holder: Investor):
    def respond(sim: Simulation, decision: Decision, ref: str) -> Step:
        yield 30
        session = Session(holder.account, "-", "0.0.0.0", "-", None)
        factor = "oob" if decision.action == "hold" else decision.factors[0]
        ok = factor != "passkey" or holder.passkey  # their own account: they hold every factor
        answer(sim, session, ref, factor, ok)
        return ok

    return respond


def _own_login(
    sim: Simulation, holder: Investor, ip: str, ua: str, device: str, rng: random.Random, respond
) -> Step:
    session = Session(holder.account, sim.new_id("s"), ip, ua, device)
    login = login_event(sim, session, "password", True)
    decision = sim.decide(login, holder.account)
    if not (yield from go_ahead(sim, decision, login.id, respond)):
        return None
    return session
