"""The watch feed: alerts in order, and bad lines that are reported but never stop the stream."""

from __future__ import annotations

import io
import json

import pytest

from brokerguard.phishing import URLError
from brokerguard.phishing._watch import Alert, LineError, bounded_lines, names_in_line, watch_lines


def run(data: bytes, **kw: object) -> list[Alert | LineError]:
    return list(watch_lines(bounded_lines(io.BytesIO(data), limit=4096), **kw))


def test_bad_lines_never_stop_the_stream() -> None:
    cert = {
        "message_type": "certificate_update",
        "data": {
            "leaf_cert": {"all_domains": ["*.monex-login.example-phish.top", "www.monex.co.jp"]}
        },
    }
    feed = b"\n".join(
        [
            b"sbisec-jp.example-phish.top",  # 1 alert
            b"\x00\x01\x02binary\xff",  # 2 binary
            b"y" * 10000,  # 3 huge (limit 4096), read in chunks
            json.dumps(cert).encode(),  # 4 alert (monex), official name skipped
            b"this is not a domain",  # 5 no name
            b"\xff\xfe\xfd",  # 6 not UTF-8
            b"{not json",  # 7 bad JSON
            b"",  # 8 empty
            b"www.example.org",  # 9 benign, no alert
            b"2025-07-01T09:00:00Z,daiwa-jp.example-phish.com www.example.com",  # 10 alert
            b"sbisec-jp.example-phish.top",  # 11 repeat: scored once
        ]
    )
    events = run(feed)
    alerts = [e for e in events if isinstance(e, Alert)]
    errors = [e for e in events if isinstance(e, LineError)]
    assert [(a.line_no, a.finding.brand) for a in alerts] == [
        (1, "sbi"),
        (4, "monex"),
        (10, "daiwa"),
    ]
    assert [e.line_no for e in errors] == [2, 3, 5, 6, 7, 8]
    assert "binary" in errors[0].message
    assert "10,000 bytes" in errors[1].message
    assert "no host name" in errors[2].message
    assert "UTF-8" in errors[3].message
    assert "JSON" in errors[4].message
    assert alerts[1].name == "monex-login.example-phish.top"  # wildcard stripped


def test_brandless_phishing_only_with_any() -> None:
    feed = b"https://203.0.113.9/#/mlogin\n"
    assert run(feed) == []
    (alert,) = run(feed, brands_only=False)
    assert alert.finding.brand is None and alert.finding.is_phishing


def test_min_score_overrides_threshold() -> None:
    feed = b"sbisec-jp.example-phish.top\n"
    assert run(feed, min_score=0.9999) == []
    assert len(run(feed, min_score=0.5)) == 1


def test_names_in_line_shapes() -> None:
    assert names_in_line(
        '{"domains": ["a.example-phish.top"], "url": "https://b.example.com/"}'
    ) == ["a.example-phish.top", "https://b.example.com/"]
    assert names_in_line("1719824400 *.c.example.net") == ["c.example.net"]
    with pytest.raises(URLError, match="no domain or URL"):
        names_in_line('{"id": 5}')


def test_bounded_lines_handles_crlf_and_no_final_newline() -> None:
    lines = list(bounded_lines(io.BytesIO(b"a.example.com\r\nb.example.com")))
    assert lines == ["a.example.com", "b.example.com"]
