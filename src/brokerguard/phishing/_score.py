"""Score a URL: unwrap it, gather brand and structure evidence on every hop, decide.

The score is a logistic of the summed evidence weights, centred on the decision threshold, so
``score >= 0.5`` is exactly ``verdict == "phishing"`` and every point of the score can be traced
to a listed reason. Deterministic: the same URL and registry always give the same finding.
"""

from __future__ import annotations

import math
from collections import defaultdict

import msgspec

from brokerguard.phishing._brands import BrandRegistry, default_registry
from brokerguard.phishing._features import WEIGHTS, brand_reasons, structure_reasons
from brokerguard.phishing._model import Model, default_model, features
from brokerguard.phishing._reasons import Reason, make_reason
from brokerguard.phishing._unwrap import Hop, unwrap
from brokerguard.phishing._url import ParsedURL, URLError

__all__ = ["THRESHOLD", "Finding", "rule_evidence", "score_parsed", "score_url"]

THRESHOLD = 3.0
# Wrappers run by well-known services: the wrapper host itself is not the phisher's.
SERVICE_WRAPPERS = frozenset(
    {
        "google_translate_proxy",
        "google_translate",
        "google_redirect",
        "google_amp",
        "outlook_safelinks",
        "proofpoint_urldefense",
        "bing_redirect",
        "wayback_machine",
        "amp_cache",
    }
)
# Wrappers that show another site's page under their own name: hiding behind one is evidence.
PROXIES = frozenset({"google_translate_proxy", "google_translate", "amp_cache"})


class Finding(msgspec.Struct, frozen=True, kw_only=True):
    """The verdict on one URL and why (the shape of a ``phish score --json`` line)."""

    url: str
    score: float
    verdict: str  # "phishing" or "benign"
    brand: str | None
    reasons: list[Reason]
    host: str | None = None
    registrable: str | None = None
    target: str | None = None  # innermost URL after unwrapping
    hops: list[str] = []  # the wrappers that were peeled off
    error: str | None = None

    @property
    def is_phishing(self) -> bool:
        return self.verdict == "phishing"


def _hop_reasons(p: ParsedURL, reg: BrandRegistry) -> list[Reason]:
    if p.registrable in reg.official:
        return [make_reason("official_domain", 0.0, p.registrable, reg.official[p.registrable])]
    if p.registrable in reg.related:
        return [make_reason("related_domain", 0.0, p.registrable)]
    return brand_reasons(p, reg) + structure_reasons(p, reg)


def _brand_of(reasons: list[Reason]) -> str | None:
    totals: dict[str, float] = defaultdict(float)
    for r in reasons:
        if r.brand and r.code != "official_domain":
            totals[r.brand] += r.weight
    if not totals:
        return None
    return max(sorted(totals), key=lambda b: totals[b])


def _logistic(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def rule_evidence(hops: list[Hop], reg: BrandRegistry) -> tuple[float, int, list[Reason], list]:
    """The rules alone: (summed weight, index of the judged hop, its reasons, every hop's)."""
    scored = []
    for i, hop in enumerate(hops):
        if i + 1 < len(hops) and hops[i + 1].via in SERVICE_WRAPPERS:
            scored.append((0.0, i, []))  # a well-known service's wrapper: judge what it wraps
            continue
        rs = _hop_reasons(hop.url, reg)
        if i > 0 and not (rs and rs[0].code in ("official_domain", "related_domain")):
            path = " -> ".join(h.via for h in hops[1 : i + 1])
            proxied = any(h.via in PROXIES for h in hops[1 : i + 1])
            rs.insert(0, make_reason("unwrapped", WEIGHTS["proxied"] if proxied else 0.0, path))
        scored.append((sum(r.weight for r in rs), i, rs))
    total, best, reasons = max(scored, key=lambda s: (s[0], s[1]))
    return total, best, list(reasons), scored


def _learned(p: ParsedURL, reasons: list[Reason], model: Model) -> Reason | None:
    """The model's log-odds on the judged hop, as a reason naming its strongest features."""
    if any(r.code in ("official_domain", "related_domain") for r in reasons):
        return None  # the firms' own and group domains stay with the rules: never flagged
    logit, names = model.explain(features(p, reasons, model.features))
    w = round(logit, 3)
    if w <= 0.0:
        # The model only adds evidence: it finds kits the rules miss, but it may not overrule
        # the rules' explainable findings (on validation, letting it subtract lost more of
        # them than it gained; see bench/train_phishing.py).
        return None
    return make_reason("learned_pattern", w, names or "-")


def score_parsed(
    hops: list[Hop],
    reg: BrandRegistry,
    threshold: float = THRESHOLD,
    model: Model | None | bool = False,
) -> Finding:
    """Decide on an already unwrapped chain (first hop = the given URL).

    ``model``: ``False``/``None`` (default) = the rules alone, ``True`` = the shipped learned
    model (:func:`default_model`), or a :class:`Model`. The library default stays the rules
    alone (the engine's referrer check uses them); ``brokerguard phish score`` adds the model
    unless ``--no-model``. Its log-odds, when positive, is one more reason
    (``learned_pattern``), so the weights of the reasons still add
    up to the score before the logistic.
    """
    total, best, reasons, scored = rule_evidence(hops, reg)
    if model is True:
        model = default_model()
    if model:
        learned = _learned(hops[best].url, reasons, model)
        if learned is not None:
            reasons.append(learned)
    total = sum(r.weight for r in reasons)
    brand = _brand_of(reasons)
    if brand is None and total >= threshold:
        brand = _brand_of([r for _, _, rs in scored for r in rs])
    target = hops[best].url
    official = [r for r in reasons if r.code == "official_domain"]
    return Finding(
        url=hops[0].url.url,
        score=round(_logistic(total - threshold), 4),
        verdict="phishing" if total >= threshold else "benign",
        brand=brand if brand else (official[0].brand if official else None),
        reasons=reasons,
        host=target.host,
        registrable=target.registrable,
        target=target.url if best > 0 else None,
        hops=[h.via for h in hops[1:]],
    )


def score_url(
    url: str,
    registry: BrandRegistry | None = None,
    threshold: float = THRESHOLD,
    model: Model | None | bool = False,
) -> Finding:
    """Score one URL or host name. Raises :class:`URLError` if the text is not a web URL."""
    reg = registry or default_registry()
    return score_parsed(unwrap(url), reg, threshold, model)


def error_finding(text: str, error: URLError) -> Finding:
    """The finding written for a line that is not a URL: benign, score 0, with the error."""
    clipped = text if len(text) <= 200 else text[:199] + "…"
    return Finding(
        url=clipped, score=0.0, verdict="benign", brand=None, reasons=[], error=str(error)
    )
