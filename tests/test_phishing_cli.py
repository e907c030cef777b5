"""`brokerguard phish ...` in process: output shapes, order, exit codes and clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from brokerguard.cli import app

runner = CliRunner()
DATA = Path(__file__).parent / "data" / "phishing"


def test_score_json_one_object_per_line_in_input_order(tmp_path: Path) -> None:
    lines = [
        "https://sbisec-jp.example-phish.top/login",
        "https://www.sbisec.co.jp/ETGate/",
        "not a url",
        "https://203.0.113.8/#/mlogin",
        "",
        "https://www-daiwa-jp.example-phish.com/F3tkXG",
    ]
    path = tmp_path / "urls.txt"
    path.write_bytes(("\n".join(lines) + "\n").encode() + b"\x00\x01binary\n")
    result = runner.invoke(app, ["phish", "score", "--input", str(path), "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(x) for x in result.stdout.splitlines()]
    assert len(rows) == len(lines) + 1
    assert [r["url"] for r in rows[:4]] == lines[:4]
    for r in rows:
        assert {"url", "score", "verdict", "brand", "reasons"} <= set(r)
        assert 0.0 <= r["score"] <= 1.0
        assert r["verdict"] in ("phishing", "benign")
        assert r["brand"] is None or isinstance(r["brand"], str)
        assert isinstance(r["reasons"], list)
    assert [r["verdict"] for r in rows] == [
        "phishing",
        "benign",
        "benign",
        "phishing",
        "benign",
        "phishing",
        "benign",
    ]
    assert rows[0]["brand"] == "sbi" and rows[5]["brand"] == "daiwa"
    assert rows[0]["reasons"][0]["code"] == "brand_in_subdomain"
    assert {"en", "ja", "weight", "detail"} <= set(rows[0]["reasons"][0])
    assert (
        "spaces" in rows[2]["error"]
        and "empty" in rows[4]["error"]
        and "binary" in rows[6]["error"]
    )
    assert "line 3" in result.stderr or "not a url" in result.stderr


def test_score_arguments_table() -> None:
    result = runner.invoke(app, ["phish", "score", "sbisec-jp.example-phish.top"])
    assert result.exit_code == 0
    assert "phishing" in result.stdout and "sbi" in result.stdout


def test_score_needs_input() -> None:
    result = runner.invoke(app, ["phish", "score"])
    assert result.exit_code == 2
    assert "--input" in result.stderr


def test_score_missing_file_and_bad_registry(tmp_path: Path) -> None:
    result = runner.invoke(app, ["phish", "score", "--input", str(tmp_path / "nope.txt")])
    assert result.exit_code == 2 and "no such file" in result.stderr
    bad = tmp_path / "brands.toml"
    bad.write_text("[[brand]]\nid = 'X Y'\n")
    result = runner.invoke(app, ["phish", "score", "a.example.com", "--brands", str(bad)])
    assert result.exit_code == 2 and str(bad) in result.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["watch", "/proc/self/mem"],
        ["score", "--input", "/proc/self/mem"],
        ["takedown", "--input", "/proc/self/mem"],
        ["stix", "--input", "/proc/self/mem", "--out", "bundle.json"],
    ],
)
def test_an_input_that_cannot_be_read_is_named_in_one_line(command, tmp_path: Path) -> None:
    """A feed or input file that cannot be read (procfs: reading a process's memory at 0 fails
    with EIO) ended the command with a traceback; it says the file and the problem, exit 2."""
    done = subprocess.run(
        [sys.executable, "-m", "brokerguard", "phish", *command],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    assert done.stderr.strip() == "error: /proc/self/mem: Input/output error"


def test_an_output_or_source_that_is_no_file_is_named(tmp_path: Path) -> None:
    """``stix --out`` into a missing directory was a traceback; a directory given as the feed
    was "no such file"."""
    feed = tmp_path / "feed.txt"
    feed.write_text("sbisec-jp.example-phish.top\n")
    out = tmp_path / "no-such-dir" / "bundle.json"
    result = runner.invoke(app, ["phish", "stix", "-i", str(feed), "-o", str(out)])
    assert result.exit_code == 2
    assert f"{out}: No such file or directory" in result.stderr
    result = runner.invoke(app, ["phish", "watch", str(tmp_path)])
    assert result.exit_code == 2 and f"{tmp_path}: is a directory" in result.stderr


def test_the_subject_watch_names_the_server_it_cannot_reach() -> None:
    """No NATS server there: "cannot reach NATS at <url>", as the scale-out commands say it
    (:mod:`brokerguard.cluster.failure`), exit 2."""
    result = runner.invoke(
        app, ["phish", "watch", "--subject", "feed", "--nats", "nats://127.0.0.1:1"]
    )
    assert result.exit_code == 2
    assert "cannot reach NATS at nats://127.0.0.1:1: " in result.stderr


def test_watch_stream_survives_bad_lines(tmp_path: Path) -> None:
    feed = tmp_path / "feed.txt"
    feed.write_bytes(
        b"sbisec-jp.example-phish.top\n\x00\x00\n" + b"z" * 2_000_000 + b"\nnot a name\n"
        b'{"data": {"leaf_cert": {"all_domains": ["monex-jp.example-phish.top"]}}}\n'
    )
    result = runner.invoke(app, ["phish", "watch", str(feed), "--json"])
    assert result.exit_code == 0, result.output
    alerts = [json.loads(x) for x in result.stdout.splitlines()]
    assert [(a["line"], a["brand"]) for a in alerts] == [(1, "sbi"), (5, "monex")]
    assert "line 2" in result.stderr and "line 3" in result.stderr and "line 4" in result.stderr
    assert "2 alert(s), 3 line(s) skipped" in result.stderr


def test_watch_reads_stdin() -> None:
    result = runner.invoke(app, ["phish", "watch"], input="daiwa-co.example-phish.com\n")
    assert result.exit_code == 0
    assert result.stdout.startswith("ALERT line 1\tdaiwa-co.example-phish.com\tdaiwa")


def test_mail_json_and_errors(tmp_path: Path) -> None:
    result = runner.invoke(app, ["phish", "mail", str(DATA / "lure-iso2022jp.eml"), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["verdict"] == "phishing" and report["display_brand"] == "sbi"
    assert report["subject"].startswith("【重要】")
    junk = tmp_path / "x.eml"
    junk.write_bytes(b"\x00\x01\x02")
    result = runner.invoke(app, ["phish", "mail", str(junk)])
    assert result.exit_code == 2 and "not an .eml" in result.stderr
    result = runner.invoke(app, ["phish", "mail", str(tmp_path / "missing.eml")])
    assert result.exit_code == 2 and "cannot read" in result.stderr


def test_lookalikes_and_unknown_brand() -> None:
    result = runner.invoke(app, ["phish", "lookalikes", "monex", "--limit", "5"])
    assert result.exit_code == 0 and len(result.stdout.splitlines()) == 5
    result = runner.invoke(app, ["phish", "lookalikes", "monex", "--dnstwist", "--limit", "5"])
    assert result.exit_code == 0 and all(".co.jp" in x for x in result.stdout.splitlines())
    result = runner.invoke(app, ["phish", "lookalikes", "nobody"])
    assert result.exit_code == 2 and "unknown brand" in result.stderr


def test_takedown_stix_blocklist_from_score_output(tmp_path: Path) -> None:
    scored = runner.invoke(
        app,
        [
            "phish",
            "score",
            "https://sbisec-jp.example-phish.top/login",
            "https://www.example.org/",
            "--json",
        ],
    )
    findings = tmp_path / "findings.jsonl"
    findings.write_text(scored.stdout)
    result = runner.invoke(
        app, ["phish", "takedown", "--input", str(findings), "--reporter", "Example Sec"]
    )
    assert result.exit_code == 0
    assert "hxxps://sbisec-jp[.]example-phish[.]top/login" in result.stdout
    assert "Example Sec" in result.stdout and "フィッシングサイトの停止" in result.stdout
    assert "scored benign" in result.stderr

    camps = tmp_path / "campaigns.ndjson"
    camps.write_text(
        '{"id": "c-1", "raised_at": "2025-03-26T10:00:00+09:00", '
        '"symbols": [{"symbol": "7992", "market": "TSE"}], "accounts": ["a1", "a2"], '
        '"infrastructure": ["ip:203.0.113.5", "asn:EXAMPLE"]}\n'
    )
    bundle = tmp_path / "bundle.json"
    result = runner.invoke(
        app,
        [
            "phish",
            "stix",
            "--input",
            str(findings),
            "--campaigns",
            str(camps),
            "--out",
            str(bundle),
        ],
    )
    assert result.exit_code == 0, result.output
    kinds = [o["type"] for o in json.loads(bundle.read_text())["objects"]]
    assert kinds.count("indicator") == 3 and "campaign" in kinds and "relationship" in kinds

    camps.write_text('{"id": "c-2"}\n')
    result = runner.invoke(
        app,
        [
            "phish",
            "stix",
            "--input",
            str(findings),
            "--campaigns",
            str(camps),
            "--out",
            str(bundle),
        ],
    )
    assert (
        result.exit_code == 2
        and "campaigns.ndjson:1" in result.stderr
        and "raised_at" in result.stderr
    )

    blocklist = tmp_path / "blocklist.txt"
    result = runner.invoke(
        app,
        [
            "phish",
            "blocklist",
            "--input",
            str(findings),
            "--out",
            str(blocklist),
            "--database",
            f"sqlite:///{tmp_path / 'queue.db'}",
        ],
    )
    assert result.exit_code == 0
    assert "sbisec-jp.example-phish.top\tsbi\t" in blocklist.read_text()
