"""The watch feed: alerts in order, and bad lines that are reported but never stop the stream."""

from __future__ import annotations

import contextlib
import io
import json
import queue
import threading
import time

import pytest

from brokerguard.phishing import URLError
from brokerguard.phishing._watch import (
    Alert,
    LineError,
    Watcher,
    bounded_lines,
    names_in_line,
    watch_lines,
)


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


def test_json_the_parser_cannot_hold_is_a_bad_line() -> None:
    # json.loads raises RecursionError for deep nesting and a plain ValueError for an integer
    # of more than 4,300 digits: neither may stop the feed
    lines = [
        '{"a":' * 5000 + "1" + "}" * 5000,
        '{"a":' + "[" * 20000 + "]" * 20000 + "}",
        '{"a": ' + "1" * 5000 + "}",
        "sbisec-jp.example-phish.top",
    ]
    events = list(watch_lines(lines))
    assert [e.line_no for e in events if isinstance(e, LineError)] == [1, 2, 3]
    assert all("JSON" in e.message for e in events if isinstance(e, LineError))
    assert [(e.line_no, e.finding.brand) for e in events if isinstance(e, Alert)] == [(4, "sbi")]


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


def test_the_memory_of_names_seen_is_bounded() -> None:
    """A months-long feed does not grow the watch without end: past ``remember`` names the
    oldest is forgotten (and judged again if it comes back)."""
    watcher = Watcher(remember=2)
    phish = "sbisec-jp.example-phish.top"
    assert len(watcher.feed(1, phish)) == 1
    assert watcher.feed(2, phish) == []  # remembered
    watcher.feed(3, "www.example.org")
    watcher.feed(4, "www.example.net")  # the phishing name is now the oldest forgotten
    assert len(watcher._seen) == 2
    assert [a.line_no for a in watcher.feed(5, phish)] == [5]


def test_the_watch_reads_a_nats_subject_and_publishes_its_alerts(tmp_path) -> None:
    """``phish watch --subject``: messages of one line or several, junk among them; the alerts
    are printed and published to ``--alerts-subject``; the watch stops when idle."""
    import asyncio
    import subprocess
    import sys
    import uuid

    import nats
    from cluster_helpers import NATS_URL

    tag = uuid.uuid4().hex[:8]
    feed, out = f"bgt.feed.{tag}", f"bgt.alerts.{tag}"
    args = [sys.executable, "-m", "brokerguard", "phish", "watch", "--nats", NATS_URL]
    args += ["--subject", feed, "--alerts-subject", out, "--json", "--idle-exit", "2"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    ready = proc.stderr.readline()
    assert "watching NATS subject" in ready, ready

    async def publish_and_collect() -> list[dict]:
        nc = await nats.connect(NATS_URL)
        got: list[dict] = []
        sub = await nc.subscribe(out)
        await nc.publish(feed, b"sbisec-jp.example-phish.top")
        await nc.publish(feed, b"\x00\x01binary\nwww.example.org\ndaiwa-jp.example-phish.com\n")
        await nc.publish(feed, b"{not json")
        await nc.publish(feed, b"sbisec-jp.example-phish.top")  # a repeat: judged once
        await nc.flush()
        # every alert the watch publishes, a third (the repeat judged again) included, until it
        # has stopped (idle): it publishes nothing after that
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(nats.errors.TimeoutError):
                got.append(json.loads((await sub.next_msg(timeout=0.2)).data))
        await nc.flush()  # a round trip: what it published before it stopped has reached us
        with contextlib.suppress(nats.errors.TimeoutError):
            while True:
                got.append(json.loads((await sub.next_msg(timeout=0.05)).data))
        await nc.close()
        return got

    published = asyncio.run(publish_and_collect())
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    printed = [json.loads(line) for line in stdout.splitlines()]
    assert [(a["line"], a["brand"]) for a in printed] == [(1, "sbi"), (4, "daiwa")]
    assert published == printed
    assert "line 2: binary" in stderr and "line 5:" in stderr and "JSON" in stderr
    assert "2 alert(s), 2 line(s) skipped, 6 line(s) in 4 message(s)" in " ".join(stderr.split())


def _lines_of(stream) -> tuple[queue.Queue[str], threading.Thread]:  # noqa: ANN001 - a pipe
    """The pipe's lines as they come, read (and closed at its end) by a thread: a test must
    not block on a pipe."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        with stream:
            for line in stream:
                lines.put(line.rstrip("\n"))

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return lines, thread


def _until(lines: queue.Queue[str], needle: str, seen: list[str], timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"no line with {needle!r} in {seen}"
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            continue
        seen.append(line)
        if needle in line:
            return line


def test_the_subject_watch_says_when_the_server_goes_away_and_comes_back(tmp_path) -> None:
    """A private nats-server (never the machine's shared one) is killed under a running watch
    and started again: the watch says it lost the server, says each error of the reconnection
    attempts once (not a line per attempt), says it is back, and judges what comes after."""
    import asyncio
    import signal
    import subprocess
    import sys

    import nats
    from servers import free_port, nats_server

    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    args = [sys.executable, "-m", "brokerguard", "phish", "watch", "--nats", url]
    args += ["--subject", "bgt.feed", "--json"]
    seen: list[str] = []
    with nats_server(port, tmp_path / "js"):
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        (stderr, err_pump), (stdout, out_pump) = _lines_of(proc.stderr), _lines_of(proc.stdout)
        _until(stderr, "watching NATS subject", seen)
    try:
        lost = _until(stderr, "lost the NATS server", seen)
        assert lost == f"phish watch: lost the NATS server at {url}; reconnecting"
        time.sleep(5)  # several reconnection attempts fail (one each 2 s), all alike
        with nats_server(port, tmp_path / "js"):
            back = _until(stderr, "reconnected", seen)
            assert back == f"phish watch: reconnected to the NATS server at {url}"

            async def publish() -> None:
                nc = await nats.connect(url)
                await nc.publish("bgt.feed", b"sbisec-jp.example-phish.top")
                await nc.flush()
                await nc.close()

            asyncio.run(publish())
            alert = json.loads(stdout.get(timeout=30))
            assert (alert["line"], alert["brand"]) == (1, "sbi")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err_pump.join(10)
    out_pump.join(10)
    while not stderr.empty():
        seen.append(stderr.get())
    said = [line for line in seen if line.startswith("phish watch:")]
    assert len(said) == len(set(said)), said  # each distinct error once, not per attempt
    assert sum("lost the NATS server" in line for line in said) == 1
    assert not any("Traceback" in line for line in seen), seen
    assert "1 alert(s), 0 line(s) skipped, 1 line(s) in 1 message(s)" in " ".join(seen[-3:])


def test_the_connection_report_tells_each_thing_once() -> None:
    """The callbacks as nats-py calls them: an error repeated on every attempt is one line, the
    next outage tells its errors again, and a close the watch asked for is not a loss."""
    import asyncio

    from brokerguard.phishing._feed import ConnectionReport

    said: list[str] = []
    report = ConnectionReport("nats://127.0.0.1:1", said.append)
    refused = ConnectionRefusedError(111, "Connect call failed")

    async def outage() -> None:
        await report.disconnected()
        for _ in range(5):
            await report.error(refused)
            await report.disconnected()  # nats-py may say it again between attempts
        await report.reconnected()

    asyncio.run(outage())
    assert said == [
        "phish watch: lost the NATS server at nats://127.0.0.1:1; reconnecting",
        "phish watch: NATS at nats://127.0.0.1:1: ConnectionRefusedError: [Errno 111] "
        "Connect call failed",
        "phish watch: reconnected to the NATS server at nats://127.0.0.1:1",
    ]
    asyncio.run(outage())
    assert len(said) == 6  # the second outage told again
    report.closing = True
    asyncio.run(report.disconnected())
    assert len(said) == 6


def test_the_connection_report_never_prints_credentials() -> None:
    import asyncio

    from brokerguard.phishing._feed import ConnectionReport
    from brokerguard.redact import shown_url

    assert shown_url("nats://watch:s3cret@10.0.0.5:4222") == "nats://10.0.0.5:4222"
    assert shown_url("tls://tok@a:4222, nats://b:4222") == "tls://a:4222, nats://b:4222"
    assert shown_url("127.0.0.1:4222") == "127.0.0.1:4222"
    assert (
        shown_url("postgresql+psycopg://g:pw@db:5432/guard") == "postgresql+psycopg://db:5432/guard"
    )
    assert shown_url("sqlite:///var/lib/bg/records.db") == "sqlite:///var/lib/bg/records.db"
    said: list[str] = []
    report = ConnectionReport("nats://watch:s3cret@10.0.0.5:4222", said.append)
    asyncio.run(report.disconnected())
    assert said == ["phish watch: lost the NATS server at nats://10.0.0.5:4222; reconnecting"]
