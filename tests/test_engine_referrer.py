"""Phishing referrer: a sign-in that arrives from a phishing page is stepped up, others are not.

The block-list is the file ``brokerguard phish blocklist`` writes; the policy names it, the guard
loads it and hands it to the login detector. A referrer is unwrapped first (translation proxies,
redirectors), and the firms' own pages never count.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from engine_helpers import OCN, Rig, device, ip_in

from brokerguard.engine import BrokerGuard, PolicyError, load_policy
from brokerguard.engine.policy import default_policy_path
from brokerguard.phishing import BlockEntry, Blocklist, load_blocklist, score_url

LISTED = "sbi-login.phish-kit.top"
LISTED_URL = f"https://{LISTED}/ETGate/"
OWN_PAGE = "https://site1.sbisec.co.jp/ETGate/"


def blocklist(*hosts: str) -> Blocklist:
    entries = []
    for h in hosts:
        wild = h.startswith("*.")
        entries.append(BlockEntry(host=h[2:] if wild else h, brand="sbi", wildcard=wild))
    return Blocklist(entries)


def familiar_rig(*accounts: str) -> tuple[Rig, dict[str, tuple[str, str, str]]]:
    """Accounts that signed in from the same home line and browser for weeks."""
    r = Rig()
    who = {}
    for i, acc in enumerate(accounts, start=1):
        who[acc] = (ip_in(OCN, 10 + i), device(10 + i), f"ck-{acc}")
        r.history(acc, *who[acc])
    r.tick(days=1)
    return r, who


def test_listed_referrer_turns_an_allowed_sign_in_into_a_challenge():
    r, who = familiar_rig("A1", "A2")
    r.engine.set_blocklist(blocklist(LISTED))
    plain, d_plain = r.login("A1", *who["A1"], referrer=OWN_PAGE)
    phished, d_phished = r.login("A2", *who["A2"], referrer=LISTED_URL)
    assert d_plain.action == "allow"
    assert "phishing_referrer" not in r.codes(plain)
    assert d_phished.action in ("challenge", "deny")
    assert not {"sms", "email", "totp"} & set(d_phished.factors)
    sig = r.signal(phished, "phishing_referrer")
    assert sig is not None and sig.evidence == {"host": LISTED, "listed": True, "brand": "sbi"}
    assert "phishing_referrer" in {reason.code for reason in d_phished.reasons}
    assert d_phished.reasons[0].ja  # bilingual reason from the policy


@pytest.mark.parametrize(
    "referrer",
    [
        # Google Translate proxy of the listed host: '-' stands for '.', '--' for '-'
        "https://sbi--login-phish--kit-top.translate.goog/ETGate/?_x_tr_sl=ja&_x_tr_tl=en",
        "https://www.google.com/url?q=https%3A%2F%2Fsbi-login.phish-kit.top%2FETGate%2F",
    ],
    ids=["translate-proxy", "google-redirect"],
)
def test_wrapped_referrer_is_unwrapped_before_the_list_is_checked(referrer):
    r, who = familiar_rig("A1")
    r.engine.set_blocklist(blocklist(LISTED))
    eid, d = r.login("A1", *who["A1"], referrer=referrer)
    sig = r.signal(eid, "phishing_referrer")
    assert sig is not None and sig.evidence["listed"] and sig.evidence["host"] == LISTED
    assert d.action != "allow"


def test_wildcard_entry_covers_every_subdomain_and_nothing_else():
    r, who = familiar_rig("A1", "A2")
    r.engine.set_blocklist(blocklist("*.phish-kit.top"))
    hit, _ = r.login("A1", *who["A1"], referrer="https://x9k.mypage.phish-kit.top/")
    miss, _ = r.login("A2", *who["A2"], referrer="https://phish-kit.topology.example.com/")
    assert r.signal(hit, "phishing_referrer") is not None
    assert r.signal(miss, "phishing_referrer") is None


def test_unlisted_phishing_page_for_a_brand_counts_less_than_a_listed_one():
    url = "https://www.sbisec.co.jp.account-verify.top/ETGate/"
    finding = score_url(url)
    r, who = familiar_rig("A1", "A2")
    eid, _ = r.login("A1", *who["A1"], referrer=url)
    sig = r.signal(eid, "phishing_referrer")
    if finding.is_phishing and finding.brand:
        assert sig is not None and not sig.evidence["listed"]
        assert sig.evidence["brand"] == finding.brand
        params = r.engine.policy.detectors.login
        assert sig.llr == params.referrer_phishing_llr < params.referrer_blocked_llr
    else:  # the scorer changed its mind: then the guard must not speak either
        assert sig is None
    r.engine.set_blocklist(blocklist("www.sbisec.co.jp.account-verify.top"))
    listed, _ = r.login("A2", *who["A2"], referrer=url)
    assert r.signal(listed, "phishing_referrer").evidence["listed"] is True


@pytest.mark.parametrize(
    "referrer",
    [None, OWN_PAGE, "https://www.google.com/search?q=sbi", "https://example.org/news/2025"],
)
def test_ordinary_referrers_say_nothing(referrer):
    r, who = familiar_rig("A1")
    r.engine.set_blocklist(blocklist(LISTED, "*.phish-kit.top"))
    eid, d = r.login("A1", *who["A1"], referrer=referrer)
    assert r.signal(eid, "phishing_referrer") is None
    assert d.action == "allow"


def test_the_firms_own_domain_on_the_list_by_mistake_is_never_held_against_a_login():
    r, who = familiar_rig("A1")
    r.engine.set_blocklist(blocklist("*.sbisec.co.jp"))
    eid, d = r.login("A1", *who["A1"], referrer=OWN_PAGE)
    assert r.signal(eid, "phishing_referrer") is None and d.action == "allow"


def test_a_new_list_replaces_the_old_one_in_the_running_guard():
    r, who = familiar_rig("A1", "A2")
    r.engine.set_blocklist(blocklist(LISTED))
    first, _ = r.login("A1", *who["A1"], referrer=LISTED_URL)
    r.engine.set_blocklist(blocklist("other.phish-kit.top"))
    second, _ = r.login("A2", *who["A2"], referrer=LISTED_URL)
    assert r.signal(first, "phishing_referrer").evidence["listed"] is True
    after = r.signal(second, "phishing_referrer")
    assert after is None or after.evidence["listed"] is False  # the scorer may still judge it


# --- the policy names the file ------------------------------------------------------------------


def policy_with(tmp_path: Path, line: str) -> Path:
    text = default_policy_path().read_text(encoding="utf-8")
    text = text.replace("travel_llr = 2.0\n", f"travel_llr = 2.0\n{line}\n", 1)
    path = tmp_path / "broker.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_policy_names_the_list_relative_to_itself_and_the_guard_loads_it(tmp_path: Path):
    (tmp_path / "bl.txt").write_text(
        f"# brokerguard phishing block-list v1\n{LISTED}\tsbi\t2025-07-01T09:00:00Z\t0.98\n",
        encoding="utf-8",
    )
    policy = load_policy(policy_with(tmp_path, 'blocklist = "bl.txt"'))
    assert policy.detectors.login.blocklist == str(tmp_path / "bl.txt")
    guard = BrokerGuard(policy)
    assert guard.referrers.blocklist is not None
    assert guard.referrers.blocklist.match(LISTED_URL).score == 0.98
    assert BrokerGuard(load_policy()).referrers.blocklist is None  # the default names none


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("ok.phish-kit.top\nhttps://bad.example/path\n", "host"),
        ("ok.phish-kit.top\tsbi\tyesterday\n", "first_seen"),
        ("ok.phish-kit.top\tsbi\t2025-07-01T00:00:00Z\t7\n", "score"),
        ("a.phish-kit.top\n\nb.phish-kit.top\tsbi\t\t0.5\textra\n", "at most 4"),
    ],
    ids=["url-not-host", "bad-time", "score-out-of-range", "too-many-fields"],
)
def test_bad_list_line_is_a_policy_error_naming_file_line_and_problem(tmp_path, body, problem):
    (tmp_path / "bl.txt").write_text("# brokerguard phishing block-list v1\n" + body)
    bad_line = 1 + len(body.rstrip("\n").split("\n"))
    policy = load_policy(policy_with(tmp_path, 'blocklist = "bl.txt"'))
    with pytest.raises(PolicyError) as caught:
        BrokerGuard(policy)
    message = str(caught.value)
    assert caught.value.field == "detectors.login.blocklist"
    assert f"bl.txt:{bad_line}:" in message
    assert problem in message


def test_missing_list_file_is_a_policy_error(tmp_path: Path):
    policy = load_policy(policy_with(tmp_path, 'blocklist = "nowhere.txt"'))
    with pytest.raises(PolicyError, match="nowhere.txt: cannot read"):
        BrokerGuard(policy)


def test_the_export_reads_back_into_the_guard(tmp_path: Path):
    from brokerguard.phishing import write_blocklist

    path = tmp_path / "bl.txt"
    write_blocklist(path, [score_url("https://www.sbisec.co.jp.account-verify.top/ETGate/")])
    listed = load_blocklist(path)
    r, who = familiar_rig("A1")
    r.engine.set_blocklist(listed)
    eid, d = r.login("A1", *who["A1"], referrer="https://www.sbisec.co.jp.account-verify.top/x?y=1")
    assert r.signal(eid, "phishing_referrer").evidence["listed"] is True
    assert d.action != "allow"


def test_simulated_runs_carry_no_referrer_and_a_list_changes_none_of_their_decisions(
    tmp_path: Path,
):
    from brokerguard.events import LoginAttempt, read_ndjson
    from brokerguard.sim.scenario import parse_scenario
    from brokerguard.sim.world import simulate

    scenario = parse_scenario(
        'name = "tiny"\nseed = 5\nstart = "2025-03-17T00:00:00+09:00"\ndays = 3\n'
        "[broker]\ninvestors = 150\n"
        '[[attack]]\nkind = "phishing"\nstart = "2025-03-18T09:00:00+09:00"\nvictims = 8\n'
    )
    plain, listed = tmp_path / "plain", tmp_path / "listed"
    simulate(scenario, BrokerGuard(), plain)
    simulate(scenario, BrokerGuard(blocklist=blocklist(LISTED, "*.phish-kit.top")), listed)
    with open(plain / "events.ndjson", "rb") as f:
        logins = [e for e in read_ndjson(f) if isinstance(e, LoginAttempt)]
    assert logins and all(e.referrer is None for e in logins)
    decisions = (plain / "decisions.ndjson").read_bytes()
    assert decisions and decisions == (listed / "decisions.ndjson").read_bytes()
