"""Replay a log of events through the detection engine, open loop, and write what it decided.

``brokerguard replay EVENTS.ndjson`` reads a broker's own history (or a simulated run's
``events.ndjson``) line by line: every decision-point event goes through ``decide``, every other
event through ``observe``, exactly as the broker's systems would have called the guard. Nothing
reacts to the answers — the log already says what happened next — so this is how a broker tries a
policy on its past before it trusts it.

Four files come out, the same shapes the simulator writes, so ``evaluate`` and the charts read
them alike:

- ``decisions.ndjson``: one :class:`~brokerguard.guard.DecisionRecord` per decision point;
- ``alerts.ndjson``: one :class:`Alert` per decision that was not ``allow``, with the detector
  signals behind it (code, log-likelihood ratio, evidence) for the analyst;
- ``campaigns.ndjson``: the cross-account campaigns the engine raised;
- ``instructions.ndjson``: what the engine asked the broker to do about orders it had let through
  (:class:`~brokerguard.guard.Instruction`). Open loop, nobody carried them out: the log shows
  what became of those orders without them.

They are written to temporary files beside their final names and renamed only when the whole log
has been read: a bad line stops the replay with an :class:`~brokerguard.events.EventError` naming
the file, the line and the field, and leaves whatever the directory held before untouched.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Literal

import msgspec

from brokerguard.engine import BrokerGuard
from brokerguard.engine.signals import Signal
from brokerguard.events import Event, EventError, decode_line
from brokerguard.guard import (
    ACTIONS,
    Action,
    Decision,
    DecisionRecord,
    InstructingGuard,
    Reason,
    decision_point,
)

__all__ = [
    "ALERTS",
    "Alert",
    "AlertSignal",
    "CAMPAIGNS",
    "DECISIONS",
    "INSTRUCTIONS",
    "ReplaySummary",
    "replay",
]

DECISIONS = "decisions.ndjson"
ALERTS = "alerts.ndjson"
CAMPAIGNS = "campaigns.ndjson"
INSTRUCTIONS = "instructions.ndjson"
_PROGRESS_BYTES = 1 << 20  # report progress every MiB read


class AlertSignal(msgspec.Struct, frozen=True, kw_only=True):
    """One detector signal behind an alert: what was seen and how strongly it points to fraud."""

    code: str
    llr: float  # log-likelihood ratio in nats: > 0 speaks for an attacker, < 0 for the customer
    evidence: dict[str, Any] = {}


class Alert(msgspec.Struct, frozen=True, kw_only=True):
    """One line of ``alerts.ndjson``: a decision that was not ``allow``, and why."""

    event: str
    ts: datetime
    account: str
    point: Literal["login", "order", "withdrawal", "settings"]
    guard: str
    action: Action
    score: float
    factors: tuple[str, ...] = ()
    reasons: tuple[Reason, ...] = ()
    signals: tuple[AlertSignal, ...] = ()


class ReplaySummary(msgspec.Struct, kw_only=True):
    guard: str
    events: int
    decisions: dict[str, int]  # action -> count, every action of the ladder present
    alerts: int
    campaigns: int  # distinct campaigns raised
    campaign_lines: int  # lines of campaigns.ndjson (one each time a campaign took on a symbol)
    out: Path
    instructions: int = 0  # lines of instructions.ndjson


def _open_temp(stack: ExitStack, out_dir: Path, name: str) -> tuple[IO[bytes], Path]:
    tmp = out_dir / f".{name}.{os.getpid()}.tmp"
    stream = stack.enter_context(open(tmp, "wb", buffering=1 << 20))  # noqa: SIM115
    return stream, tmp


def replay(
    events_path: Path,
    out_dir: Path,
    guard: BrokerGuard | None = None,
    progress: Callable[[float], None] | None = None,
) -> ReplaySummary:
    """Run ``guard`` (a fresh default engine when None) over a log; write the three files.

    Raises :class:`EventError` (with ``line`` and ``field``, message prefixed by the path) on the
    first bad line, and OSError when the log cannot be read; no output file is written then.
    """
    events_path = Path(events_path)
    out_dir = Path(out_dir)
    engine = guard if guard is not None else BrokerGuard()
    total_bytes = max(1, events_path.stat().st_size)
    out_dir.mkdir(parents=True, exist_ok=True)

    captured: list[tuple[Event, list[Signal], Decision]] = []
    previous_trace = engine.trace

    def trace(event: Event, signals: list[Signal], decision: Decision) -> None:
        captured.append((event, signals, decision))
        if previous_trace is not None:
            previous_trace(event, signals, decision)

    engine.trace = trace
    instructing = isinstance(engine, InstructingGuard)
    encoder = msgspec.json.Encoder()
    actions: Counter[str] = Counter()
    events = alerts = instructions = 0
    temps: list[Path] = []
    try:
        with ExitStack() as stack:
            decisions_out, tmp = _open_temp(stack, out_dir, DECISIONS)
            temps.append(tmp)
            alerts_out, tmp = _open_temp(stack, out_dir, ALERTS)
            temps.append(tmp)
            instructions_out, tmp = _open_temp(stack, out_dir, INSTRUCTIONS)
            temps.append(tmp)

            def take_instructions() -> int:
                taken = engine.take_instructions() if instructing else []
                for instruction in taken:
                    instructions_out.write(encoder.encode(instruction) + b"\n")
                return len(taken)

            stream = stack.enter_context(events_path.open("rb"))
            read = next_report = 0
            for number, raw in enumerate(stream, start=1):
                read += len(raw)
                if progress is not None and read >= next_report:
                    progress(read / total_bytes)
                    next_report = read + _PROGRESS_BYTES
                if not raw.strip():
                    continue
                try:
                    event = decode_line(raw, line=number)
                except EventError as exc:
                    error = EventError(f"{events_path}: {exc}", field=exc.field)
                    error.line = exc.line
                    raise error from None
                events += 1
                point = decision_point(event)
                if point is None:
                    engine.observe(event)
                    instructions += take_instructions()
                    continue
                captured.clear()
                decision = engine.decide(event)
                instructions += take_instructions()
                if getattr(engine, "repeated", False):
                    continue  # a line repeated in the log: decided, and written, the first time
                actions[decision.action] += 1
                account: str = event.account  # type: ignore[union-attr]
                decisions_out.write(
                    encoder.encode(
                        DecisionRecord(
                            event=event.id,
                            ts=event.ts,
                            account=account,
                            point=point,
                            guard=engine.name,
                            action=decision.action,
                            score=decision.score,
                            factors=decision.factors,
                            reasons=decision.reasons,
                        )
                    )
                    + b"\n"
                )
                if decision.action == "allow":
                    continue
                signals = next((s for e, s, _ in reversed(captured) if e is event), [])
                if not signals and decision.action == "deny":
                    continue  # a wrong password: the broker's own check, nothing to investigate
                alerts += 1
                alerts_out.write(
                    encoder.encode(
                        Alert(
                            event=event.id,
                            ts=event.ts,
                            account=account,
                            point=point,
                            guard=engine.name,
                            action=decision.action,
                            score=decision.score,
                            factors=decision.factors,
                            reasons=decision.reasons,
                            signals=tuple(
                                AlertSignal(code=s.code, llr=round(s.llr, 4), evidence=s.evidence)
                                for s in signals
                            ),
                        )
                    )
                    + b"\n"
                )
            campaigns_out, tmp = _open_temp(stack, out_dir, CAMPAIGNS)
            temps.append(tmp)
            records = engine.campaign_records()
            for record in records:
                campaigns_out.write(encoder.encode(record) + b"\n")
        for tmp, name in zip(temps, (DECISIONS, ALERTS, INSTRUCTIONS, CAMPAIGNS), strict=True):
            os.replace(tmp, out_dir / name)
        temps.clear()
    finally:
        engine.trace = previous_trace
        for tmp in temps:
            tmp.unlink(missing_ok=True)
    if progress is not None:
        progress(1.0)
    return ReplaySummary(
        guard=engine.name,
        events=events,
        decisions={action: actions.get(action, 0) for action in ACTIONS},
        alerts=alerts,
        campaigns=len({r["id"] for r in records}),
        campaign_lines=len(records),
        out=out_dir,
        instructions=instructions,
    )
