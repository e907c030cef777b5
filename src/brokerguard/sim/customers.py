"""Honest customers: when they sign in, from where, what they do, and how they meet friction.

A customer answers a challenge the way people do: a passkey on a device that holds one, the
one-time password of the registered channel, an out-of-band confirmation — each passed with the
broker's configured probability, and sometimes abandoned. Every refusal is friction the
evaluation counts.
"""

from __future__ import annotations

import math
import random

from brokerguard.events import SettingsChange, Withdrawal
from brokerguard.guard import Decision
from brokerguard.sim.flows import (
    Session,
    Step,
    answer,
    go_ahead,
    login_event,
    submit_order,
    view,
)
from brokerguard.sim.market import SimInstrument
from brokerguard.sim.networks import random_ip
from brokerguard.sim.population import Device, Investor
from brokerguard.sim.runner import Actor, Simulation
from brokerguard.sim.streams import Stream

__all__ = ["customer_life", "customer_session", "next_login_time"]

OTP_FACTORS = ("sms", "email", "totp")
DAY = 86400


def next_login_time(inv: Investor, t: int, rng: random.Random) -> int:
    """The next sign-in: a heavy-tailed gap, usually at one of the customer's habitual hours."""
    gap = rng.expovariate(inv.logins_per_day) * DAY
    nxt = t + max(600, int(gap))
    if rng.random() < 0.8:
        local_day = (nxt + 32400) // DAY
        hour = rng.choice(inv.hours) + rng.gauss(0, 0.4)
        candidate = int(local_day * DAY - 32400 + hour * 3600)
        nxt = candidate if candidate > t + 600 else candidate + DAY
    return nxt


def customer_life(sim: Simulation, inv: Investor) -> Actor:
    """All of one customer's ordinary sessions, from the scenario's start to its end."""
    # The schedule has a stream of its own: friction inside one session (a failed challenge)
    # must not move the customer's later sessions, or guards could not be compared.
    clock = random.Random(inv.rng.getrandbits(64))
    t = next_login_time(inv, sim.now - int(clock.uniform(0, DAY)), clock)
    while True:
        yield max(1, t - sim.now)
        planned = t
        inv.rng = random.Random(clock.getrandbits(64))  # each session starts a fresh stream
        yield from customer_session(sim, inv)
        t = next_login_time(inv, max(planned, sim.now - 6 * 3600), clock)


def _network(sim: Simulation, inv: Investor, device: Device) -> str:
    rng = inv.rng
    if inv.abroad_until > sim.now:
        if device.kind == "phone" and rng.random() < 0.4:
            return random_ip(inv.mobile_block, rng)  # roaming keeps the home carrier's address
        return inv.abroad_ip
    if device.kind == "phone" and rng.random() < 0.65:
        return random_ip(inv.mobile_block, rng)  # carrier-grade NAT: a new address each time
    if inv.vpn and rng.random() < 0.6:
        return sim.vpn_ips[int(inv.account[1:]) % len(sim.vpn_ips)]
    return inv.home_ip


def customer_responder(inv: Investor, session: Session, device: Device, rng: Stream):
    broker = None

    def respond(sim: Simulation, decision: Decision, ref: str) -> Step:
        nonlocal broker
        broker = broker or sim.scenario.broker
        yield rng.randint(15, 90)
        if decision.action == "hold":
            yield rng.randint(60, 1800)
            ok = rng.random() < broker.oob_confirm_rate
            answer(sim, session, ref, "oob", ok)
            return ok
        factors = decision.factors
        if rng.random() < broker.give_up_rate:
            answer(sim, session, ref, factors[0], None)
            return False
        if "passkey" in factors and inv.passkey:
            # A passkey on this device, or on the customer's phone through a cross-device sign-in.
            rate = broker.passkey_pass_rate * (1.0 if device.has_passkey else 0.8)
            ok = rng.random() < rate
            answer(sim, session, ref, "passkey", ok)
            return ok
        if inv.otp_channel in factors or (
            inv.otp_channel != "none" and any(f in OTP_FACTORS for f in factors)
        ):
            factor = (
                inv.otp_channel
                if inv.otp_channel in factors
                else next(f for f in factors if f in OTP_FACTORS)
            )
            ok = rng.random() < broker.otp_pass_rate
            answer(sim, session, ref, factor, ok)
            return ok
        if "oob" in factors:
            yield rng.randint(60, 900)
            ok = rng.random() < broker.oob_confirm_rate
            answer(sim, session, ref, "oob", ok)
            return ok
        answer(sim, session, ref, factors[0], False)  # a factor this customer does not have
        return False

    return respond


def _pick_device(inv: Investor, rng: random.Random) -> Device:
    return inv.devices[0] if rng.random() < 0.7 else rng.choice(inv.devices)


def _unlock_time(sim: Simulation) -> int:
    # The customer calls the broker and is re-verified the next business morning.
    day = (sim.now + 32400) // DAY + 1
    return day * DAY - 32400 + 10 * 3600


def customer_session(sim: Simulation, inv: Investor, purpose: tuple | None = None) -> Step:
    """Sign in, look around, maybe trade; ``purpose`` forces what the session is for."""
    rng = inv.rng
    if inv.locked_until > sim.now:
        return False
    device = _pick_device(inv, rng)
    session = Session(
        inv.account, sim.new_id("s"), _network(sim, inv, device), device.user_agent, device.cookie
    )
    # Answering challenges draws from a stream of its own, so a guard that asks more does not
    # change what the customer goes on to do in the session.
    respond = customer_responder(inv, session, device, Stream(rng.getrandbits(64)))
    use_passkey = inv.passkey and device.has_passkey
    if not use_passkey and rng.random() < 0.03:  # a mistyped password first
        typo = login_event(sim, session, "password", success=False)
        sim.decide(typo, inv.account)
        yield rng.randint(8, 40)
    login = login_event(sim, session, "passkey" if use_passkey else "password", True)
    decision = sim.decide(login, inv.account)
    if decision.action == "lock":
        inv.locked_until = _unlock_time(sim)
        return False
    if not (yield from go_ahead(sim, decision, login.id, respond)):
        return False
    inv.last_session = (session.session, device.cookie, session.ip, session.user_agent)
    yield from _activity(sim, session, "portfolio")
    if purpose is not None:
        yield from _purpose(sim, inv, session, respond, purpose)
    else:
        yield from _ordinary(sim, inv, session, respond)
    return True


def _rng(sim: Simulation, account: str) -> random.Random:
    holder = sim.by_account.get(account)
    return holder.rng if holder is not None and holder.rng is not None else sim.rng


def _activity(sim: Simulation, session: Session, action: str) -> Step:
    yield _rng(sim, session.account).randint(5, 120)
    view(sim, session, action)
    return True


def _ordinary(sim: Simulation, inv: Investor, session: Session, respond) -> Step:
    rng = inv.rng
    for _ in range(rng.choice((0, 1, 1, 2, 3))):
        yield from _activity(sim, session, rng.choice(("view", "portfolio", "orders")))
    if rng.random() < inv.trade_prob:
        yield from _trade(sim, inv, session, respond)
    roll = rng.random()
    if roll < 0.004:
        yield from change_setting(
            sim, inv, session, respond, rng.choice(("notifications", "email", "phone", "password"))
        )
    elif roll < 0.006:
        yield from change_setting(sim, inv, session, respond, "bank_account")
    elif roll < 0.012 and inv.cash > 20_000:
        yield from withdraw(sim, session, respond, round(inv.cash * rng.uniform(0.1, 0.5), -3))
    return True


def change_setting(sim: Simulation, inv: Investor, session: Session, respond, what: str) -> Step:
    yield from _activity(sim, session, "settings")
    if sim.signed_out(session.session):
        return False
    change = SettingsChange(
        id=sim.new_id("g"),
        ts=sim.ts,
        account=inv.account,
        session=session.session,
        field=what,  # type: ignore[arg-type]
        new_value_hash=f"h{inv.rng.getrandbits(48):012x}",
    )
    session.note(change.id)
    decision = sim.decide(change, inv.account)
    return (yield from go_ahead(sim, decision, change.id, respond))


def withdraw(sim: Simulation, session: Session, respond, amount: float) -> Step:
    yield _rng(sim, session.account).randint(20, 120)
    if sim.signed_out(session.session):
        return False
    event = Withdrawal(
        id=sim.new_id("w"),
        ts=sim.ts,
        account=session.account,
        session=session.session,
        amount_jpy=max(1000.0, amount),
    )
    session.note(event.id)
    decision = sim.decide(event, session.account)
    ok = yield from go_ahead(sim, decision, event.id, respond)
    if ok:
        holder = sim.by_account.get(session.account)
        if holder is not None:
            holder.cash = max(0.0, holder.cash - event.amount_jpy)
    return ok


def lots_for(inst: SimInstrument, value: float, price: float) -> int:
    return max(0, int(value / (price * inst.lot_size))) * inst.lot_size


def _trade(sim: Simulation, inv: Investor, session: Session, respond) -> Step:
    rng = inv.rng
    yield from _activity(sim, session, "orders")
    if inv.positions and rng.random() < 0.4:
        key = rng.choice(list(inv.positions))
        inst = sim.market.by_symbol[key]
        held = inv.positions[key]
        qty = (
            held
            if rng.random() < 0.4
            else max(inst.lot_size, held // 2 // inst.lot_size * inst.lot_size)
        )
        yield from _send(sim, inv, session, respond, inst, "sell", min(qty, held))
        return True
    market = rng.choices(list(inv.markets), list(inv.markets.values()))[0]
    if inv.thin_taste and rng.random() < 0.3:
        inst = rng.choice(sim.thin_by_market[market])
    elif inv.positions and rng.random() < 0.4:
        inst = sim.market.by_symbol[rng.choice(list(inv.positions))]
    else:
        inst = rng.choice(sim.liquid_by_market[market])
    price = sim.market.price(inst, sim.now)
    budget = min(
        inv.order_jpy * math.exp(rng.gauss(0, 0.5)), inv.cash * (2.5 if inv.margin else 0.95)
    )
    qty = lots_for(inst, budget, price)
    if qty:
        yield from _send(
            sim, inv, session, respond, inst, "buy", qty, margin=inv.margin and budget > inv.cash
        )
    return True


def _send(
    sim: Simulation,
    inv: Investor,
    session: Session,
    respond,
    inst: SimInstrument,
    side: str,
    qty: int,
    margin: bool = False,
    chase: float = 0.0,
) -> Step:
    rng = inv.rng
    limit = None
    if chase or rng.random() < 0.45:
        price = sim.market.price(inst, sim.now)
        drift = chase or rng.uniform(-0.01, 0.005)
        limit = price * (1 + drift if side == "buy" else 1 - drift)
    return (yield from submit_order(sim, session, inst, side, qty, limit, respond, margin))


def _purpose(sim: Simulation, inv: Investor, session: Session, respond, purpose: tuple) -> Step:
    """Sessions that confounders force: a frenzy buy or a panic sell-off."""
    rng = inv.rng
    kind = purpose[0]
    if kind == "buy":
        inst: SimInstrument = purpose[1]
        price = sim.market.price(inst, sim.now)
        budget = min(inv.cash * 0.9, inv.order_jpy * rng.uniform(0.3, 1.0))
        qty = lots_for(inst, budget, price) or inst.lot_size
        yield from _activity(sim, session, "orders")
        yield from _send(
            sim, inv, session, respond, inst, "buy", qty, chase=rng.uniform(0.005, 0.06)
        )
    elif kind == "selloff":
        yield from _activity(sim, session, "portfolio")
        for key, held in list(inv.positions.items()):
            inst = sim.market.by_symbol[key]
            qty = max(
                inst.lot_size, int(held * rng.uniform(0.7, 1.0)) // inst.lot_size * inst.lot_size
            )
            yield from _send(sim, inv, session, respond, inst, "sell", min(qty, held))
    return True
