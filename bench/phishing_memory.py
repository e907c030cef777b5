"""Would a memory of confirmed phishing reports catch what the rules miss? Measured, build months.

    python bench/phishing_memory.py [DATA] [--months 2025-04..2025-06]

Why this exists: issue 6's misses are mostly URLs with no brand and no kit shape (bare random or
compromised domains). A team that confirms reports every day could remember each confirmed
report's infrastructure - its site (registrable domain, or the tenant on a shared platform) and
its path when the path is not a common one - and flag a new URL that shares either. This bench
measures that idea *prequentially by day*: a URL confirmed on day D is matched only against
reports (of every brand) confirmed before D, from 2024-01 on. It judges the broker-brand URLs of
the chosen build months that the rules alone miss (the shipped model is fitted on these months,
so its misses here would be in-sample), and counts how many benign items of the tune half
share a signature with the whole memory (the price of using it). The test months are not read.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from phishing import month_range, read_benign  # noqa: E402

from brokerguard.phishing import URLError, parse_url, score_url  # noqa: E402
from brokerguard.phishing._platforms import platform_kind  # noqa: E402
from brokerguard.phishing._words import words  # noqa: E402

# Paths too common to say anything about who put them there.
COMMON_PATHS = frozenset(
    words("""
    login index.html index.php index.htm jp ja en web home page info m sp mobile user member
    signin account main top auth admin app api news search html wp-admin wp-login.php
    """)
)


def signatures(url: str) -> set[tuple[str, str]]:
    """The site and, when it is not a common one, the path of a URL."""
    try:
        p = parse_url(url)
    except URLError:
        return set()
    out = {("site", p.site if platform_kind(p.registrable) else p.registrable)}
    segments = [s for s in p.path.split("/") if s]
    if segments and segments[0].lower() not in COMMON_PATHS and len(segments[0]) >= 4:
        out.add(("path", "/".join(segments).lower()))
    return out


def reports(data: Path, months: list[str]) -> list[tuple[str, str, str]]:
    """(day, url, label) of every confirmed report in the months, in date order."""
    rows = []
    for month in months:
        path = data / "phishurl" / month[:4] / f"{month.replace('-', '')}.csv"
        with path.open(encoding="utf-8", newline="") as f:
            for rec in csv.DictReader(f):
                day = (rec.get("date") or "")[:10]
                rows.append((day, (rec.get("URL") or "").strip(), rec.get("description") or ""))
    return sorted(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "data", nargs="?", default=str(Path(__file__).resolve().parents[2] / "shared/data")
    )
    ap.add_argument("--months", default="2025-04..2025-06")
    args = ap.parse_args()
    data, judged = Path(args.data), month_range(args.months)
    if max(judged) > "2025-06":
        sys.exit("error: --months: the test months 2025-07..2025-10 stay held out")
    rows = reports(data, month_range(f"2024-01..{max(judged)}"))
    memory: set[tuple[str, str]] = set()
    pending: list[str] = []
    today = ""
    per_month: dict[str, Counter] = {m: Counter() for m in judged}
    for day, url, label in rows:
        if day != today:  # what was confirmed on earlier days joins the memory
            for u in pending:
                memory |= signatures(u)
            pending, today = [], day
        pending.append(url)
        month = day[:7].replace("/", "-")
        if month not in per_month or not ("証券" in label or "證券" in label):
            continue
        count = per_month[month]
        count["urls"] += 1
        try:
            flagged = score_url(url).verdict == "phishing"
        except URLError:
            flagged = False
        if flagged:
            continue
        count["rule misses"] += 1
        if signatures(url) & memory:
            count["memory catches"] += 1
    for u in pending:
        memory |= signatures(u)
    print(f"{'judged month':<14}{'broker URLs':>12}{'rule misses':>13}{'memory catches':>16}")
    total = Counter()
    for month, count in per_month.items():
        total += count
        print(
            f"{month:<14}{count['urls']:>12}{count['rule misses']:>13}{count['memory catches']:>16}"
        )
    print(
        f"{'pooled':<14}{total['urls']:>12}{total['rule misses']:>13}{total['memory catches']:>16}"
    )
    benign = read_benign(data, "tune")
    items = [x if "://" in x else "http://" + x for xs in benign.values() for x in xs]
    shared = sum(1 for x in items if signatures(x) & memory)
    print(f"benign tune items sharing a signature with the memory: {shared} of {len(items)}")


if __name__ == "__main__":
    main()
