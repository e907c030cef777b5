"""Benchmark: the phishing scorer on JPCERT/CC's real broker-brand phishing URLs, with baselines.

    python bench/phishing.py [--data ../shared/data] [--months 2025-07..2025-10]
                             [--benign-split test|tune|all] [--json FILE]

Recall per broker brand and overall on the chosen months of ``phishurl/`` (default: the held-out
test months 2025-07..2025-10), false-positive rate on ``benign/`` (Majestic top 15k, OpenDNS top
and random, ISCX-URL-2016 benign URLs) and on the brokers' own URLs (hard negatives), side by
side with three baselines: dnstwist's permutations of the brokers' domains, "brand name anywhere
in the host name", and "a host label within edit distance 2 of a brand token".

The scorer was built on 2024-01..2025-06 and on the "tune" half of the benign set (hosts split by
a hash); the "test" half was not looked at. ``--show-misses N`` prints missed URLs and false
positives for tuning, and refuses to do so on test months or the test half. The data is read in
place and never copied; URLs are treated as strings only, never fetched.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path

from rapidfuzz.distance import Levenshtein

from brokerguard.phishing import (
    URLError,
    default_registry,
    dnstwist_lookalikes,
    generate_lookalikes,
    parse_url,
    score_url,
)
from brokerguard.phishing._model import Model

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data"
TEST_MONTHS = ("2025-07", "2025-08", "2025-09", "2025-10")
TRAIN_LAST = "2025-06"


def month_range(spec: str) -> list[str]:
    """``2024-01..2025-06`` -> every month in between, inclusive."""
    first, _, last = spec.partition("..")
    last = last or first
    y, m = map(int, first.split("-"))
    out = []
    while f"{y:04d}-{m:02d}" <= last:
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def read_phish(data: Path, months: list[str]) -> list[tuple[str, str]]:
    """(url, description) rows of broker brands (labels with 証券/證券) in the given months."""
    rows = []
    for month in months:
        path = data / "phishurl" / month[:4] / f"{month.replace('-', '')}.csv"
        if not path.is_file():
            sys.exit(f"error: {path}: not found (is --data right?)")
        with path.open(encoding="utf-8", newline="") as f:
            for rec in csv.DictReader(f):
                label = (rec.get("description") or "").strip()
                if "証券" in label or "證券" in label:
                    rows.append(((rec.get("URL") or "").strip(), label))
    return rows


def _half(host: str) -> str:
    return "tune" if hashlib.sha1(host.encode()).digest()[0] % 2 == 0 else "test"


def read_benign(data: Path, split: str) -> dict[str, list[str]]:
    """Benign inputs by source; hosts (and URLs, by their host) kept if in the chosen half."""
    base = data / "benign"
    out: dict[str, list[str]] = {"majestic": [], "opendns": [], "iscx": []}
    with (base / "majestic" / "majestic_million_top15000.csv").open(encoding="utf-8") as f:
        for rec in csv.DictReader(f):
            d = rec["Domain"].strip().lower()
            if d and not d.startswith("."):
                out["majestic"].append(d)
    seen: set[str] = set()
    for name in ("opendns-top-domains.txt", "opendns-random-domains.txt"):
        for line in (base / "opendns" / name).read_text(encoding="utf-8").splitlines():
            d = line.strip().lower()
            if d and d not in seen:
                seen.add(d)
                out["opendns"].append(d)
    lines = (base / "iscx_url2016" / "Benign_list_big_final.csv").read_text(encoding="utf-8")
    for line in lines.splitlines()[1:]:
        u = line.strip()
        if u:
            out["iscx"].append(u if "://" in u else "http://" + u)
    if split == "all":
        return out
    kept: dict[str, list[str]] = {}
    for source, items in out.items():
        kept[source] = [x for x in items if _half(_host_of(x)) == split]
    return kept


def _host_of(text: str) -> str:
    try:
        return parse_url(text).host
    except URLError:
        return text.lower()


def hard_negatives() -> list[str]:
    """The brokers' own URLs: registry URLs, bare domains, and their Google-Translate forms."""
    out: list[str] = []
    for brand in default_registry():
        out.extend(brand.legit_urls)
        for d in brand.domains + brand.related_domains:
            out += [f"https://{d}/", f"https://www.{d}/"]
        for u in brand.legit_urls:
            p = parse_url(u)
            dashed = p.host.replace("-", "--").replace(".", "-")
            out.append(
                f"https://{dashed}.translate.goog{p.path}?_x_tr_sl=ja&_x_tr_tl=en&_x_tr_hl=en"
            )
    return sorted(set(out))


# --- detectors ------------------------------------------------------------------------------


class Ours:
    """The shipped scorer: the rules alone, or with ``model=True`` rules + learned model (what
    ``brokerguard phish score`` uses unless ``--no-model``)."""

    def __init__(self, model: bool | Model = False) -> None:
        self.errors = 0
        self.model = model
        self.name = "rules+model" if model else "rules"

    def __call__(self, url: str) -> tuple[bool, str | None]:
        try:
            f = score_url(url, model=self.model)
        except URLError:
            self.errors += 1
            return False, None
        return f.is_phishing, f.brand


class DnstwistBaseline:
    """Flag a URL whose host or registrable domain is a dnstwist permutation of a brand domain."""

    name = "dnstwist"

    def __init__(self) -> None:
        self.domains: dict[str, str] = {}
        for brand in default_registry():
            for d in brand.domains:
                for fuzzed in dnstwist_lookalikes(d):
                    self.domains.setdefault(fuzzed, brand.id)

    def __call__(self, url: str) -> tuple[bool, str | None]:
        try:
            p = parse_url(url)
        except URLError:
            return False, None
        hit = self.domains.get(p.host) or self.domains.get(p.registrable)
        return hit is not None, hit


class _HostBaseline:
    """A baseline that looks at the host only; the firms' own and group domains never match."""

    def __init__(self) -> None:
        reg = default_registry()
        self.official = set(reg.official) | set(reg.related)

    def __call__(self, url: str) -> tuple[bool, str | None]:
        try:
            p = parse_url(url)
        except URLError:
            return False, None
        if p.registrable in self.official:
            return False, None
        return self.match(p.host)

    def match(self, host: str) -> tuple[bool, str | None]:
        raise NotImplementedError


class SubstringBaseline(_HostBaseline):
    """Flag a URL whose host name contains a brand token anywhere (own domains excluded)."""

    name = "brand-substring"

    def __init__(self) -> None:
        super().__init__()
        reg = default_registry()
        self.tokens = [(t.replace("-", ""), b) for t, b in reg.strong_tokens + reg.weak_tokens]

    def match(self, host: str) -> tuple[bool, str | None]:
        host = host.replace("-", "")
        for token, bid in self.tokens:
            if token in host:
                return True, bid
        return False, None


class EditDistanceBaseline(_HostBaseline):
    """Flag a URL with a host label within Levenshtein distance 2 of a brand token (len >= 5)."""

    name = "edit-distance<=2"

    def __init__(self) -> None:
        super().__init__()
        reg = default_registry()
        self.tokens = [
            (t.replace("-", ""), b) for t, b in reg.strong_tokens if len(t.replace("-", "")) >= 5
        ]

    def match(self, host: str) -> tuple[bool, str | None]:
        for label in host.split("."):
            flat = label.replace("-", "")
            for token, bid in self.tokens:
                if Levenshtein.distance(flat, token, score_cutoff=2) <= 2:
                    return True, bid
        return False, None


# --- measuring ------------------------------------------------------------------------------


def pct(n: int, d: int) -> str:
    return f"{100 * n / d:6.2f}%" if d else "    n/a"


def run(detector, items: Iterable[str]) -> list[tuple[bool, str | None]]:
    return [detector(x) for x in items]


def lookalike_coverage(phish: list[tuple[str, str]]) -> list[str]:
    """How many phishing registrable domains each generator would have predicted."""
    reg = default_registry()
    ours: set[str] = set()
    twist: set[str] = set()
    for brand in reg:
        ours.update(generate_lookalikes(brand))
        for d in brand.domains:
            twist.update(dnstwist_lookalikes(d))
    regs = []
    for url, _ in phish:
        try:
            regs.append(parse_url(url).registrable)
        except URLError:
            regs.append("")
    n = len(regs)
    lines = [
        "Lookalike generation for registration monitoring (registrable domain of each URL exactly"
        " among the generated names):"
    ]
    for name, names in (("dnstwist fuzzers", twist), ("brokerguard affixes", ours)):
        hit = sum(r in names for r in regs)
        share = pct(hit, n).strip()
        lines.append(f"  {name:<20} {len(names):>9,} names  cover {hit:>5,} / {n:,} URLs ({share})")
    return lines


def _model(path: Path) -> Model:
    return Model.from_json(json.loads(path.read_text(encoding="utf-8")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--months", default=f"{TEST_MONTHS[0]}..{TEST_MONTHS[-1]}")
    parser.add_argument("--benign-split", choices=("test", "tune", "all"), default="test")
    parser.add_argument("--show-misses", type=int, default=0, metavar="N")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument(
        "--model-file",
        type=Path,
        default=None,
        help="score 'rules+model' with this model.json (e.g. train_phishing.py --val-out)",
    )
    args = parser.parse_args()
    months = month_range(args.months)
    touches_test = any(m > TRAIN_LAST for m in months) or args.benign_split != "tune"
    if args.show_misses and touches_test:
        sys.exit(
            "error: --show-misses only on training months (<= 2025-06) and --benign-split tune"
        )

    started = time.perf_counter()
    phish = read_phish(args.data, months)
    benign = read_benign(args.data, args.benign_split)
    hard = hard_negatives()
    reg = default_registry()
    label_brand = reg.by_description

    detectors = [
        Ours(),
        Ours(model=_model(args.model_file) if args.model_file else True),
        DnstwistBaseline(),
        SubstringBaseline(),
        EditDistanceBaseline(),
    ]
    results: dict[str, dict] = {}
    for det in detectors:
        p_res = run(det, [u for u, _ in phish])
        b_res = {src: run(det, items) for src, items in benign.items()}
        h_res = run(det, hard)
        results[det.name] = {"phish": p_res, "benign": b_res, "hard": h_res}

    names = [d.name for d in detectors]
    span = f"{months[0]}..{months[-1]}"
    print(f"Phishing watch benchmark — months {span}, benign half: {args.benign_split}")
    print(f"data: {args.data} (read in place; URLs never fetched)\n")
    by_label: dict[str, list[int]] = defaultdict(list)
    for i, (_, label) in enumerate(phish):
        by_label[label].append(i)
    header = f"{'recall on broker-brand phishing URLs':<38}{'URLs':>7}" + "".join(
        f"{n:>18}" for n in names
    )
    print(header)
    print("-" * len(header))
    for label, idx in sorted(by_label.items(), key=lambda kv: -len(kv[1])):
        cells = "".join(
            f"{pct(sum(results[n]['phish'][i][0] for i in idx), len(idx)):>18}" for n in names
        )
        print(f"{label:<38}{len(idx):>7}{cells}")
    n_all = len(phish)
    cells = "".join(f"{pct(sum(r[0] for r in results[n]['phish']), n_all):>18}" for n in names)
    print(f"{'ALL broker brands':<38}{n_all:>7}{cells}")
    attributed = []
    for n in names:
        ok = sum(
            1
            for (hit, brand), (_, label) in zip(results[n]["phish"], phish, strict=True)
            if hit and brand is not None and brand == label_brand.get(label)
        )
        attributed.append(ok)
    cells = "".join(f"{pct(a, n_all):>18}" for a in attributed)
    print(f"{'  ...flagged with the right brand':<38}{n_all:>7}{cells}")
    print()
    header = f"{'false-positive rate':<38}{'items':>7}" + "".join(f"{n:>18}" for n in names)
    print(header)
    print("-" * len(header))
    total_b = 0
    fp_tot = Counter()
    for src, items in benign.items():
        total_b += len(items)
        cells = ""
        for n in names:
            fp = sum(r[0] for r in results[n]["benign"][src])
            fp_tot[n] += fp
            cells += f"{pct(fp, len(items)):>18}"
        print(f"{'benign ' + src:<38}{len(items):>7}{cells}")
    cells = "".join(f"{pct(fp_tot[n], total_b):>18}" for n in names)
    print(f"{'ALL benign':<38}{total_b:>7}{cells}")
    cells = "".join(f"{pct(sum(r[0] for r in results[n]['hard']), len(hard)):>18}" for n in names)
    print(f"{'brokers own URLs (hard negatives)':<38}{len(hard):>7}{cells}")
    cells = "".join(f"{fp_tot[n]:>18}" for n in names)
    print(f"{'  false positives (count)':<38}{'':>7}{cells}")
    ours = detectors[0]
    print(f"\nlines the scorer could not parse (counted as benign): {ours.errors}")
    print()
    for line in lookalike_coverage(phish):
        print(line)
    print(f"\n{time.perf_counter() - started:.1f} s")

    if args.show_misses:
        ours_res = results["rules+model"]
        ours_model = detectors[1].model
        misses = [
            (u, lab) for (u, lab), (hit, _) in zip(phish, ours_res["phish"], strict=True) if not hit
        ]
        print(f"\n--- {len(misses)} missed (first {args.show_misses}) ---")
        for u, lab in misses[: args.show_misses]:
            print(f"{lab}\t{u}")
        print(f"\n--- false positives (first {args.show_misses}) ---")
        shown = 0
        for src, items in benign.items():
            for x, (hit, brand) in zip(items, ours_res["benign"][src], strict=True):
                if hit and shown < args.show_misses:
                    f = score_url(x, model=ours_model)
                    print(src, x, brand, [(r.code, r.detail) for r in f.reasons])
                    shown += 1
        for x, (hit, _) in zip(hard, ours_res["hard"], strict=True):
            if hit:
                print("hard", x)

    if args.json:
        summary = {
            "months": months,
            "benign_split": args.benign_split,
            "phish_urls": n_all,
            "benign_items": total_b,
            "hard_negatives": len(hard),
            "detectors": {
                n: {
                    "recall": sum(r[0] for r in results[n]["phish"]) / max(n_all, 1),
                    "recall_by_label": {
                        lab: sum(results[n]["phish"][i][0] for i in idx) / len(idx)
                        for lab, idx in by_label.items()
                    },
                    "fpr_benign": fp_tot[n] / max(total_b, 1),
                    "fpr_hard": sum(r[0] for r in results[n]["hard"]) / max(len(hard), 1),
                }
                for n in names
            },
        }
        args.json.write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
