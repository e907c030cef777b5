"""Who called a finding phishing: the explainable rules, or only the learned model?

The block-list challenges every sign-in that arrives from a listed host, so a wrong entry costs
real customers friction. The rules' findings name their evidence and have been tuned against
the firms' own pages; the learned model finds kits the rules miss but also flags legitimate
login pages of firms that are not in the brand registry (``https://www.paypal.com/signin``).
So a finding that only the model makes phishing waits for an analyst's review before it may
enter the list, while the rules' findings go straight in.

A finding carries its reasons, and the model's contribution is exactly one reason,
``learned_pattern`` (see :func:`~brokerguard.phishing._score.score_parsed`); the rules' evidence
is therefore the sum of the other reasons' weights, judged against the same threshold.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from brokerguard.phishing._score import THRESHOLD, Finding

__all__ = ["LEARNED", "Split", "decided_by", "rule_weight", "split_findings"]

LEARNED = "learned_pattern"
Decider = Literal["rules", "model"]


def rule_weight(finding: Finding) -> float:
    """The evidence the rules alone found (every reason but the model's)."""
    return sum(r.weight for r in finding.reasons if r.code != LEARNED)


def decided_by(finding: Finding, threshold: float = THRESHOLD) -> Decider | None:
    """``"rules"`` when the rules alone reach the threshold, ``"model"`` when the finding is
    phishing only with the model's evidence added, None when it is not phishing (or has no
    host to list).

    A finding without the model's reason was decided by the rules whatever threshold it was
    scored with; with it, ``threshold`` should be the one it was scored with (a lower one would
    let model findings through unreviewed, a higher one only sends more to review).
    """
    if not finding.is_phishing or not finding.host:
        return None
    if all(r.code != LEARNED for r in finding.reasons):
        return "rules"
    return "rules" if rule_weight(finding) >= threshold else "model"


class Split:
    """Phishing findings by who decided them; one finding per host (the highest score)."""

    def __init__(self) -> None:
        self.rules: dict[str, Finding] = {}
        self.model: dict[str, Finding] = {}
        self.benign = 0

    def add(self, finding: Finding, threshold: float = THRESHOLD) -> None:
        who = decided_by(finding, threshold)
        if who is None:
            self.benign += 1
            return
        host = finding.host or ""
        if who == "rules":
            self.model.pop(host, None)  # the rules' word on a host outweighs the model's
            self._keep(self.rules, host, finding)
        elif host not in self.rules:
            self._keep(self.model, host, finding)

    @staticmethod
    def _keep(into: dict[str, Finding], host: str, finding: Finding) -> None:
        if host not in into or finding.score > into[host].score:
            into[host] = finding


def split_findings(findings: Iterable[Finding], threshold: float = THRESHOLD) -> Split:
    """Sort findings into the rules' (straight to the list) and the model's (to review)."""
    split = Split()
    for f in findings:
        split.add(f, threshold)
    return split
