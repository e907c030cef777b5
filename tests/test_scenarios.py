"""The shipped scenario files: they load, together they vary the attack, and the small end-to-end
one simulates in seconds with victims, pumped symbols and labelled confounders."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from brokerguard.baselines import AllowAll
from brokerguard.evaluate import evaluate_run
from brokerguard.events import Order, read_ndjson
from brokerguard.sim.scenario import Scenario, load_scenario
from brokerguard.sim.world import simulate
from brokerguard.truth import Truth, load_truth

SCENARIO_DIR = Path(__file__).parent.parent / "scenarios"
SCENARIOS = sorted(SCENARIO_DIR.glob("*.toml"))
SLACK = timedelta(minutes=30)  # a confounder's session may trade minutes after it starts


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_every_scenario_file_loads(path: Path) -> None:
    scenario = load_scenario(path)
    assert scenario.name == path.stem
    assert scenario.confounder or not scenario.attack, "an attack without confounders"


def test_the_scenarios_together_vary_the_attack_and_the_confounders() -> None:
    scenarios = [load_scenario(p) for p in SCENARIOS]
    attacks = [a for s in scenarios for a in s.attack]
    confounders = [c for s in scenarios for c in s.confounder]
    brokers = [s.broker for s in scenarios]
    assert {a.origin for a in attacks} == {"overseas_hosting", "jp_proxy", "mixed", "tor"}
    assert {a.kind for a in attacks} == {"phishing", "session_theft"}
    assert {a.relay_otp for a in attacks if a.kind == "phishing"} == {True, False}
    assert {m for a in attacks for m in a.target_markets} == {"TSE", "HK", "CN", "US"}
    assert {a.waves for a in attacks} >= {1, 2, 3, 4, 6}
    assert len({a.wave_interval_minutes for a in attacks}) >= 4
    assert max(a.takeover_days for a in attacks) >= 10
    assert (
        0 in {a.criminal_accounts for a in attacks}
        and max(a.criminal_accounts for a in attacks) >= 5
    )
    assert max(a.change_contact_share for a in attacks) >= 0.5
    assert max(a.withdraw_share for a in attacks) >= 0.2
    assert {c.kind for c in confounders} == {"frenzy", "selloff", "travel", "new_device"}
    assert {c.market for c in confounders if c.kind == "frenzy"} == {"TSE", "HK", "CN", "US"}
    assert max(c.buyers for c in confounders if c.kind == "frenzy") >= 1000
    assert max(c.share for c in confounders if c.kind == "selloff") >= 0.25
    assert {b.otp_channel for b in brokers} >= {"sms", "email", "totp"}
    assert False in {b.password_fallback for b in brokers}
    assert max(b.passkey_enrolled for b in brokers) >= 0.3


@pytest.fixture(scope="module")
def e2e(tmp_path_factory: pytest.TempPathFactory) -> tuple[Scenario, Path]:
    scenario = load_scenario(SCENARIO_DIR / "e2e-small.toml")
    out = tmp_path_factory.mktemp("e2e") / "allow-all"
    simulate(scenario, AllowAll(), out)
    return scenario, out


def test_e2e_small_has_victims_and_pumped_symbols(e2e: tuple[Scenario, Path]) -> None:
    scenario, out = e2e
    metrics = evaluate_run(out)
    expected = sum(a.victims for a in scenario.attack)
    assert metrics["attack"]["victims"] == expected
    assert metrics["attack"]["victims_with_unauthorized_trades"] >= 0.9 * expected
    assert metrics["attack"]["unauthorized_value_jpy"] > 0
    truth = load_truth(out / "truth.json")
    assert {p.attack for p in truth.pumped_symbols} == {0, 1}
    assert {p.market for p in truth.pumped_symbols} == {"TSE", "HK"}


def _orders(out: Path) -> list[Order]:
    with open(out / "events.ndjson", "rb") as stream:
        return [e for e in read_ndjson(stream) if isinstance(e, Order) and e.action == "new"]


def test_e2e_small_truth_labels_the_frenzy_and_the_selloff(e2e: tuple[Scenario, Path]) -> None:
    scenario, out = e2e
    truth: Truth = load_truth(out / "truth.json")
    frenzy, selloff = truth.confounders
    assert frenzy.kind == "frenzy" and frenzy.market == "TSE" and frenzy.symbol
    assert len(frenzy.accounts) == scenario.confounder[0].buyers
    assert frenzy.start >= scenario.confounder[0].start and frenzy.end > frenzy.start
    assert selloff.kind == "selloff" and selloff.accounts and not selloff.symbol

    orders = _orders(out)
    # Under allow-all every labelled buyer buys the frenzy symbol within the hour (plus the
    # minutes a session takes), and sellers sell in the sell-off window.
    bought = {
        o.account
        for o in orders
        if (o.symbol, o.market, o.side) == (frenzy.symbol, frenzy.market, "buy")
        and frenzy.start <= o.ts <= frenzy.end + SLACK
    }
    assert set(frenzy.accounts) <= bought
    sold = {
        o.account
        for o in orders
        if o.side == "sell" and selloff.start <= o.ts <= selloff.end + SLACK
    }
    assert len(sold & set(selloff.accounts)) >= 0.9 * len(selloff.accounts)
