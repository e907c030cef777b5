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
from brokerguard.reports.monthly import (
    MONTHLY_COLUMNS,
    MonthlyRow,
    month_of,
    monthly_table,
    read_monthly_csv,
    write_monthly_csv,
)
from brokerguard.reports.run import run_labels

__all__ = [
    "FraudCase",
    "FraudLabels",
    "MONTHLY_COLUMNS",
    "MonthlyRow",
    "ReportError",
    "labels_from_cases",
    "labels_from_truth",
    "load_cases",
    "load_labels",
    "month_of",
    "monthly_table",
    "read_monthly_csv",
    "run_labels",
    "write_monthly_csv",
]
