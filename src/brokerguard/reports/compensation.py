"""The compensation calculator: each victim's loss from fills and prices, paid under a policy.

The loss is what the fraud did to the account, measured at a valuation date (default: the last
day of the stream), from the account's unauthorized fills and the valuation prices of
:mod:`.prices`. Per symbol:

- **buy loss** — shares the fraud bought: their cost minus their value at the valuation price.
  The victim is left holding overpriced illiquid stock; if it rose instead, there is no loss.
- **sale loss** — holdings the fraud sold: their value at the valuation price minus the
  proceeds. If the price rose since, the customer lost that upside; if it fell, the sale did
  not hurt and the loss is zero.
- shares the fraud bought and sold again (or sold and bought back) are settled at the two
  prices: what was paid minus what was received. A symbol is settled as a whole, so a gain on
  one part of it offsets a loss on another: a holding sold and partly bought back below the
  sale price has that gain set against the sale loss of the shares not bought back (the
  customer has the difference in cash), and a round trip's loss is counted as buy loss.
- **fees** — the commission of each unauthorized order, by the policy file's fee schedule
  (fills do not carry fees).
- **withdrawn** — unauthorized withdrawals the broker paid out.

A gain on one symbol never offsets a loss on another: each position the fraud created or
destroyed is settled on its own, as a firm reverses trades line by line. Together, for a victim
whose sale proceeds paid for the buys, buy loss + sale loss + fees is exactly what restores the
account to its state before the fraud.

A policy (:mod:`.policies`) then pays shares of those components plus a fixed sum; a policy
that requires buys pays nothing to a victim whose account saw only sales. Every row explains
its figures in Japanese and English, for the analyst and for the letter to the customer.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path

import msgspec

from brokerguard.events import ChallengeResult, Execution, Order, SeenOnce, Withdrawal
from brokerguard.files import replaced
from brokerguard.money import yen, yen_sum
from brokerguard.reports.errors import ReportError
from brokerguard.reports.labels import FraudLabels
from brokerguard.reports.policies import CompensationPolicy
from brokerguard.reports.prices import JST, PriceBook, ValuationPrice
from brokerguard.reports.run import (
    DECISIONS,
    events_path,
    let_through,
    read_decisions,
    read_events,
    run_labels,
)

__all__ = [
    "COMPENSATION_COLUMNS",
    "CompensationRow",
    "LossReport",
    "PositionLoss",
    "VictimLoss",
    "compensate",
    "compensation_table",
    "victim_losses",
    "write_compensation_csv",
]


def _jpy(value: float) -> str:
    return f"¥{yen(value):,}"


def _price(value: float) -> str:
    text = f"{value:,.2f}".rstrip("0").rstrip(".")
    return f"¥{text}"


class PositionLoss(msgspec.Struct, frozen=True, kw_only=True):
    """What the fraud did to one symbol of one account.

    ``bought``/``sold``: shares the fraud bought and sold, for ``cost_jpy``/``proceeds_jpy``;
    ``price``: the valuation price. ``buy_loss_jpy`` and ``sale_loss_jpy`` are never negative.
    """

    market: str
    symbol: str
    bought: int
    cost_jpy: float
    sold: int
    proceeds_jpy: float
    price: ValuationPrice
    buy_loss_jpy: float
    sale_loss_jpy: float

    def explain(self, lang: str) -> list[str]:
        """One sentence per side, in ``en`` or ``ja``."""
        name = f"{self.market}:{self.symbol}"
        matched = min(self.bought, self.sold)
        held_b = self.bought - matched
        held_s = self.sold - matched
        round_trip, rest = _sides(
            self.bought, self.cost_jpy, self.sold, self.proceeds_jpy, self.price.price
        )
        # sold, some bought back: a gain on one part set against a loss on the other
        bought_back_cheaper = held_s > 0 and round_trip < 0 < rest
        bought_back_dearer = held_s > 0 and rest < 0 < round_trip
        price = _price(self.price.price)
        at_en = f"at {price} ({self.price.describe('en')})"
        at_ja = f"（{self.price.describe('ja')} {price}）"
        lines = []
        if self.bought:
            worth = _jpy(held_b * self.price.price)
            loss = _jpy(self.buy_loss_jpy) if self.buy_loss_jpy > 0 else None
            if lang == "ja":
                text = f"{name} {self.bought:,}株を{_jpy(self.cost_jpy)}で不正買付"
                if matched:
                    text += f"（うち{matched:,}株は不正売却分と相殺し売却価格で精算）"
                    if held_b:
                        text += f"、残り{held_b:,}株"
                if held_b:
                    text += f"の評価額{worth}{at_ja}" if matched else f"、評価額{worth}{at_ja}"
                if bought_back_dearer:
                    text += f"：売却価格より{_jpy(round_trip)}高く"
                    text += f"、下記の売却後の値下がり{_jpy(-rest)}と相殺"
                text += f"：損失{loss}" if loss else "：損失なし"
                if bought_back_cheaper:
                    text += f"（売却価格より{_jpy(-round_trip)}安く、下記の売却損失と相殺）"
            else:
                text = f"bought {self.bought:,} {name} for {_jpy(self.cost_jpy)}"
                if matched:
                    text += f", {matched:,} offset by shares the fraud sold (at the sale price)"
                    if held_b:
                        text += f", the other {held_b:,}"
                if held_b:
                    text += f" worth {worth} {at_en}" if matched else f", worth {worth} {at_en}"
                if bought_back_dearer:
                    text += f": {_jpy(round_trip)} above the sale price, less the"
                    text += f" {_jpy(-rest)} the price fell since the sale (below)"
                text += f": loss {loss}" if loss else ": no loss"
                if bought_back_cheaper:
                    text += f" ({_jpy(-round_trip)} below the sale price, set against the sale"
                    text += " loss below)"
            lines.append(text)
        if held_s:
            received = self.proceeds_jpy * held_s / self.sold
            proceeds = _jpy(received)
            worth = _jpy(held_s * self.price.price)
            loss = _jpy(self.sale_loss_jpy) if self.sale_loss_jpy > 0 else None
            # no loss: the shares are worth less than they were sold for, or the same
            fell = yen(held_s * self.price.price) < yen(received)
            if lang == "ja":
                text = f"{name} {held_s:,}株を{proceeds}で不正売却、評価額{worth}{at_ja}"
                if bought_back_cheaper:
                    text += f"：値上がり分{_jpy(rest)}から買い戻し差益{_jpy(-round_trip)}を差し引き"
                    text += f"損失{loss}" if loss else "損失なし"
                else:
                    why = "値下がりのため" if fell else "値上がりしていないため"
                    text += f"：損失{loss}" if loss else f"：{why}損失なし"
            else:
                text = f"sold {held_s:,} {name} for {proceeds}, worth {worth} {at_en}"
                if bought_back_cheaper:
                    text += f": {_jpy(rest)} upside less the {_jpy(-round_trip)} gained buying"
                    text += " back below the sale price"
                    text += f": loss {loss}" if loss else ": no loss"
                else:
                    why = "the price fell" if fell else "the price did not rise"
                    text += f": loss {loss}" if loss else f": no loss ({why})"
            lines.append(text)
        return lines


class VictimLoss(msgspec.Struct, frozen=True, kw_only=True):
    """One victim's damage, before any policy: positions, orders and withdrawals paid out.

    ``orders`` are ``(market, executed value)`` of each unauthorized order with fills, which a
    policy's fee schedule turns into fees.
    """

    account: str
    positions: list[PositionLoss] = []
    orders: list[tuple[str, float]] = []
    withdrawn_jpy: float = 0.0

    @property
    def buy_loss_jpy(self) -> int:
        return yen_sum(p.buy_loss_jpy for p in self.positions)

    @property
    def sale_loss_jpy(self) -> int:
        return yen_sum(p.sale_loss_jpy for p in self.positions)

    @property
    def bought(self) -> bool:
        """Whether any unauthorized buy was executed (what sales-only exclusions look at)."""
        return any(p.bought for p in self.positions)


class LossReport(msgspec.Struct, frozen=True, kw_only=True):
    """The losses of every victim with damage, at one valuation date (Japan time).

    ``valuation_date`` is None only when the stream holds no event and no date was given:
    there is nothing to value (no victim either) and no day to name.
    """

    valuation_date: date | None
    victims: list[VictimLoss] = []


def _sides(
    bought: int, cost: float, sold: int, proceeds: float, price: float
) -> tuple[float, float]:
    """``(round trip, open)``: what the shares bought and sold again cost the account (what was
    paid minus what was received, at the two average prices), and what the rest did, valued at
    ``price`` (bought: cost minus value; sold: value minus proceeds). Negative is a gain."""
    matched = min(bought, sold)
    round_trip = matched * (cost / bought - proceeds / sold) if matched else 0.0
    if bought >= sold:
        return round_trip, (bought - matched) * (cost / bought - price) if bought else 0.0
    return round_trip, (sold - matched) * (price - proceeds / sold)


def _position(
    market: str, symbol: str, fills: list[tuple[str, int, float]], price: ValuationPrice
) -> PositionLoss:
    bought = sum(q for side, q, _ in fills if side == "buy")
    cost = sum(v for side, _, v in fills if side == "buy")
    sold = sum(q for side, q, _ in fills if side == "sell")
    proceeds = sum(v for side, _, v in fills if side == "sell")
    # One symbol is settled as a whole: what restores it is cost − proceeds + the shares the
    # fraud took out (sold − bought) at the valuation price, and a gain on one part of it
    # offsets a loss on another (never a loss on another symbol).
    round_trip, rest = _sides(bought, cost, sold, proceeds, price.price)
    total = max(0.0, round_trip + rest)
    if bought >= sold:
        buy_loss, sale_loss = total, 0.0
    else:
        # Sold, and some bought back: the shares not bought back are the sale loss (the upside
        # lost), less what buying back below the sale price gained; buying back above it is a
        # buy loss, less what the rest's price fell below the sale price.
        sale_loss = max(0.0, rest + min(round_trip, 0.0))
        buy_loss = max(0.0, total - sale_loss)
    return PositionLoss(
        market=market,
        symbol=symbol,
        bought=bought,
        cost_jpy=cost,
        sold=sold,
        proceeds_jpy=proceeds,
        price=price,
        buy_loss_jpy=buy_loss,
        sale_loss_jpy=sale_loss,
    )


def victim_losses(
    run_dir: Path,
    labels: FraudLabels | None = None,
    *,
    valuation_date: date | None = None,
    decisions: Path | None = None,
) -> LossReport:
    """Every damaged victim's losses, from one pass over the run's events.

    ``valuation_date`` defaults to the last day of the stream: the Japan date of the last
    event, or of the latest close the stream announces if that is known later (a daily bar
    stamped at the start of a New York day closes the next morning in Japan), so that the
    default values every position at the prices an explicit date of that day would. A date
    before the last unauthorized fill is a :class:`ReportError` on the field
    ``valuation_date``, saying the first date that would do: those shares cannot be valued
    before they were bought.
    """
    run_dir = Path(run_dir)
    path = events_path(run_dir)
    if labels is None:
        labels = run_labels(run_dir)
    records = read_decisions(decisions or run_dir / DECISIONS, labels.events)

    book = PriceBook(valuation_date)
    last: datetime | None = None
    results: dict[str, list[ChallengeResult]] = defaultdict(list)
    ordered: set[tuple[str, str]] = set()
    fills: list[Execution] = []
    withdrawals: list[Withdrawal] = []
    once = SeenOnce()
    for event in read_events(path):
        if last is None or event.ts > last:
            last = event.ts
        book.observe(event)
        if isinstance(event, ChallengeResult):
            if event.ref in labels.events:
                results[event.ref].append(event)
        elif isinstance(event, Order):
            if event.id in labels.events and event.action == "new":
                ordered.add((event.account, event.order_id))
        elif isinstance(event, Execution):
            if event.account in labels.accounts and once.first(event.id):
                fills.append(event)
        elif isinstance(event, Withdrawal) and event.id in labels.events and once.first(event.id):
            withdrawals.append(event)
    if last is None:
        return LossReport(valuation_date=valuation_date)
    day = valuation_date
    if day is None:
        known = last if book.last_known is None else max(last, book.last_known)
        day = known.astimezone(JST).date()

    unauthorized = (
        labels.orders | ordered | {(f.account, f.order_id) for f in fills if f.id in labels.events}
    )
    by_symbol: dict[str, dict[tuple[str, str], list[tuple[str, int, float]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    order_values: dict[str, dict[str, tuple[str, float]]] = defaultdict(dict)
    latest = max(
        (f for f in fills if (f.account, f.order_id) in unauthorized),
        key=lambda f: f.ts,
        default=None,
    )
    if latest is not None and latest.ts.astimezone(JST).date() > day:
        at = latest.ts.astimezone(JST)
        raise ReportError(
            f"{day} is before the last unauthorized fill ({at:%Y-%m-%d %H:%M} Japan time, "
            f"account {latest.account}, order {latest.order_id}); expected a date on or after "
            f"{at:%Y-%m-%d}",
            field="valuation_date",
        )
    for fill in fills:
        key = (fill.account, fill.order_id)
        if key not in unauthorized:
            continue
        by_symbol[fill.account][(fill.market, fill.symbol)].append(
            (fill.side, fill.quantity, fill.value_jpy)
        )
        market, value = order_values[fill.account].get(fill.order_id, (fill.market, 0.0))
        order_values[fill.account][fill.order_id] = (market, value + fill.value_jpy)
    withdrawn: dict[str, float] = defaultdict(float)
    for w in withdrawals:
        if let_through(records.get(w.id), results.get(w.id, [])):
            withdrawn[w.account] += w.amount_jpy

    victims = []
    for account in sorted(set(by_symbol) | set(withdrawn)):
        positions = []
        for (market, symbol), trades in sorted(by_symbol.get(account, {}).items()):
            price = book.price(market, symbol)
            assert price is not None  # the fill itself is a price on or before the date
            positions.append(_position(market, symbol, trades, price))
        orders = list(order_values.get(account, {}).values())
        victims.append(
            VictimLoss(
                account=account,
                positions=positions,
                orders=orders,
                withdrawn_jpy=withdrawn.get(account, 0.0),
            )
        )
    return LossReport(valuation_date=day, victims=victims)


class CompensationRow(msgspec.Struct, frozen=True, kw_only=True):
    """What one policy pays one victim, with the losses it was computed from (whole ¥).

    ``buy_loss_jpy``, ``sale_loss_jpy``, ``fees_jpy`` and ``withdrawn_jpy`` are the victim's
    losses whatever the policy; ``fixed_jpy`` is the policy's fixed payment; ``payout_jpy``
    what the policy pays (0 when ``eligible`` is false).
    """

    account: str
    policy: str
    valuation_date: date
    eligible: bool
    buy_loss_jpy: int
    sale_loss_jpy: int
    fees_jpy: int
    withdrawn_jpy: int
    fixed_jpy: int
    payout_jpy: int
    explanation_ja: str
    explanation_en: str


def _share(share: float) -> str:
    return f"{share:.0%}" if share * 100 == int(share * 100) else f"{share:.2%}"


def compensate(
    loss: VictimLoss, policy: CompensationPolicy, valuation_date: date
) -> CompensationRow:
    """What ``policy`` pays for ``loss``, explained in Japanese and English."""
    fees = sum(policy.fee(market, value) for market, value in loss.orders)
    buy, sale, withdrawn = loss.buy_loss_jpy, loss.sale_loss_jpy, yen(loss.withdrawn_jpy)
    basis_en = [line for p in loss.positions for line in p.explain("en")]
    basis_ja = [line for p in loss.positions for line in p.explain("ja")]
    if loss.orders:
        basis_en.append(f"fees {_jpy(fees)} on {len(loss.orders)} unauthorized orders")
        basis_ja.append(f"不正注文{len(loss.orders)}件の手数料{_jpy(fees)}")
    if withdrawn:
        basis_en.append(f"withdrawn {_jpy(withdrawn)}")
        basis_ja.append(f"不正出金{_jpy(withdrawn)}")

    eligible = loss.bought or not policy.require_buys
    parts_en: list[str] = []
    parts_ja: list[str] = []
    payout = 0
    if eligible:
        for share, amount, en, ja in (
            (policy.buy_loss_share, buy, "buy loss", "買付損失"),
            (policy.sale_loss_share, sale, "sale loss", "売却損失"),
            (policy.withdrawal_share, withdrawn, "withdrawn", "不正出金"),
        ):
            if share > 0 and amount > 0:
                part = yen(share * amount)
                payout += part
                rate = "" if share == 1 else f" × {_share(share)}"
                parts_en.append(f"{en} {_jpy(amount)}{rate}")
                parts_ja.append(f"{ja}{_jpy(amount)}{rate}")
        if policy.refund_fees and fees:
            payout += fees
            parts_en.append(f"fees {_jpy(fees)}")
            parts_ja.append(f"手数料{_jpy(fees)}")
        if policy.fixed_jpy:
            payout += yen(policy.fixed_jpy)
            parts_en.append(f"fixed {_jpy(policy.fixed_jpy)}")
            parts_ja.append(f"定額{_jpy(policy.fixed_jpy)}")
        formula_en = f"payout = {' + '.join(parts_en) or '¥0'} = {_jpy(payout)}"
        formula_ja = f"支払額 = {' + '.join(parts_ja) or '¥0'} = {_jpy(payout)}"
    else:
        formula_en = "not covered: this policy pays only when an unauthorized buy was executed"
        formula_ja = "対象外：この方針は不正な買付の約定があった場合のみ補償"
        if not withdrawn:
            formula_en += " (sales only: the proceeds stay in the account)"
            formula_ja += "（売却のみ。売却代金は口座内に残っています）"
    day = valuation_date.isoformat()
    return CompensationRow(
        account=loss.account,
        policy=policy.name,
        valuation_date=valuation_date,
        eligible=eligible,
        buy_loss_jpy=buy,
        sale_loss_jpy=sale,
        fees_jpy=fees,
        withdrawn_jpy=withdrawn,
        fixed_jpy=yen(policy.fixed_jpy) if eligible else 0,
        payout_jpy=payout,
        explanation_ja=f"評価日{day}。" + "。".join([*basis_ja, formula_ja]) + "。",
        explanation_en=f"Valued on {day}. " + "; ".join([*basis_en, formula_en]) + ".",
    )


def compensation_table(
    run_dir: Path,
    policies: Sequence[CompensationPolicy],
    labels: FraudLabels | None = None,
    *,
    valuation_date: date | None = None,
    decisions: Path | None = None,
) -> list[CompensationRow]:
    """One row per policy and damaged victim (policies in the given order, then accounts)."""
    report = victim_losses(run_dir, labels, valuation_date=valuation_date, decisions=decisions)
    return [
        compensate(loss, policy, report.valuation_date)
        for policy in policies
        for loss in report.victims
    ]


COMPENSATION_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("account", "口座", "account"),
    ("policy", "補償方針", "policy"),
    ("valuation_date", "評価日", "valuation date"),
    ("eligible", "対象", "eligible"),
    ("buy_loss_jpy", "買付損失（円）", "buy loss (JPY)"),
    ("sale_loss_jpy", "売却損失（円）", "sale loss (JPY)"),
    ("fees_jpy", "手数料（円）", "fees (JPY)"),
    ("withdrawn_jpy", "不正出金（円）", "withdrawn (JPY)"),
    ("fixed_jpy", "定額（円）", "fixed (JPY)"),
    ("payout_jpy", "補償額（円）", "payout (JPY)"),
    ("explanation_ja", "説明", "explanation (Japanese)"),
    ("explanation_en", "説明（英語）", "explanation (English)"),
)
"""(field, Japanese, English) of each CSV column."""


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""How a cell that a spreadsheet would run as a formula begins (OWASP's list)."""


def _text_cell(value: str) -> str:
    """``value`` as a spreadsheet shows it, never runs it: an account number comes from the
    broker's events, and one such as ``=HYPERLINK(...)`` would be a formula in Excel, where
    these files are opened; a leading ``'`` makes it text."""
    return "'" + value if value.startswith(_FORMULA_STARTS) else value


def write_compensation_csv(rows: Sequence[CompensationRow], path: Path) -> Path:
    """Write the rows as CSV: UTF-8 with BOM (for Excel), headers ``Japanese (English)``; text
    that would start a formula is quoted for the spreadsheet (:func:`_text_cell`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replaced(path, "w", encoding="utf-8-sig", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow([f"{ja} ({en})" for _, ja, en in COMPENSATION_COLUMNS])
        for row in rows:
            cells = []
            for name, _, _ in COMPENSATION_COLUMNS:
                value = getattr(row, name)
                if isinstance(value, bool):
                    value = "はい (yes)" if value else "いいえ (no)"  # as the headers are written
                elif isinstance(value, date):
                    value = value.isoformat()
                elif isinstance(value, str):
                    value = _text_cell(value)
                cells.append(value)
            writer.writerow(cells)
    return path
