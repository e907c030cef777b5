"""Campaign detection as a stage of its own: facts in, campaigns and containment out.

A campaign is what no single account shows, so it cannot be detected where the accounts are
split over partitions. In the staged arrangement every account partition's engine sends the
*facts* the campaign detector needs (:class:`Fact`: risky sign-ins and the infrastructure they
came from, suspicious first-time buys, fills, bars) and a :class:`CampaignStage` — one per
*shard*, facts routed by symbol — runs the same :class:`CampaignWatch` over the facts of all
partitions. What it decides flows back as *containment*: which symbols and which addresses,
networks and user agents are under a campaign.

The login detector's cross-account records go the same way: each learned sign-in (population
counts), unfamiliar sign-in, failed password and canary hit is a fact; shard 0 keeps the
population and the shared-infrastructure records over all partitions, and each partition takes
them, as of the epoch before, at the start of each epoch (``take_population``/``take_entity``).

Time is cut into **epochs** (``epoch_seconds`` of event time; the stream carries a marker at
each new epoch, see :mod:`brokerguard.cluster.stream`). The rules, which make the outcome the
same however the work is scheduled:

1. an account partition tags each fact with its current epoch and the event's position in the
   stream (``order``);
2. the stage processes the facts of epoch ``j`` once every partition has passed the marker of a
   later epoch (so it has them all), in ``order`` — the stream's own order;
3. containment found from epoch ``j``'s facts applies to events of epochs ``> j``: an account
   partition processes an event of epoch ``k`` only once the stages are done with ``k - 1``.

Processing the stream in its order on one machine is one valid schedule
(:class:`brokerguard.cluster.staged.StagedGuard`), so the cluster's results can be compared with
it exactly. The price is latency: a campaign contains from the next epoch on, not from the very
order that raised it.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

from brokerguard.engine.detectors.campaign import CampaignWatch
from brokerguard.engine.detectors.login import note_canary_hit
from brokerguard.engine.feedback import unlink_campaign
from brokerguard.engine.policy import DetectorParams
from brokerguard.engine.state import (
    CampaignState,
    EntityState,
    PopulationState,
    State,
    SymbolState,
    prune_window,
    run_last,
    touch_window,
)
from brokerguard.markets import price_known

_encode_entity = msgspec.msgpack.Encoder().encode
decode_entity = msgspec.msgpack.Decoder(EntityState).decode

__all__ = [
    "CampaignStage",
    "Containment",
    "Fact",
    "FactKind",
    "StageLink",
    "decode_entity",
    "shard_of",
    "shards_of",
]

FactKind = Literal[
    "risky", "clear", "buy", "fill", "bar", "learn", "unfamiliar", "failure", "canary", "dismiss"
]
SWEEP_EVERY_S = 3600.0


class Fact(msgspec.Struct, kw_only=True, omit_defaults=True, frozen=True):
    """One thing an account partition saw that the campaign stage needs.

    ``order`` is the event's position in the stream and ``n`` the fact's index among those of
    the same event: together they identify the fact (a re-sent fact is dropped) and order it.
    Only fields the broker's own logs hold: accounts, addresses, symbols, prices, times.
    """

    kind: FactKind
    epoch: int
    order: int
    n: int = 0
    partition: int = 0
    at: float = 0.0
    account: str = ""
    keys: tuple[str, ...] = ()  # risky / clear: infrastructure keys; learn: population keys
    hour: int = 0  # learn: the sign-in's hour
    origin: str = ""  # canary: the foreign origin the page was rendered under
    symbol: str = ""  # "MARKET:SYMBOL"
    compromised: bool = False  # buy: the session is all but certainly not the customer's
    thin: bool = False  # buy: one order of this size moves the instrument
    liquidated: bool = False  # buy: right after a sell-off of the holdings
    campaign: str = ""  # buy: the campaign the session's infrastructure is under; dismiss
    side: str = ""  # fill
    price: float = 0.0  # fill
    minutes: int = 0  # bar
    volume: float = 0.0  # bar
    open: float = 0.0  # bar
    close: float = 0.0  # bar

    @property
    def id(self) -> tuple[int, int]:
        return (self.order, self.n)


class Containment(msgspec.Struct, frozen=True, array_like=True):
    """A key that came under a campaign in ``epoch`` (or, ``released``, was freed from it by a
    dismissal): it contains (or stops) from ``epoch + 1`` on."""

    kind: Literal["symbol", "entity"]
    key: str
    campaign: str
    epoch: int
    released: bool = False


def shard_of(fact: Fact, shards: int) -> int:
    """Symbol facts by symbol (crc32, stable across machines); infrastructure on shard 0.

    A risky sign-in touches an address, an AS and a user agent at once and the campaign links
    them, so all infrastructure stays together.
    """
    if shards == 1 or not fact.symbol:
        return 0
    return zlib.crc32(fact.symbol.encode()) % shards


def shards_of(fact: Fact, shards: int) -> Iterable[int]:
    """Where a fact goes: its shard, or every shard for a dismissal (a campaign raised in one
    shard may have symbols in others, under the same id)."""
    return range(shards) if fact.kind == "dismiss" else (shard_of(fact, shards),)


class StageLink:
    """An account partition's line to the campaign stage: facts out, containment in.

    The driver (the in-process reference or a cluster worker) sets ``epoch`` and ``order``
    before each event, takes the facts sent, and adds containment as it becomes visible.
    """

    def __init__(self, partition: int = 0, emit_market: bool = True) -> None:
        self.partition = partition
        self.emit_market = emit_market  # one partition sends the market's bars
        self.epoch = 0
        self.order = 0
        self.facts: list[Fact] = []
        self.symbols: dict[str, str] = {}  # visible containment: symbol key -> campaign
        self.entities: dict[str, str] = {}  # ... infrastructure key -> campaign
        self.released: set[str] = set()  # ... campaigns an analyst dismissed
        self._n = 0
        self._last_order = -1

    def send(self, kind: FactKind, **fields: Any) -> None:
        if self.order != self._last_order:
            self._last_order, self._n = self.order, 0
        self.facts.append(
            Fact(
                kind=kind,
                epoch=self.epoch,
                order=self.order,
                n=self._n,
                partition=self.partition,
                **fields,
            )
        )
        self._n += 1

    def take(self) -> list[Fact]:
        facts, self.facts = self.facts, []
        return facts

    def contain(self, update: Containment) -> None:
        """Make one containment (or release) visible, in the stage's order (the driver checks
        its epoch first)."""
        view = self.symbols if update.kind == "symbol" else self.entities
        if not update.released:
            if update.campaign not in self.released:  # a dismissed campaign contains nothing
                view.setdefault(update.key, update.campaign)
            return
        self.released.add(update.campaign)
        if view.get(update.key) == update.campaign:
            del view[update.key]

    def see_only(self, updates: Iterable[Containment]) -> None:
        """Rebuild the visible containment from the stage's whole output so far, in order."""
        self.symbols, self.entities, self.released = {}, {}, set()
        for update in updates:
            self.contain(update)


class CampaignStage:
    """One shard of the campaign stage: the campaign detector over all partitions' facts."""

    def __init__(self, state: State, params: DetectorParams, shard: int = 0, shards: int = 1):
        self.state = state
        self.span = params.login.infrastructure_window_hours * 3600
        self.watch = CampaignWatch(state, params.campaign, self.span)
        self.watch.contained = []  # what came under (or left) a campaign: this stage's output
        if shards > 1:
            self.watch.prefix = f"K{shard}-"
            self.watch.aliases = True
            # The next id follows this shard's own campaigns only. Its state also holds copies
            # of other shards' campaigns (started by a thin buy linked to one, or kept for a
            # dismissal heard): counted too, a shard taken over (restarted, or taken back after
            # its lock lapsed) numbered its next campaign past the id one that ran on gives it,
            # and past the one a replay from empty gives it, so a rebuild wrote it again under
            # another id (another row) and the reference differed.
            own = self.watch.prefix + "C"
            self.watch._count = sum(1 for cid in state.keys("campaign") if cid.startswith(own))
        self.next_sweep = 0.0
        self._handlers = {
            "risky": self._risky,
            "clear": self._clear,
            "buy": self._buy,
            "fill": self._fill,
            "bar": self._bar,
            "learn": self._learn,
            "unfamiliar": self._unfamiliar,
            "failure": self._failure,
            "canary": self._canary,
            "dismiss": self._dismiss,
        }
        self.population_changed = False
        self.entities_changed: set[str] = set()
        """Infrastructure records changed since the driver last looked (it hands them on)."""
        self.failure_span = params.login.failure_window_minutes * 60
        self.canary_span = params.login.canary_hours * 3600

    def process(self, facts: Iterable[Fact], epoch: int) -> list[Containment]:
        """Run one epoch's facts, in stream order; returns what came under a campaign."""
        for fact in sorted(facts, key=lambda f: (f.order, f.n)):
            if fact.at >= self.next_sweep and fact.at:
                if self.next_sweep:
                    self.sweep(fact.at)
                self.next_sweep = fact.at + SWEEP_EVERY_S
            self._handlers[fact.kind](fact)
        found, self.watch.contained = self.watch.contained or [], []
        return [
            Containment(kind, key, cid, epoch, released)  # type: ignore[arg-type]
            for kind, key, cid, released in found
        ]

    def records(self, iso) -> Iterator[dict[str, Any]]:
        return self.watch.records(iso)

    def population(self) -> PopulationState:
        """The counts of trusted sign-ins over all partitions (shard 0 keeps them)."""
        pop = self.state.get("population", "all")
        if pop is None:
            pop = PopulationState(hours=[0] * 24)
            self.state.put("population", "all", pop)
        return pop

    # --- the facts ------------------------------------------------------------------------
    def _entity(self, key: str) -> EntityState:
        ent = self.state.get("entity", key)
        return ent if ent is not None else EntityState()

    def _symbol(self, key: str) -> SymbolState:
        sym = self.state.get("symbol", key)
        if sym is None:
            market, _, symbol = key.partition(":")
            sym = SymbolState(market=market, symbol=symbol)
        return sym

    def _put_entity(self, key: str, ent: EntityState) -> None:
        self.state.put("entity", key, ent)
        self.entities_changed.add(key)

    def _risky(self, f: Fact) -> None:
        touched = []
        for key in f.keys:
            ent = self._entity(key)
            touch_window(ent.risky, f.account, f.at, self.span, 64)
            self._put_entity(key, ent)
            touched.append((key, ent))
        self.watch.risky_login(f.account, touched, f.at)

    def _clear(self, f: Fact) -> None:
        for key in f.keys:
            ent = self.state.get("entity", key)
            if ent is not None and (f.account in ent.risky or f.account in ent.unfamiliar):
                ent.risky.pop(f.account, None)
                ent.unfamiliar.pop(f.account, None)
                self._put_entity(key, ent)

    # the login detector's own changes to the records (note_unfamiliar, note_failure, note_canary)
    def _unfamiliar(self, f: Fact) -> None:
        for key in f.keys:
            ent = self._entity(key)
            ent.logins += 1
            ent.unfamiliar_total += 1
            touch_window(ent.unfamiliar, f.account, f.at, self.span, 64)
            self._put_entity(key, ent)

    def _failure(self, f: Fact) -> None:
        for key in f.keys:
            ent = self._entity(key)
            touch_window(ent.failures, f.account, f.at, self.failure_span, 64)
            self._put_entity(key, ent)

    def _canary(self, f: Fact) -> None:
        for key in f.keys:
            ent = self._entity(key)
            note_canary_hit(ent, f.origin, f.at)
            self._put_entity(key, ent)

    def _buy(self, f: Fact) -> None:
        sym = self._symbol(f.symbol)
        self.watch.note_buy(f.account, sym, f.compromised, f.thin, f.liquidated, f.campaign, f.at)
        self.state.put("symbol", f.symbol, sym)

    def _fill(self, f: Fact) -> None:
        sym = self._symbol(f.symbol)
        self.watch.fill(sym, f.account, f.side, f.price, f.at)
        self.state.put("symbol", f.symbol, sym)

    def _learn(self, f: Fact) -> None:
        """The same increments as the login detector's ``learn``, over every partition."""
        pop = self.population()
        counts = pop.counts
        for key in f.keys:
            counts[key] = counts.get(key, 0) + 1
        pop.n += 1
        pop.hours[f.hour] += 1
        self.state.put("population", "all", pop)
        self.population_changed = True

    def _dismiss(self, f: Fact) -> None:
        """An analyst dismissed the campaign: free its keys here, and say so in order."""
        camp = self.state.get("campaign", f.campaign)
        if camp is None:
            if not self.watch.aliases:
                return  # one shard: the campaign was never raised
            # Not in this shard yet; remember the dismissal, so that a buy from a session still
            # linked to it (the partitions hear of it one epoch later) cannot start it here.
            camp = CampaignState(id=f.campaign, raised_at=f.at, updated_at=f.at, timeline=[])
        for kind, key in unlink_campaign(self.state, camp, f.at):
            self.watch.contained.append((kind, key, camp.id, True))  # type: ignore[union-attr]
            if kind == "entity":
                self.entities_changed.add(key)

    def _bar(self, f: Fact) -> None:
        sym = self._symbol(f.symbol)
        # a bar's minutes, volume, open, close; ``at`` is its start. Its end comes from the
        # one rule the guard uses too, so that the staged and the embedded watch cannot differ.
        market = f.symbol.partition(":")[0]
        end = price_known(market, datetime.fromtimestamp(f.at, UTC), f.minutes).timestamp()
        self.watch.bar(sym, f, end)  # type: ignore[arg-type]
        self.state.put("symbol", f.symbol, sym)

    def sweep(self, now: float) -> None:
        """Forget infrastructure windows that emptied, as the engine's own sweep does."""
        for key in self.state.keys("entity"):
            ent = self.state.get("entity", key)
            if ent is None or ent.campaign:
                continue
            for window in (ent.unfamiliar, ent.risky):
                prune_window(window, now, self.span, 64)
            prune_window(ent.failures, now, 3600 * 24, 64)
            if not (
                ent.unfamiliar
                or ent.risky
                or ent.failures
                or run_last(ent.canary) > now - self.canary_span
            ):
                self.state.delete("entity", key)
            else:
                self.state.put("entity", key, ent)

    def changed_entities(self) -> dict[str, bytes]:
        """The infrastructure records changed since the last call, encoded (handed on)."""
        out = {}
        for key in sorted(self.entities_changed):
            ent = self.state.get("entity", key)
            if ent is not None:
                out[key] = _encode_entity(ent)
        self.entities_changed = set()
        return out
