"""``brokerguard demo``: the spring-2025 attack against the baselines and BrokerGuard, side by side.

The command itself (runs, progress, printing) is in :mod:`brokerguard.cli`; here are the pieces
it needs: where the shipped scenario is, and how much money each guard kept out of the
criminals' hands compared with no defense at all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table

__all__ = ["DEMO_GUARDS", "DEMO_SCENARIO", "find_scenario", "money_protected", "protected_table"]

DEMO_GUARDS: tuple[str, ...] = ("allow-all", "otp-at-login", "passkey-at-login", "brokerguard")
DEMO_SCENARIO = Path("scenarios/spring-2025.toml")
BASELINE = "allow-all"


def find_scenario(path: Path | None = None) -> Path:
    """The scenario file to run: ``path`` as given, else the shipped spring-2025 scenario.

    The shipped one is looked for under the current directory first, then in the source tree
    this package was installed from (``make demo`` works from the repository and from elsewhere).
    Raises FileNotFoundError naming every place looked at.
    """
    if path is not None:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: scenario file not found")
        return path
    places = [Path.cwd() / DEMO_SCENARIO, Path(__file__).resolve().parents[2] / DEMO_SCENARIO]
    for place in places:
        if place.is_file():
            return place
    looked = ", ".join(str(p) for p in places)
    raise FileNotFoundError(f"{DEMO_SCENARIO} not found (looked at {looked}); pass --scenario PATH")


def money_protected(results: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Per guard: unauthorized value, and how much less than under allow-all (¥ and share).

    The baseline is the ``allow-all`` run when there is one, else the first run. The share is
    None when the baseline lost nothing.
    """
    if not results:
        return {}
    base = next((r for r in results if r.get("guard") == BASELINE), results[0])
    lost = float(base["attack"]["unauthorized_value_jpy"])
    out: dict[str, dict[str, float | None]] = {}
    for result in results:
        value = float(result["attack"]["unauthorized_value_jpy"])
        saved = lost - value
        out[str(result["guard"])] = {
            "unauthorized_value_jpy": value,
            "protected_jpy": saved,
            "protected_share": saved / lost if lost else None,
        }
    return out


def protected_table(results: list[dict[str, Any]]) -> Table:
    """The money-protected figures as a table with English and Japanese labels."""
    protected = money_protected(results)
    base = next((r["guard"] for r in results if r.get("guard") == BASELINE), None)
    base = base or (results[0]["guard"] if results else BASELINE)
    table = Table(title=f"Money protected vs {base} / {base}と比べて守られた金額")
    rows = (
        ("unauthorized value / 不正取引・出金額", "unauthorized_value_jpy"),
        ("money protected / 守られた金額", "protected_jpy"),
        ("share protected / 守られた割合", "protected_share"),
    )
    columns: dict[str, list[str]] = {}
    for guard, figures in protected.items():
        cells = columns[guard] = []
        for _, key in rows:
            value = figures[key]
            if value is None:
                cells.append("—")
            elif key == "protected_share":
                # two decimals, so that 99.98% is never shown as a round 100.0%
                cells.append(f"{value:.2%}")
            else:  # a guard can lose more than allow-all: the closed loop differs
                cells.append(f"{'-' if value < 0 else ''}¥{abs(value):,.0f}")
    table.add_column("")
    for guard, cells in columns.items():
        table.add_column(guard, justify="right", no_wrap=True, min_width=max(map(len, cells)))
    for i, (label, _) in enumerate(rows):
        table.add_row(label, *(cells[i] for cells in columns.values()))
    return table
