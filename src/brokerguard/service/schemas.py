"""The API's wire shapes (pydantic), which are also its OpenAPI document.

Request bodies forbid unknown fields, so a misspelt field is a 422 naming it rather than a
change silently ignored. Events themselves are not here: ``/v1/decide`` and ``/v1/events`` read
them with msgspec exactly as ``events.ndjson`` holds them (:mod:`brokerguard.events`), and their
schemas are put into the OpenAPI document from the same Structs (:mod:`.openapi`).
"""

from __future__ import annotations

import inspect
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import msgspec
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, create_model, field_validator

from brokerguard.reports.compensation import CompensationRow
from brokerguard.service.nul import NUL_MESSAGE, has_nul

__all__ = [
    "AccountActionIn",
    "AccountActionOut",
    "AlertOut",
    "AlertUpdate",
    "CampaignOut",
    "CampaignUpdate",
    "CaseIn",
    "CaseOut",
    "CaseUpdate",
    "DecisionOut",
    "ErrorOut",
    "HealthOut",
    "IngestOut",
    "InstructionBody",
    "InstructionOut",
    "LoginForm",
    "LoginIn",
    "NoteIn",
    "NoteOut",
    "PolicyOut",
    "ReasonOut",
    "TimelineOut",
    "WhoAmI",
]

AlertStatus = Literal["open", "acknowledged", "closed"]
CaseStatus = Literal["open", "investigating", "closed"]
Outcome = Literal["fraud", "not_fraud"]
CampaignStatus = Literal["active", "contained", "closed", "dismissed"]
Severity = Literal["low", "medium", "high", "critical"]
Detector = Literal["login", "session", "account", "trading", "campaign", "analyst", "policy"]
AccountAction = Literal[
    "release_order",
    "cancel_order",
    "lock",
    "freeze",
    "unlock",
    "request_unlock",
    "force_reverify",
    "trust_device",
]
Name = Annotated[str, Field(min_length=1, max_length=200)]
Label = Annotated[str, Field(min_length=1, max_length=64)]
Key = Annotated[str, Field(min_length=1, max_length=128)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        """PostgreSQL cannot store U+0000 in text: a 422 naming the field, not a 500 there."""
        if has_nul(value):
            raise ValueError(NUL_MESSAGE)
        return value


class ErrorDetail(BaseModel):
    code: str
    message: str
    message_ja: str
    field: str | None
    line: int | None = None


class ErrorOut(BaseModel):
    """Every error answer: ``{"error": {...}}``."""

    error: ErrorDetail


class ReasonOut(BaseModel):
    code: str
    en: str
    ja: str


class DecisionOut(BaseModel):
    """The answer to a decision-point event."""

    decision_id: str
    event_id: str
    account: str
    point: Literal["login", "order", "withdrawal", "settings"]
    action: Literal["allow", "challenge", "hold", "deny", "lock"]
    score: float
    factors: list[str]
    reasons: list[ReasonOut]
    alert_id: str | None = Field(description="The alert this decision raised, if any.")


class InstructionBody(BaseModel):
    """What the engine asks the broker to do about operations it let through earlier."""

    kind: Literal["cancel_orders", "end_session"] = Field(
        description="cancel_orders: cancel whatever is still open of `orders`; executed parts "
        "stay executed. end_session: sign `session` out (whoever holds it must sign in again)."
    )
    ts: datetime = Field(description="The time of the event that led to it.")
    account: str
    session: str = Field(description="The session that placed the orders, or to sign out.")
    orders: list[str] = Field(
        default=[], description="Order ids (the events' `order_id`); empty for end_session."
    )
    cause: str = Field(
        description="The event that led to it: a failed step-up, an analyst's conclusion."
    )
    reasons: list[ReasonOut]


class InstructionOut(InstructionBody):
    """An instruction as kept in the feed."""

    seq: int = Field(description="Its place in the feed: read on with `after=seq`.")
    guard: str
    created_at: datetime


class IngestOut(BaseModel):
    accepted: int = Field(description="Events read from the batch (all of them, or none).")
    observed: int
    decided: int = Field(description="Decision-point events in the batch, decided and recorded.")
    actions: dict[str, int]
    alerts: int
    instructions: list[InstructionBody] = Field(
        default=[],
        description="Orders to cancel and sessions to sign out that this batch led to (also in "
        "GET /v1/instructions).",
    )


class SignalOut(BaseModel):
    code: str
    llr: float
    evidence: dict[str, Any]


class AlertOut(BaseModel):
    id: str
    event_id: str
    ts: datetime
    account: str
    point: str
    action: str
    score: float
    severity: Severity
    detector: Detector
    detectors: list[str]
    campaign: str | None
    reasons: list[ReasonOut]
    signals: list[SignalOut]
    status: AlertStatus
    assignee: str | None
    snoozed_until: datetime | None
    updated_at: datetime


MAX_SNOOZE = timedelta(days=30)


class AlertUpdate(_In):
    status: AlertStatus | None = None
    assignee: Name | None = None
    snoozed_until: AwareDatetime | None = None

    @field_validator("snoozed_until")
    @classmethod
    def _not_forever(cls, value: datetime | None) -> datetime | None:
        """A snooze hides the alert from the queue: one far in the future (9999-12-31) would
        bury it unworked. Close the alert instead; a snooze ends within 30 days."""
        if value is not None and value > datetime.now(UTC) + MAX_SNOOZE:
            raise ValueError(
                f"a snooze ends within {MAX_SNOOZE.days} days; close the alert instead"
            )
        return value


class CampaignOut(BaseModel):
    id: str
    engine_id: str
    raised_at: datetime
    updated_at: datetime
    symbols: list[str]
    accounts: list[str]
    infrastructure: list[str]
    counterparties: list[str]
    timeline: list[dict[str, Any]]
    status: CampaignStatus


class CampaignUpdate(_In):
    status: CampaignStatus


class NoteOut(BaseModel):
    id: int
    case_id: int
    author: str
    text: str
    created_at: datetime


class CaseOut(BaseModel):
    id: int
    title: str
    account: str | None
    alert_id: str | None
    campaign_id: str | None
    status: CaseStatus
    outcome: Outcome | None
    labels: list[str]
    assignee: str | None
    created_by: str
    created_at: datetime
    updated_at: datetime
    notes: list[NoteOut] = []


class CaseIn(_In):
    """Open a case from an alert, a campaign or an account (at least one)."""

    title: Annotated[str, Field(min_length=1, max_length=300)] | None = None
    alert_id: Key | None = None
    campaign_id: Key | None = None
    account: Key | None = None
    labels: Annotated[list[Label], Field(max_length=50)] = []
    assignee: Name | None = None


class CaseUpdate(_In):
    title: Annotated[str, Field(min_length=1, max_length=300)] | None = None
    status: CaseStatus | None = None
    outcome: Outcome | None = None
    labels: Annotated[list[Label], Field(max_length=50)] | None = None
    assignee: Name | None = None


class NoteIn(_In):
    text: Annotated[str, Field(min_length=1, max_length=10_000)]


class AccountActionIn(_In):
    action: AccountAction
    target: Annotated[str, Field(min_length=1, max_length=200)] | None = Field(
        default=None,
        description="release_order/cancel_order: the held order's event id; "
        "trust_device: the device cookie.",
    )
    note: Annotated[str, Field(max_length=2000)] = ""


class AccountActionOut(BaseModel):
    id: int
    account: str
    action: str
    target: str | None
    note: str
    actor: str
    created_at: datetime


class TimelineDecision(BaseModel):
    id: str
    point: str
    action: str
    score: float
    factors: list[str]
    reasons: list[ReasonOut]
    guard: str
    decided_at: datetime
    alert_id: str | None


class TimelineItem(BaseModel):
    event_id: str
    type: str
    ts: datetime
    session: str | None
    event: dict[str, Any] | None = Field(description="The event as received (None if not kept).")
    decision: TimelineDecision | None


class TimelineOut(BaseModel):
    account: str
    locked: bool
    total: int
    offset: int
    items: list[TimelineItem]
    actions: list[AccountActionOut]


class PolicyOut(BaseModel):
    name: str
    guard: str
    origin: str
    created_by: str
    created_at: datetime
    source: str = Field(description="The policy file (TOML) as given.")
    policy: dict[str, Any] = Field(description="The policy as the engine reads it.")


class PublishOut(BaseModel):
    """The publisher of ``serve --nats``: events and decisions on their way to NATS."""

    connected: bool
    outbox: int = Field(description="Messages waiting for NATS.")
    capacity: int
    published: int
    duplicates: int = Field(description="Of the published, those JetStream already had.")
    dropped: int = Field(description="Messages given up: the outbox was full, or at shutdown.")
    retries: int
    last_error: str | None


class BlocklistOut(BaseModel):
    """The phishing block-list of ``serve --blocklist``, as the running guard holds it."""

    path: str
    entries: int = Field(description="Entries in force (the last version that read whole).")
    loaded_at: datetime | None = Field(description="When those entries were loaded.")
    reloads: int = Field(description="Changes of the file taken since start.")
    last_error: str | None = Field(
        description="Why the file's current version was not loaded (the old list stays)."
    )
    last_error_at: datetime | None


class SpillFileOut(BaseModel):
    path: str
    records: int | None = Field(description="How many records it holds (its header says).")
    created_at: datetime | None = Field(description="When the service wrote it.")
    reason: str | None = Field(description="`stop` or `writer_lost`.")
    problem: str | None = Field(description="Why its header cannot be read; null if it can.")


class HealthOut(BaseModel):
    status: Literal["ok", "degraded"]
    guard: str
    backlog: int = Field(description="Records waiting for the database writer.")
    written: int
    dropped: int
    last_error: str | None
    writer_restarts: int = Field(
        description="Writer processes started again after one was lost (pauses grow to 30 s)."
    )
    write_failures: int = Field(
        default=0,
        description="Failed attempts at the batch being written (the database away or locked);"
        " it is tried again, pauses growing to 5 s, and nothing is dropped. 0 while writing.",
    )
    failing_since: datetime | None = Field(
        default=None, description="When the current run of failed writes began; null if none."
    )
    max_backlog: int = Field(
        default=0,
        description="Records that may wait for the database; at this many, decisions and "
        "batches are refused (503 recorder_full) until the writer catches up.",
    )
    spilled: int = Field(
        default=0,
        description="Records this run could not write and saved to a spill file (a writer "
        "process lost while the database was away).",
    )
    spill_dir: str = Field(default="", description="Where spill files are written and looked for.")
    spill_files: list[SpillFileOut] = Field(
        default_factory=list,
        description="Spill files waiting to be loaded (`brokerguard records load-spill FILE`): "
        "their records are not in the database nor in the audit chain yet; degraded while any.",
    )
    publish: PublishOut | None = Field(
        default=None, description="Only with `serve --nats`; degraded while NATS is not reached."
    )
    blocklist: BlocklistOut | None = Field(default=None, description="Only with `--blocklist`.")


class LoginIn(_In):
    username: Name
    password: Annotated[str, Field(min_length=1, max_length=1000)]


class LoginForm(LoginIn):
    """The log-in form (``application/x-www-form-urlencoded``): the credentials and the form's
    token against log-in CSRF."""

    csrf_token: Annotated[
        str,
        Field(
            min_length=1,
            max_length=200,
            description="The value of the `bg_login` cookie that `GET /console/login` set, as "
            "its form's hidden field carries it (double-submit token against log-in CSRF). A "
            "form post without it, or with another value, is a 403 `login_csrf`. A JSON "
            "log-in needs none.",
        ),
    ]


class WhoAmI(BaseModel):
    kind: Literal["key", "user"]
    id: str
    role: str | None
    permissions: list[str]
    csrf_token: str | None = None


class MonthlyOut(BaseModel):
    """One month of the regulator's table (Japan time; whole yen)."""

    month: str = Field(description="YYYY-MM")
    logins: int = Field(description="unauthorized logins (不正アクセス件数)")
    trades: int = Field(description="unauthorized trades (不正取引件数)")
    sold_jpy: int = Field(description="value sold (売却金額)")
    bought_jpy: int = Field(description="value bought (買付金額)")


def model_of_struct(struct: type[msgspec.Struct], name: str) -> type[BaseModel]:
    """A response model with a msgspec Struct's fields, types, defaults and description.

    For a Struct the API returns as it is: its fields are written once, in the Struct, and the
    OpenAPI document follows it instead of a copy that could drift.
    """
    fields: dict[str, Any] = {}
    for f in msgspec.structs.fields(struct):
        if f.default is not msgspec.NODEFAULT:
            fields[f.name] = (f.type, f.default)
        elif f.default_factory is not msgspec.NODEFAULT:
            fields[f.name] = (f.type, Field(default_factory=f.default_factory))
        else:
            fields[f.name] = (f.type, ...)
    doc = inspect.cleandoc(struct.__doc__ or "")
    return create_model(name, __doc__=doc or None, __module__=__name__, **fields)


CompensationOut = model_of_struct(CompensationRow, "CompensationOut")
