"""Reports for regulators and customers: the monthly table and the compensation calculator.

Both read a run directory (``events.ndjson``, optionally ``decisions.ndjson``) and labels that
say what was unauthorized (a run's ``truth.json`` or a broker's confirmed cases), streaming the
events once. The CLI (``brokerguard report …``) and, later, the web console call these functions.
"""

from brokerguard.reports.errors import ReportError
from brokerguard.reports.labels import (
    FraudCase,
    FraudLabels,
    labels_from_cases,
    labels_from_truth,
    load_cases,
    load_labels,
)
from brokerguard.reports.run import run_labels

__all__ = [
    "FraudCase",
    "FraudLabels",
    "ReportError",
    "labels_from_cases",
    "labels_from_truth",
    "load_cases",
    "load_labels",
    "run_labels",
]
