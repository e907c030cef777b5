"""Trading: the 2025 pattern (sell-off, then a thin foreign small cap at a rising limit) is held in
a risky session, while the same orders from the customer's own familiar session go through."""

from __future__ import annotations

from engine_helpers import ALIBABA_HK, OCN, TENCENT_CN, Rig, attacker_ua, device, ip_in

TOYOTA, MUFG, NTT = "TSE:7203", "TSE:8306", "TSE:9432"
THIN_HK = "HK:8371"  # a GEM small cap: ¥12, 150k shares a day
THIN_JP = "TSE:2929"  # a Growth-market small cap: ¥95, 300k shares a day
HOLDINGS = {TOYOTA: 500, MUFG: 1000, NTT: 2000}  # ¥3.5M; Toyota + MUFG are 91% of it
SELL_OFF = ((TOYOTA, 500, 2790.0), (MUFG, 1000, 1795.0))


def market(r: Rig) -> None:
    r.instrument("TSE", "7203", 2800.0, 20_000_000, 45e12)
    r.instrument("TSE", "8306", 1800.0, 30_000_000, 22e12)
    r.instrument("TSE", "9432", 150.0, 100_000_000, 14e12)
    r.instrument("TSE", "2929", 95.0, 300_000, 3e9, segment="Growth")
    r.instrument("HK", "8371", 12.0, 150_000, 4e9, currency="HKD", segment="GEM", lot=2000)


def customer(r: Rig, account: str = "A1", seed: int = 1) -> tuple[str, str, str]:
    """A customer with a history at home and holdings; returns (home ip, ua, cookie)."""
    home, ua, cookie = ip_in(OCN, seed), device(seed), f"ck-{account}"
    r.history(account, home, ua, cookie)
    r.holdings(account, 200_000, HOLDINGS)
    r.tick(days=1)
    return home, ua, cookie


def sell_off(r: Rig, account: str, sess: str, ip: str, ua: str, expect: str = "allow") -> list[str]:
    """Sell Toyota and MUFG; each sell must get ``expect`` (and fills if allowed)."""
    ids = []
    for key, qty, price in SELL_OFF:
        r.tick(minutes=1)
        oid, d = r.order(account, sess, key, "sell", qty, price, ip=ip, ua=ua)
        assert d.action == expect, (key, d)
        if d.action == "allow":
            r.execution(account, oid, key, "sell", qty, price)
        ids.append(oid)
    return ids


def pump_buy(r: Rig, account: str, sess: str, ip: str, ua: str):
    r.tick(minutes=2)
    return r.order(account, sess, THIN_HK, "buy", 100_000, 15.6, ip=ip, ua=ua)  # 30% above


PATTERN = {"liquidation_then_buy", "illiquid_symbol", "limit_above_market"}


def test_a_stolen_session_replayed_from_a_cloud_server_cannot_sell_or_buy():
    r = Rig()
    market(r)
    _, ua, cookie = customer(r)
    thief = ip_in(ALIBABA_HK, 1)
    # an infostealer's copy of the remember-me cookie, replayed from a cloud server
    r.activity("A1", "stolen", thief, ua, cookie, action="portfolio")
    assert r.session_state("A1", "stolen").llr > 0
    sells = sell_off(r, "A1", "stolen", thief, ua, expect="hold")
    assert r.llr(sells[-1], "session_risk") > 0
    oid, d = pump_buy(r, "A1", "stolen", thief, ua)
    assert d.action == "hold"
    assert {"illiquid_symbol", "limit_above_market", "first_in_market"} <= r.codes(oid)


def test_sell_off_then_thin_foreign_buy_far_above_market_in_a_doubtful_session_is_held():
    r = Rig()
    market(r)
    _, ua, cookie = customer(r)
    # the customer's own browser and cookie from a new address: doubtful, not damning
    eid, d = r.login("A1", ip_in(OCN, 77), ua, cookie)
    assert d.action == "allow"
    sess = r.session_of(eid)
    sells = sell_off(r, "A1", sess, ip_in(OCN, 77), ua)
    assert r.llr(sells[-1], "liquidation") > 0
    oid, d = pump_buy(r, "A1", sess, ip_in(OCN, 77), ua)
    assert d.action == "hold"
    assert r.codes(oid) >= PATTERN
    assert "first_in_market" in r.codes(oid)
    named = {reason.code for reason in d.reasons}
    assert "liquidation_then_buy" in named


def test_after_a_relayed_otp_the_session_is_not_trusted_and_the_sell_off_is_held_at_once():
    r = Rig()
    market(r)
    customer(r)
    proxy, ua = ip_in(TENCENT_CN, 2), attacker_ua(2)
    eid, d = r.login("A1", proxy, ua, None)
    assert d.action == "challenge"
    r.challenge("A1", eid, "sms", "passed", session=r.session_of(eid))  # the phished code
    r.tick(minutes=1)
    oid, d = r.order("A1", r.session_of(eid), TOYOTA, "sell", 500, 2790.0, ip=proxy, ua=ua)
    assert d.action == "hold"
    assert r.llr(oid, "session_risk") > 0


def test_the_same_orders_from_the_customers_familiar_session_go_through():
    # a retail-frenzy buyer: sells blue chips to chase a thin small cap, from home, as always
    r = Rig()
    market(r)
    home, ua, cookie = customer(r)
    eid, d = r.login("A1", home, ua, cookie)
    assert d.action == "allow"
    sess = r.session_of(eid)
    sell_off(r, "A1", sess, home, ua)
    oid, d = pump_buy(r, "A1", sess, home, ua)
    assert d.action == "allow"
    assert r.codes(oid) >= PATTERN  # the trading signals fire; the session outweighs them
    assert r.llr(oid, "session_risk") < 0


def test_a_familiar_session_selling_ninety_percent_of_the_holdings_is_allowed():
    r = Rig()
    market(r)
    home, ua, cookie = customer(r)
    eid, _ = r.login("A1", home, ua, cookie)
    sells = sell_off(r, "A1", r.session_of(eid), home, ua)  # asserts every sell is allowed
    assert r.signal(sells[0], "liquidation") is None  # Toyota alone is 40%
    assert r.llr(sells[1], "liquidation") > 0  # with MUFG, 91%


def test_a_liquid_symbol_near_the_last_price_carries_no_thinness_or_limit_signal():
    r = Rig()
    market(r)
    home, ua, cookie = customer(r)
    eid, _ = r.login("A1", home, ua, cookie)
    oid, d = r.order("A1", r.session_of(eid), TOYOTA, "buy", 100, 2805.0, ip=home, ua=ua)
    assert d.action == "allow"
    assert r.signal(oid, "illiquid_symbol") is None
    assert r.signal(oid, "limit_above_market") is None
    assert r.signal(oid, "first_in_symbol") is None  # it is held already


def test_thinner_symbols_and_higher_limits_weigh_more():
    r = Rig()
    market(r)
    home, ua, cookie = customer(r)
    eid, _ = r.login("A1", home, ua, cookie)
    sess = r.session_of(eid)
    hk, _ = r.order("A1", sess, THIN_HK, "buy", 10_000, 12.0 * 1.10, ip=home, ua=ua)
    jp, _ = r.order("A1", sess, THIN_JP, "buy", 1_000, 95.0 * 1.20, ip=home, ua=ua)
    # ¥1.8M a day is thinner than ¥28.5M a day
    assert r.llr(hk, "illiquid_symbol") > r.llr(jp, "illiquid_symbol") > 0
    assert r.llr(jp, "limit_above_market") > r.llr(hk, "limit_above_market") > 0


def test_an_execution_moves_the_reference_for_the_limit():
    r = Rig()
    market(r)
    home, ua, cookie = customer(r)
    eid, _ = r.login("A1", home, ua, cookie)
    sess = r.session_of(eid)
    first, _ = r.order("A1", sess, THIN_JP, "buy", 1_000, 114.0, ip=home, ua=ua)
    r.execution("A1", first, THIN_JP, "buy", 1_000, 112.0)  # the price ran up to ¥112
    second, _ = r.order("A1", sess, THIN_JP, "buy", 1_000, 114.0, ip=home, ua=ua)
    assert r.llr(first, "limit_above_market") > 0
    assert r.signal(second, "limit_above_market") is None
    assert r.signal(second, "first_in_symbol") is None  # bought now


def test_first_purchase_in_a_market_only_once():
    r = Rig()
    market(r)
    home, ua, cookie = customer(r)
    eid, _ = r.login("A1", home, ua, cookie)
    sess = r.session_of(eid)
    first, d = r.order("A1", sess, THIN_HK, "buy", 2_000, 12.0, ip=home, ua=ua)
    assert d.action == "allow"
    again, _ = r.order("A1", sess, THIN_HK, "buy", 2_000, 12.0, ip=home, ua=ua)
    assert r.llr(first, "first_in_market") > 0 and r.llr(first, "first_in_symbol") > 0
    assert r.signal(again, "first_in_market") is None
    assert r.signal(again, "first_in_symbol") is None


def test_an_order_far_larger_than_the_accounts_usual_orders_is_unusual():
    r = Rig()
    market(r)
    home, ua, cookie = customer(r)
    eid, _ = r.login("A1", home, ua, cookie)
    sess = r.session_of(eid)
    for qty in (100, 120, 90, 110, 100, 130):  # ¥250k-¥360k, as usual
        r.tick(minutes=5)
        _, d = r.order("A1", sess, TOYOTA, "buy", qty, 2800.0, ip=home, ua=ua)
        assert d.action == "allow"
    usual, _ = r.order("A1", sess, TOYOTA, "buy", 115, 2800.0, ip=home, ua=ua)
    huge, _ = r.order("A1", sess, TOYOTA, "buy", 10_000, 2800.0, ip=home, ua=ua)  # ¥28M
    assert r.signal(usual, "unusual_size") is None
    assert r.llr(huge, "unusual_size") > 0


def test_first_margin_order_is_a_signal_once():
    r = Rig()
    market(r)
    home, ua, cookie = customer(r)
    eid, _ = r.login("A1", home, ua, cookie)
    sess = r.session_of(eid)
    first, d = r.order("A1", sess, TOYOTA, "buy", 100, 2800.0, ip=home, ua=ua, margin=True)
    assert d.action == "allow"
    again, _ = r.order("A1", sess, TOYOTA, "buy", 100, 2800.0, ip=home, ua=ua, margin=True)
    assert r.llr(first, "margin_first_use") > 0
    assert r.signal(again, "margin_first_use") is None


def test_an_order_whose_value_overflows_does_not_spoil_the_accounts_usual_size():
    """Quantity and limit are each within what an event may carry, but their product can exceed
    a float (inf): such an order is unusual, and it must not teach the account a size of inf or
    NaN, after which no later order could ever be unusual again."""
    r = Rig()
    market(r)
    home, ua, cookie = customer(r)
    eid, _ = r.login("A1", home, ua, cookie)
    sess = r.session_of(eid)
    for qty in (100, 120, 90, 110, 100, 130):
        r.tick(minutes=5)
        r.order("A1", sess, TOYOTA, "buy", qty, 2800.0, ip=home, ua=ua)
    overflow, d = r.order("A1", sess, TOYOTA, "buy", 2**62, 1e300, ip=home, ua=ua)
    assert r.llr(overflow, "unusual_size") > 0
    if d.action != "allow":
        r.challenge("A1", overflow, "oob", "passed", session=sess)
    huge, _ = r.order("A1", sess, TOYOTA, "buy", 10_000, 2800.0, ip=home, ua=ua)  # ¥28M
    assert r.llr(huge, "unusual_size") > 0


def test_an_order_delivered_twice_is_decided_once_and_its_sale_counted_once():
    """A broker's system that retries after a timeout sends the same order event again: the
    engine answers as it did and learns nothing twice. Toyota is 40% of the holdings; counted
    twice it made 80%, a liquidation the customer never made."""
    from brokerguard.events import Order

    r = Rig()
    market(r)
    home, ua, cookie = customer(r)
    eid, _ = r.login("A1", home, ua, cookie)
    sess = r.session_of(eid)
    oid, first = r.order("A1", sess, TOYOTA, "sell", 500, 2790.0, ip=home, ua=ua)
    assert r.signal(oid, "liquidation") is None
    again = Order(
        id=oid,
        ts=r.now,
        account="A1",
        session=sess,
        order_id=f"o-{oid}",
        symbol="7203",
        market="TSE",
        side="sell",
        quantity=500,
        price_type="limit",
        limit_price=2790.0,
        ip=home,
        user_agent=ua,
    )
    assert r.engine.decide(again) is first
    r.tick(minutes=1)
    nid, _ = r.order("A1", sess, NTT, "sell", 100, 165.0, ip=home, ua=ua)
    assert r.signal(nid, "liquidation") is None  # 40% and a little: no liquidation
