"""Actions on findings: block-list file and loader, STIX bundle, takedown text, lookalikes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from brokerguard.phishing import (
    default_registry,
    dnstwist_lookalikes,
    generate_lookalikes,
    score_url,
)
from brokerguard.phishing._blocklist import BlocklistError, load_blocklist, write_blocklist
from brokerguard.phishing._stix import CampaignLine, CampaignSymbol, export_stix
from brokerguard.phishing._takedown import defang, takedown_request

NOW = datetime(2025, 7, 1, tzinfo=UTC)


def test_blocklist_roundtrip_and_matching(tmp_path: Path) -> None:
    path = tmp_path / "bl.txt"
    path.write_text("# comment\n*.example-phish.top\t-\t2025-07-01T00:00:00Z\t0.9\n")
    f = score_url("https://sbisec-jp.example-phish.net/login")
    bl = write_blocklist(path, [f, score_url("https://www.example.org/")])
    assert len(bl) == 2
    again = load_blocklist(path)
    assert again.match("https://sbisec-jp.example-phish.net/other").brand == "sbi"
    assert again.match("https://a.b.example-phish.top/") is not None  # wildcard
    assert again.match("example-phish.top") is not None
    assert again.match("https://www.example.org/") is None
    assert again.match("not a url") is None
    assert path.read_text().startswith("# brokerguard phishing block-list v1\n")


def test_blocklist_ipv6_host_roundtrip(tmp_path: Path) -> None:
    # a finding's host is the bare address; written so, the list could not be read back
    path = tmp_path / "bl.txt"
    f = score_url("http://[2001:db8::1]/sbisec/login")
    assert f.is_phishing and f.host == "2001:db8::1"
    write_blocklist(path, [f])
    again = load_blocklist(path)
    assert again.match("https://[2001:db8::1]/other") is not None
    assert again.match("2001:db8::1") is not None  # the guard matches each hop's host
    assert again.match("https://[2001:db8::2]/") is None


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("https://x.example.com/path", "bare host"),
        ("bad host name\tsbi", "host"),
        ("x.example.com\tsbi\tyesterday", "first_seen"),
        ("x.example.com\tsbi\t\t1.5", "between 0 and 1"),
        ("x.example.com\tsbi\t\tabc", "not a number"),
    ],
)
def test_blocklist_bad_lines_name_file_and_line(tmp_path: Path, line: str, problem: str) -> None:
    path = tmp_path / "bl.txt"
    path.write_text("ok.example.com\n" + line + "\n")
    with pytest.raises(BlocklistError, match=rf"bl.txt:2: .*{problem}"):
        load_blocklist(path)


def test_blocklist_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    # Windows editors start a UTF-8 file with one; it made line 1 an error and refused the list
    path = tmp_path / "bl.txt"
    path.write_bytes(b"\xef\xbb\xbfevil.example-phish.top\tsbi\r\nok.example.com\r\n")
    bl = load_blocklist(path)
    assert bl.match("https://evil.example-phish.top/login").brand == "sbi"
    assert bl.match("ok.example.com") is not None


@pytest.mark.parametrize("brk", ["\x0b", "\x0c", "\x1c", "\x85", "\u2028", "\u2029", "\r"])
def test_blocklist_lines_end_at_line_feeds_only(tmp_path: Path, brk: str) -> None:
    # str.splitlines broke a comment at these too: its tail was read as a host, and the error
    # named a line number one past the line an editor shows
    path = tmp_path / "bl.txt"
    path.write_bytes(f"# a{brk}comment\nok.example.com\nbad host\n".encode())
    with pytest.raises(BlocklistError, match=r"bl.txt:3: host: 'bad host'"):
        load_blocklist(path)


def test_stix_bundle_is_valid_and_deterministic() -> None:
    f = score_url("https://sbisec-jp.example-phish.top/login")
    camp = CampaignLine(
        id="c-1",
        raised_at=NOW,
        symbols=[CampaignSymbol("7992", "TSE")],
        accounts=["a"],
        infrastructure=["ip:203.0.113.5", "ip:2001:db8::1", "asn:EXAMPLE"],
    )
    text = export_stix([f, score_url("https://www.example.org/")], [camp], now=NOW)
    assert text == export_stix([f], [camp], now=NOW)  # same content, same ids
    bundle = json.loads(text)
    assert bundle["type"] == "bundle"
    patterns = [o["pattern"] for o in bundle["objects"] if o["type"] == "indicator"]
    assert "[url:value = 'https://sbisec-jp.example-phish.top/login']" in patterns
    assert "[domain-name:value = 'sbisec-jp.example-phish.top']" in patterns
    assert "[ipv4-addr:value = '203.0.113.5']" in patterns
    assert "[ipv6-addr:value = '2001:db8::1']" in patterns
    (c,) = [o for o in bundle["objects"] if o["type"] == "campaign"]
    assert c["x_brokerguard_symbols"] == ["TSE:7992"]
    assert all(o.get("spec_version") == "2.1" for o in bundle["objects"])


def test_stix_objects_keep_their_created_time_across_exports() -> None:
    # ids are the same on every export, and STIX 2.1 forbids a new version to change created:
    # it was the export time, so each run contradicted the one before
    import stix2

    f = score_url("https://sbisec-jp.example-phish.top/login")
    raised = datetime(2025, 6, 30, 9, 0, tzinfo=UTC)
    camp = CampaignLine(id="c-1", raised_at=raised, infrastructure=["ip:203.0.113.5"])
    later = datetime(2025, 8, 15, 12, 30, tzinfo=UTC)
    first, second = (json.loads(export_stix([f], [camp], now=t)) for t in (NOW, later))
    before = {o["id"]: o for o in first["objects"]}
    after = {o["id"]: o for o in second["objects"]}
    assert before.keys() == after.keys()
    for oid, o in after.items():
        assert o["created"] == before[oid]["created"], oid
        assert o["modified"] == "2025-08-15T12:30:00.000Z", oid  # a new version of it
        assert o["modified"] >= o["created"], oid
    (c,) = [o for o in after.values() if o["type"] == "campaign"]
    assert c["created"] == "2025-06-30T09:00:00.000Z"  # the campaign's own time: raised_at
    stix2.parse(json.dumps(second), allow_custom=True)  # still a valid bundle


def test_takedown_text_is_defanged_and_bilingual() -> None:
    f = score_url("https://sbisec-jp.example-phish.top/login")
    text = takedown_request(f, reporter="Example Sec", contact="abuse@example.jp", now=NOW)
    assert "hxxps://sbisec-jp[.]example-phish[.]top/login" in text
    assert "https://sbisec-jp.example-phish.top" not in text
    assert "SBI証券" in text and "SBI Securities" in text and "2025-07-01 00:00 UTC" in text
    assert defang("http://a.b/c") == "hxxp://a[.]b/c"


@pytest.mark.parametrize(
    "url",
    [
        "https://www.sbisec.co.jp.example-phish.top/login",  # domain_in_subdomain names the host
        "https://SBISEC-JP.EXAMPLE-PHISH.TOP/login",  # uppercase_host
        "https://securitiesloginjapan.example-phish.top/",  # kit_subdomain
    ],
)
def test_takedown_evidence_is_defanged_too(url: str) -> None:
    f = score_url(url)
    assert f.is_phishing
    text = takedown_request(f, now=NOW)
    assert "example-phish.top" not in text.lower()
    assert "example-phish[.]top" in text.lower()


def test_lookalike_generators() -> None:
    sbi = default_registry().get("sbi")
    ours = generate_lookalikes(sbi)
    assert "sbisec-jp.com" in ours and "sbisec1.top" in ours and "sblsec.com" in ours
    assert "sbisec.co.jp" not in ours  # the firm's own domain is never a lookalike
    twist = dnstwist_lookalikes("sbisec.co.jp")
    assert "sbisec.co.jp" not in twist and "sbiseç.co.jp" not in twist  # no IDN for .jp in dnstwist
    assert {"omission", "transposition"} <= set(twist.values())


def test_public_surface_is_honest() -> None:
    import brokerguard.phishing as phishing

    assert len(set(phishing.__all__)) == len(phishing.__all__)
    for name in phishing.__all__:
        assert hasattr(phishing, name), name
