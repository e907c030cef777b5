"""The clone-page canary: a hit marks its address, and later password sign-ins from there are
high-risk; the mark is bounded in time, survives the state file, and never blocks a passkey."""

from __future__ import annotations

from pathlib import Path

import pytest
from engine_helpers import DOCOMO, OCN, Rig, block, device, ip_in

from brokerguard.engine import BrokerGuard
from brokerguard.engine.state import EntityState
from brokerguard.events import CanaryHit, EventError, decode_line, encode
from brokerguard.stores import SqliteState
from brokerguard.stores.codec import decode as decode_record
from brokerguard.stores.codec import encode as encode_record

AWS_TOKYO = block("jp_hosting", "AWS Tokyo")
PHISH = "https://sbisec.example-phish.top"


def hit(r: Rig, ip: str, origin: str = PHISH) -> None:
    r.engine.observe(
        CanaryHit(id=r.new_id("canary"), ts=r.now, ip=ip, origin=origin, user_agent=device(90))
    )


def test_a_canary_hit_turns_a_later_password_sign_in_from_that_address_into_high_risk():
    """A residential proxy (a Japanese home line) looks like any new customer: allowed without
    the canary, challenged with passkey/oob only with it."""
    proxy = ip_in(OCN, 41)
    quiet = Rig()
    eid, before = quiet.login("N1", proxy, device(41), None)
    assert before.action == "allow" and quiet.signal(eid, "canary_proxy") is None

    r = Rig()
    hit(r, proxy)
    r.tick(minutes=4)
    eid, d = r.login("N1", proxy, device(41), None)
    assert d.action == "challenge"
    assert not {"sms", "email", "totp", "password"} & set(d.factors)
    assert d.score > 0.9 > before.score
    signal = r.signal(eid, "canary_proxy")
    assert signal is not None and signal.llr == r.engine.policy.detectors.login.canary_llr
    assert signal.evidence == {"key": f"ip:{proxy}", "origin": PHISH, "minutes": 4}
    assert d.reasons[0].code == "canary_proxy"
    assert "偽サイト" in d.reasons[0].ja and "copy of the broker's login page" in d.reasons[0].en


def test_a_hosting_proxy_marks_its_network_but_a_home_isp_marks_only_the_address():
    r = Rig()
    hit(r, ip_in(AWS_TOKYO, 1))
    hit(r, ip_in(DOCOMO, 1))
    r.tick(minutes=10)
    same_cloud, _ = r.login("N2", ip_in(AWS_TOKYO, 2), device(2), None)
    assert ip_in(AWS_TOKYO, 2) != ip_in(AWS_TOKYO, 1)
    assert r.signal(same_cloud, "canary_proxy").evidence["key"].startswith("asn:")
    same_carrier, _ = r.login("N3", ip_in(DOCOMO, 2), device(3), None)
    assert r.signal(same_carrier, "canary_proxy") is None  # millions share a mobile carrier


def test_the_mark_expires_after_the_window_and_the_sweep_forgets_it():
    r = Rig()
    proxy = ip_in(AWS_TOKYO, 7)
    hit(r, proxy)
    r.tick(hours=23)
    eid, _ = r.login("N4", proxy, device(4), None)
    assert r.signal(eid, "canary_proxy") is not None
    r.tick(hours=2)
    eid, _ = r.login("N5", proxy, device(5), None)
    assert r.signal(eid, "canary_proxy") is None
    r.tick(hours=24)
    r.engine.sweep(r.now.timestamp())
    kept = r.engine.state.get("entity", f"ip:{proxy}")
    assert kept is None or kept.canary < r.now.timestamp() - 24 * 3600


def test_the_sweep_keeps_a_fresh_mark_even_when_the_address_has_nothing_else():
    r = Rig()
    proxy = ip_in(AWS_TOKYO, 8)
    hit(r, proxy)
    r.tick(hours=2)
    r.engine.sweep(r.now.timestamp())
    assert r.engine.state.get("entity", f"ip:{proxy}").canary > 0


def test_a_passkey_sign_in_from_a_marked_address_is_still_allowed():
    """The passkey is origin-bound: whoever presents it holds the enrolled authenticator."""
    r = Rig()
    proxy = ip_in(OCN, 42)
    hit(r, proxy)
    _, d = r.login("N6", proxy, device(6), None, factors=("passkey",))
    assert d.action == "allow"


def test_the_mark_survives_the_state_file_and_the_record_codec(tmp_path: Path):
    proxy = ip_in(AWS_TOKYO, 9)
    path = tmp_path / "state.db"
    r = Rig()
    r.engine = BrokerGuard(state=SqliteState(path))
    r.engine.trace = r._trace
    hit(r, proxy)
    r.engine.state.flush()
    r.engine.state.close()

    r.engine = BrokerGuard(state=SqliteState(path))
    r.engine.trace = r._trace
    r.tick(minutes=30)
    eid, d = r.login("N7", proxy, device(7), None)
    assert r.signal(eid, "canary_proxy").evidence["origin"] == PHISH
    assert d.action == "challenge"
    r.engine.state.close()

    record = EntityState(canary=1.75e9, canary_origin=PHISH)
    assert decode_record("entity", encode_record(record)) == record  # Redis stores these bytes


def test_canary_events_decode_strictly_with_the_field_named():
    line = (
        '{"type":"canary","id":"c1","ts":"2025-04-07T09:00:00+09:00","ip":"203.0.113.5",'
        '"origin":"https://sbisec.example-phish.top","user_agent":"Mozilla/5.0"}'
    )
    event = decode_line(line)
    assert isinstance(event, CanaryHit) and decode_line(encode(event)) == event
    assert decode_line(line.replace("https://sbisec.example-phish.top", "null")).origin == "null"
    bad = {
        '"ip":"203.0.113.5"': ('"ip":"not-an-ip"', "ip"),
        '"origin":"https://sbisec.example-phish.top"': (
            '"origin":"https://sbisec.example-phish.top/login"',
            "origin",
        ),
        '"user_agent":"Mozilla/5.0"': ('"user_agent":"Mozilla/5.0","account":"A1"', "account"),
    }
    for old, (new, field) in bad.items():
        with pytest.raises(EventError) as info:
            decode_line(line.replace(old, new), line=3)
        assert info.value.field == field and "line 3" in str(info.value)
    for origin in ("javascript:alert(1)", "https://user@evil.example", "ftp://x.example", ""):
        with pytest.raises(EventError):
            decode_line(line.replace("https://sbisec.example-phish.top", origin))
    with pytest.raises(EventError, match="timezone|tz"):
        decode_line(line.replace("+09:00", ""))


def test_the_mark_survives_the_redis_store_of_the_scale_out_workers():
    from cluster_helpers import drop_prefix, fresh_prefix, redis_client

    from brokerguard.cluster.partition import partition_of
    from brokerguard.stores.redis import RedisState

    client, prefix = redis_client(), fresh_prefix()
    proxy = ip_in(AWS_TOKYO, 10)
    try:
        r = Rig()
        with RedisState(prefix=prefix) as state:
            r.engine = BrokerGuard(state=state)
            event = CanaryHit(id="c-redis", ts=r.now, ip=proxy, origin=PHISH, user_agent="x")
            # no account: like market data it goes to every partition, whose logins it marks
            assert partition_of(event, 16) is None
            r.engine.observe(event)
            state.flush()
        with RedisState(prefix=prefix) as state:
            r.engine = BrokerGuard(state=state)
            r.engine.trace = r._trace
            r.tick(minutes=5)
            eid, _ = r.login("N8", proxy, device(8), None)
            assert r.signal(eid, "canary_proxy").evidence["origin"] == PHISH
    finally:
        drop_prefix(client, prefix)
        client.close()
