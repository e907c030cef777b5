"""What the service writes down about an event, a decision or a campaign (rows, not I/O).

An alert is a decision that was not ``allow``, except a plain wrong password (a ``deny`` with no
detector signal: the broker's own credential check, nothing to investigate) and a decision on an
account an analyst locked (expected, already being handled). Its ``severity`` follows the action,
raised to ``high`` when a campaign signal spoke:

======== ==========
action   severity
======== ==========
challenge low
hold     medium
deny     high
lock     critical
======== ==========

Its ``detector`` is the detector behind the strongest signal (``login``, ``session``,
``account``, ``trading``, ``campaign``), or ``policy`` when no signal spoke for an attack (a
settings change that always needs a step-up, a lock after failed passwords).
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgspec

from brokerguard.engine.signals import Signal
from brokerguard.engine.state import CampaignState
from brokerguard.events import AnalystAction, Event, encode
from brokerguard.guard import Decision, Instruction
from brokerguard.service.audit import AuditEntry
from brokerguard.service.recorder import (
    CampaignRecord,
    DecisionRecord,
    EventRecord,
    InstructionRecord,
)

__all__ = [
    "DETECTOR_OF",
    "DETECTORS",
    "SEVERITIES",
    "campaign_id",
    "campaign_record",
    "decision_record",
    "event_record",
    "instruction_record",
    "severity",
]

DETECTORS: dict[str, tuple[str, ...]] = {
    "login": (
        "login_network",
        "login_device",
        "login_cookie",
        "login_hour",
        "shared_infrastructure",
        "failure_velocity",
        "impossible_travel",
        "failed_step_up",
        "canary_proxy",
        "phishing_referrer",
        "password_fallback",
    ),
    "session": ("session_risk", "session_hijack", "sensitive_burst"),
    "account": ("sensitive_change", "recent_contact_change", "withdrawal_size"),
    "trading": (
        "liquidation",
        "liquidation_then_buy",
        "first_in_market",
        "first_in_symbol",
        "illiquid_symbol",
        "limit_above_market",
        "unusual_size",
        "margin_first_use",
    ),
    "campaign": ("campaign_symbol", "campaign_infrastructure"),
    "analyst": ("reverify_required", "confirmed_fraud_infrastructure"),
}
DETECTOR_OF: dict[str, str] = {code: det for det, codes in DETECTORS.items() for code in codes}
SEVERITIES: tuple[str, ...] = ("low", "medium", "high", "critical")
_SEVERITY = {"challenge": "low", "hold": "medium", "deny": "high", "lock": "critical"}
_ENCODE = msgspec.json.Encoder()
_ID_PREFIX = secrets.token_hex(6)
"""Decision ids: 48 random bits drawn when the process starts, then a counter. As unique as a
UUID in practice, without a system call per decision (uuid4 was 6% of the serving thread)."""
_ids = itertools.count(1)


def severity(action: str, signals: list[Signal]) -> str:
    level = _SEVERITY.get(action, "low")
    if level in ("low", "medium") and any(DETECTOR_OF.get(s.code) == "campaign" for s in signals):
        return "high"
    return level


def _jsonable(value: Any) -> Any:
    return msgspec.to_builtins(value)


def event_record(event: Event) -> EventRecord:
    """The events-table row of an event. Every event is kept, market data included, so that an
    export replays what the engine saw and the reports value holdings at market prices."""
    account = getattr(event, "account", None)
    if account is None and isinstance(event, AnalystAction) and event.login is not None:
        account = event.login.account  # a confirmed fraud: on the victim's timeline
    return EventRecord(
        {
            "event_id": event.id,
            "type": event.__struct_config__.tag,
            "ts": event.ts,
            "account": account,
            "session": getattr(event, "session", None),
            "body": encode(event).decode(),
        }
    )


def instruction_record(
    instruction: Instruction, guard: str, now: datetime | None = None
) -> InstructionRecord:
    """The instructions-table row of an instruction (its ``seq`` is given when it is written)."""
    return InstructionRecord(
        {
            "kind": instruction.kind,
            "ts": instruction.ts,
            "account": instruction.account,
            "session": instruction.session,
            "orders": list(instruction.orders),
            "cause": instruction.cause,
            "reasons": _jsonable(instruction.reasons),
            "guard": guard,
            "created_at": now or datetime.now(UTC),
        }
    )


def decision_record(
    event: Event,
    point: str,
    decision: Decision,
    signals: list[Signal],
    *,
    guard: str,
    caller: str,
    alert: bool = True,
    now: datetime | None = None,
    campaigns: Callable[[str], str | None] | None = None,
) -> tuple[str, bool, DecisionRecord]:
    """The decision's id, whether it raised an alert, and its rows with their audit entry.

    ``campaigns`` maps an engine campaign id (in a campaign signal's evidence) to the id of the
    campaign's row.
    """
    now = now or datetime.now(UTC)
    decision_id = f"{_ID_PREFIX}{next(_ids):010x}"
    account: str = event.account  # type: ignore[union-attr]
    reasons = [{"code": r.code, "en": r.en, "ja": r.ja} for r in decision.reasons]
    row = {
        "id": decision_id,
        "event_id": event.id,
        "ts": event.ts,
        "account": account,
        "session": getattr(event, "session", None),
        "point": point,
        "guard": guard,
        "action": decision.action,
        "score": decision.score,
        "factors": list(decision.factors),
        "reasons": reasons,
        "caller": caller,
        "decided_at": now,
    }
    alert_row = None
    if alert and decision.action != "allow" and (signals or decision.action != "deny"):
        spoke = sorted((s for s in signals if s.llr > 0), key=lambda s: -s.llr)
        detectors = sorted({DETECTOR_OF.get(s.code, "policy") for s in spoke})
        campaign = next(
            (str(s.evidence.get("campaign")) for s in spoke if s.code.startswith("campaign_")),
            None,
        )
        if campaign is not None and campaigns is not None:
            campaign = campaigns(campaign) or campaign
        alert_row = {
            "id": decision_id,
            "event_id": event.id,
            "ts": event.ts,
            "account": account,
            "point": point,
            "action": decision.action,
            "score": decision.score,
            "severity": severity(decision.action, signals),
            "detector": DETECTOR_OF.get(spoke[0].code, "policy") if spoke else "policy",
            "detectors": detectors or ["policy"],
            "campaign": campaign,
            "reasons": reasons,
            "signals": [
                {"code": s.code, "llr": round(s.llr, 4), "evidence": _jsonable(s.evidence)}
                for s in signals
            ],
            "status": "open",
            "updated_at": now,
        }
    entry = AuditEntry(
        actor=caller,
        action="decision",
        subject=account,
        detail={
            "decision": decision_id,
            "event": event.id,
            "point": point,
            "action": decision.action,
            "score": decision.score,
        },
    )
    return decision_id, alert_row is not None, DecisionRecord(row, alert_row, entry)


def campaign_id(camp: CampaignState) -> str:
    """The engine's id plus the moment it was raised: engine ids restart with a fresh state."""
    raised = datetime.fromtimestamp(camp.raised_at, UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{camp.id}-{raised}"


def campaign_record(camp: CampaignState) -> CampaignRecord:
    def iso(t: float) -> datetime:
        return datetime.fromtimestamp(t, UTC)

    return CampaignRecord(
        {
            "id": campaign_id(camp),
            "engine_id": camp.id,
            "raised_at": iso(camp.raised_at),
            "updated_at": iso(camp.updated_at),
            "symbols": list(camp.symbols),
            "accounts": list(camp.accounts),
            "infrastructure": list(camp.infrastructure),
            "counterparties": list(camp.counterparties),
            "timeline": [
                {"at": iso(t).isoformat(), "what": what, "detail": detail}
                for t, what, detail in camp.timeline
            ],
            "status": "active",
        }
    )
