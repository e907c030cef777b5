"""Train the phishing scorer's learned model (``src/brokerguard/phishing/model.json``).

    python bench/train_phishing.py [--data /work/shared/data] [--out PATH] [--l2 3e-5]
                                   [--budget 0.0002] [--no-modern-negatives]
                                   [--features 1|2] [--kit-weight none|sqrt]
                                   [--through YYYY-MM]

Reads only the training months 2024-01..2025-06 of ``phishurl/`` (every brand: broker-brand rows
and, with a lower weight, other brands' rows as positives) and the "tune" half of ``benign/``
that ``bench/phishing.py`` defines, plus the brokers' own URLs as negatives. The test months
(2025-07..2025-10) and the benign "test" half are never opened.

The model is an L2 logistic regression over hashed named features (``_model.features``) with
the rules' log-odds as a fixed offset, so it learns a correction to the rules. The scorer uses
only its positive part: final log-odds = (rule weights - threshold) + max(0, model logit), so it
adds findings and never removes one of the rules'.

Negatives: three quarters of the benign tune half, the same ISCX URLs in ``https://`` form, each
benign domain with a benign ISCX path, the brokers' own URLs, and each benign domain with one
page address in a common modern shape (``modern_url``: articles, products, videos, IDs, slugs;
generated, not taken from any list), because the benign sets have no modern URLs with paths.

Two fits, both deterministic (full-batch gradient descent, fixed order, no randomness):

1. validation: fit on 2024-01..2025-04 and three quarters of the benign tune half (hash-chosen),
   report recall on the broker rows of 2025-05..2025-06 and FPR on the held-back quarter (the
   fit sees 291 broker rows; an earlier split at 2025-03 left it only 62, too few to judge);
2. final: fit on all of 2024-01..2025-06 and the same three quarters; the bias is then shifted
   so that rules and model together flag at most 0.02% of the held-back benign quarter (the FPR
   budget; the same shift rule is applied in the validation fit).

    PYTHONPATH=src python bench/train_phishing.py --data ../shared/data   # ~5-8 min, 2 cores

Options tried by ``bench/phishing_cv.py`` round 3 (off by default): ``--features 2`` (the
kit-general feature set 2 of ``_model.features``; the model file records its set) and
``--kit-weight sqrt`` (each phishing row weighted by 1/sqrt of the number of training rows of
its kit, so a kit reported thousands of times does not dominate what the model learns).
Neither was chosen (README, round 3), so the defaults stay feature set 1, no kit weight.

``--through YYYY-MM`` fits the same recipe on 2024-01..that month instead (validation on its last
two months): a monthly refresh as a broker would run it on the newest confirmed list, measured
by ``bench/phishing_refresh.py``. Past 2025-06 it needs ``--out`` (the shipped model is fitted
on the build months only) and says that the test months are then in the fit.

The data is read in place, never copied; URLs are strings only, never fetched.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import random
import re
import string
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from phishing import hard_negatives, month_range, read_benign  # noqa: E402

from brokerguard.phishing import THRESHOLD, URLError, default_registry, unwrap  # noqa: E402
from brokerguard.phishing._model import FEATURE_SETS, features, hash_feature  # noqa: E402
from brokerguard.phishing._score import rule_evidence  # noqa: E402
from brokerguard.phishing._words import words  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = Path("/work/shared/data")
DEFAULT_OUT = ROOT / "src" / "brokerguard" / "phishing" / "model.json"
LAST_BUILD = "2025-06"  # the last build month; 2025-07..10 are the test months
TRAIN_MONTHS = month_range(f"2024-01..{LAST_BUILD}")
VAL_MONTHS = TRAIN_MONTHS[-2:]
THROUGH_TEST = False  # --through reaches the test months (a refresh, not the shipped model)
BUCKETS = 1 << 16
L2 = 3e-5  # chosen by bench/phishing_cv.py over 1e-4 (the previous recipe) and 1e-3
STEPS = 400
LR = 0.1
OTHER_WEIGHT = 0.5  # other brands' phishing URLs: useful kit structure, less like the brokers'
FPR_BUDGET = 0.0002  # of the held-back benign quarter the model may add to the rules' findings
FEATURES = 1  # the feature set of _model.features (2: round 3's kit-general additions)
KIT_WEIGHT = "none"  # "sqrt": phishing rows weighted 1/sqrt(rows of their kit)


def read_phish_all(data: Path) -> list[tuple[str, str, bool]]:
    """(url, month, is_broker) for every row of the training months, URLs de-duplicated."""
    # never a test month, unless a refresh (--through) asked for them
    assert all(m <= LAST_BUILD for m in TRAIN_MONTHS) or THROUGH_TEST, TRAIN_MONTHS
    return read_phish_rows(data, TRAIN_MONTHS)


def read_phish_rows(data: Path, months: list[str]) -> list[tuple[str, str, bool]]:
    """(url, month, is_broker) for every row of ``months``, each URL once: under the first month
    it was reported in, and as a broker row if any of its reports names a broker."""
    rows: dict[str, tuple[str, str, bool]] = {}
    for month in months:
        path = data / "phishurl" / month[:4] / f"{month.replace('-', '')}.csv"
        with path.open(encoding="utf-8", newline="") as f:
            for rec in csv.DictReader(f):
                url = (rec.get("URL") or "").strip()
                label = (rec.get("description") or "").strip()
                broker = "証券" in label or "證券" in label
                if url and (url not in rows or (broker and not rows[url][2])):
                    rows[url] = (url, month, broker)
    return list(rows.values())


def _quarter(text: str) -> bool:
    """The held-back quarter of the benign tune half (a second hash, independent of the half)."""
    return hashlib.sha256(text.encode()).digest()[0] % 4 == 0


def augment(benign: dict[str, list[str]]) -> list[str]:
    """Extra negatives against the benign set's bias: its domains have no path and its URLs are
    2015-era ``http://``. Without these the model learns "https with a path = phishing". Each
    fit-part ISCX URL is added in its ``https://`` form, and each fit-part domain gets the path
    of a fit-part ISCX URL (chosen by a hash): real benign hosts with real benign paths."""
    iscx = [u for u in benign["iscx"] if not _quarter(u)]
    paths = []
    for u in iscx:
        rest = u.split("://", 1)[1]
        slash = rest.find("/")
        if slash > 0 and len(rest) - slash > 1:
            paths.append(rest[slash:])
    out = ["https://" + u.split("://", 1)[1] for u in iscx if u.startswith("http://")]
    for src in ("majestic", "opendns"):
        for d in benign[src]:
            if not _quarter(d) and paths:
                k = int.from_bytes(hashlib.sha256(d.encode()).digest()[:4], "big") % len(paths)
                out.append(f"https://{d}{paths[k]}")
    return out


# Shapes of ordinary modern web addresses (articles, products, videos, profiles, docs, search),
# written from how sites are built, not from any list: the benign sets are bare domains and
# 2015-era URLs, so without these the model learns "https with an ID in the path = phishing".
MODERN_SECTIONS = words("""
    article articles news story stories post posts p entry blog blogs item items dp product
    products watch video videos v shorts user users u profile r questions q docs doc wiki en ja
    en-us ja-jp help support topics topic tag tags category c search s pages page event events
    shop store jobs career recipe recipes review reviews status photos gallery release releases
    download downloads issues pull articles/detail ranking live channel maps place
""")


def _token(rng: random.Random, vocab: list[str]) -> str:
    """One path token of a modern site: an opaque ID, a number, a slug or a title."""
    kind = rng.randrange(7)
    alnum = string.ascii_letters + string.digits
    if kind == 0:
        return "".join(rng.choice(alnum) for _ in range(rng.randint(6, 14)))
    if kind == 1:
        return "".join(rng.choice("0123456789abcdef") for _ in range(rng.randint(8, 24)))
    if kind == 2:
        return str(rng.randint(10_000, 9_999_999_999))
    if kind == 3:
        return "-".join(rng.choice(vocab) for _ in range(rng.randint(2, 6)))
    if kind == 4:
        return "_".join(rng.choice(vocab).capitalize() for _ in range(rng.randint(1, 3)))
    if kind == 5:
        return "".join(rng.choice(string.ascii_uppercase + string.digits) for _ in range(10))
    return rng.choice(vocab)


def modern_url(domain: str, rng: random.Random, vocab: list[str]) -> str:
    """A plausible page address on ``domain`` in one of today's common shapes."""
    host = domain if rng.random() < 0.5 or domain.startswith("www.") else "www." + domain
    shape = rng.randrange(6)
    if shape == 0:  # /2024/05/12/slug/
        path = f"/{rng.randint(2012, 2026)}/{rng.randint(1, 12):02d}/{_token(rng, vocab)}"
    elif shape == 1:  # /section?key=value
        key = rng.choice(("v", "id", "q", "p", "page", "s", "ref", "lang", "utm_source"))
        return f"https://{host}/{rng.choice(MODERN_SECTIONS)}?{key}={_token(rng, vocab)}"
    else:  # /section/token[/token]
        path = "/" + rng.choice(MODERN_SECTIONS)
        for _ in range(rng.randint(1, 3) if shape < 4 else 1):
            path += "/" + _token(rng, vocab)
    if rng.random() < 0.2:
        path += rng.choice(("/", ".html", ".htm", ".php", ".aspx"))
    return f"https://{host}{path}"


def modern_negatives(benign: dict[str, list[str]]) -> list[str]:
    """One modern-shaped page address per fit-part benign domain (deterministic)."""
    from english_words import get_english_words_set

    vocab = sorted(w for w in get_english_words_set(["web2"], lower=True) if 3 <= len(w) <= 10)
    rng = random.Random(20250630)
    out = []
    for src in ("majestic", "opendns"):
        for d in benign[src]:
            if not _quarter(d):
                out.append(modern_url(d, rng, vocab))
    return out


class Matrix:
    """Sparse rows: hashed feature indices and values, the rules' offset, and the feature names."""

    def __init__(self) -> None:
        self.idx: list[int] = []
        self.val: list[float] = []
        self.row: list[int] = []
        self.offset: list[float] = []
        self.n = 0

    def add(self, feats: dict[str, float], offset: float) -> None:
        merged: dict[int, float] = {}
        for name, v in feats.items():
            b = hash_feature(name, BUCKETS)
            merged[b] = merged.get(b, 0.0) + v
        for b in sorted(merged):
            self.idx.append(b)
            self.val.append(merged[b])
            self.row.append(self.n)
        self.offset.append(offset)
        self.n += 1

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return (
            np.asarray(self.idx, dtype=np.int64),
            np.asarray(self.val, dtype=np.float64),
            np.asarray(self.row, dtype=np.int64),
            np.asarray(self.offset, dtype=np.float64),
        )


def featurize(urls: list[str], reg, version: int | None = None) -> tuple[Matrix, list[bool]]:
    """Rows for the URLs the model would see (not errors, not the firms' own domains)."""
    v = FEATURES if version is None else version
    mats, kept = featurize_sets(urls, reg, (v,))
    return mats[v], kept


def featurize_sets(
    urls: list[str], reg, versions: tuple[int, ...]
) -> tuple[dict[int, Matrix], list[bool]]:
    """``featurize`` for several feature sets at once (the rules run once per URL); the rows
    are the same for every set."""
    assert all(v in FEATURE_SETS for v in versions), versions
    mats = {v: Matrix() for v in versions}
    kept = []
    for url in urls:
        try:
            hops = unwrap(url)
        except URLError:
            kept.append(False)
            continue
        total, best, reasons, _ = rule_evidence(hops, reg)
        if any(r.code in ("official_domain", "related_domain") for r in reasons):
            kept.append(False)
            continue
        for v, m in mats.items():
            m.add(features(hops[best].url, reasons, v), total - THRESHOLD)
        kept.append(True)
    return mats, kept


def kit(url: str) -> str:
    """The kit a URL belongs to: the judged (innermost) hop's site, or its IP."""
    try:
        p = unwrap(url)[-1].url
    except URLError:
        return url
    return p.host if p.is_ip else (p.site or p.host)


def kit_weights(kits: np.ndarray, mode: str) -> np.ndarray:
    """Per-row weight factor: 1, or 1/sqrt(rows of the row's kit among these rows)."""
    if mode == "none":
        return np.ones(len(kits))
    assert mode == "sqrt", mode
    _, inverse, counts = np.unique(kits, return_inverse=True, return_counts=True)
    return 1.0 / np.sqrt(counts[inverse])


def fit(
    idx: np.ndarray,
    val: np.ndarray,
    row: np.ndarray,
    offset: np.ndarray,
    y: np.ndarray,
    sw: np.ndarray,
) -> tuple[np.ndarray, float]:
    """L2 logistic regression with a fixed offset, full-batch Adam; deterministic."""
    n = len(y)
    w = np.zeros(BUCKETS)
    b = 0.0
    mw = np.zeros(BUCKETS)
    vw = np.zeros(BUCKETS)
    mb = vb = 0.0
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    norm = sw.sum()
    for t in range(1, STEPS + 1):
        z = offset + b + np.bincount(row, weights=w[idx] * val, minlength=n)
        p = 0.5 * (1.0 + np.tanh(0.5 * z))
        g = sw * (p - y) / norm
        gw = np.bincount(idx, weights=val * g[row], minlength=BUCKETS) + L2 * w
        gb = g.sum()
        mw = beta1 * mw + (1 - beta1) * gw
        vw = beta2 * vw + (1 - beta2) * gw * gw
        mb = beta1 * mb + (1 - beta1) * gb
        vb = beta2 * vb + (1 - beta2) * gb * gb
        corr1, corr2 = 1 - beta1**t, 1 - beta2**t
        w -= LR * (mw / corr1) / (np.sqrt(vw / corr2) + eps)
        b -= LR * (mb / corr1) / (np.sqrt(vb / corr2) + eps)
    return w, b


def margins(m: Matrix, w: np.ndarray, b: float) -> np.ndarray:
    """Rules' log-odds plus the model's, as the model was fitted."""
    idx, val, row, offset = m.arrays()
    return offset + b + np.bincount(row, weights=w[idx] * val, minlength=m.n)


def combined(m: Matrix, w: np.ndarray, b: float) -> np.ndarray:
    """The scorer's log-odds: the model only adds evidence (``_score._learned``), so a URL is
    flagged when the rules flag it or rules + model do."""
    offset = m.arrays()[3]
    return offset + np.maximum(0.0, margins(m, w, b) - offset)


def quantize(w: np.ndarray, b: float) -> tuple[np.ndarray, float]:
    """The weights as shipped (3 decimals), so that calibration sees what the scorer uses."""
    return np.round(w, 3), round(float(b), 3)


def shift_for_budget(neg: np.ndarray, offset: np.ndarray, budget: float) -> float:
    """The bias shift that leaves at most ``budget`` of these negatives flagged by rules or
    model (``neg``: rules + model log-odds, ``offset``: the rules' alone)."""
    allowed = max(0, int(budget * len(neg)) - int(np.sum(offset >= 0)))
    order = np.sort(neg[offset < 0])[::-1]  # the ones only the model could flag
    cut = order[allowed]  # the first negative that must stay below 0
    return float(-cut - 0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--l2", type=float, default=L2)
    parser.add_argument(
        "--budget",
        type=float,
        default=FPR_BUDGET,
        help="share of the held-back benign quarter rules + model may flag (bias calibration)",
    )
    parser.add_argument(
        "--no-modern-negatives",
        action="store_true",
        help="leave out the generated modern page addresses (a bench/phishing_cv.py candidate)",
    )
    parser.add_argument(
        "--features",
        type=int,
        choices=FEATURE_SETS,
        default=FEATURES,
        help="feature set of _model.features (2: kit-general additions, recorded in the file)",
    )
    parser.add_argument(
        "--kit-weight",
        choices=("none", "sqrt"),
        default=KIT_WEIGHT,
        help="sqrt: weight each phishing row by 1/sqrt(training rows of its kit)",
    )
    parser.add_argument(
        "--val-out",
        type=Path,
        default=None,
        help="also write the validation fit's model here (for bench/phishing.py --model-file)",
    )
    parser.add_argument(
        "--through",
        default=LAST_BUILD,
        metavar="YYYY-MM",
        help="last month fitted (a monthly refresh; default the last build month, 2025-06)",
    )
    args = parser.parse_args()
    if not re.fullmatch(r"20\d\d-(0[1-9]|1[0-2])", args.through) or args.through < "2024-06":
        parser.error(f"--through: {args.through!r} is not a month from 2024-06 on (YYYY-MM)")
    if args.through > LAST_BUILD:
        if args.out.resolve() == DEFAULT_OUT.resolve():
            parser.error("--through past 2025-06 needs --out: the shipped model stays held out")
        print(
            f"warning: fitting through {args.through} puts held-out test months in the fit; "
            "bench/phishing.py figures for those months are then no test of this model"
        )
    globals()["TRAIN_MONTHS"] = month_range(f"2024-01..{args.through}")
    globals()["VAL_MONTHS"] = TRAIN_MONTHS[-2:]
    globals()["THROUGH_TEST"] = args.through > LAST_BUILD
    globals()["L2"] = args.l2
    globals()["FPR_BUDGET"] = args.budget
    globals()["FEATURES"] = args.features
    globals()["KIT_WEIGHT"] = args.kit_weight
    started = time.perf_counter()
    reg = default_registry()

    phish = read_phish_all(args.data)
    benign = read_benign(args.data, "tune")
    neg_fit: list[str] = []
    neg_val: list[str] = []
    for items in benign.values():
        for x in items:
            (neg_val if _quarter(x) else neg_fit).append(x)
    neg_fit += augment(benign)
    if not args.no_modern_negatives:
        neg_fit += modern_negatives(benign)
    neg_fit += hard_negatives()
    print(f"phishing rows {len(phish)} (broker {sum(b for _, _, b in phish)}), ", end="")
    print(f"benign fit {len(neg_fit)}, benign held back {len(neg_val)}")

    p_mat, p_kept = featurize([u for u, _, _ in phish], reg)
    phish = [r for r, k in zip(phish, p_kept, strict=True) if k]
    nf_mat, _ = featurize(neg_fit, reg)
    nv_mat, _ = featurize(neg_val, reg)
    print(f"featurized in {time.perf_counter() - started:.0f} s")

    def stack(use_phish: np.ndarray) -> tuple[np.ndarray, ...]:
        pi, pv, pr, po = p_mat.arrays()
        keep_rows = np.flatnonzero(use_phish)
        remap = -np.ones(p_mat.n, dtype=np.int64)
        remap[keep_rows] = np.arange(len(keep_rows))
        sel = remap[pr] >= 0
        ni, nv, nr, no = nf_mat.arrays()
        k = len(keep_rows)
        idx = np.concatenate([pi[sel], ni])
        val = np.concatenate([pv[sel], nv])
        row = np.concatenate([remap[pr[sel]], nr + k])
        offset = np.concatenate([po[keep_rows], no])
        y = np.concatenate([np.ones(k), np.zeros(nf_mat.n)])
        broker = np.array([phish[i][2] for i in keep_rows])
        pos_w = np.where(broker, 1.0, OTHER_WEIGHT) * kit_weights(kits[keep_rows], KIT_WEIGHT)
        neg_w = np.full(nf_mat.n, pos_w.sum() / max(nf_mat.n, 1))  # classes weigh the same
        return idx, val, row, offset, y, np.concatenate([pos_w, neg_w])

    months = np.array([m for _, m, _ in phish])
    broker = np.array([b for _, _, b in phish])
    kits = np.array([kit(u) for u, _, _ in phish])

    # 1. validation fit: months before the validation months
    in_val = np.isin(months, VAL_MONTHS)
    w, b = quantize(*fit(*stack(~in_val)))
    nv_offset = nv_mat.arrays()[3]
    shift = shift_for_budget(margins(nv_mat, w, b), nv_offset, FPR_BUDGET)
    pm = combined(p_mat, w, b + shift)
    vb = in_val & broker
    rule_only = p_mat.arrays()[3]
    print(f"validation (fit on 2024-01..{TRAIN_MONTHS[TRAIN_MONTHS.index(VAL_MONTHS[0]) - 1]}):")
    print(
        f"  broker rows {VAL_MONTHS[0]}..{VAL_MONTHS[-1]}: {vb.sum()}, recall rules alone "
        f"{np.mean(rule_only[vb] >= 0):.2%}, rules + model {np.mean(pm[vb] >= 0):.2%}"
    )
    print(
        f"  bias shift for the FPR budget: {shift:+.3f}; held-back benign FPR "
        f"{np.mean(combined(nv_mat, w, b + shift) >= 0):.3%} "
        f"(rules alone {np.mean(nv_offset >= 0):.3%})"
    )

    if args.val_out:
        last_fit = TRAIN_MONTHS[TRAIN_MONTHS.index(VAL_MONTHS[0]) - 1]
        write_model(args.val_out, *quantize(w, b + shift), last=last_fit)

    # 2. final fit: every training month
    w, b = quantize(*fit(*stack(np.ones(p_mat.n, dtype=bool))))
    nv = margins(nv_mat, w, b)
    shift = shift_for_budget(nv, nv_offset, FPR_BUDGET)
    w, b = quantize(w, b + shift)
    pm = combined(p_mat, w, b)
    print(f"final (fit on {TRAIN_MONTHS[0]}..{TRAIN_MONTHS[-1]}):")
    print(
        f"  bias shift {shift:+.3f}; held-back benign FPR "
        f"{np.mean(combined(nv_mat, w, b) >= 0):.3%}"
        f" ({int(np.sum(combined(nv_mat, w, b) >= 0))} of {nv_mat.n}); benign fit FPR "
        f"{np.mean(combined(nf_mat, w, b) >= 0):.3%}"
    )
    print(
        f"  training recall: broker {np.mean(pm[broker] >= 0):.2%}, "
        f"other brands {np.mean(pm[~broker] >= 0):.2%} (in-sample)"
    )

    write_model(args.out, w, b, last=TRAIN_MONTHS[-1])
    print(
        f"wrote {args.out} ({args.out.stat().st_size:,} bytes, {np.count_nonzero(w):,} weights) "
        f"in {time.perf_counter() - started:.0f} s"
    )


def write_model(path: Path, w: np.ndarray, b: float, last: str = "2025-06") -> None:
    """The model file the scorer reads (weights in thousandths, so the file is small)."""
    milli = [int(x) for x in np.rint(w * 1000).astype(np.int64)]
    model = {
        "version": last,
        "about": (
            "BrokerGuard phishing model: L2 logistic regression on hashed URL features "
            "(brokerguard.phishing._model.features), offset by the rules' log-odds; trained by "
            f"bench/train_phishing.py on JPCERT/CC phishurl 2024-01..{last} and the benign "
            "tune half"
        ),
        "buckets": BUCKETS,
        "hash": "crc32",
        "bias": b,
        "weights_milli": milli,
    }
    if FEATURES != 1:  # set 1 files carry no key, as before feature sets were versioned
        model["features"] = FEATURES
    path.write_text(json.dumps(model, separators=(",", ":"), sort_keys=False) + "\n")


if __name__ == "__main__":
    main()
