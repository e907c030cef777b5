"""Campaigns: what no single account shows — many accounts, one infrastructure, one thin symbol.

Two things raise a campaign. *Infrastructure*: several risky sign-ins to different accounts from
the same address, AS or user agent within a window. *Symbol pressure*: several accounts buying the
same thin symbol for the first time from sessions that are not fully trusted, within a window. A
symbol whose bars depart from their usual volume, or that one such order could move, needs one
account fewer. Buys from a session on a
campaign's infrastructure attach their symbol to that campaign at once.

A campaign is a record (symbols, accounts, infrastructure, timeline) and drives containment: later
sign-ins from its infrastructure and risky buys of its symbols get a signal of their own, so the
policy can step them up or hold them — honest customers in trusted sessions buying the same symbol
are not touched, because there is no blanket ban.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from brokerguard.engine.policy import CampaignParams
from brokerguard.engine.signals import Signal
from brokerguard.engine.state import (
    CampaignState,
    EntityState,
    SessionState,
    State,
    SymbolState,
    run_last,
    touch_window,
    window_reaches,
)
from brokerguard.events import MarketBar

if TYPE_CHECKING:
    from brokerguard.engine.stage import StageLink

__all__ = ["CampaignWatch", "StagedCampaigns", "dismissed"]

MATCH_S = 1.0  # a buy and a sell fill this close in time (and at one price) are one trade
KEPT_FILLS = 20  # recent sell fills, and suspicious buys not yet matched, kept per symbol


def _keep(fills: list[tuple[float, float, str]], fill: tuple[float, float, str]) -> None:
    fills.append(fill)
    if len(fills) > KEPT_FILLS:
        del fills[:-KEPT_FILLS]


def dismissed(camp: CampaignState) -> bool:
    """Whether an analyst dismissed the campaign (its timeline says so)."""
    return any(what == "dismissed" for _, what, _ in camp.timeline)


DAY = 86400.0


class CampaignWatch:
    def __init__(self, state: State, params: CampaignParams, infrastructure_span: float = DAY):
        """``infrastructure_span``: the seconds the login detector keeps risky sign-ins on an
        address (its ``infrastructure_window_hours``), over which they are counted here."""
        self.state = state
        self.p = params
        self.infrastructure_span = infrastructure_span
        self._count = sum(1 for _ in state.keys("campaign"))
        self.prefix = ""  # of new campaigns' ids (a stage shard's own, so ids never collide)
        self.aliases = False  # start campaigns raised elsewhere under their id (stage shards)
        self.contained: list[tuple[str, str, str, bool]] | None = None
        """(``symbol`` | ``entity``, key, campaign id, released) each time a key comes under a
        campaign (released False) or is freed by a dismissal (True), in order: kept only where
        someone takes them (a campaign stage sets a list and empties it each epoch)."""

    # --- raising and growing campaigns ----------------------------------------------------
    def _new(self, now: float, what: str, detail: str) -> CampaignState:
        self._count += 1
        camp = CampaignState(
            id=f"{self.prefix}C{self._count:04d}",
            raised_at=now,
            updated_at=now,
            timeline=[(now, "raised", f"{what} {detail}")],
        )
        self.state.put("campaign", camp.id, camp)
        return camp

    def _contained(self, kind: str, key: str, cid: str) -> None:
        if self.contained is not None:
            self.contained.append((kind, key, cid, False))

    def _get(self, cid: str) -> CampaignState | None:
        return self.state.get("campaign", cid) if cid else None

    def _add(self, camp: CampaignState, items: list[str], value: str, now: float, what: str):
        if value not in items:
            items.append(value)
            if len(items) > 500:
                del items[0]
            camp.updated_at = now
            camp.timeline.append((now, what, value))
            if len(camp.timeline) > 400:
                del camp.timeline[1:101]
                camp.written = max(0, camp.written - 100)
            self.state.put("campaign", camp.id, camp)

    def risky_login(self, account: str, entities: list[tuple[str, EntityState]], now: float) -> str:
        """A risky sign-in was noted on these entities; returns the campaign it belongs to."""
        camp: CampaignState | None = None
        for _, ent in entities:
            camp = camp or self._get(ent.campaign)
        if camp is None:
            for key, ent in entities:
                if self._enough_risky(ent, now):
                    camp = self._new(now, "infrastructure", key)
                    break
        if camp is None:
            return ""
        for key, ent in entities:
            if ent.campaign == "" and self._enough_risky(ent, now):
                ent.campaign = camp.id
                self._contained("entity", key, camp.id)
                self.state.put("entity", key, ent)
                self._add(camp, camp.infrastructure, key, now, "infrastructure")
                for member in ent.risky:  # everyone who failed from here is part of it
                    self._add(camp, camp.accounts, member, now, "account")
        self._add(camp, camp.accounts, account, now, "account")
        return camp.id

    def _enough_risky(self, ent: EntityState, now: float) -> bool:
        """Enough accounts signed in riskily from here within the window (that of a late
        sign-in, or of one after it that it joins: see :func:`window_reaches`)."""
        need = self.p.infrastructure_accounts
        return window_reaches(ent.risky, now, self.infrastructure_span, need)

    def infrastructure_of(self, keys: tuple[str, ...]) -> str:
        """The campaign whose infrastructure one of these keys is ("" if none)."""
        for key in keys:
            ent = self.state.get("entity", key)
            if ent is not None and ent.campaign:
                return ent.campaign
        return ""

    def cleared(self, account: str, keys: tuple[str, ...]) -> None:
        """The account proved its sign-in its own (the login detector already unlinked it)."""

    def infrastructure_signal(self, sess: SessionState | None) -> Signal | None:
        if sess is not None and sess.campaign and not sess.trusted:
            return Signal(
                "campaign_infrastructure", self.p.infrastructure_llr, {"campaign": sess.campaign}
            )
        return None

    def buy(
        self,
        account: str,
        sym: SymbolState,
        sess: SessionState | None,
        first_time: bool,
        thin: bool,
        suspicion: float,
        now: float,
        liquidated: bool = False,
    ) -> Signal | None:
        """A buy was asked for; note it, maybe raise or grow a campaign, and say if it is one."""
        suspicious, compromised = self.classify_buy(sess, first_time, suspicion, liquidated)
        if suspicious:
            campaign = sess.campaign if sess is not None else ""
            self.note_buy(account, sym, compromised, thin, liquidated, campaign, now)
        return self.symbol_signal(sym.campaign, f"{sym.market}:{sym.symbol}", sess, liquidated)

    def classify_buy(
        self, sess: SessionState | None, first_time: bool, suspicion: float, liquidated: bool
    ) -> tuple[bool, bool]:
        """Whether a buy counts toward symbol pressure, and whether it counts double.

        Buying right after selling off the holdings is the takeover pattern itself; a retail
        frenzy buys with cash, and a sell-off sells without buying.
        """
        p = self.p
        trusted = sess is not None and sess.trusted
        suspicious = first_time and not trusted and (suspicion > p.suspicious_llr or liquidated)
        # a stolen cookie or a sign-in far beyond doubt counts as two accounts' evidence
        compromised = suspicious and (
            sess is not None and (sess.hijack > 0 or sess.llr > p.compromised_llr)
        )
        return suspicious, compromised

    def note_buy(
        self,
        account: str,
        sym: SymbolState,
        compromised: bool,
        thin: bool,
        liquidated: bool,
        session_campaign: str,
        now: float,
    ) -> None:
        """A suspicious first-time buy: count it, and raise or grow the symbol's campaign.

        Several suspicious first-time buyers raise a campaign on any instrument. A single one is
        linked to the campaign whose infrastructure its session uses only when the instrument is
        ``thin`` for its order (few accounts can move it), so that a customer on a shared VPN
        buying a blue chip is not made part of a pump.
        """
        p = self.p
        key = f"{sym.market}:{sym.symbol}"
        span = p.window_minutes * 60
        touch_window(sym.suspicious, account, now, span, 200)
        if compromised:
            touch_window(sym.compromised, account, now, span, 200)
        elif sym.compromised and run_last(sym.compromised.get(account, now)) <= now:
            sym.compromised.pop(account, None)  # (a late buy's session says nothing of later)
        # one account fewer where fewer can move the price: a symbol whose bars already depart
        # from their usual volume, or one this order alone could move (a small broker's pump
        # may have only two victims buying)
        need = p.min_accounts - (1 if sym.bars < 0 or thin else 0)
        if thin and (liquidated or compromised):
            # the pump's own signature: a hijacked account (or one that just sold everything)
            # buying, for the first time, what one order can move
            need = 1
        camp = self._get(sym.campaign)
        # the compromised count twice; a late buy counts the buys of its window, not later ones
        if camp is None and window_reaches(sym.suspicious, now, span, need, sym.compromised):
            camp = self._new(now, "symbol", key)
        if camp is None and thin:
            camp = self._linked(session_campaign, now)
        if camp is not None:
            if not sym.campaign:
                sym.campaign = camp.id
                self._contained("symbol", key, camp.id)
            self._add(camp, camp.symbols, key, now, "symbol")
            for member in sym.suspicious:
                self._add(camp, camp.accounts, member, now, "account")

    def _linked(self, cid: str, now: float) -> CampaignState | None:
        """The campaign a session was linked to by its infrastructure.

        When campaigns are detected in a separate stage sharded by key (see
        :mod:`brokerguard.engine.stage`), the campaign may have been raised in another shard:
        it is then started here under the same id, and the records of both shards name it.
        """
        if not cid:
            return None
        camp = self._get(cid)
        if camp is not None and dismissed(camp):
            return None  # an analyst said it is not an attack: nothing joins it any more
        if camp is None and self.aliases:
            camp = CampaignState(id=cid, raised_at=now, updated_at=now, timeline=[])
            self.state.put("campaign", cid, camp)
        return camp

    def symbol_signal(
        self, campaign: str, key: str, sess: SessionState | None, liquidated: bool
    ) -> Signal | None:
        """Containment: a doubtful buy of a campaign's symbol from a session not proven the
        customer's gets a signal; a trusted session buying the same symbol does not."""
        trusted = sess is not None and sess.trusted
        doubtful = sess is None or sess.llr > 1.0 or sess.hijack > 0 or liquidated
        if campaign and not trusted and doubtful:
            return Signal(
                "campaign_symbol", self.p.symbol_llr, {"campaign": campaign, "symbol": key}
            )
        return None

    def fill(self, sym: SymbolState, account: str, side: str, price: float, now: float) -> None:
        """Match a suspicious buyer's fill to the sell it met (same instrument, time and price).

        Executions do not name the other side, but a fill at the same second and price as a sell
        fill is its counterpart. A seller matched with several suspicious buyers is the likely
        owner of the pump — the criminals' own account — and raises a campaign if none exists.

        The two fills of one trade come in either order (a broker's log writes the buyer's line
        first as often as the seller's, and a shipper may deliver either late): a suspicious buy
        no sell was found for waits among ``unmatched`` for the sell that may follow it, and
        each buy is matched once. A sell matches every buy waiting for it, as each of those buys
        would have matched it had the sell come first: one sell order can fill several buyers.
        """
        if side == "sell":
            _keep(sym.sells, (now, price, account))
            waiting = [
                fill
                for fill in sym.unmatched
                if abs(fill[0] - now) <= MATCH_S and fill[1] == price and fill[2] != account
            ]
            if waiting:
                sym.unmatched = [fill for fill in sym.unmatched if fill not in waiting]
                for _, _, buyer in waiting:
                    self._matched(sym, account, buyer, now)
            return
        if account not in sym.suspicious:
            return
        for t, p, seller in reversed(sym.sells):
            if abs(t - now) <= MATCH_S and p == price and seller != account:
                self._matched(sym, seller, account, now)
                return
        _keep(sym.unmatched, (now, price, account))

    def _matched(self, sym: SymbolState, seller: str, buyer: str, now: float) -> None:
        """A suspicious buyer met this seller: a seller met by two raises a campaign."""
        buyers = sym.counterparties.setdefault(seller, [])
        if buyer not in buyers:
            buyers.append(buyer)
            del buyers[:-50]
        camp = self._get(sym.campaign)
        if camp is None and len(buyers) >= 2:
            camp = self._new(now, "counterparty", seller)
            sym.campaign = camp.id
            self._contained("symbol", f"{sym.market}:{sym.symbol}", camp.id)
            self._add(camp, camp.symbols, f"{sym.market}:{sym.symbol}", now, "symbol")
        if camp is not None:
            self._add(camp, camp.counterparties, seller, now, "counterparty")
            self._add(camp, camp.accounts, buyer, now, "account")

    def bar(self, sym: SymbolState, bar: MarketBar, end: float) -> None:
        """Keep the symbol's usual intraday volume; a bar far above it marks a departure.

        ``end`` is when the bar ended. A bar that ended before the latest one taken (delivered
        late) is old news: its volume joins the usual level, but it neither marks a departure
        nor ends one (an ordinary bar from before a pump, delivered after it, ended it)."""
        if bar.minutes >= 1440:
            return
        usual = sym.bar_volume
        if end >= sym.bar_at:
            sym.bar_at = end
            if usual > 0 and bar.volume > self.p.volume_multiple * usual and bar.close > bar.open:
                sym.bars = -1  # departing: campaigns on this symbol need one account fewer
            else:
                sym.bars = max(sym.bars, 0) + 1
        sym.bar_volume = bar.volume if usual == 0 else 0.9 * usual + 0.1 * bar.volume

    # --- output ---------------------------------------------------------------------------
    def records(self, iso) -> Iterator[dict[str, Any]]:
        """Lines not yet written: one each time a campaign took on a symbol.

        Each line is the campaign as of that moment, with ``raised_at`` the moment itself, so a
        symbol added late is never credited with the campaign's earlier start.
        """
        for cid in sorted(self.state.keys("campaign")):
            camp: CampaignState = self.state.get("campaign", cid)
            if camp.written >= len(camp.timeline):
                continue
            new = camp.timeline[camp.written :]
            camp.written = len(camp.timeline)
            self.state.put("campaign", cid, camp)
            for at, what, detail in new:
                if what != "symbol":
                    continue
                symbols = camp.symbols[: camp.symbols.index(detail) + 1]
                yield {
                    "id": camp.id,
                    "raised_at": iso(at),
                    "first_raised_at": iso(camp.raised_at),
                    "symbols": [
                        {"market": s.split(":", 1)[0], "symbol": s.split(":", 1)[1]}
                        for s in symbols
                    ],
                    "accounts": list(camp.accounts),
                    "infrastructure": list(camp.infrastructure),
                    "counterparties": list(camp.counterparties),
                }


class StagedCampaigns(CampaignWatch):
    """An account stage's side of campaign detection run as a stage of its own.

    When accounts are split over partitions (the cluster), no partition sees all buyers of a
    symbol or all sign-ins from an address. Each partition's engine then *sends* what the
    campaign detector needs — risky sign-ins, suspicious first-time buys, fills, bars — through
    its :class:`~brokerguard.engine.stage.StageLink`, and *reads* containment (which symbols
    and which infrastructure are under a campaign) from the link's view, which the campaign
    stage fills one epoch later (see :mod:`brokerguard.engine.stage`). It raises no campaign
    itself.
    """

    def __init__(
        self, state: State, params: CampaignParams, link: StageLink, infrastructure_span=DAY
    ) -> None:
        super().__init__(state, params, infrastructure_span)
        self.link = link

    def risky_login(self, account: str, entities: list[tuple[str, EntityState]], now: float) -> str:
        keys = tuple(key for key, _ in entities)
        self.link.send("risky", account=account, keys=keys, at=now)
        return self.infrastructure_of(keys)

    def dismiss(self, cid: str, now: float) -> None:
        """An analyst dismissed a campaign: the stage frees its keys (from the next epoch on,
        as containment starts). Every partition hears the dismissal; one passes it on."""
        if self.link.emit_market:
            self.link.send("dismiss", campaign=cid, at=now)

    def _live(self, cid: str) -> str:
        return "" if cid in self.link.released else cid

    def infrastructure_signal(self, sess: SessionState | None) -> Signal | None:
        if sess is not None and self._live(sess.campaign):
            return super().infrastructure_signal(sess)
        return None

    def cleared(self, account: str, keys: tuple[str, ...]) -> None:
        self.link.send("clear", account=account, keys=keys)

    def infrastructure_of(self, keys: tuple[str, ...]) -> str:
        entities = self.link.entities
        for key in keys:
            cid = entities.get(key)
            if cid:
                return cid
        return ""

    def buy(
        self,
        account: str,
        sym: SymbolState,
        sess: SessionState | None,
        first_time: bool,
        thin: bool,
        suspicion: float,
        now: float,
        liquidated: bool = False,
    ) -> Signal | None:
        key = f"{sym.market}:{sym.symbol}"
        suspicious, compromised = self.classify_buy(sess, first_time, suspicion, liquidated)
        if suspicious:
            # kept here too: only this account's own fills of the symbol need to go out
            touch_window(sym.suspicious, account, now, self.p.window_minutes * 60, 200)
            self.link.send(
                "buy",
                account=account,
                symbol=key,
                compromised=compromised,
                thin=thin,
                liquidated=liquidated,
                campaign=self._live(sess.campaign) if sess is not None else "",
                at=now,
            )
        return self.symbol_signal(self.link.symbols.get(key, ""), key, sess, liquidated)

    def fill(self, sym: SymbolState, account: str, side: str, price: float, now: float) -> None:
        if side == "sell" or account in sym.suspicious:
            key = f"{sym.market}:{sym.symbol}"
            self.link.send("fill", account=account, symbol=key, side=side, price=price, at=now)

    def bar(self, sym: SymbolState, bar: MarketBar, end: float) -> None:
        if self.link.emit_market and bar.minutes < 1440:
            self.link.send(
                "bar",
                symbol=f"{sym.market}:{sym.symbol}",
                minutes=bar.minutes,
                volume=float(bar.volume),
                open=bar.open,
                close=bar.close,
                at=bar.ts.timestamp(),
            )

    def records(self, iso) -> Iterator[dict[str, Any]]:
        return iter(())  # the campaign stage writes the campaigns
