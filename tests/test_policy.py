"""The policy file: the shipped default loads, every mistake is named, and data tunes the engine."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from engine_helpers import ALIBABA_HK, HINET, OCN, TENCENT_CN, Rig, block, device, ip_in

from brokerguard.engine import BrokerGuard
from brokerguard.engine.policy import (
    Decider,
    Policy,
    PolicyError,
    default_policy_path,
    load_policy,
    parse_policy,
)
from brokerguard.engine.signals import SIGNAL_CODES, Signal
from brokerguard.guards import UnknownGuard, load_guard

DEFAULT = default_policy_path().read_text(encoding="utf-8")
# The login section's prior line as the shipped file has it, whatever its value today.
LOGIN_PRIOR = re.search(r"^\[login\]\nprior = \S+", DEFAULT, re.M).group(0)
LOGIN_RULES = """rules = [
  { min_score = 0.5, action = "challenge", factors = ["passkey", "oob"] },
]"""
HOUR_REASON = """[reasons.login_hour]
en = "Signed in at an hour unusual for this account."
ja = "この口座としては普段と異なる時間帯のログインです。"
"""


def edited(old: str, new: str, count: int = 1) -> str:
    assert old in DEFAULT, f"the default policy no longer contains {old!r}"
    return DEFAULT.replace(old, new, count)


def test_the_shipped_default_loads_with_a_reason_for_every_signal():
    policy = load_policy()
    assert isinstance(policy, Policy)
    assert policy.name == "default"
    for code in SIGNAL_CODES:
        assert policy.reasons[code].en and policy.reasons[code].ja, code
    for point in ("login", "order", "withdrawal", "settings"):
        scores = [rule.min_score for rule in policy.point(point).rules]
        assert scores == sorted(scores, reverse=True), point
    assert load_policy(default_policy_path()) == policy


@pytest.mark.parametrize(
    ("text", "names"),
    [
        pytest.param("bogus_setting = 1\n" + DEFAULT, ["bogus_setting"], id="unknown-top-key"),
        pytest.param(
            edited("novelty_concentration = 1.0", "novelty_concentraton = 1.0"),
            ["novelty_concentraton", "detectors.login"],
            id="unknown-nested-key",
        ),
        pytest.param(
            edited(LOGIN_PRIOR, '[login]\nprior = "low"'), ["login.prior"], id="wrong-type"
        ),
        pytest.param(
            edited("min_score = 0.5", "min_score = 1.5"),
            ["login.rules[0].min_score"],
            id="score-above-one",
        ),
        pytest.param(
            edited('action = "hold"', 'action = "block"'),
            ["order.rules[0].action", "block"],
            id="unknown-action",
        ),
        pytest.param(
            edited('factors = ["passkey", "oob"] }', 'factors = ["passkey", "pigeon"] }'),
            ["login.rules[0].factors[1]", "pigeon"],
            id="unknown-factor",
        ),
        pytest.param(
            edited(
                LOGIN_RULES,
                'rules = [\n  { min_score = 0.5, action = "challenge", factors = ["oob"] },\n'
                '  { min_score = 0.9, action = "deny" },\n]',
            ),
            ["login.rules[1].min_score"],
            id="rules-not-descending",
        ),
        pytest.param(
            edited(LOGIN_RULES, 'rules = [\n  { min_score = 0.5, action = "challenge" },\n]'),
            ["login.rules[0].factors"],
            id="challenge-without-factors",
        ),
        pytest.param(
            edited('step_up_factors = ["passkey", "oob"]\n', ""),
            ["settings.step_up_factors", "always_step_up"],
            id="step-up-without-factors",
        ),
        pytest.param(
            DEFAULT + '[reasons.login_mood]\nen = "x"\nja = "x"\n',
            ["reasons", "login_mood"],
            id="reason-for-unknown-code",
        ),
        pytest.param(
            edited("[login]\n", "[login]\nweights = { login_netwrok = 1.0 }\n"),
            ["login.weights.login_netwrok", "unknown signal code"],
            id="unknown-weight-code",
        ),
        pytest.param(
            edited("[login]\n", "[login]\nweights = { login_network = -1.0 }\n"),
            ["login.weights"],
            id="negative-weight",
        ),
        pytest.param(
            edited('en = "Signed in at an hour unusual for this account."', 'en = ""'),
            ["reasons", ".en", "length >= 1"],
            id="empty-reason-text",
        ),
        pytest.param(
            edited("customer_network = { isp", "customer_network = { cloud = 0.1, isp"),
            ["detectors.login.customer_network", "cloud"],
            id="unknown-network-kind",
        ),
        pytest.param(
            edited("customer_network_weight = 100", "customer_network_weight = -1"),
            ["detectors.login.customer_network_weight"],
            id="negative-belief-weight",
        ),
        pytest.param(
            edited(LOGIN_PRIOR, "[login]\nprior = "), ["not valid TOML"], id="invalid-toml"
        ),
        pytest.param(
            edited(LOGIN_PRIOR, "[login]\nprior = nan"),
            ["login.prior", "finite"],
            id="nan-prior",  # the score was NaN, no rule matched: every login was allowed
        ),
        pytest.param(
            edited("[login]\n", "[login]\nweights = { login_network = inf }\n"),
            ["login.weights.login_network", "finite"],
            id="infinite-weight",
        ),
        pytest.param(
            edited("risky_llr = 3.0", "risky_llr = -inf"),
            ["detectors.login.risky_llr", "finite"],
            id="infinite-tunable",
        ),
        pytest.param(
            edited('name = "default"', 'name = "x\\u0000"'),
            ["`name`", "U+0000"],
            id="nul-in-name",  # PostgreSQL refused every record carrying the guard's name
        ),
    ],
)
def test_every_mistake_is_a_policy_error_that_names_it(text, names):
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "broker.toml")
    message = str(caught.value)
    assert message.startswith("broker.toml: ")
    for name in names:
        assert name in message, (name, message)


def test_a_policy_written_for_an_earlier_version_takes_the_shipped_text_of_a_newer_code():
    """A broker's own policy, copied before a version added a signal or an instruction, has no
    text for it: it keeps loading, with the shipped text; its own texts stay its own."""
    older = edited(HOUR_REASON, "")
    older = older.replace(
        'en = "Signed in from a network this account has not used before."',
        'en = "New network."',
    )
    policy = parse_policy(older)
    shipped = load_policy().reasons
    assert policy.reasons["login_hour"] == shipped["login_hour"]
    assert policy.reasons["login_network"].en == "New network."


def test_wrong_type_error_carries_the_field():
    with pytest.raises(PolicyError) as caught:
        parse_policy(edited("lock_after_failures = 10", "lock_after_failures = 2.5"))
    assert caught.value.field == "detectors.login.lock_after_failures"


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("bogus_setting = 1\n" + DEFAULT, "bogus_setting"),
        (
            edited("novelty_concentration = 1.0", "novelty_concentraton = 1.0"),
            "detectors.login.novelty_concentraton",
        ),
    ],
    ids=["top", "nested"],
)
def test_unknown_key_error_carries_the_key_as_its_field(text, field):
    with pytest.raises(PolicyError) as caught:
        parse_policy(text)
    assert caught.value.field == field


def test_an_unreadable_policy_file_is_a_policy_error(tmp_path: Path):
    with pytest.raises(PolicyError, match="cannot read policy"):
        load_policy(tmp_path / "missing.toml")


def test_a_policy_file_that_is_not_utf8_is_a_policy_error(tmp_path: Path):
    """It was a UnicodeDecodeError traceback out of simulate --guard and replay --policy."""
    path = tmp_path / "latin1.toml"
    path.write_bytes(DEFAULT.encode() + "# caf\xe9\n".encode("latin-1"))
    with pytest.raises(PolicyError, match="not UTF-8"):
        load_policy(path)


def mixed_logins(policy: Policy | None) -> list[str]:
    """The same accounts and the same sign-ins, judged under ``policy``; returns the actions."""
    r = Rig(policy)
    accounts = [f"A{i}" for i in range(8)]
    for i, a in enumerate(accounts):
        r.history(a, ip_in(OCN, i), device(i), f"ck-{a}", days=10)
    r.tick(days=1)
    probes = [
        (ip_in(OCN, 0), device(0), "ck-A0"),  # at home, as always
        (ip_in(OCN, 50), device(60, "phone"), "ck-new1"),  # a new phone at a new line
        (ip_in(HINET, 1), device(2), "ck-A2"),  # travelling, own laptop
        (ip_in(HINET, 2), device(61, "phone"), None),  # travelling, a new phone
        (ip_in(block("jp_hosting", "SAKURA"), 3), device(4), None),  # a VPS, cookies cleared
        (ip_in(block("vpn", "NordVPN exit, Japan"), 4), device(62), "ck-new2"),  # a VPN app
        (ip_in(TENCENT_CN, 5), device(63), None),  # a takeover
        (ip_in(ALIBABA_HK, 6), device(64, "phone"), None),  # a takeover
    ]
    actions = []
    for a, (ip, ua, cookie) in zip(accounts, probes, strict=True):
        r.tick(minutes=13)
        _, d = r.login(a, ip, ua, cookie)
        actions.append(d.action)
    return actions


def test_a_lower_login_prior_in_the_file_challenges_fewer_of_the_same_logins(tmp_path: Path):
    lenient = tmp_path / "lenient.toml"
    lenient.write_text(edited(LOGIN_PRIOR, "[login]\nprior = -6.0"), encoding="utf-8")
    default = mixed_logins(None)
    fewer = mixed_logins(load_policy(lenient))
    assert default.count("challenge") > fewer.count("challenge") > 0
    # nothing the lenient policy challenges is let through by the default
    assert all(d == "challenge" for d, f in zip(default, fewer, strict=True) if f == "challenge")


def test_detector_tunables_come_from_the_file(tmp_path: Path):
    strict = tmp_path / "strict.toml"
    strict.write_text(
        edited("lock_after_failures = 10", "lock_after_failures = 3"), encoding="utf-8"
    )
    r = Rig(load_policy(strict))
    actions = []
    for _ in range(3):
        r.tick(minutes=1)
        _, d = r.login("A1", ip_in(TENCENT_CN, 1), device(1), None, success=False)
        actions.append(d.action)
    assert actions == ["deny", "deny", "lock"]


def test_load_guard_reports_a_bad_policy_file_as_an_unknown_guard(tmp_path: Path):
    bad = tmp_path / "bad.toml"
    bad.write_text(edited(LOGIN_PRIOR, '[login]\nprior = "low"'), encoding="utf-8")
    with pytest.raises(UnknownGuard) as caught:
        load_guard(str(bad))
    assert "login.prior" in str(caught.value)
    assert str(bad) in str(caught.value)
    with pytest.raises(UnknownGuard, match="cannot read"):
        load_guard(str(tmp_path / "absent.toml"))


def test_load_guard_runs_the_engine_with_a_good_policy_file(tmp_path: Path):
    good = tmp_path / "tuned.toml"
    good.write_text(edited('name = "default"', 'name = "tuned"'), encoding="utf-8")
    guard = load_guard(str(good))
    assert isinstance(guard, BrokerGuard)
    assert guard.name == "brokerguard:tuned"
    assert guard.policy.name == "tuned"


def test_a_zero_weight_in_the_file_silences_a_signal():
    signals = [Signal("login_network", 4.0, {}), Signal("login_cookie", 4.0, {})]
    default = Decider(load_policy()).decide("login", signals, passkey=False)
    muted_policy = parse_policy(
        edited("[login]\n", "[login]\nweights = { login_network = 0.0, login_cookie = 0.0 }\n")
    )
    muted = Decider(muted_policy).decide("login", signals, passkey=False)
    assert default.action == "challenge"
    assert muted.action == "allow"
    assert muted.reasons == ()
    assert muted.score < default.score


def test_decision_names_the_strongest_signals_only():
    policy = load_policy()
    signals = [
        Signal("login_hour", policy.reason_min_llr / 2, {}),  # too weak to be named
        Signal("login_device", 1.0, {}),
        Signal("login_cookie", 2.0, {}),
        Signal("shared_infrastructure", 3.0, {}),
        Signal("login_network", 4.0, {}),
    ]
    d = Decider(policy).decide("login", signals, passkey=True)
    codes = [reason.code for reason in d.reasons]
    assert codes == ["login_network", "shared_infrastructure", "login_cookie"][: policy.max_reasons]
    assert all(reason.en and reason.ja for reason in d.reasons)
    assert d.factors == ("passkey", "oob")


@pytest.mark.parametrize(
    "old, new",
    [
        (
            "customer_network = { isp = 0.965, hosting = 0.02",
            "customer_network = { isp = 0.965, hosting = 0.0",
        ),
        ("attacker_network = { hosting = 0.5", "attacker_network = { hosting = 0.0"),
        ("attacker_home_share = 0.5", "attacker_home_share = 0.0"),
        ("attacker_home_share = 0.5", "attacker_home_share = 1.0"),
    ],
)
def test_a_share_at_its_bound_decides_every_sign_in(old: str, new: str):
    """0 and 1 are shares the file may give: a kind of network or a country they leave with no
    chance on one side of the ratio is strong evidence, capped as every level is, not a crash
    (a ZeroDivisionError or a math domain error on every such sign-in)."""
    r = Rig(parse_policy(edited(old, new)))
    r.history("A1", ip_in(OCN, 1), device(1), "ck-A1", days=5)
    for ip in (ip_in(ALIBABA_HK, 2), ip_in(TENCENT_CN, 3), ip_in(HINET, 4), ip_in(OCN, 5)):
        for account in ("A1", "NEW"):
            r.tick(minutes=5)
            eid, d = r.login(account, ip, device(2), None)
            assert 0.0 <= d.score <= 1.0
            assert abs(r.total(eid)) < 100
