"""Monthly refresh of the phishing model, measured month by month on the month that follows.

    python bench/phishing_refresh.py [DATA] [--months 2025-04..2025-06] [--json FILE]
    python bench/phishing_refresh.py [DATA] --months 2025-07..2025-10 --test-months

Why this exists: JPCERT/CC publishes its list of confirmed phishing URLs every month, and a
broker's own team confirms reports every day. A watch that is retrained on what has been
confirmed so far is how the model would be run, and phishing kits live for weeks: a kit seen
in May is often still sending in June from new domains with the same paths and shapes. The
shipped ``model.json`` is frozen at 2025-06 (the issue keeps 2025-07..10 for testing). This
bench measures what retraining each month would add, *prequentially*: every month M is judged
by a model fitted only on months before M, so no URL is ever judged by a model that saw it.

Protocol, fixed and committed (2026-11-27) before it ran on any month:

* **Refreshed model for month M**: the shipped recipe of ``train_phishing.py`` unchanged (L2
  3e-5, feature set 1, every brand's rows with other brands at half weight, the same negatives,
  bias shifted so that rules + model flag at most 0.02% of the held-back benign quarter), fitted
  on the phishing rows of 2024-01..M-1.
* **Frozen model**: the same recipe fitted once, on 2024-01 up to the month before the first
  judged month, and used for every judged month (what a team that never retrains has).
* **Judged**: every broker-brand row of M (labels with 証券/證券), scored by ``score_url`` with
  the model file, exactly as ``bench/phishing.py`` counts recall (a URL reported again in a
  later month is judged again; a refreshed model may have seen it: the "novel kits" column
  shows recall on the URLs whose kit - registrable domain or shared-platform tenant - none of
  the refreshed model's training rows had).
* **False positives**: on the build months (validation) the held-back benign quarter of the
  tune half is split by host; the bias is calibrated on one half and the false positives counted
  on the other, both ways (as ``bench/phishing_cv.py`` does). With ``--test-months`` the bias is
  calibrated exactly as ``train_phishing.py`` does (the whole held-back quarter; the fit through
  2025-06 then reproduces the shipped model, which the bench checks and prints) and the false
  positives are counted on the benign "test" half, as ``bench/phishing.py`` does.
* **Rule**: the test months are read (once, as the sixth read) only if on the build months
  2025-04..2025-06 the refreshed models beat the frozen one by at least 3 points of pooled
  recall with every model at or under 0.1% held-out benign FPR. Either way the shipped default
  stays the build-months model (the test months must stay held out); a broker runs refreshes
  with ``train_phishing.py --through MONTH`` and ``phish score --model-file``.

The data is read in place (default ``../shared/data``), never copied; URLs are strings only,
never fetched. Featurising takes a few minutes, each fit about three on one core.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))

import phishing_cv as cv  # noqa: E402
import train_phishing as tp  # noqa: E402
from phishing import TRAIN_LAST, hard_negatives, month_range, read_benign, read_phish  # noqa: E402

from brokerguard.phishing import URLError, default_registry, score_url  # noqa: E402
from brokerguard.phishing._model import Model  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data"
SHIPPED = ROOT / "src" / "brokerguard" / "phishing" / "model.json"
FIRST = "2024-01"
FPR_TARGET = 0.001
MARGIN = 0.03  # pooled recall points the refreshed models must gain before the test is read


def previous(month: str) -> str:
    y, m = map(int, month.split("-"))
    return f"{y - 1:04d}-12" if m == 1 else f"{y:04d}-{m - 1:02d}"


@dataclass
class Inputs:
    """Featurised rows shared by every fit."""

    phish: tp.Matrix  # phishing rows 2024-01..the last month a fit may use
    months: np.ndarray
    broker: np.ndarray
    kits: np.ndarray
    negs: tp.Matrix  # the recipe's negatives: fit-part benign, https forms, paths, own, modern
    held: tp.Matrix  # the held-back benign quarter (calibration)
    held_side: np.ndarray  # validation: which half of it calibrates (0/1)
    fp_set: tp.Matrix | None  # test mode: the benign test half (false positives counted here)
    fp_items: int  # its items, the official domains and unreadable lines included


def load(data: Path, last_fit: str, test: bool, console: Console) -> Inputs:
    """Read and featurise, with the recipe's benign split (test) or the CV's host split."""
    if not test:
        tp._quarter = cv.held_back  # grouped by host, so a half-split FPR is honest
    reg = default_registry()
    rows = tp.read_phish_rows(data, month_range(f"{FIRST}..{last_fit}"))
    benign = read_benign(data, "tune")
    held: list[str] = []
    base: list[str] = []
    for items in benign.values():
        for x in items:
            (held if tp._quarter(x) else base).append(x)
    negs = base + tp.augment(benign) + tp.modern_negatives(benign) + hard_negatives()
    console.print(
        f"phishing rows {len(rows):,} ({FIRST}..{last_fit}, broker "
        f"{sum(b for *_, b in rows):,}); negatives {len(negs):,}; held back {len(held):,}"
    )
    started = time.perf_counter()
    with console.status("featurising (a few minutes)"):
        p_mat, kept = tp.featurize([u for u, _, _ in rows], reg, 1)
        rows = [r for r, k in zip(rows, kept, strict=True) if k]
        h_mat, h_kept = tp.featurize(held, reg, 1)
        fp_set = None
        if test:
            test_half = [x for v in read_benign(data, "test").values() for x in v]
            fp_set = tp.featurize(test_half, reg, 1)
        out = Inputs(
            phish=p_mat,
            months=np.array([m for _, m, _ in rows]),
            broker=np.array([b for *_, b in rows]),
            kits=np.array([tp.kit(u) for u, _, _ in rows]),
            negs=tp.featurize(negs, reg, 1)[0],
            held=h_mat,
            held_side=np.array([cv.calib_side(x) for x, k in zip(held, h_kept, strict=True) if k]),
            fp_set=fp_set[0] if fp_set else None,
            fp_items=len(test_half) if test else 0,
        )
    console.print(f"featurised in {time.perf_counter() - started:.0f} s")
    return out


def fit_through(d: Inputs, last: str) -> tuple[np.ndarray, float]:
    """The recipe's fit on the phishing rows up to ``last`` (before the bias calibration)."""
    train = d.months <= last
    pos_w = np.where(d.broker[train], 1.0, tp.OTHER_WEIGHT)
    return cv.fit_rows(d.phish, train, [(d.negs, None)], pos_w)


@dataclass
class Calibrated:
    """One fitted model under one bias calibration, and its false positives."""

    model: Model
    fp: int
    n: int


def calibrations(d: Inputs, w: np.ndarray, b: float, last: str, test: bool) -> list[Calibrated]:
    """Test mode: the recipe's one calibration, false positives on the benign test half.
    Validation: calibrate on one half of the held-back quarter, count on the other, both ways."""
    held_m, held_off = tp.margins(d.held, w, b), d.held.arrays()[3]
    out = []
    if test:
        assert d.fp_set is not None
        shift = tp.shift_for_budget(held_m, held_off, tp.FPR_BUDGET)
        wq, bq = tp.quantize(w, b + shift)
        fp = int(np.sum(tp.combined(d.fp_set, wq, bq) >= 0))
        out.append(Calibrated(_as_model(wq, bq, last), fp, d.fp_items))
        return out
    for side in (0, 1):
        calib, check = d.held_side == side, d.held_side != side
        shift = cv.allowed_shift(held_m[calib], held_off[calib], tp.FPR_BUDGET)
        wq, bq = tp.quantize(w, b + shift)
        fp = int(np.sum(tp.combined(d.held, wq, bq)[check] >= 0))
        out.append(Calibrated(_as_model(wq, bq, last), fp, int(check.sum())))
    return out


def _as_model(w: np.ndarray, b: float, last: str) -> Model:
    """Through the model file, so the scorer sees exactly what a written model gives."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.json"
        tp.write_model(path, w, b, last=last)
        return Model.from_json(json.loads(path.read_text(encoding="utf-8")))


def is_flagged(url: str, model: Model | None) -> bool:
    """``phish score``'s verdict (rules alone with ``model=None``); a non-URL is a miss."""
    try:
        return score_url(url, model=model or False).is_phishing
    except URLError:
        return False


def flagged(urls: list[str], models: list[Calibrated]) -> float:
    """How many of ``urls`` rules + model flag, averaged over the calibrations."""
    return sum(is_flagged(u, c.model) for c in models for u in urls) / len(models)


def rules_flagged(urls: list[str]) -> int:
    return sum(is_flagged(u, None) for u in urls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--months", default="2025-04..2025-06", help="the months judged")
    parser.add_argument(
        "--test-months",
        action="store_true",
        help="allow judging the held-out months 2025-07..10 (each run spends them once more)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    console = Console(width=max(Console().width, 140))
    months = month_range(args.months)
    test = any(m > TRAIN_LAST for m in months)
    if test and not args.test_months:
        sys.exit("error: --months reaches the held-out test months; add --test-months to read them")
    if args.test_months and not test:
        sys.exit("error: --test-months given but --months are build months")
    started = time.perf_counter()
    frozen_end = previous(months[0])
    d = load(args.data, previous(months[-1]), test, console)
    ends = [previous(m) for m in months]
    fits: dict[str, list[Calibrated]] = {}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task("fits (one per judged month)", total=len(ends))
        for last in ends:
            w, b = fit_through(d, last)
            fits[last] = calibrations(d, w, b, last, test)
            progress.advance(task)
    if test and frozen_end == TRAIN_LAST:
        shipped = Model.from_json(json.loads(SHIPPED.read_text(encoding="utf-8")))
        ours = fits[frozen_end][0].model
        same = ours.weights == shipped.weights and abs(ours.bias - shipped.bias) < 1e-9
        console.print(
            f"fit through {frozen_end} {'reproduces' if same else 'DIFFERS FROM'} the shipped "
            f"model.json (bias {ours.bias:.3f} vs {shipped.bias:.3f})"
        )

    table = Table(title="Monthly refresh: each month judged by models fitted before it")
    for col in ("month", "broker URLs", "rules", f"frozen (to {frozen_end})", "refreshed"):
        table.add_column(col, justify="right")
    for col in ("novel-kit URLs", "frozen, novel", "refreshed, novel", "refreshed fit to"):
        table.add_column(col, justify="right")
    rows_out = []
    totals = dict(n=0, rules=0.0, frozen=0.0, fresh=0.0, nn=0, nf=0.0, nr=0.0)
    for month, last in zip(months, ends, strict=True):
        urls = [u for u, _ in read_phish(args.data, [month])]
        seen = set(d.kits[d.months <= last].tolist())
        novel = [u for u in urls if tp.kit(u) not in seen]
        r = dict(
            month=month,
            fit_to=last,
            n=len(urls),
            rules=rules_flagged(urls),
            frozen=flagged(urls, fits[frozen_end]),
            fresh=flagged(urls, fits[last]),
            nn=len(novel),
            nf=flagged(novel, fits[frozen_end]),
            nr=flagged(novel, fits[last]),
        )
        rows_out.append(r)
        for k in totals:
            totals[k] += r[k]
        table.add_row(
            month,
            f"{r['n']:,}",
            cv.pct(r["rules"], r["n"]),
            cv.pct(r["frozen"], r["n"]),
            cv.pct(r["fresh"], r["n"]),
            f"{r['nn']:,}",
            cv.pct(r["nf"], r["nn"]),
            cv.pct(r["nr"], r["nn"]),
            last,
        )
    t = totals
    table.add_row(
        "[bold]pooled[/bold]",
        f"{t['n']:,}",
        cv.pct(t["rules"], t["n"]),
        cv.pct(t["frozen"], t["n"]),
        f"[bold]{cv.pct(t['fresh'], t['n'])}[/bold]",
        f"{t['nn']:,}",
        cv.pct(t["nf"], t["nn"]),
        cv.pct(t["nr"], t["nn"]),
        "",
    )
    console.print(table)

    fpr = Table(
        title="False positives of each model ("
        + (
            "benign test half"
            if test
            else "held-back benign quarter, calibrated on the other half, both ways"
        )
        + ")"
    )
    for col in ("fit to", "false positives", "items", "FPR"):
        fpr.add_column(col, justify="right")
    worst = 0.0
    for last, cals in fits.items():
        fp, n = sum(c.fp for c in cals), sum(c.n for c in cals)
        worst = max(worst, fp / n)
        fpr.add_row(last, f"{fp:,}", f"{n:,}", cv.pct(fp, n))
    console.print(fpr)
    gain = (t["fresh"] - t["frozen"]) / max(t["n"], 1)
    console.print(
        f"refreshed - frozen: {gain:+.2%} pooled recall; worst model FPR {worst:.3%} "
        f"(rule: >= {MARGIN:.0%} and <= {FPR_TARGET:.1%} on the build months)"
    )
    if not test:
        ok = gain >= MARGIN and worst <= FPR_TARGET
        console.print(
            "[bold]rule met: the protocol may be run once on the test months[/bold]"
            if ok
            else "[bold]rule not met: the test months are not to be read for this[/bold]"
        )
    console.print(f"done in {time.perf_counter() - started:.0f} s")
    if args.json:
        fp_rows = {last: [c.fp for c in cals] for last, cals in fits.items()}
        args.json.write_text(json.dumps({"months": rows_out, "fp": fp_rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
