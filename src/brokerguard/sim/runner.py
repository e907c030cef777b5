"""The simulation loop: a clock, the actors' schedule, and the only door to the guard.

Every actor (a customer's session, an attacker working a victim, the criminals' own accounts, the
market's bar clock) is a generator that yields how many seconds it waits before its next step. The
loop resumes them in time order, so the event stream comes out sorted by timestamp. Actors reach
the guard only through :meth:`Simulation.decide` and :meth:`Simulation.emit`, the same
``decide``/``observe`` interface a broker's own systems use. After each event the simulated
broker carries out the guard's instructions, as a broker's order system would: it cancels what is
still open of the orders named, and logs each cancel; it signs a session out, after which the
session's requests never reach the guard (a phisher then signs in once more with the password,
see :mod:`brokerguard.sim.attackers`; anyone else gives up).
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable, Generator
from datetime import datetime
from pathlib import Path
from typing import IO

import msgspec

from brokerguard.events import Event, Order, encode_line
from brokerguard.guard import (
    Decision,
    DecisionRecord,
    Guard,
    InstructingGuard,
    Instruction,
    decision_point,
)
from brokerguard.sim.calendar import JST, TradingCalendar
from brokerguard.sim.market import Market, SimInstrument, build_universe
from brokerguard.sim.population import Investor, build_population
from brokerguard.sim.scenario import Scenario
from brokerguard.truth import AttackLabel, PumpedSymbol, Truth, Victim

__all__ = ["Actor", "Simulation", "RunSummary"]

Actor = Generator[int, None, None]
"""A simulated actor: yields the seconds to wait before it is resumed."""


class RunSummary(msgspec.Struct, kw_only=True):
    events: int
    decisions: int
    seconds_simulated: int


class Simulation:
    """One run of a scenario against one guard, writing events, decisions and truth."""

    def __init__(
        self,
        scenario: Scenario,
        guard: Guard,
        *,
        events_out: IO[bytes] | None = None,
        decisions_out: IO[bytes] | None = None,
        instructions_out: IO[bytes] | None = None,
    ) -> None:
        self.scenario = scenario
        self.guard = guard
        self.rng = random.Random(scenario.seed)
        self.start = int(scenario.start.timestamp())
        self.end = int(scenario.end.timestamp())
        self.now = self.start
        self.calendar = TradingCalendar(scenario.start, scenario.end)
        universe_rng = random.Random(f"{scenario.seed}-market")
        self.market = Market(build_universe(universe_rng), self.calendar, universe_rng, self.start)
        prices = {k: i.base_price for k, i in self.market.by_symbol.items()}
        self.investors: list[Investor] = build_population(
            scenario.broker,
            self.market.instruments,
            random.Random(f"{scenario.seed}-people"),
            prices,
        )
        self.by_account = {inv.account: inv for inv in self.investors}
        self.truth = Truth(
            scenario=scenario.name,
            seed=scenario.seed,
            guard=guard.name,
            investors=scenario.broker.investors,
            start=scenario.start,
            end=scenario.end,
            attacks=[
                AttackLabel(
                    index=i, kind=a.kind, start=a.start, relay_otp=a.relay_otp, origin=a.origin
                )
                for i, a in enumerate(scenario.attack)
            ],
        )
        self.victims: dict[str, Victim] = {}
        self.pumped: dict[tuple[str, str], PumpedSymbol] = {}
        self.attack_orders: dict[str, object] = {}  # order id -> the attacker's flows.Session
        self._events_out = events_out
        self._decisions_out = decisions_out
        self._instructions_out = instructions_out
        self._instructing = isinstance(guard, InstructingGuard)
        # Orders sent to the market, and those waiting for it to open: what a cancel can reach.
        self.sent_orders: dict[str, tuple[SimInstrument, Order]] = {}
        self.waiting_orders: set[str] = set()
        self._signed_out: set[str] = set()  # sessions the guard asked the broker to end
        self._encoder = msgspec.json.Encoder()
        self._queue: list[tuple[int, int, int, Actor]] = []
        self._seq = itertools.count()
        self._ids = itertools.count(1)
        self._ts_cache: tuple[int, datetime] = (-1, scenario.start)
        self.events = 0
        self.decisions = 0

    # --- ids and time --------------------------------------------------------------------------
    def new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):x}"

    @property
    def ts(self) -> datetime:
        t, stamp = self._ts_cache
        if t != self.now:
            stamp = datetime.fromtimestamp(self.now, JST)
            self._ts_cache = (self.now, stamp)
        return stamp

    # --- the door to the guard ------------------------------------------------------------
    def _write(self, event: Event) -> None:
        self.events += 1
        if self._events_out is not None:
            self._events_out.write(encode_line(event))

    def emit(self, event: Event) -> None:
        """Record an event that needs no answer and show it to the guard."""
        self._write(event)
        self.guard.observe(event)
        if self._instructing:
            self._carry_out()

    def decide(self, event: Event, account: str) -> Decision:
        """Record a decision-point event, ask the guard, and record its answer."""
        self._write(event)
        decision = self.guard.decide(event)
        self.decisions += 1
        if self._decisions_out is not None:
            point = decision_point(event)
            assert point is not None, f"{type(event).__name__} is not a decision point"
            record = DecisionRecord(
                event=event.id,
                ts=event.ts,
                account=account,
                point=point,
                guard=self.guard.name,
                action=decision.action,
                score=decision.score,
                factors=decision.factors,
                reasons=decision.reasons,
            )
            self._decisions_out.write(self._encoder.encode(record) + b"\n")
        if self._instructing:
            self._carry_out()
        return decision

    def _carry_out(self) -> None:
        """Do what the guard asks about operations it let through earlier."""
        for instruction in self.guard.take_instructions():  # type: ignore[attr-defined]
            if self._instructions_out is not None:
                self._instructions_out.write(self._encoder.encode(instruction) + b"\n")
            if instruction.kind == "cancel_orders":
                self._cancel(instruction)
            elif instruction.kind == "end_session":
                self._signed_out.add(instruction.session)

    def signed_out(self, session_id: str) -> bool:
        """Whether the broker signed this session out: its requests never reach the guard."""
        return session_id in self._signed_out

    def _cancel(self, instruction: Instruction) -> None:
        for order_id in instruction.orders:
            sent = self.sent_orders.pop(order_id, None)
            if sent is None:
                continue
            inst, order = sent
            waiting = order_id in self.waiting_orders
            self.waiting_orders.discard(order_id)
            if not (self.market.cancel(inst, order_id) or waiting):
                continue  # executed already, or expired
            # the order as placed, now cancelled by the broker (no request: no address, no UA)
            self.emit(
                msgspec.structs.replace(
                    order,
                    id=self.new_id("o"),
                    ts=self.ts,
                    action="cancel",
                    margin=False,
                    ip=None,
                    user_agent=None,
                )
            )

    # --- ground truth ----------------------------------------------------------------------------
    def victim(self, account: str, attack: int) -> Victim:
        found = self.victims.get(account)
        if found is None:
            found = self.victims[account] = Victim(account=account, attack=attack)
            self.by_account[account].victim = True
        return found

    def mark_pumped(self, market: str, symbol: str, attack: int) -> None:
        if (market, symbol) not in self.pumped:
            self.pumped[(market, symbol)] = PumpedSymbol(
                symbol=symbol, market=market, attack=attack, first_buy=self.ts
            )

    # --- scheduling ----------------------------------------------------------------------------
    def spawn(self, at: int, actor: Actor, priority: int = 1) -> None:
        """Start ``actor`` at time ``at``; priority 0 runs before actors due at the same second."""
        if at < self.end:
            heapq.heappush(self._queue, (at, priority, next(self._seq), actor))

    def run(self, progress: Callable[[float], None] | None = None) -> RunSummary:
        queue = self._queue
        span = max(1, self.end - self.start)
        last_report = self.start
        while queue:
            t, priority, _, actor = heapq.heappop(queue)
            if t >= self.end:
                break
            self.now = t
            try:
                wait = next(actor)
            except StopIteration:
                continue
            heapq.heappush(queue, (t + max(1, wait), priority, next(self._seq), actor))
            if progress is not None and t - last_report >= 3600:
                last_report = t
                progress((t - self.start) / span)
        if progress is not None:
            progress(1.0)
        self.truth.victims = list(self.victims.values())
        self.truth.pumped_symbols = sorted(self.pumped.values(), key=lambda p: p.first_buy)
        return RunSummary(
            events=self.events, decisions=self.decisions, seconds_simulated=self.end - self.start
        )


def open_outputs(out_dir: Path) -> tuple[IO[bytes], IO[bytes], IO[bytes]]:
    """The run's events, decisions and instructions files, opened for writing."""
    out_dir.mkdir(parents=True, exist_ok=True)
    buffering = 1 << 20
    return (
        open(out_dir / "events.ndjson", "wb", buffering=buffering),  # noqa: SIM115
        open(out_dir / "decisions.ndjson", "wb", buffering=buffering),  # noqa: SIM115
        open(out_dir / "instructions.ndjson", "wb"),  # noqa: SIM115
    )
