"""The engine inside the service, and the rule that keeps it consistent: one thread.

:class:`~brokerguard.engine.BrokerGuard` is plain Python state that every event mutates; it is
not thread-safe and does not need to be. The service calls it only from the event loop's thread:
``/v1/decide``, ``/v1/events``, policy changes and account actions that feed the engine are
``async`` handlers that call :class:`GuardHost` directly, never from a thread pool. A decision
takes tens of microseconds, so running it inline on the loop costs less than handing it to
another thread would; a large batch of ingested events yields to the loop every
:data:`INGEST_SLICE` events so that decisions are not held up behind it. Everything slow —
database writes — is handed to the recorder's thread (:mod:`.recorder`).

uvicorn therefore runs one worker process: the engine's state is in that process's memory.
Several workers would each learn from a part of the traffic; scaling out is the design's
partitioned-worker mode, not more uvicorn workers.

With ``--state FILE`` the engine's state lives in a :class:`~brokerguard.stores.sqlite.SqliteState`
that :meth:`GuardHost.flush` writes to the file every second (from the loop, between events) and
on shutdown, so a restart continues where the engine stopped, losing at most the last second.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from uuid import uuid4

from brokerguard.engine import BrokerGuard, Policy, PolicyError
from brokerguard.engine.signals import Signal
from brokerguard.engine.state import CampaignState, PendingState
from brokerguard.events import (
    AnalystAction,
    AnalystActionKind,
    ChallengeResult,
    Event,
    LoginAttempt,
    decode_line,
    encode,
)
from brokerguard.guard import Decision, Reason
from brokerguard.service.records import campaign_id
from brokerguard.stores.sqlite import SqliteState

if TYPE_CHECKING:
    from brokerguard.phishing import Blocklist

__all__ = [
    "ACCOUNT_LOCKED",
    "CUSTOMER_FROZE",
    "GUARD_NAME_MAX",
    "INGEST_SLICE",
    "GuardHost",
    "check_guard_name",
    "guard_name",
]

INGEST_SLICE = 256
FLUSH_SLICE = 200  # records encoded between two turns of the event loop (~1 ms)
ACCOUNT_LOCKED = Reason(
    code="account_locked",
    en="The security team locked this account until the customer is verified again.",
    ja="セキュリティ担当者がこの口座を凍結しています。本人確認が済むまで利用できません。",
)
CUSTOMER_FROZE = Reason(
    code="account_frozen",
    en="The customer froze this account; it reopens after the customer is verified again.",
    ja="お客さまご自身の操作で口座が凍結されています。本人確認が済むまで利用できません。",
)


GUARD_NAME_MAX = 200  # the `guard` column of decisions and instructions


def guard_name(policy: Policy) -> str:
    return "brokerguard" if policy.name in ("", "default") else f"brokerguard:{policy.name}"


def check_guard_name(policy: Policy) -> None:
    """:class:`PolicyError` (field ``name``) when the policy's name makes a guard name longer
    than the records keep: every decision and instruction records it, and PostgreSQL refuses
    the row (SQLite keeps it), so every decision under such a policy was dropped."""
    if len(guard_name(policy)) > GUARD_NAME_MAX:
        most = GUARD_NAME_MAX - len("brokerguard:")
        raise PolicyError(f"policy: `name`: at most {most} characters", "name")


class GuardHost:
    """Owns the engine; every method must be called from the event loop's thread."""

    def __init__(
        self,
        guard: BrokerGuard,
        state: SqliteState | None = None,
        blocklist: Blocklist | None = None,
    ) -> None:
        self.guard = guard
        self.blocklist = blocklist  # from `serve --blocklist`; None = the policy's own list
        self.state_file = state
        self.locked: dict[str, str] = {}  # account -> actor who locked it (analyst overlay)
        self.frozen: set[str] = set()  # ... of them, those the customer froze
        self.last_ts: datetime | None = None  # the latest event time seen
        if state is not None:  # continue the hourly sweep's schedule and time of the last run
            saved = state.saved_meta()
            guard.set_clock(saved)
            if "last_ts" in saved:
                self.last_ts = datetime.fromisoformat(saved["last_ts"])
        self._signals: list[Signal] = []
        self._campaigns_seen: dict[str, float] = {}
        self.events = 0
        guard.trace = self._trace

    def _trace(self, event: Event, signals: list[Signal], decision: Decision) -> None:
        self._signals = signals

    @property
    def name(self) -> str:
        return self.guard.name

    def _seen(self, event: Event) -> None:
        self.events += 1
        if self.last_ts is None or event.ts > self.last_ts:
            self.last_ts = event.ts

    # --- events ------------------------------------------------------------------------------
    def decide(self, event: Event) -> tuple[Decision, list[Signal], bool]:
        """The engine's decision, its signals, and whether an analyst's lock decided instead."""
        self._seen(event)
        account = getattr(event, "account", None)
        if account is not None and account in self.locked:
            reason = CUSTOMER_FROZE if account in self.frozen else ACCOUNT_LOCKED
            return Decision(action="lock", score=1.0, reasons=(reason,)), [], True
        self._signals = []
        decision = self.guard.decide(event)
        return decision, self._signals, False

    def observe(self, event: Event) -> None:
        self._seen(event)
        self.guard.observe(event)

    def reason(self, code: str) -> Reason | None:
        """The running policy's sentences (Japanese and English) for a signal's ``code``, the
        same the decisions' reasons carry; None for a code it has none for."""
        return self.guard.decider.reasons.get(code)

    # --- what analysts feed back -------------------------------------------------------------
    def pending(self, event_id: str) -> PendingState | None:
        """The decision awaiting an answer (a challenge or a hold) for this event, if any."""
        return self.guard.state.get("pending", event_id)

    def answer_hold(self, ref: str, passed: bool, event_id: str) -> ChallengeResult | None:
        """An analyst confirmed (released) or refused (cancelled) a held operation.

        The engine hears it as the out-of-band confirmation it asked for: ``passed`` or
        ``failed`` with factor ``oob``, at the latest event time seen. Returns that event, or
        None when nothing waits under ``ref``.
        """
        pending = self.pending(ref)
        if pending is None:
            return None
        ts = self.last_ts or datetime.now(UTC)
        answer = ChallengeResult(
            id=event_id,
            ts=ts,
            account=pending.account,
            session=pending.session,
            ref=ref,
            factor="oob",
            outcome="passed" if passed else "failed",
        )
        self.guard.observe(answer)
        return answer

    def conclude(
        self,
        action: AnalystActionKind,
        *,
        account: str | None = None,
        device: str | None = None,
        login: LoginAttempt | None = None,
        campaign: str | None = None,
    ) -> AnalystAction:
        """An analyst's conclusion as an event, at the latest event time, heard by the engine.

        The caller records it with the events and publishes it (``serve --nats``), so that the
        workers' engines and any replay hear the same thing at the same place in the stream.
        """
        event = AnalystAction(
            id=f"analyst-{uuid4().hex}",
            ts=self.last_ts or datetime.now(UTC),
            action=action,
            account=account,
            device=device,
            login=login,
            campaign=campaign,
        )
        decode_line(encode(event))  # the limits a reader applies (building a struct checks none)
        self.observe(event)
        return event

    def confirm(self, login: LoginAttempt, fraud: bool) -> list[AnalystAction]:
        """A case closed on this sign-in, as events: fraud marks its infrastructure for every
        account and makes the victim re-verify; not fraud teaches the sign-in as the customer's.
        """
        if fraud:
            return [
                self.conclude("confirm_fraud", login=login),
                self.conclude("force_reverify", account=login.account),
            ]
        return [self.conclude("confirm_customer", account=login.account, login=login)]

    def engine_for(self, policy: Policy) -> BrokerGuard:
        """An engine running ``policy`` on everything this one has learned, not yet in use.

        Reads the files the policy names (its networks list, its block-list unless the service
        serves one): :class:`~brokerguard.engine.PolicyError` when one cannot be used, or when
        the name is too long for the records (:func:`check_guard_name`), so that a caller can
        refuse the policy before recording it.
        """
        check_guard_name(policy)
        old = self.guard
        networks_named = policy.detectors.login.networks or old.policy.detectors.login.networks
        new = BrokerGuard(
            policy,
            state=old.state,
            # A networks file named now or before is read again (the broker may have updated
            # it, or dropped it); otherwise the loaded lookup carries on.
            lookup=None if networks_named else old.lookup,
            name=guard_name(policy),
            blocklist=self.blocklist,  # the served list outlives policy changes
        )
        new._next_sweep = old._next_sweep  # the hourly sweep's schedule carries over
        new._tz = old._tz
        new.trace = self._trace
        return new

    def set_policy(self, policy: Policy, engine: BrokerGuard | None = None) -> None:
        """Run ``policy`` from the next event on, keeping everything the engine has learned
        (``engine``: the one :meth:`engine_for` built for it)."""
        self.guard = engine if engine is not None else self.engine_for(policy)

    def set_blocklist(self, blocklist: Blocklist) -> None:
        """Check sign-in referrers against ``blocklist`` from the next event on."""
        self.blocklist = blocklist
        self.guard.set_blocklist(blocklist)

    # --- periodic work -------------------------------------------------------------------------
    def changed_campaigns(self) -> list[CampaignState]:
        """Campaigns raised or grown since the last call."""
        state = self.guard.state
        changed = []
        for cid in list(state.keys("campaign")):
            camp: CampaignState | None = state.get("campaign", cid)
            if camp is None:
                continue
            if self._campaigns_seen.get(cid) != camp.updated_at:
                self._campaigns_seen[cid] = camp.updated_at
                changed.append(camp)
        return changed

    def campaign_row_id(self, engine_id: str) -> str | None:
        camp: CampaignState | None = self.guard.state.get("campaign", engine_id)
        return campaign_id(camp) if camp is not None else None

    def _clock(self) -> dict[str, str]:
        """What the state file keeps of time: the sweep's schedule, and the latest event time
        (an analyst's conclusion right after a restart is stamped with it, not the wall
        clock, which may be far from the stream's time)."""
        saved = self.guard.clock()
        if self.last_ts is not None:
            saved["last_ts"] = self.last_ts.isoformat()
        return saved

    def flush(self) -> int:
        """Write the engine's state to its file (when it has one); returns rows written."""
        if self.state_file is None:
            return 0
        self.state_file.meta = self._clock()
        return self.state_file.flush()

    async def flush_in_slices(self, slice_records: int = FLUSH_SLICE) -> int:
        """The same, without holding up decisions: records are encoded a slice at a time between
        requests, and written to the file on another thread (see
        :meth:`~brokerguard.stores.sqlite.SqliteState.begin_flush` for what the snapshot then
        means). Returns rows written."""
        state = self.state_file
        if state is None:
            return 0
        state.meta = self._clock()
        job = state.begin_flush()
        written = False
        try:
            while not state.encode_some(job, slice_records):
                await asyncio.sleep(0)  # let waiting requests in
            await asyncio.to_thread(state.write, job)
            written = True
        finally:
            rows = state.end_flush(job, written)
        return rows

    def close(self, flush: bool = True) -> None:
        """Close the state file, flushing it first unless ``flush`` is false."""
        if self.state_file is not None:
            self.state_file.meta = self._clock()
            self.state_file.close(flush=flush)
            self.state_file = None

    def stats(self) -> dict[str, Any]:
        return {"guard": self.name, "events": self.events, "locked_accounts": len(self.locked)}
