"""End to end: the engine meets the product's targets on the small scenario, closed loop.

The same targets as ``bench/targets.py`` on the shipped scenarios, here on ``e2e-small.toml``
(3,000 customers, 6 days, a phishing wave through Japanese proxies with relayed codes, an
infostealer wave from Tor, a frenzy and a sell-off), so that a change that breaks detection or
adds friction fails the test suite, not only the benchmark.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from brokerguard.evaluate import Campaign, evaluate_run
from brokerguard.guards import load_guard
from brokerguard.sim.scenario import load_scenario
from brokerguard.sim.world import simulate
from brokerguard.truth import load_truth

E2E = Path(__file__).parent.parent / "scenarios" / "e2e-small.toml"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    scenario = load_scenario(E2E)
    out = {}
    for guard in ("allow-all", "passkey-at-login", "brokerguard"):
        run = tmp_path_factory.mktemp(guard)
        simulate(scenario, load_guard(guard), run)
        out[guard] = run
    return out


def value(run: Path) -> float:
    return evaluate_run(run)["attack"]["unauthorized_value_jpy"]


def test_unauthorized_value_is_at_most_1_percent_of_allow_all_and_below_passkeys(runs):
    allow_all, passkey, ours = (
        value(runs[g]) for g in ("allow-all", "passkey-at-login", "brokerguard")
    )
    assert allow_all > 10_000_000, "the scenario must do real damage when nobody defends"
    assert ours <= 0.01 * allow_all
    assert ours < passkey


def test_honest_customers_meet_little_friction_and_nobody_is_locked(runs):
    legit = evaluate_run(runs["brokerguard"])["legit"]
    assert legit["logins"] > 1000 and legit["orders"] > 500
    assert legit["login_challenge_rate"] <= 0.02
    assert legit["order_hold_rate"] <= 0.002
    assert legit["accounts_locked"] == 0


def test_no_frenzy_buy_and_no_sell_off_sell_is_held(runs):
    run = runs["brokerguard"]
    truth = load_truth(run / "truth.json")
    frenzy = [c for c in truth.confounders if c.kind == "frenzy"]
    selloff = [c for c in truth.confounders if c.kind == "selloff"]
    assert frenzy and selloff
    held = {
        rec["event"]
        for rec in map(msgspec.json.decode, (run / "decisions.ndjson").read_bytes().splitlines())
        if rec["point"] == "order" and rec["action"] != "allow"
    }
    from brokerguard.events import Order, read_ndjson

    attackers = {eid for victim in truth.victims for eid in victim.events}
    with (run / "events.ndjson").open("rb") as stream:
        for event in read_ndjson(stream):
            if not isinstance(event, Order) or event.id not in held or event.id in attackers:
                continue
            for c in frenzy:
                assert not (event.account in c.accounts and event.symbol == c.symbol), event
            for c in selloff:
                during = c.start <= event.ts <= c.end
                assert not (event.account in c.accounts and event.side == "sell" and during), event


def test_every_pumped_symbol_is_named_by_a_campaign_within_10_minutes(runs):
    run = runs["brokerguard"]
    truth = load_truth(run / "truth.json")
    assert truth.pumped_symbols, "the attackers must at least try to pump"
    decoder = msgspec.json.Decoder(Campaign)
    raised: dict[tuple[str, str], datetime] = {}
    for line in (run / "campaigns.ndjson").read_bytes().splitlines():
        campaign = decoder.decode(line)
        for s in campaign.symbols:
            key = (s.market, s.symbol)
            raised[key] = min(raised.get(key, campaign.raised_at), campaign.raised_at)
    for pumped in truth.pumped_symbols:
        at = raised.get((pumped.market, pumped.symbol))
        assert at is not None, f"{pumped.market}:{pumped.symbol} was never named"
        assert (at - pumped.first_buy).total_seconds() <= 600


def test_the_targets_hold_when_the_attacks_start_in_the_engines_first_hour(tmp_path):
    # A cold start: the engine has seen no customer yet when the phishing wave (20 minutes in)
    # and the session theft through Tor (40 minutes in) begin. Regressions this catches: the
    # home country taken from the first sign-in (a traveller) for the next thousand, and the
    # Tor exits inside SURF's research network taken for an ISP (2.2% of allow-all's value).
    scenario = load_scenario(E2E)
    early = [
        msgspec.structs.replace(a, start=scenario.start + timedelta(minutes=20 * (i + 1)))
        for i, a in enumerate(scenario.attack)
    ]
    scenario = msgspec.structs.replace(scenario, name="e2e-cold", attack=early)
    values = {}
    for guard in ("allow-all", "brokerguard"):
        run = tmp_path / guard
        simulate(scenario, load_guard(guard), run)
        values[guard] = value(run)
    assert values["allow-all"] > 0
    assert values["brokerguard"] <= 0.01 * values["allow-all"]
    legit = evaluate_run(tmp_path / "brokerguard")["legit"]
    assert legit["login_challenge_rate"] <= 0.02
    assert legit["accounts_locked"] == 0
