"""Reports for regulators and customers: the monthly table and the compensation calculator.

Both read a run directory (``events.ndjson``, optionally ``decisions.ndjson``) and labels that
say what was unauthorized (a run's ``truth.json`` or a broker's confirmed cases), streaming the
events once. The CLI (``brokerguard report …``) and, later, the web console call these functions.
"""

from brokerguard.reports.compensation import (
    COMPENSATION_COLUMNS,
    CompensationRow,
    LossReport,
    PositionLoss,
    VictimLoss,
    compensate,
    compensation_table,
    victim_losses,
    write_compensation_csv,
)
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
from brokerguard.reports.policies import (
    CompensationPolicy,
    FeeRule,
    load_policies,
    resolve_policies,
    shipped_policies_path,
)
from brokerguard.reports.prices import PriceBook, ValuationPrice
from brokerguard.reports.run import run_labels

__all__ = [
    "COMPENSATION_COLUMNS",
    "CompensationPolicy",
    "CompensationRow",
    "FeeRule",
    "FraudCase",
    "FraudLabels",
    "LossReport",
    "MONTHLY_COLUMNS",
    "MonthlyRow",
    "PositionLoss",
    "PriceBook",
    "ReportError",
    "ValuationPrice",
    "VictimLoss",
    "compensate",
    "compensation_table",
    "labels_from_cases",
    "labels_from_truth",
    "load_cases",
    "load_labels",
    "load_policies",
    "month_of",
    "monthly_table",
    "read_monthly_csv",
    "resolve_policies",
    "run_labels",
    "shipped_policies_path",
    "victim_losses",
    "write_compensation_csv",
    "write_monthly_csv",
]
