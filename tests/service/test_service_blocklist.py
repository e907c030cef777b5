"""The block-list review and ``serve --blocklist``, end to end with the real parts: the
``brokerguard`` CLI, the service's database (SQLite file; the queue also on PostgreSQL), the
``serve`` app over HTTP with its console, and the file on disk.

The findings are real scores: ``sbisec-jp.example-phish.top`` is phishing by the rules alone
(brand in the subdomain, Japan affix, ...); ``secure-login.verify-acc.xyz/signin`` and
``www.paypal.com/signin`` are phishing only with the learned model's ``learned_pattern``
evidence (the second is the real PayPal: why the model's findings need an analyst).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import Api, add_user, audit
from console_helpers import login
from typer.testing import CliRunner

from brokerguard.cli import app
from brokerguard.events import LoginAttempt
from brokerguard.phishing import load_blocklist, score_url
from brokerguard.phishing._blocklist import HEADER as HEADER_LINE
from brokerguard.phishing._review import decided_by, split_findings
from brokerguard.phishing.review_cli import DEFAULT_DATABASE as REVIEW_DEFAULT
from brokerguard.service.cli import DEFAULT_DATABASE as SERVICE_DEFAULT
from brokerguard.service.db import make_engine
from brokerguard.service.models import blocklist_review
from brokerguard.service.runtime import Settings

runner = CliRunner()
RULES = "https://sbisec-jp.example-phish.top/login"
MODEL = "https://secure-login.verify-acc.xyz/signin"
PAYPAL = "https://www.paypal.com/signin"
BENIGN = "https://www.example.org/"
RULES_HOST, MODEL_HOST, PAYPAL_HOST = (
    "sbisec-jp.example-phish.top",
    "secure-login.verify-acc.xyz",
    "www.paypal.com",
)
_ids = itertools.count(1)


def scored(tmp_path: Path) -> Path:
    """`phish score --json` output (the model on, as by default) for the four URLs."""
    result = runner.invoke(app, ["phish", "score", RULES, MODEL, PAYPAL, BENIGN, "--json"])
    assert result.exit_code == 0, result.output
    path = tmp_path / "scored.ndjson"
    path.write_text(result.stdout, encoding="utf-8")
    return path


def cli(*args: str) -> Any:
    return runner.invoke(app, list(args))


def queue(url: str, findings: Path, out: Path) -> Any:
    args = ("--input", str(findings), "--out", str(out), "--database", url)
    result = cli("phish", "blocklist", *args)
    assert result.exit_code == 0, result.output
    return result


def review_rows(url: str) -> dict[str, dict[str, Any]]:
    engine = make_engine(url)
    with engine.connect() as conn:
        rows = {r.host: dict(r._mapping) for r in conn.execute(sa.select(blocklist_review))}
    engine.dispose()
    return rows


def hosts_in(path: Path) -> set[str]:
    return {e.host for e in load_blocklist(path).entries()}


# --- who decided ------------------------------------------------------------------------------
def test_the_split_follows_who_decided() -> None:
    urls = (RULES, MODEL, PAYPAL, BENIGN)
    rules, model, paypal, benign = (score_url(u, model=True) for u in urls)
    assert [decided_by(f) for f in (rules, model, paypal, benign)] == [
        "rules",
        "model",
        "model",
        None,
    ]
    # the model's findings are phishing only with its evidence; without it they are benign
    assert not score_url(MODEL).is_phishing and not score_url(PAYPAL).is_phishing
    # a higher threshold than the findings were scored with moves nothing into the list
    split = split_findings([rules, model, benign], threshold=30.0)
    assert set(split.model) == {RULES_HOST, MODEL_HOST} and not split.rules
    # a finding the rules alone made phishing (under a lower threshold) is the rules' own
    lenient = score_url(MODEL, threshold=2.0)
    assert lenient.is_phishing and decided_by(lenient) == "rules"
    # one host found twice: the rules' word wins over the model's
    both = split_findings([model, rules, score_url("https://secure-login.verify-acc.xyz/")])
    assert set(both.rules) == {RULES_HOST} and set(both.model) == {MODEL_HOST}


def test_the_cli_queue_uses_the_service_database_by_default() -> None:
    assert REVIEW_DEFAULT == SERVICE_DEFAULT


# --- the queue --------------------------------------------------------------------------------
def test_rule_findings_are_listed_and_model_only_findings_queued(
    database_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "bl.txt"
    result = queue(database_url, scored(tmp_path), out)
    assert "1 rule finding(s) listed" in result.stderr and "2 queued" in result.stderr
    assert hosts_in(out) == {RULES_HOST}
    rows = review_rows(database_url)
    assert set(rows) == {MODEL_HOST, PAYPAL_HOST}
    assert {r["status"] for r in rows.values()} == {"pending"}
    assert rows[MODEL_HOST]["blocklist"] == str(out.resolve())
    assert rows[MODEL_HOST]["queued_by"].startswith("cli:")
    listed = cli("phish", "review", "list", "--database", database_url)
    assert listed.exit_code == 0 and MODEL_HOST in listed.stdout and PAYPAL_HOST in listed.stdout
    again = queue(database_url, scored(tmp_path), out)  # the same findings tomorrow
    assert "0 queued, 2 already waiting" in again.stderr
    assert ("cli:" in audit(database_url)[0][0]) and audit(database_url)[0][1] == "blocklist.queue"


def test_approve_writes_the_list_and_reject_keeps_a_host_out_for_good(
    database_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "bl.txt"
    findings = scored(tmp_path)
    queue(database_url, findings, out)
    db = ("--database", database_url)
    approved = cli("phish", "review", "approve", MODEL_HOST, "--note", "kit", "--by", "ana", *db)
    assert approved.exit_code == 0, approved.output
    rejected = cli(
        "phish", "review", "reject", PAYPAL_HOST, "--note", "the real PayPal", "--by", "ana", *db
    )
    assert rejected.exit_code == 0, rejected.output
    assert hosts_in(out) == {RULES_HOST, MODEL_HOST}
    rows = review_rows(database_url)
    assert rows[PAYPAL_HOST]["status"] == "rejected" and rows[PAYPAL_HOST]["note"] == (
        "the real PayPal"
    )
    assert rows[MODEL_HOST]["decided_by"] == "cli:ana"
    assert rows[MODEL_HOST]["decided_at"] > datetime.now(UTC) - timedelta(minutes=5)
    trail = [(a, act, s) for a, act, s, _ in audit(database_url)]
    assert ("cli:ana", "blocklist.approve", MODEL_HOST) in trail
    assert ("cli:ana", "blocklist.reject", PAYPAL_HOST) in trail

    again = queue(database_url, findings, out)
    assert "0 queued" in again.stderr and "1 rejected earlier" in again.stderr
    assert review_rows(database_url)[PAYPAL_HOST]["status"] == "rejected"
    assert PAYPAL_HOST not in hosts_in(out)
    # a decided host cannot be decided the same way twice; an unknown host is named
    twice = cli("phish", "review", "approve", MODEL_HOST, *db)
    assert twice.exit_code == 2 and "already" in twice.stderr
    unknown = cli("phish", "review", "reject", "nowhere.example", *db)
    assert unknown.exit_code == 2 and "nowhere.example" in unknown.stderr
    # an analyst may change their mind about a rejected host (not the other way round)
    turned = cli("phish", "review", "approve", PAYPAL_HOST, "--note", "cloned after all", *db)
    assert turned.exit_code == 0, turned.output
    assert PAYPAL_HOST in hosts_in(out) and review_rows(database_url)[PAYPAL_HOST]["status"] == (
        "approved"
    )


def test_a_broken_list_file_queues_nothing(sqlite_url: str, tmp_path: Path) -> None:
    out = tmp_path / "bl.txt"
    out.write_text(f"{HEADER_LINE}\nok.example\nnot a host\n", encoding="utf-8")
    result = cli(
        "phish", "blocklist", "--input", str(scored(tmp_path)), "--out", str(out), "--database",
        sqlite_url,
    )  # fmt: skip
    assert result.exit_code == 2 and "bl.txt:3: host" in result.stderr
    assert review_rows(sqlite_url) == {}
    assert "not a host" in out.read_text(encoding="utf-8")  # left as it was


# --- the running service ----------------------------------------------------------------------
def referred_login(api: Api, referrer: str) -> dict[str, Any] | None:
    """Decide a sign-in referred from ``referrer``; the ``phishing_referrer`` signal, if any."""
    n = next(_ids)
    event = LoginAttempt(
        id=f"bl-login-{n}",
        ts=datetime(2025, 4, 1, 9, tzinfo=UTC) + timedelta(minutes=n),
        account=f"BL{n}",
        session=f"bl-s{n}",
        ip="203.0.113.7",
        user_agent="Mozilla/5.0 (Windows NT 10.0; Win64; x64)",
        device=None,
        factors=["password"],
        success=True,
        referrer=referrer,
    )
    answer = api.decide(event)
    assert answer.status_code == 200, answer.text
    alert_id = answer.json()["alert_id"]
    if alert_id is None:
        return None
    api.settle()
    alert = api.get(f"/v1/alerts/{alert_id}")
    assert alert.status_code == 200, alert.text
    return next((s for s in alert.json()["signals"] if s["code"] == "phishing_referrer"), None)


def wait_for(check: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def served(make_api: Callable[..., Api], url: str, path: Path, poll: float = 0.1) -> Api:
    return make_api(url, settings=Settings(blocklist_path=path, blocklist_poll_seconds=poll))


def test_an_approved_host_reaches_the_running_guard(
    make_api: Callable[..., Api], sqlite_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "bl.txt"
    queue(sqlite_url, scored(tmp_path), out)
    api = served(make_api, sqlite_url, out)
    health = api.client.get("/healthz").json()["blocklist"]
    assert health["entries"] == 1 and health["loaded_at"] and health["last_error"] is None
    assert referred_login(api, MODEL) is None  # queued, not listed: no signal
    listed = referred_login(api, RULES)
    assert listed is not None and listed["evidence"]["listed"] is True

    approved = cli("phish", "review", "approve", MODEL_HOST, "--database", sqlite_url)
    assert approved.exit_code == 0, approved.output
    wait_for(lambda: api.client.get("/healthz").json()["blocklist"]["entries"] == 2)
    signal = referred_login(api, MODEL)
    assert signal is not None
    assert signal["evidence"] == {"host": MODEL_HOST, "listed": True, "brand": None}
    assert api.client.get("/healthz").json()["blocklist"]["reloads"] == 1

    # a new policy keeps the served list (it names none of its own)
    source = api.get("/v1/policy").json()["source"]
    put = api.client.put(
        "/v1/policy",
        content=source.replace('name = "default"', 'name = "other"').encode(),
        headers={**api.auth("admin"), "content-type": "application/toml"},
    )
    assert put.status_code == 200, put.text
    assert referred_login(api, "https://secure-login.verify-acc.xyz/again") is not None


def test_a_broken_list_on_reload_keeps_the_old_one(
    make_api: Callable[..., Api], sqlite_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "bl.txt"
    out.write_text(f"{HEADER_LINE}\n{MODEL_HOST}\n", encoding="utf-8")
    api = served(make_api, sqlite_url, out)

    def health() -> dict[str, Any]:
        return api.client.get("/healthz").json()["blocklist"]

    loaded_at = health()["loaded_at"]
    out.write_text(f"{HEADER_LINE}\nother.example\nhttps://bad line/\n", encoding="utf-8")
    wait_for(lambda: health()["last_error"] is not None)
    assert "bl.txt:3: host" in health()["last_error"]
    assert health()["entries"] == 1 and health()["loaded_at"] == loaded_at
    assert referred_login(api, MODEL) is not None  # the old list is still in force
    assert api.client.get("/healthz").json()["status"] == "ok"  # decisions are unaffected

    out.write_text("", encoding="utf-8")  # truncated by a careless writer: not an empty list
    wait_for(lambda: "no entries and no header" in (health()["last_error"] or ""))
    assert health()["entries"] == 1
    assert referred_login(api, MODEL) is not None

    out.unlink()
    wait_for(lambda: "cannot read" in (health()["last_error"] or ""))
    assert referred_login(api, MODEL) is not None

    out.write_text(f"{HEADER_LINE}\nother.example\n", encoding="utf-8")  # fixed
    wait_for(lambda: health()["last_error"] is None)
    assert health()["entries"] == 1 and health()["reloads"] == 1
    assert referred_login(api, MODEL) is None
    assert referred_login(api, "https://other.example/login") is not None

    out.write_text(f"{HEADER_LINE}\n", encoding="utf-8")  # emptied on purpose: the header says so
    wait_for(lambda: health()["entries"] == 0)
    assert referred_login(api, "https://other.example/login") is None


def test_serve_refuses_to_start_with_a_broken_list(sqlite_url: str, tmp_path: Path) -> None:
    broken = tmp_path / "bl.txt"
    broken.write_text("fine.example\n\nnot/a host\n", encoding="utf-8")
    result = cli("serve", "--blocklist", str(broken), "--database", sqlite_url)
    assert result.exit_code == 2 and "bl.txt:3: host" in result.stderr
    missing = cli("serve", "--blocklist", str(tmp_path / "none.txt"), "--database", sqlite_url)
    assert missing.exit_code == 2 and "none.txt: cannot read" in missing.stderr


# --- the console ------------------------------------------------------------------------------
@pytest.mark.parametrize("lang", ["ja", "en"])
def test_console_approve_and_reject_through_http(
    make_api: Callable[..., Api], database_url: str, tmp_path: Path, lang: str
) -> None:
    out = tmp_path / "bl.txt"
    queue(database_url, scored(tmp_path), out)
    add_user(database_url, "ana", "analyst")
    api = served(make_api, database_url, out, poll=3600.0)  # only the approval itself reloads
    client = api.client
    assert client.get("/console/blocklist", follow_redirects=False).status_code == 303
    csrf = login(client, "ana")
    page = client.get(f"/console/blocklist?lang={lang}")
    assert page.status_code == 200 and f'lang="{lang}"' in page.text
    words = {"ja": ("ブロックリスト審査", "承認", "却下"), "en": ("Block-list review", "Approve")}
    assert all(w in page.text for w in words[lang])
    assert "hxxps://secure-login[.]verify-acc[.]xyz/signin" in page.text  # defanged
    assert "https://" not in page.text, "no link to a phishing page, no asset from the internet"
    assert PAYPAL_HOST in page.text and f"/console/blocklist/{MODEL_HOST}/approve" in page.text

    refused = client.post(
        f"/console/blocklist/{MODEL_HOST}/approve", data={"note": "x"}, follow_redirects=False
    )
    assert refused.status_code == 403 and MODEL_HOST not in hosts_in(out)

    assert referred_login(api, MODEL) is None
    done = client.post(
        f"/console/blocklist/{MODEL_HOST}/approve",
        data={"csrf_token": csrf, "note": "kit seen in mails"},
        follow_redirects=False,
    )
    assert done.status_code == 303 and done.headers["location"] == "/console/blocklist"
    assert hosts_in(out) == {RULES_HOST, MODEL_HOST}
    assert api.client.get("/healthz").json()["blocklist"]["entries"] == 2  # reloaded at once
    assert referred_login(api, MODEL) is not None

    no = client.post(
        f"/console/blocklist/{PAYPAL_HOST}/reject",
        data={"csrf_token": csrf, "note": "the real PayPal"},
        follow_redirects=False,
    )
    assert no.status_code == 303
    rows = review_rows(database_url)
    assert rows[MODEL_HOST]["status"] == "approved" and rows[MODEL_HOST]["decided_by"] == "user:ana"
    assert rows[PAYPAL_HOST]["status"] == "rejected" and rows[PAYPAL_HOST]["note"] == (
        "the real PayPal"
    )
    trail = [(a, act, s) for a, act, s, _ in audit(database_url)]
    assert ("user:ana", "blocklist.approve", MODEL_HOST) in trail
    assert ("user:ana", "blocklist.reject", PAYPAL_HOST) in trail
    pending = client.get(f"/console/blocklist?lang={lang}").text
    assert f"/console/blocklist/{MODEL_HOST}/approve" not in pending
    assert PAYPAL_HOST not in pending
    decided = client.get("/console/blocklist?status=rejected").text
    assert PAYPAL_HOST in decided and "user:ana" in decided and "the real PayPal" in decided
    twice = client.post(
        f"/console/blocklist/{MODEL_HOST}/approve",
        data={"csrf_token": csrf},
        headers={"accept": "application/json"},
        follow_redirects=False,
    )
    assert twice.status_code == 409


def test_a_file_rewritten_while_it_is_read_waits_for_the_next_poll(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from brokerguard.service.blocklist_watch import BlocklistWatch

    path = tmp_path / "bl.txt"
    path.write_text(f"{HEADER_LINE}\none.example\ntwo.example\n", encoding="utf-8")
    watch = BlocklistWatch(path)
    assert len(watch.load()) == 2
    read = Path.read_bytes

    def half_written(self: Path) -> bytes:  # a writer truncates and rewrites in place meanwhile
        data = read(self)
        self.write_text(f"{HEADER_LINE}\nthree.example\nfour.example\nfive.example\n")
        return data[: len(data) // 2]

    path.write_text(f"{HEADER_LINE}\nthree.example\n", encoding="utf-8")
    monkeypatch.setattr(Path, "read_bytes", half_written)
    assert watch.check() is None  # not half-loaded
    assert watch.blocklist is not None and len(watch.blocklist) == 2 and watch.last_error is None
    monkeypatch.setattr(Path, "read_bytes", read)
    fresh = watch.check()  # the writer is done: the whole new version
    assert fresh is not None and {e.host for e in fresh.entries()} == {
        "three.example",
        "four.example",
        "five.example",
    }
