"""Train the phishing scorer's learned model (``src/brokerguard/phishing/model.json``).

    python bench/train_phishing.py [--data /work/shared/data] [--out PATH] [--l2 1e-4]

Reads only the training months 2024-01..2025-06 of ``phishurl/`` (every brand: broker-brand rows
and, with a lower weight, other brands' rows as positives) and the "tune" half of ``benign/``
that ``bench/phishing.py`` defines, plus the brokers' own URLs as negatives. The test months
(2025-07..2025-10) and the benign "test" half are never opened.

The model is an L2 logistic regression over hashed named features (``_model.features``) with
the rules' log-odds as a fixed offset, so it learns a correction to the rules:
final log-odds = (rule weights - threshold) + model logit.

Two fits, both deterministic (full-batch gradient descent, fixed order, no randomness):

1. validation: fit on 2024-01..2025-03 and three quarters of the benign tune half (hash-chosen),
   report recall on the broker rows of 2025-04..2025-06 and FPR on the held-back quarter;
2. final: fit on all of 2024-01..2025-06 and the same three quarters; the bias is then shifted
   so that at most 0.05% of the held-back benign quarter is flagged (the FPR budget).

The data is read in place, never copied; URLs are strings only, never fetched.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from phishing import hard_negatives, month_range, read_benign  # noqa: E402

from brokerguard.phishing import THRESHOLD, URLError, default_registry, unwrap  # noqa: E402
from brokerguard.phishing._model import features, hash_feature  # noqa: E402
from brokerguard.phishing._score import rule_evidence  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = Path("/work/shared/data")
DEFAULT_OUT = ROOT / "src" / "brokerguard" / "phishing" / "model.json"
TRAIN_MONTHS = month_range("2024-01..2025-06")
VAL_MONTHS = month_range("2025-04..2025-06")
BUCKETS = 1 << 16
L2 = 1e-4
STEPS = 400
LR = 0.1
OTHER_WEIGHT = 0.5  # other brands' phishing URLs: useful kit structure, less like the brokers'
FPR_BUDGET = 0.0005


def read_phish_all(data: Path) -> list[tuple[str, str, bool]]:
    """(url, month, is_broker) for every row of the training months, URLs de-duplicated."""
    rows: dict[str, tuple[str, str, bool]] = {}
    for month in TRAIN_MONTHS:
        assert month <= "2025-06", month  # never a test month
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


def featurize(urls: list[str], reg) -> tuple[Matrix, list[bool]]:
    """Rows for the URLs the model would see (not errors, not the firms' own domains)."""
    m = Matrix()
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
        m.add(features(hops[best].url, reasons), total - THRESHOLD)
        kept.append(True)
    return m, kept


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
    idx, val, row, offset = m.arrays()
    return offset + b + np.bincount(row, weights=w[idx] * val, minlength=m.n)


def quantize(w: np.ndarray, b: float) -> tuple[np.ndarray, float]:
    """The weights as shipped (3 decimals), so that calibration sees what the scorer uses."""
    return np.round(w, 3), round(float(b), 3)


def shift_for_budget(neg: np.ndarray, budget: float) -> float:
    """The bias shift that leaves at most ``budget`` of these negatives at or above 0."""
    allowed = int(budget * len(neg))
    order = np.sort(neg)[::-1]
    cut = order[allowed]  # the first negative that must stay below 0
    return float(-cut - 0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--l2", type=float, default=L2)
    args = parser.parse_args()
    globals()["L2"] = args.l2
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
        pos_w = np.where(broker, 1.0, OTHER_WEIGHT)
        neg_w = np.full(nf_mat.n, pos_w.sum() / max(nf_mat.n, 1))  # classes weigh the same
        return idx, val, row, offset, y, np.concatenate([pos_w, neg_w])

    months = np.array([m for _, m, _ in phish])
    broker = np.array([b for _, _, b in phish])

    # 1. validation fit: months before 2025-04
    in_val = np.isin(months, VAL_MONTHS)
    w, b = quantize(*fit(*stack(~in_val)))
    shift = shift_for_budget(margins(nv_mat, w, b), FPR_BUDGET)
    pm = margins(p_mat, w, b + shift)
    vb = in_val & broker
    rule_only = p_mat.arrays()[3]
    print("validation (fit on 2024-01..2025-03):")
    print(
        f"  broker rows 2025-04..06: {vb.sum()}, recall rules alone "
        f"{np.mean(rule_only[vb] >= 0):.2%}, rules + model {np.mean(pm[vb] >= 0):.2%}"
    )
    print(
        f"  bias shift for the FPR budget: {shift:+.3f}; held-back benign FPR "
        f"{np.mean(margins(nv_mat, w, b + shift) >= 0):.3%}"
    )

    # 2. final fit: every training month
    w, b = quantize(*fit(*stack(np.ones(p_mat.n, dtype=bool))))
    nv = margins(nv_mat, w, b)
    shift = shift_for_budget(nv, FPR_BUDGET)
    w, b = quantize(w, b + shift)
    pm = margins(p_mat, w, b)
    print("final (fit on 2024-01..2025-06):")
    print(
        f"  bias shift {shift:+.3f}; held-back benign FPR {np.mean(margins(nv_mat, w, b) >= 0):.3%}"
        f" ({int(np.sum(margins(nv_mat, w, b) >= 0))} of {nv_mat.n}); benign fit FPR "
        f"{np.mean(margins(nf_mat, w, b) >= 0):.3%}"
    )
    print(
        f"  training recall: broker {np.mean(pm[broker] >= 0):.2%}, "
        f"other brands {np.mean(pm[~broker] >= 0):.2%} (in-sample)"
    )

    milli = [int(x) for x in np.rint(w * 1000).astype(np.int64)]
    model = {
        "version": "2025-06",
        "about": (
            "BrokerGuard phishing model: L2 logistic regression on hashed URL features "
            "(brokerguard.phishing._model.features), offset by the rules' log-odds; trained by "
            "bench/train_phishing.py on JPCERT/CC phishurl 2024-01..2025-06 and the benign "
            "tune half"
        ),
        "buckets": BUCKETS,
        "hash": "crc32",
        "bias": b,
        "weights_milli": milli,
    }
    args.out.write_text(json.dumps(model, separators=(",", ":"), sort_keys=False) + "\n")
    print(
        f"wrote {args.out} ({args.out.stat().st_size:,} bytes, {np.count_nonzero(w):,} weights) "
        f"in {time.perf_counter() - started:.0f} s"
    )


if __name__ == "__main__":
    main()
