"""Scenario files: every key has a default, a bad key or value is an error naming it."""

from __future__ import annotations

from pathlib import Path

import pytest

from brokerguard.sim.scenario import ScenarioError, load_scenario, parse_scenario

SCENARIOS = sorted((Path(__file__).parent.parent / "scenarios").glob("*.toml"))


def test_an_empty_scenario_takes_the_documented_defaults() -> None:
    scenario = parse_scenario('name = "x"')
    assert scenario.days == 21
    assert scenario.broker.investors == 20_000
    assert scenario.broker.passkey_enrolled == 0.05
    assert scenario.broker.password_fallback is True
    assert scenario.attack == [] and scenario.confounder == []


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_shipped_scenarios_load(path: Path) -> None:
    scenario = load_scenario(path)
    assert scenario.name == path.stem


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[broker]\ninvestor = 3", "unknown field `investor`"),
        ('[[attack]]\nrelay_otp = "yes"', "attack[0].relay_otp: Expected `bool`"),
        ("[broker]\npasskey_enrolled = 1.5", "broker.passkey_enrolled: Expected `float` <= 1.0"),
        ('[[attack]]\norigin = "moon"', "attack[0].origin: Invalid enum value 'moon'"),
        ("[[attack]]\nstart = 2024-01-01T00:00:00+09:00", "attack[0].start"),
        ('[[confounder]]\nkind = "frenzy"', "confounder[0]: Object missing required field"),
        ("start = 2025-03-17T00:00:00", "start: Expected `datetime` with a timezone"),
        ("days = [", "not valid TOML"),
        ("[broker]\ninvestors = 0", "broker.investors: Expected `int` >= 1"),
        ("[[attack]]\ntarget_markets = []", "target_markets must name at least one market"),
        ("[[attack]]\nrelogins = 21", "attack[0].relogins: Expected `int` <= 20"),
        ("start = 9999-12-31T00:00:00+09:00", "start"),  # start + days: an OverflowError
        ("start = 0001-01-01T00:00:00+09:00\ndays = 1", "start"),
    ],
)
def test_bad_scenarios_name_the_key(text: str, message: str) -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, source="bad.toml")
    assert str(info.value).startswith("bad.toml: ")
    assert message in str(info.value)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read scenario"):
        load_scenario(tmp_path / "nope.toml")


def test_a_file_that_is_not_utf8_is_a_clear_error(tmp_path: Path) -> None:
    """It was a UnicodeDecodeError traceback out of ``brokerguard simulate``."""
    path = tmp_path / "latin1.toml"
    path.write_bytes('name = "caf\xe9"\n'.encode("latin-1"))
    with pytest.raises(ScenarioError, match="not UTF-8") as info:
        load_scenario(path)
    assert str(info.value).startswith(str(path))
