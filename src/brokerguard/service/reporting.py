"""Where the console's and the API's reports get their data, and how they are downloaded.

Source data, in this order:

- a **run directory** (``events.ndjson``, ``decisions.ndjson``, ``truth.json``, as
  ``brokerguard simulate`` or ``brokerguard demo`` writes them) named by
  ``create_app(console_run=)`` or the ``BROKERGUARD_CONSOLE_RUN`` environment variable: the
  simulator's ground truth says what was unauthorized;
- else the **service's own records**: the events and decisions it recorded, labelled by the
  cases the analysts closed as fraud (see :mod:`brokerguard.service.exports`), exported to a
  temporary run directory for the length of the request.

Compensation policies are the shipped ones, or the file named by
``BROKERGUARD_CONSOLE_POLICIES``. The CSV files are exactly what ``brokerguard report`` writes
(UTF-8 with BOM, bilingual headers). Every function here blocks: call it from a thread pool.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.responses import Response

from brokerguard.reports import compensation_table, load_policies, monthly_table
from brokerguard.reports.labels import labels_from_cases, load_cases
from brokerguard.service.errors import InvalidInput
from brokerguard.service.exports import CASES, export_run

__all__ = [
    "POLICIES_ENV",
    "RUN_ENV",
    "choose_policies",
    "compensation_policies",
    "csv_response",
    "report_tables",
    "run_dir",
]

RUN_ENV = "BROKERGUARD_CONSOLE_RUN"
POLICIES_ENV = "BROKERGUARD_CONSOLE_POLICIES"


def run_dir(app_state: Any) -> Path | None:
    """The run directory the reports read, or None to read the service's records."""
    configured = getattr(app_state, "console_run", None) or os.environ.get(RUN_ENV)
    return Path(configured) if configured else None


def compensation_policies() -> dict[str, Any]:
    path = os.environ.get(POLICIES_ENV)
    return load_policies(Path(path) if path else None)


def choose_policies(name: str | None) -> list[Any]:
    """The policy named (InvalidInput naming ``policy`` if unknown), or every policy."""
    policies = compensation_policies()
    if name and name not in policies:
        raise InvalidInput(f"unknown policy {name!r}", field="policy")
    return [policies[name]] if name else list(policies.values())


def report_tables(
    service: Any, run: Path | None, monthly: bool, policies: list[Any] | None
) -> tuple[list[Any], list[Any]]:
    """The monthly rows and the compensation rows, each only when asked for (``monthly``; a
    list of policies), from ``run`` when given, else from ``service``'s records and cases."""

    def compute(directory: Path, labels: Any) -> tuple[list[Any], list[Any]]:
        rows = monthly_table(directory, labels) if monthly else []
        paid = compensation_table(directory, policies, labels) if policies is not None else []
        return rows, paid

    if run is not None:
        return compute(run, None)
    with tempfile.TemporaryDirectory(prefix="bg-report-") as tmp:
        with service.read() as conn:
            export_run(conn, Path(tmp))
        labels = labels_from_cases(load_cases(Path(tmp) / CASES), source="fraud cases")
        return compute(Path(tmp), labels)


def csv_response(write: Callable[[Any, Path], Path], rows: list[Any], filename: str) -> Response:
    """Rows written by a ``write_*_csv`` function, as a download."""
    with tempfile.TemporaryDirectory() as tmp:
        data = write(rows, Path(tmp) / filename).read_bytes()
    return Response(
        data,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
