"""Scenario sweep: the engine's targets on random scenarios nobody tuned it on.

    python bench/scenario_sweep.py [--count N] [--seed S] [--out DIR] [--jobs N]
                                   [--guard NAME|POLICY.toml] [--investors MIN-MAX] [--days MIN-MAX]

The shipped scenario files were written by the same people who tuned the engine, so meeting the
targets on them says little about a broker's next attack. This bench draws ``--count`` scenarios
at random from the whole space a scenario file can describe — broker settings, one to three
attacks of either kind from any origin into any markets at any pace, zero to three confounders —
writes them as ordinary scenario files under ``OUT/scenarios/`` (so any of them can be re-run
with ``bench/targets.py``), runs each under allow-all, passkey-at-login and the engine, and
judges them with exactly the targets of ``bench/targets.py``. It prints each scenario's table,
then how many scenarios met each target. The same ``--seed`` draws the same scenarios.

The ranges are wide but plausible (a few thousand investors and one or two weeks, to keep a run
short); they are listed in :func:`draw_scenario`. A bench prints; it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))

from targets import _run_all, orders_stopped_rate, summary_line  # noqa: E402  (a sibling)

from brokerguard.guards import UnknownGuard, load_guard  # noqa: E402
from brokerguard.sim.scenario import parse_scenario  # noqa: E402

MARKETS = ("TSE", "HK", "CN", "US")
ORIGINS = ("overseas_hosting", "jp_proxy", "mixed", "tor")
OTP_CHANNELS = ("sms", "email", "totp", "none")
JST = "+09:00"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, datetime):
        return f'"{value.isoformat()}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def _table(header: str, fields: dict[str, Any]) -> list[str]:
    return [header, *(f"{key} = {_toml_value(value)}" for key, value in fields.items()), ""]


def _moment(rng: random.Random, start: datetime, days: int, *, latest_day: int) -> datetime:
    """A time of day when such a thing plausibly starts: market hours, evening or night."""
    day = rng.randrange(0, max(1, min(days, latest_day)))
    hour = rng.choice((8, 9, 9, 10, 12, 13, 14, 18, 20, 21, 22, 23, 1))
    return start + timedelta(days=day, hours=hour, minutes=rng.randrange(0, 60))


@dataclass(frozen=True)
class Space:
    """The ranges a draw picks from: ``(low, high)`` pairs are uniform, tuples are choices.

    ``NARROW`` is what every published sweep used (the same seed draws the same scenarios);
    ``WIDE`` reaches the corners a broker's own scenario files might: one address for a whole
    wave, waves a minute apart, a fifth of the broker hit, most customers on passkeys, customers
    who fail their own step-ups, travel and new phones ten times as common, crowds of thousands.
    """

    passkey_enrolled: tuple[float, ...]
    otp_pass_rate: tuple[float, float]
    passkey_pass_rate: tuple[float, float]
    oob_confirm_rate: tuple[float, float]
    give_up_rate: tuple[float, float]
    travel_rate: tuple[float, float]
    new_device_rate: tuple[float, float]
    victims_per_investors: int  # at most investors // this many victims per attack
    ip_pool: tuple[int, ...]
    markets: tuple[int, int]
    targets: tuple[int, int]
    waves: tuple[int, int]
    wave_interval_minutes: tuple[int, ...]
    takeover_days: tuple[int, int]
    criminal_accounts: tuple[int, int]
    withdraw_share: tuple[float, ...]
    frenzy_buyers: tuple[int, int]
    selloff_share: tuple[float, float]
    habit_share: tuple[float, float]  # travel / new-device confounders
    habit_days: tuple[int, int]


NARROW = Space(
    passkey_enrolled=(0.0, 0.02, 0.05, 0.1, 0.2, 0.4),
    otp_pass_rate=(0.9, 0.99),
    passkey_pass_rate=(0.95, 0.995),
    oob_confirm_rate=(0.8, 0.95),
    give_up_rate=(0.0, 0.05),
    travel_rate=(0.002, 0.015),
    new_device_rate=(0.001, 0.006),
    victims_per_investors=30,
    ip_pool=(3, 5, 10, 25, 40, 80),
    markets=(1, 2),
    targets=(1, 3),
    waves=(1, 5),
    wave_interval_minutes=(10, 20, 30, 45, 60, 90, 120),
    takeover_days=(1, 4),
    criminal_accounts=(0, 4),
    withdraw_share=(0.0, 0.0, 0.05, 0.2, 0.4),
    frenzy_buyers=(100, 900),
    selloff_share=(0.05, 0.3),
    habit_share=(0.005, 0.03),
    habit_days=(1, 5),
)

WIDE = Space(
    passkey_enrolled=(0.0, 0.05, 0.2, 0.5, 0.8),
    otp_pass_rate=(0.6, 0.99),
    passkey_pass_rate=(0.85, 0.995),
    oob_confirm_rate=(0.5, 0.95),
    give_up_rate=(0.0, 0.2),
    travel_rate=(0.002, 0.05),
    new_device_rate=(0.001, 0.02),
    victims_per_investors=5,
    ip_pool=(1, 2, 3, 10, 40, 200),
    markets=(1, 3),
    targets=(1, 5),
    waves=(1, 10),
    wave_interval_minutes=(1, 5, 15, 60, 240),
    takeover_days=(1, 7),
    criminal_accounts=(0, 10),
    withdraw_share=(0.0, 0.2, 0.5, 0.8),
    frenzy_buyers=(100, 3000),
    selloff_share=(0.05, 0.6),
    habit_share=(0.005, 0.1),
    habit_days=(1, 10),
)

SPACES = {"narrow": NARROW, "wide": WIDE}


def draw_scenario(
    rng: random.Random,
    index: int,
    investors: tuple[int, int] = (3000, 9000),
    days: tuple[int, int] = (7, 14),
    space: Space = NARROW,
) -> str:
    """One random scenario as TOML text (validated by the scenario loader before it is used)."""
    days = rng.randint(*days)
    start = datetime.fromisoformat(
        f"2025-{rng.randint(1, 10):02d}-{rng.randint(1, 25):02d}T00:00:00{JST}"
    )
    investors = rng.randrange(investors[0], investors[1] + 1, 500)
    lines = [
        "# drawn by bench/scenario_sweep.py",
        f'name = "sweep-{index:03d}"',
        f"seed = {rng.randrange(1, 10_000)}",
        f"start = {_toml_value(start)}",
        f"days = {days}",
        "",
    ]
    lines += _table(
        "[broker]",
        {
            "investors": investors,
            "passkey_enrolled": round(rng.choice(space.passkey_enrolled), 2),
            "password_fallback": rng.random() < 0.7,
            "otp_channel": rng.choice(OTP_CHANNELS),
            "otp_pass_rate": round(rng.uniform(*space.otp_pass_rate), 3),
            "passkey_pass_rate": round(rng.uniform(*space.passkey_pass_rate), 3),
            "oob_confirm_rate": round(rng.uniform(*space.oob_confirm_rate), 3),
            "give_up_rate": round(rng.uniform(*space.give_up_rate), 3),
            "travel_rate": round(rng.uniform(*space.travel_rate), 4),
            "new_device_rate": round(rng.uniform(*space.new_device_rate), 4),
        },
    )
    for _ in range(rng.choice((1, 1, 2, 2, 3))):
        kind = "session_theft" if rng.random() < 0.3 else "phishing"
        markets = rng.sample(MARKETS, rng.randint(*space.markets))
        lines += _table(
            "[[attack]]",
            {
                "kind": kind,
                "start": _moment(rng, start, days, latest_day=days - 2),
                "victims": rng.randrange(20, max(21, investors // space.victims_per_investors)),
                "relay_otp": rng.random() < 0.7,
                "origin": rng.choice(ORIGINS),
                "ip_pool": rng.choice(space.ip_pool),
                "change_contact_share": round(rng.uniform(0.0, 0.6), 2),
                "liquidate_share": round(rng.uniform(0.5, 1.0), 2),
                "target_markets": markets,
                "targets": rng.randint(*space.targets),
                "waves": rng.randint(*space.waves),
                "wave_interval_minutes": rng.choice(space.wave_interval_minutes),
                "takeover_days": rng.randint(*space.takeover_days),
                "criminal_accounts": rng.randint(*space.criminal_accounts),
                "withdraw_share": round(rng.choice(space.withdraw_share), 2),
            },
        )
    for _ in range(rng.choice((0, 1, 2, 3))):
        kind = rng.choice(("frenzy", "selloff", "travel", "new_device"))
        fields: dict[str, Any] = {
            "kind": kind,
            "start": _moment(rng, start, days, latest_day=days - 1),
        }
        if kind == "frenzy":
            fields["buyers"] = rng.randrange(*space.frenzy_buyers, 50)
            fields["market"] = rng.choice(MARKETS)
        elif kind == "selloff":
            fields["share"] = round(rng.uniform(*space.selloff_share), 2)
        else:
            fields["share"] = round(rng.uniform(*space.habit_share), 3)
            fields["days"] = rng.randint(*space.habit_days)
        lines += _table("[[confounder]]", fields)
    return "\n".join(lines)


def tally(results: list[dict[str, Any]]) -> Table:
    """How many scenarios met each target, and which did not."""
    applicable: Counter[str] = Counter()
    failed: dict[str, list[str]] = {}
    for r in results:
        for t in r["targets"]:
            if t["status"] == "n/a":
                continue
            applicable[t["target"]] += 1
            if t["status"] is False:
                failed.setdefault(t["target"], []).append(r["name"])
    table = Table(title="targets over the drawn scenarios", title_justify="left")
    table.add_column("target")
    table.add_column("met", justify="right")
    table.add_column("not met in")
    for target, n in applicable.items():
        missed = failed.get(target, [])
        table.add_row(target, f"{n - len(missed)} of {n}", ", ".join(missed))
    return table


def spread(results: list[dict[str, Any]], engine: str) -> Table:
    """The figures behind the pass/fail counts, over all drawn scenarios."""
    shares, challenge, held = [], [], []
    cancelled = signed_out = thieves_out = 0
    bothered: Counter[str] = Counter()
    accounts: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    for r in results:
        runs = r["runs"]
        allow = runs["allow-all"]["metrics"]["attack"]["unauthorized_value_jpy"]
        mine = runs[engine]["metrics"]["attack"]["unauthorized_value_jpy"]
        if allow:
            shares.append(mine / allow)
        legit = runs[engine]["metrics"]["legit"]
        challenge.append(legit["login_challenge_rate"])
        held.append(orders_stopped_rate(legit))
        cancelled += legit.get("orders_cancelled", 0)
        signed_out += legit.get("sessions_signed_out", 0)
        thieves_out += runs[engine]["metrics"]["attack"].get("sessions_signed_out", 0)
        for c in runs[engine]["confounders"]:
            bothered[c["kind"]] += c["accounts_not_left_alone"]
            accounts[c["kind"]] += c["accounts"]
            for k, n in c["not_allowed"].items():
                kinds[f"{c['kind']}: {k.replace('_', ' ')}s (events)"] += n
    table = Table(title="spread over the drawn scenarios", title_justify="left")
    table.add_column("figure")
    table.add_column("value", justify="right")
    shares.sort()
    if shares:
        table.add_row("scenarios with attack value under allow-all", f"{len(shares)}")
        table.add_row(
            "unauthorized value, share of allow-all's: median", f"{shares[len(shares) // 2]:.2%}"
        )
        table.add_row("  worst", f"{shares[-1]:.2%}")
        table.add_row("  scenarios at ¥0", f"{sum(x == 0 for x in shares)}")
    table.add_row("legit login challenge rate: highest", f"{max(challenge):.2%}")
    table.add_row("legit orders held or cancelled: highest rate", f"{max(held):.3%}")
    table.add_row("legit open orders cancelled on instruction: all scenarios", f"{cancelled:,}")
    table.add_row("legit sessions signed out on instruction: all scenarios", f"{signed_out:,}")
    table.add_row("attackers' sessions signed out: all scenarios", f"{thieves_out:,}")
    for kind in sorted(accounts):
        table.add_row(
            f"{kind}: customers with any friction", f"{bothered[kind]:,} of {accounts[kind]:,}"
        )
    for what, n in sorted(kinds.items()):
        table.add_row(f"  {what}", f"{n:,}")
    return table


def _span(text: str) -> tuple[int, int]:
    low, _, high = text.partition("-")
    try:
        span = (int(low), int(high or low))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN-MAX, got {text!r}") from None
    if not 0 < span[0] <= span[1]:
        raise argparse.ArgumentTypeError(f"expected 0 < MIN <= MAX, got {text!r}")
    return span


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=12, help="scenarios to draw")
    parser.add_argument("--seed", type=int, default=2026, help="seed of the draw")
    parser.add_argument("--guard", default="brokerguard", help="engine name or policy .toml path")
    parser.add_argument(
        "--investors", type=_span, default=(3000, 9000), help="range of brokers' sizes, MIN-MAX"
    )
    parser.add_argument("--days", type=_span, default=(7, 14), help="range of periods, MIN-MAX")
    parser.add_argument(
        "--space",
        choices=sorted(SPACES),
        default="narrow",
        help="ranges of the other knobs: narrow (published sweeps) or wide (the corners)",
    )
    parser.add_argument("--out", type=Path, default=None, help="keep scenarios and runs here")
    parser.add_argument(
        "--jobs", type=int, default=min(3, os.cpu_count() or 1), help="runs in parallel"
    )
    args = parser.parse_args()
    try:
        engine = load_guard(args.guard).name
    except UnknownGuard as exc:
        parser.error(str(exc))
    console = Console()
    rng = random.Random(args.seed)

    with tempfile.TemporaryDirectory(prefix="bg-sweep-") as tmp:
        out = args.out or Path(tmp)
        folder = out / "scenarios"
        folder.mkdir(parents=True, exist_ok=True)
        scenarios = []
        for i in range(args.count):
            text = draw_scenario(rng, i, args.investors, args.days, SPACES[args.space])
            path = folder / f"sweep-{i:03d}.toml"
            scenario = parse_scenario(text, source=str(path))  # a drawing bug fails here
            path.write_text(text, encoding="utf-8")
            scenarios.append((path, scenario, scenario.seed))
        console.print(
            f"{args.count} scenarios drawn with seed {args.seed} ({args.space}): {folder}"
        )
        results = _run_all(
            scenarios, args.guard, engine, None, out, args.jobs, console, keep=bool(args.out)
        )
        report = {"guard": engine, "draw_seed": args.seed, "scenarios": results}
        (out / "sweep.json").write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
        console.print()
        for r in results:
            console.print(summary_line(r["name"], r["targets"]))
        console.print(tally(results))
        console.print(spread(results, engine))
        if args.out:
            console.print(f"results: {out / 'sweep.json'}")


if __name__ == "__main__":
    main()
