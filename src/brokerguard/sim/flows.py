"""Steps that customers and attackers share: answering a challenge, placing an order, fills.

Each step is a generator (it may wait, e.g. for an out-of-band confirmation) that returns its
outcome. The difference between an honest customer and an attacker is only in the *responder*
that answers the guard's challenges — which is the closed loop the evaluation measures.
"""

from __future__ import annotations

from collections.abc import Callable, Generator

from brokerguard.events import ChallengeResult, Execution, LoginAttempt, Order, SessionActivity
from brokerguard.guard import Decision
from brokerguard.sim.market import Fill, SimInstrument
from brokerguard.sim.population import Investor
from brokerguard.sim.runner import Simulation

__all__ = ["Responder", "Session", "answer", "apply_fills", "submit_order"]

Step = Generator[int, None, bool]
Responder = Callable[[Simulation, Decision, str], Step]
"""Answers a challenge or hold on the event with the given id; returns whether it was passed."""


class Session:
    """Who is acting, from where: the fields that every in-session event carries."""

    __slots__ = ("account", "session", "ip", "user_agent", "device", "attacker", "victim")

    def __init__(
        self,
        account: str,
        session: str,
        ip: str,
        user_agent: str,
        device: str | None,
        attacker: bool = False,
        victim=None,
    ) -> None:
        self.account = account
        self.session = session
        self.ip = ip
        self.user_agent = user_agent
        self.device = device
        self.attacker = attacker
        self.victim = victim  # the truth.Victim this attacker session works on

    def note(self, event_id: str) -> None:
        if self.victim is not None:
            self.victim.events.append(event_id)


def login_event(sim: Simulation, session: Session, factor: str, success: bool) -> LoginAttempt:
    """A sign-in from the session's network and browser, noted for the truth if an attacker's."""
    event = LoginAttempt(
        id=sim.new_id("l"),
        ts=sim.ts,
        account=session.account,
        session=session.session,
        ip=session.ip,
        user_agent=session.user_agent,
        device=session.device,
        factors=[factor],  # type: ignore[list-item]
        success=success,
    )
    session.note(event.id)
    return event


def view(sim: Simulation, session: Session, action: str) -> None:
    """Emit a request inside the session (a page view); a signed-out session makes none."""
    if sim.signed_out(session.session):
        return
    event = SessionActivity(
        id=sim.new_id("v"),
        ts=sim.ts,
        account=session.account,
        session=session.session,
        ip=session.ip,
        user_agent=session.user_agent,
        device=session.device,
        action=action,  # type: ignore[arg-type]
    )
    session.note(event.id)
    sim.emit(event)


def answer(sim: Simulation, session: Session, ref: str, factor: str, passed: bool | None) -> None:
    """Emit a challenge outcome (``None`` = abandoned) for the event ``ref``."""
    outcome = "abandoned" if passed is None else ("passed" if passed else "failed")
    event = ChallengeResult(
        id=sim.new_id("c"),
        ts=sim.ts,
        account=session.account,
        session=session.session,
        ref=ref,
        factor=factor,  # type: ignore[arg-type]
        outcome=outcome,
    )  # type: ignore[arg-type]
    session.note(event.id)
    sim.emit(event)


def go_ahead(sim: Simulation, decision: Decision, ref: str, respond: Responder) -> Step:
    """Whether an operation proceeds after the guard's ``decision`` (answering it if needed)."""
    if decision.action == "allow":
        return True
    if decision.action in ("challenge", "hold"):
        return (yield from respond(sim, decision, ref))
    return False


def apply_fills(sim: Simulation, inst: SimInstrument, fills: list[Fill]) -> float:
    """Emit executions, move cash and positions; return the value of attackers' fills."""
    traded = 0.0
    notes = sim.attack_orders
    for fill in fills:
        value = round(fill.quantity * fill.price, 2)
        event = Execution(
            id=sim.new_id("x"),
            ts=sim.ts,
            account=fill.account,
            order_id=fill.order_id,
            symbol=inst.symbol,
            market=inst.market,  # type: ignore[arg-type]
            side=fill.side,  # type: ignore[arg-type]
            quantity=fill.quantity,
            price=fill.price,
            value_jpy=value,
        )
        session = notes.get(fill.order_id)
        if session is not None:
            session.note(event.id)
            traded += value
        sim.emit(event)
        holder: Investor | None = sim.by_account.get(fill.account)
        if holder is None:
            continue
        key = (inst.market, inst.symbol)
        if fill.side == "buy":
            holder.cash -= value
            holder.positions[key] = holder.positions.get(key, 0) + fill.quantity
            holder.bought_before.add(key)
        else:
            holder.cash += value
            left = holder.positions.get(key, 0) - fill.quantity
            if left > 0:
                holder.positions[key] = left
            else:
                holder.positions.pop(key, None)
                holder.nisa.discard(key)
    return traded


def submit_order(
    sim: Simulation,
    session: Session,
    inst: SimInstrument,
    side: str,
    quantity: int,
    limit: float | None,
    respond: Responder,
    margin: bool = False,
) -> Step:
    """Place an order through the guard and, if it may go ahead, send it to the market.

    An order placed while its market is closed waits for the next open, as at a real broker.
    A session the broker signed out places nothing.
    """
    if sim.signed_out(session.session):
        return False
    order = Order(
        id=sim.new_id("o"),
        ts=sim.ts,
        account=session.account,
        session=session.session,
        order_id=sim.new_id("n"),
        symbol=inst.symbol,
        market=inst.market,  # type: ignore[arg-type]
        side=side,  # type: ignore[arg-type]
        quantity=quantity,
        price_type="market" if limit is None else "limit",
        limit_price=None if limit is None else round(limit, 1),
        margin=margin,
        ip=session.ip,
        user_agent=session.user_agent,
    )
    if session.attacker:
        sim.attack_orders[order.order_id] = session
        session.note(order.id)
        session.victim.orders.append(order.order_id)
        if side == "buy" and inst.thin:
            sim.mark_pumped(inst.market, inst.symbol, session.victim.attack)
    decision = sim.decide(order, session.account)
    if not (yield from go_ahead(sim, decision, order.id, respond)):
        return False
    opens = sim.calendar.next_open(inst.market, sim.now)
    if opens > sim.now:
        sim.sent_orders[order.order_id] = (inst, order)
        sim.waiting_orders.add(order.order_id)
        sim.spawn(opens, _execute_later(sim, session, inst, order))
        return True
    fills = sim.market.execute(
        inst,
        sim.now,
        order.order_id,
        session.account,
        side,
        quantity,
        order.limit_price,
        sim.calendar.session_close(inst.market, sim.now),
    )
    _note_rest(sim, inst, order, fills)
    apply_fills(sim, inst, fills)
    return True


def _note_rest(sim: Simulation, inst: SimInstrument, order: Order, fills: list[Fill]) -> None:
    """Remember an order that did not fill at once: it rests in the book and can be cancelled."""
    filled = sum(f.quantity for f in fills if f.order_id == order.order_id)
    if filled < order.quantity:
        sim.sent_orders[order.order_id] = (inst, order)
    else:
        sim.sent_orders.pop(order.order_id, None)


def _execute_later(sim: Simulation, session: Session, inst: SimInstrument, order: Order):
    if order.order_id not in sim.waiting_orders:
        return  # the broker cancelled it while it waited
    sim.waiting_orders.discard(order.order_id)
    fills = sim.market.execute(
        inst,
        sim.now,
        order.order_id,
        order.account,
        order.side,
        order.quantity,
        order.limit_price,
        sim.calendar.session_close(inst.market, sim.now),
    )
    _note_rest(sim, inst, order, fills)
    apply_fills(sim, inst, fills)
    return
    yield 0  # a generator, so that it can be scheduled
