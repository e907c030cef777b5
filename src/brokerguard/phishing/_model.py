"""A learned correction on top of the rules: logistic regression over hashed URL features.

The rules give a log-odds (their summed weights minus the threshold); the model adds its own
log-odds, learned on JPCERT/CC's 2024-01..2025-06 reports against the training half of the
benign set (``bench/train_phishing.py`` rebuilds ``model.json`` deterministically). Features are
named strings (the rules' reason codes, character 3-5-grams of host and path, host and path
structure, query keys) hashed into a fixed number of buckets, so the shipped file is only a list
of weights and the top contributors of a finding can still be named. Pure Python at run time.

Feature sets are versioned: a model file names the set it was trained on (``"features"``,
default 1, the set every model before round 3 of ``bench/phishing_cv.py`` used), and the scorer
computes exactly that set, so an older model scores as it always did. Set 2 adds kit-general
features (``_extra_v2``) to set 1.
"""

from __future__ import annotations

import json
import math
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

from brokerguard.phishing._reasons import Reason
from brokerguard.phishing._url import ParsedURL

__all__ = ["FEATURE_SETS", "Model", "default_model", "features", "hash_feature", "load_model"]

_SPLIT = re.compile(r"[/._\-?=&#~+%]+")
_MAX_PATH = 64
_ALPHA = re.compile(r"[a-z]{2,20}")
FEATURE_SETS = (1, 2)


def hash_feature(name: str, buckets: int) -> int:
    """Stable bucket of a feature name (CRC-32; the same on every platform and run)."""
    return zlib.crc32(name.encode("utf-8")) % buckets


def _bucket(x: float, edges: Iterable[float]) -> int:
    n = 0
    for e in edges:
        if x >= e:
            n += 1
    return n


def _entropy(text: str) -> float:
    if not text:
        return 0.0
    counts: dict[str, int] = {}
    for c in text:
        counts[c] = counts.get(c, 0) + 1
    n = len(text)
    return -sum(k / n * math.log2(k / n) for k in counts.values())


def _ngrams(prefix: str, text: str, out: dict[str, float]) -> None:
    grams = set()
    padded = f"^{text}$"
    for k in (3, 4, 5):
        for i in range(len(padded) - k + 1):
            grams.add(padded[i : i + k])
    if not grams:
        return
    v = 1.0 / math.sqrt(len(grams))
    for g in sorted(grams):
        out[f"{prefix}:{g}"] = v


def _shape(text: str) -> str:
    """Character classes with runs collapsed (``sbi-sec24`` -> ``a-a9``), at most 12 long."""
    out: list[str] = []
    for c in text:
        k = "9" if c.isdigit() else "a" if c.isalpha() else c if c in "-_.~" else "?"
        if not out or out[-1] != k:
            out.append(k)
    return "".join(out)[:12]


def _extra_v2(p: ParsedURL, f: dict[str, float]) -> None:
    """Set 2's additions: features meant to carry over from one kit to the next rather than
    name one kit's domain - the words of the host labels, the character-class shapes of the
    registered name, first subdomain label and first path segment, n-grams of the first
    subdomain label and of the first path segment on their own (in set 1 they are diluted in
    the whole subdomain / path), and the TLD crossed with the host's and path's structure."""
    path = p.path
    segs = [s for s in path.split("/") if s]
    depth = min(len(segs), 3)
    if p.is_ip:
        f[f"ip_depth:{depth}"] = 1.0
    else:
        reg = p.registered_label
        sub = [s for s in p.subdomain_labels if s]
        for label in [reg, *sub[:4]]:
            for t in sorted(set(_ALPHA.findall(label.lower()))):
                f[f"htok:{t}"] = 1.0
        f[f"regshape:{_shape(reg)}"] = 1.0
        if sub:
            f[f"sub0shape:{_shape(sub[0])}"] = 1.0
            _ngrams("s0", sub[0].lower()[:30], f)
        reglen = _bucket(len(reg), (5, 9, 14))
        f[f"tld_depth:{p.suffix}:{depth}"] = 1.0
        f[f"tld_reglen:{p.suffix}:{reglen}"] = 1.0
        f[f"tld_sub:{p.suffix}:{min(len(sub), 2)}"] = 1.0
        f[f"reglen_depth:{reglen}:{depth}"] = 1.0
    f[f"depth_query:{depth}:{int(bool(p.query))}"] = 1.0
    if segs:
        first = segs[0].lower()[:40]
        f[f"p1shape:{_shape(first)}"] = 1.0
        _ngrams("p1", first, f)


def features(p: ParsedURL, reasons: list[Reason], version: int = 1) -> dict[str, float]:
    """Named features of one hop (and the rules' reasons on it); values are small floats.
    ``version``: the feature set (``FEATURE_SETS``) the model was trained on."""
    if version not in FEATURE_SETS:
        raise ValueError(f"model: unknown feature set {version}")
    f: dict[str, float] = {}
    for r in reasons:
        f[f"rule:{r.code}"] = 1.0
    host = p.host
    f[f"tld:{p.suffix}"] = 1.0
    if p.is_ip:
        f["host:ip"] = 1.0
    else:
        reg = p.registered_label
        sub = [s for s in p.subdomain_labels if s]
        f[f"labels:{min(len(host.split('.')), 7)}"] = 1.0
        f[f"sublabels:{min(len(sub), 4)}"] = 1.0
        f[f"hostlen:{_bucket(len(host), (8, 12, 16, 20, 25, 30, 40, 55))}"] = 1.0
        f[f"reglen:{_bucket(len(reg), (3, 5, 7, 9, 11, 14, 18))}"] = 1.0
        digits = sum(c.isdigit() for c in reg)
        f[f"regdigits:{_bucket(digits / max(len(reg), 1), (0.01, 0.2, 0.4))}"] = 1.0
        f[f"reghyphens:{min(reg.count('-'), 3)}"] = 1.0
        f[f"regentropy:{_bucket(_entropy(reg), (2.0, 2.5, 3.0, 3.3, 3.6))}"] = 1.0
        if p.site != p.registrable:
            f[f"site:{p.registrable}"] = 1.0
        if sub:
            f[f"sub0len:{_bucket(len(sub[0]), (2, 4, 7, 10, 13, 16, 25))}"] = 1.0
        _ngrams("h", reg, f)
        if sub:
            _ngrams("s", ".".join(sub)[-40:], f)
    path = p.path
    segs = [s for s in path.split("/") if s]
    f[f"depth:{min(len(segs), 6)}"] = 1.0
    f[f"pathlen:{_bucket(len(path), (2, 6, 10, 16, 24, 40, 80))}"] = 1.0
    if path.endswith("/") and segs:
        f["path:trailing_slash"] = 1.0
    if segs:
        last = segs[-1]
        ext = last.rsplit(".", 1)[1].lower() if "." in last else ""
        f[f"ext:{ext[:6]}"] = 1.0
        if any(c.isupper() for c in path):
            f["path:upper"] = 1.0
        if any(c.isdigit() for c in path):
            f["path:digit"] = 1.0
    low = path.lower()[:_MAX_PATH]
    toks = {t for t in _SPLIT.split(low) if t}
    for t in sorted(toks):
        if len(t) <= 20:
            f[f"ptok:{t}"] = 1.0
    if low.strip("/"):
        _ngrams("p", low, f)
    if p.query:
        pairs = [kv.partition("=") for kv in p.query.split("&") if kv]
        f[f"qparams:{min(len(pairs), 4)}"] = 1.0
        f[f"qlen:{_bucket(len(p.query), (8, 16, 32, 64, 128))}"] = 1.0
        for k, _, _ in pairs[:8]:
            if len(k) <= 20:
                f[f"qkey:{k.lower()}"] = 1.0
    if p.fragment:
        f["fragment"] = 1.0
        ftoks = {t for t in _SPLIT.split(p.fragment.lower()[:40]) if t}
        for t in sorted(ftoks):
            if len(t) <= 20:
                f[f"ftok:{t}"] = 1.0
    if p.port is not None:
        f["port"] = 1.0
    if version >= 2:
        _extra_v2(p, f)
    return f


@dataclass(frozen=True, slots=True)
class Model:
    """Weights of the hashed features; ``logit`` and the named top contributions of a URL."""

    buckets: int
    weights: tuple[float, ...]
    bias: float
    version: str
    features: int = 1  # the feature set (``FEATURE_SETS``) the weights were trained on

    def contributions(self, feats: dict[str, float]) -> list[tuple[str, float]]:
        out = []
        for name, v in feats.items():
            w = self.weights[hash_feature(name, self.buckets)]
            if w:
                out.append((name, w * v))
        return out

    def logit(self, feats: dict[str, float]) -> float:
        return self.bias + sum(c for _, c in self.contributions(feats))

    def explain(self, feats: dict[str, float], top: int = 3) -> tuple[float, str]:
        """(logit, names of the strongest contributors in the logit's direction)."""
        contrib = self.contributions(feats)
        total = self.bias + sum(c for _, c in contrib)
        sign = 1.0 if total >= 0 else -1.0
        ranked = sorted(contrib, key=lambda nc: (-sign * nc[1], nc[0]))
        names = [n for n, c in ranked[:top] if sign * c > 0]
        return total, ", ".join(names)

    @classmethod
    def from_json(cls, data: dict) -> Model:
        buckets = int(data["buckets"])
        milli = data["weights_milli"]
        if len(milli) != buckets:
            raise ValueError(f"model: {len(milli)} weights for {buckets} buckets")
        weights = tuple(int(m) / 1000 for m in milli)
        fset = int(data.get("features", 1))
        if fset not in FEATURE_SETS:
            raise ValueError(f"model: unknown feature set {fset}")
        return cls(buckets, weights, float(data["bias"]), str(data.get("version", "")), fset)


def load_model(path: Path) -> Model:
    """A model file written by ``bench/train_phishing.py`` (a monthly refresh, say), checked:
    a wrong file is a ``ValueError`` naming the path and what is wrong, never a half model."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a JSON model file ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a model file (a JSON object is expected)")
    missing = [k for k in ("buckets", "weights_milli", "bias") if k not in data]
    if missing:
        raise ValueError(f"{path}: not a model file (missing {', '.join(missing)})")
    try:
        return Model.from_json(data)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None


@lru_cache(maxsize=1)
def default_model() -> Model:
    """The shipped ``phishing/model.json``."""
    text = resources.files("brokerguard.phishing").joinpath("model.json").read_text("utf-8")
    return Model.from_json(json.loads(text))
