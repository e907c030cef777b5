"""Event decoding: strict, with errors that name the line and the field."""

from __future__ import annotations

import io
from datetime import datetime

import pytest

from brokerguard.events import (
    EventError,
    LoginAttempt,
    Order,
    decode_line,
    encode_line,
    read_ndjson,
)

TS = '"ts":"2025-03-20T10:00:00+09:00"'
LOGIN = (
    '{"type":"login","id":"l1",' + TS + ',"account":"A1","session":"s1","ip":"126.1.2.3",'
    '"user_agent":"Mozilla/5.0","device":"d1","factors":["password"],"success":true}'
)


def test_round_trip_keeps_every_field() -> None:
    event = decode_line(LOGIN)
    assert isinstance(event, LoginAttempt)
    assert event.ts == datetime.fromisoformat("2025-03-20T10:00:00+09:00")
    assert decode_line(encode_line(event)) == event


@pytest.mark.parametrize(
    ("line", "field", "words"),
    [
        ('{"type":"teleport","id":"x",' + TS + "}", "type", "unknown event type"),
        (LOGIN.replace('"account":"A1",', ""), "account", "missing required field"),
        (LOGIN.replace('"success":true', '"success":true,"risk":1'), "risk", "unknown field"),
        (LOGIN.replace('"success":true', '"success":"yes"'), "success", "Expected `bool`"),
        (LOGIN.replace("126.1.2.3", "999.1.2.3"), "ip", "not an IP address"),
        (LOGIN.replace('["password"]', "[]"), "factors", "at least one factor"),
        (LOGIN.replace('["password"]', '["retina"]'), "factors[0]", "Invalid enum value"),
        (LOGIN.replace("+09:00", ""), "ts", "timezone"),
        (
            '{"type":"withdrawal","id":"w",' + TS + ',"account":"A","session":"s","amount_jpy":-5}',
            "amount_jpy",
            "> 0",
        ),
        (
            '{"type":"order","id":"o",' + TS + ',"account":"A","session":"s","order_id":"n",'
            '"symbol":"7992","market":"TSE","side":"buy","quantity":100,"price_type":"limit"}',
            "limit_price",
            "required",
        ),
        (
            '{"type":"bar","id":"b",' + TS + ',"symbol":"7992","market":"TSE","minutes":5,'
            '"open":100,"high":99,"low":98,"close":100,"volume":10}',
            None,
            "low <= open",
        ),
    ],
)
def test_bad_events_name_the_line_and_field(line: str, field: str | None, words: str) -> None:
    with pytest.raises(EventError) as info:
        decode_line(line, line=7)
    assert info.value.line == 7
    assert str(info.value).startswith("line 7: ")
    assert words in str(info.value)
    if field is not None:
        assert info.value.field == field


def test_malformed_json_and_huge_lines_are_rejected() -> None:
    with pytest.raises(EventError, match="malformed JSON"):
        decode_line('{"type":', line=1)
    with pytest.raises(EventError, match="bytes, more than"):
        decode_line(b'{"type":"login","pad":"' + b"x" * 70_000 + b'"}', line=2)


def test_bytes_that_are_not_utf8_are_a_bad_line_not_a_crash() -> None:
    """msgspec raises UnicodeDecodeError for them: the API answered 500, replay a traceback."""
    with pytest.raises(EventError, match="not UTF-8") as info:
        decode_line(LOGIN.encode().replace(b'"A1"', b'"A\xff"'), line=3)
    assert info.value.line == 3
    with pytest.raises(EventError, match="malformed JSON"):
        decode_line(LOGIN.encode().replace(b'"A1"', b'"A\xff"'))


@pytest.mark.parametrize("field", ["quantity", "positions[0].quantity", "avg_daily_volume"])
def test_integers_beyond_64_bits_are_refused(field: str) -> None:
    """JSON integers have no size; the engine's float arithmetic overflowed on them (a 500, and
    a batch half applied)."""
    huge = "9" * 400
    lines = {
        "quantity": '{"type":"execution","id":"e",' + TS + ',"account":"A","order_id":"o",'
        '"symbol":"7992","market":"TSE","side":"buy","quantity":' + huge + ","
        '"price":5,"value_jpy":5}',
        "positions[0].quantity": '{"type":"holdings","id":"h",' + TS + ',"account":"A",'
        '"cash_jpy":0,"positions":[{"symbol":"7992","market":"TSE","quantity":' + huge + "}]}",
        "avg_daily_volume": '{"type":"instrument","id":"i",' + TS + ',"symbol":"7992",'
        '"market":"TSE","segment":"p","currency":"JPY","lot_size":100,"price":5,'
        '"avg_daily_volume":' + huge + ',"market_cap_jpy":1}',
    }
    with pytest.raises(EventError) as info:
        decode_line(lines[field])
    assert info.value.field == field
    assert decode_line(lines[field].replace(huge, str(2**63 - 1)))


@pytest.mark.parametrize(
    ("line", "field"),
    [
        (LOGIN.replace("2025-03-20T10:00:00+09:00", "0001-01-01T00:00:00+09:00"), "ts"),
        (LOGIN.replace("2025-03-20T10:00:00+09:00", "9999-12-31T23:00:00-09:00"), "ts"),
        (
            '{"type":"account","id":"a",' + TS + ',"account":"A",'
            '"opened":"0001-01-01T08:59:59+09:00"}',
            "opened",
        ),
    ],
)
def test_times_outside_the_range_of_utc_are_refused(line: str, field: str) -> None:
    """Such a time has no UTC equivalent: the service decided the event, then could not store
    it or its decision (OverflowError in the writer, the records dropped)."""
    with pytest.raises(EventError, match="out of range") as info:
        decode_line(line, line=4)
    assert info.value.field == field and info.value.line == 4
    assert decode_line(line.replace("+09:00", "+00:00").replace("-09:00", "+00:00"))


@pytest.mark.parametrize(
    ("line", "field"),
    [
        (LOGIN.replace('"A1"', '"A\\u0000"'), "account"),
        (LOGIN.replace("Mozilla/5.0", "Mozilla\\u0000"), "user_agent"),
        (
            '{"type":"canary","id":"c",' + TS + ',"ip":"198.51.100.7",'
            '"origin":"https://evil\\u0000.example","user_agent":"x"}',
            "origin",
        ),
    ],
)
def test_nul_characters_are_refused(line: str, field: str) -> None:
    """PostgreSQL cannot store U+0000 in text: the service decided such an event (200), then
    dropped its records."""
    with pytest.raises(EventError) as info:
        decode_line(line)
    assert info.value.field == field


def test_ndjson_stream_reports_the_failing_line_and_skips_blank_lines() -> None:
    good = LOGIN.encode()
    stream = io.BytesIO(good + b"\n\n" + good.replace(b'"l1"', b'"l2"') + b"\n{oops}\n")
    seen = []
    with pytest.raises(EventError) as info:
        for event in read_ndjson(stream):
            seen.append(event.id)
    assert seen == ["l1", "l2"]
    assert info.value.line == 4


def test_market_order_must_not_carry_a_limit_price() -> None:
    with pytest.raises(ValueError, match="must be absent"):
        Order(
            id="o",
            ts=datetime.fromisoformat("2025-03-20T10:00:00+09:00"),
            account="A",
            session="s",
            order_id="n",
            symbol="7992",
            market="TSE",
            side="buy",
            quantity=100,
            price_type="market",
            limit_price=100.0,
        )


def with_referrer(value: str) -> str:
    return LOGIN.replace('"success":true', f'"success":true,"referrer":{value}')


def test_login_referrer_is_optional_and_kept() -> None:
    assert decode_line(LOGIN).referrer is None
    event = decode_line(with_referrer('"https://sbi-login.example.top/ETGate/?a=1"'))
    assert event.referrer == "https://sbi-login.example.top/ETGate/?a=1"
    assert decode_line(encode_line(event)) == event


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ('"ftp://files.example.com/"', "http:// or https://"),
        ('"sbi-login.example.top/ETGate/"', "http:// or https://"),
        ('"https://a.example/x y"', "spaces or control characters"),
        ('"https://a.example/\\u0000"', "spaces or control characters"),
        ('""', "length >= 1"),
        ('"https://a.example/' + "x" * 2100 + '"', "length <= 2048"),
        ("42", "Expected `str | null`"),
    ],
    ids=["other-scheme", "no-scheme", "space", "control", "empty", "too-long", "not-a-string"],
)
def test_bad_referrer_names_the_field(value: str, words: str) -> None:
    with pytest.raises(EventError) as info:
        decode_line(with_referrer(value), line=3)
    assert info.value.field == "referrer"
    assert words in str(info.value)
