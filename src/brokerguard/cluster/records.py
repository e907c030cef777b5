"""The worker's records in the service's tables: decisions, alerts, campaigns (and their audit),
and the engine's instructions (orders to cancel, sessions to sign out) for the broker's feed.

The rows are the service's own (:mod:`brokerguard.service.records`), written with its writer
(:func:`brokerguard.service.recorder.write_records`, one transaction per batch, the audit chain
appended inside it). Two things differ, so that a redelivered batch writes nothing twice:

- a decision's id is derived from its event id (``uuid5``), not drawn at random;
- before writing, the ids already in ``decisions`` are read and those records dropped.

Campaigns are upserted by id (the service's rule), so writing one again only refreshes it. An
instruction is known by its cause, session and kind: the table keeps the first (the service's writer
skips one already stored, whoever wrote it).
Raw events are not copied into ``events`` (the stream keeps them).
"""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
import sqlalchemy as sa

from brokerguard.engine import BrokerGuard
from brokerguard.engine.signals import Signal
from brokerguard.engine.stage import CampaignStage
from brokerguard.engine.state import CampaignState
from brokerguard.events import Event
from brokerguard.guard import Decision, Instruction
from brokerguard.service.db import DEFAULT_STATEMENT_TIMEOUT_S

__all__ = ["RecordSink", "decision_id"]

MIGRATE_LOCK = 0x6267_4D49  # "bgMI": workers migrate the service's tables one at a time
NAMESPACE = uuid.UUID("6f1c0b5e-0d1f-4c55-9d55-6b726f6b6572")


def _tagged(camp: CampaignState, tag: str) -> CampaignState:
    return msgspec.structs.replace(camp, id=tag + camp.id) if tag else camp


def decision_id(event_id: str) -> str:
    return uuid.uuid5(NAMESPACE, event_id).hex


class RecordSink:
    """Collects a batch's records, then writes them in one transaction (:meth:`write`)."""

    def __init__(
        self,
        database_url: str,
        caller: str = "worker",
        statement_timeout: float | None = DEFAULT_STATEMENT_TIMEOUT_S,
    ) -> None:
        """``statement_timeout``: seconds a statement may run on PostgreSQL (a write stuck
        behind a lock fails, the batch is given back and comes again); None or 0: no limit."""
        from brokerguard.service.db import make_engine, migrate

        self.engine = make_engine(database_url, statement_timeout=statement_timeout)
        if self.engine.dialect.name == "postgresql":
            # workers started together would race to create the tables: one at a time, each
            # waiting for the one migrating however long that takes (no statement timeout)
            with self.engine.connect() as lock:
                lock.execute(sa.text("SET LOCAL statement_timeout = 0"))
                lock.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATE_LOCK})
                try:
                    migrate(self.engine)
                finally:
                    lock.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATE_LOCK})
                    lock.commit()
        else:
            migrate(self.engine)
        self.caller = caller
        self.pending: list[Any] = []
        self._campaigns_seen: dict[str, float] = {}  # written: campaign -> its updated_at then
        self._campaigns_queued: dict[str, float] = {}  # ... queued, seen once written
        self.written = 0

    def decided(
        self,
        guard: BrokerGuard,
        event: Event,
        point: str,
        decision: Decision,
        signals: list[Signal],
        tag: str = "",
    ) -> None:
        """Queue a decision of ``guard`` (a partition's engine; ``tag`` prefixes its campaigns)."""
        from brokerguard.service.audit import AuditEntry
        from brokerguard.service.records import campaign_id, decision_record

        def campaign_row(engine_id: str) -> str | None:
            camp = guard.state.get("campaign", engine_id)
            return campaign_id(_tagged(camp, tag)) if camp is not None else None

        _, _, record = decision_record(
            event,
            point,
            decision,
            signals,
            guard=guard.name,
            caller=self.caller,
            campaigns=campaign_row,
        )
        did = decision_id(event.id)
        record.decision["id"] = did
        if record.alert is not None:
            record.alert["id"] = did
        detail = {**record.audit.detail, "decision": did}
        record.audit = AuditEntry(
            record.audit.actor, record.audit.action, record.audit.subject, detail
        )
        self.pending.append(record)

    def queue_instructions(self, instructions: list[Instruction], guard_name: str) -> None:
        """Queue ``instructions``, raised by the engine called ``guard_name``."""
        from brokerguard.service.records import instruction_record

        for instruction in instructions:
            self.pending.append(instruction_record(instruction, guard_name))

    def campaigns(self, guard: BrokerGuard | CampaignStage, tag: str = "", merge: bool = False):
        """Queue the campaigns of ``guard`` raised or grown since the last look.

        ``merge``: the lists are joined with those already stored (a campaign that several
        campaign-stage shards grow: each knows its own symbols).
        """
        from brokerguard.service.records import campaign_record

        state = guard.state
        for cid in list(state.keys("campaign")):
            camp: CampaignState | None = state.get("campaign", cid)
            if camp is not None and self._campaigns_seen.get(tag + cid) != camp.updated_at:
                self._campaigns_queued[tag + cid] = camp.updated_at
                record = campaign_record(_tagged(camp, tag))
                record.merge = merge
                self.pending.append(record)

    def write(self) -> int:
        """Write what was queued (less decisions already in the table); returns records written."""
        from brokerguard.service.models import decisions
        from brokerguard.service.recorder import DecisionRecord, write_records

        records, self.pending = self.pending, []
        queued, self._campaigns_queued = self._campaigns_queued, {}
        if not records:
            return 0
        ids = [r.decision["id"] for r in records if isinstance(r, DecisionRecord)]
        if ids:
            with self.engine.connect() as conn:
                known = set(conn.scalars(sa.select(decisions.c.id).where(decisions.c.id.in_(ids))))
            records = [
                r
                for r in records
                if not (isinstance(r, DecisionRecord) and r.decision["id"] in known)
            ]
        written, dropped, error = write_records(self.engine, records)
        if dropped:
            raise RuntimeError(f"{dropped} records could not be written: {error}")
        self._campaigns_seen.update(queued)
        self.written += written
        return written

    def discard(self) -> None:
        """Drop what was queued and not written: a batch or an advance given back. A campaign
        queued then is queued again the next time it is seen, even unchanged (the advance done
        again raises it as it was)."""
        self.pending.clear()
        self._campaigns_queued.clear()

    def close(self) -> None:
        self.engine.dispose()
