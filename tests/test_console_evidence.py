"""Every evidence key the engine emits has a name on the alert page, in Japanese and English.

The keys are collected twice: from the signals a simulated run really raises (through the
engine's trace), and from the literal keys of every ``Signal(..., {...})`` in the engine's
source, so a key added to a detector without a name in the catalogue fails here."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import msgspec
import pytest
from console_helpers import ROOT

from brokerguard.guards import engine_guard
from brokerguard.sim.scenario import load_scenario
from brokerguard.sim.world import simulate
from brokerguard.web.i18n import LANGS, translator
from brokerguard.web.pages_alerts import _signal

ENGINE = Path(__file__).resolve().parents[1] / "src" / "brokerguard" / "engine"


class _Host:
    def reason(self, code: str) -> None:
        return None


def _names(evidence: dict[str, Any], lang: str) -> list[dict]:
    signal = {"code": "x", "llr": 1.0, "evidence": evidence}
    return _signal(signal, lang, translator(lang), _Host())["evidence"]


def _source_keys() -> set[str]:
    keys: set[str] = set()
    for path in ENGINE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "Signal":
                for arg in node.args[2:]:
                    if isinstance(arg, ast.Dict):
                        keys |= {k.value for k in arg.keys if isinstance(k, ast.Constant)}
            # evidence built up in a variable: evidence = {...}; evidence["k"] = ...
            built = isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict)
            if built and any(getattr(t, "id", "") == "evidence" for t in node.targets):
                keys |= {k.value for k in node.value.keys if isinstance(k, ast.Constant)}
            stored = isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store)
            named = stored and getattr(node.value, "id", "") == "evidence"
            if named and isinstance(node.slice, ast.Constant):
                keys.add(node.slice.value)
    return keys


@pytest.fixture(scope="module")
def emitted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every evidence key (with a value seen for it) of a simulated run's signals."""
    scenario = load_scenario(ROOT / "scenarios" / "tiny.toml")
    scenario = msgspec.structs.replace(
        scenario, days=3, broker=msgspec.structs.replace(scenario.broker, investors=300)
    )
    guard = engine_guard()
    seen: dict[str, Any] = {}

    def trace(event: Any, signals: list, decision: Any) -> None:
        for s in signals:
            for key, value in s.evidence.items():
                seen.setdefault(key, value)

    guard.trace = trace
    simulate(scenario, guard, tmp_path_factory.mktemp("evidence") / "run")
    return seen


@pytest.mark.parametrize("lang", LANGS)
def test_every_evidence_key_a_run_emits_has_a_name(emitted: dict[str, Any], lang: str) -> None:
    assert emitted, "the simulated run raised signals with evidence"
    assert any(":" in k for k in emitted), "the run shared infrastructure (prefixed keys)"
    unnamed = [r["key"] for r in _names(emitted, lang) if not r["name"]]
    assert not unnamed, f"evidence keys without a name in {lang}: {unnamed}"


@pytest.mark.parametrize("lang", LANGS)
def test_every_evidence_key_in_the_engine_source_has_a_name(lang: str) -> None:
    keys = _source_keys()
    assert {"ip", "sold_share", "hours_ago"} <= keys, keys
    unnamed = [r["key"] for r in _names(dict.fromkeys(keys, 1), lang) if not r["name"]]
    assert not unnamed, f"evidence keys without a name in {lang}: {unnamed}"


@pytest.mark.parametrize("lang", LANGS)
def test_prefixed_keys_name_their_kind_and_show_the_value(lang: str) -> None:
    t = translator(lang)
    rows = _names({"ip:203.0.113.5": 2, "asn:64500": 3, "ua:64500/abcd": 4}, lang)
    kinds = [t("evidence_kind_ip"), t("evidence_kind_asn"), t("evidence_kind_ua")]
    for row, kind, shown in zip(rows, kinds, ("203.0.113.5", "64500", "64500/abcd"), strict=True):
        assert kind in row["name"] and shown in row["name"], row
        assert not kind.startswith("evidence_"), kind


@pytest.mark.parametrize("lang", LANGS)
def test_infrastructure_and_times_in_values_read_as_such(lang: str) -> None:
    """A canary's ``key`` and a confirmed fraud's ``keys`` showed the engine's codes
    (``asn:64500``), and ``since`` (when re-verification was asked) a count of seconds since
    1970 (1,742,432,400): now the kind in the reader's language with its value, and a time."""
    t = translator(lang)
    rows = _names(
        {"key": "ip:203.0.113.5", "keys": ["asn:64500", "ua:64500/abcd"], "since": 1742432400.0},
        lang,
    )
    values = {row["key"]: row["value"] for row in rows}
    assert values["key"] == f"{t('entity_ip')} 203.0.113.5"
    assert values["keys"] == f"{t('entity_asn')} 64500, {t('entity_ua')} 64500/abcd"
    assert values["since"] == "2025-03-20 01:00 UTC"
    assert not any(t(f"entity_{kind}").startswith("entity_") for kind in ("ip", "asn", "ua"))
