"""Reports: the regulator's monthly table and the compensation calculator, with CSV downloads.

Source data, in this order:

- a **run directory** (``events.ndjson``, ``decisions.ndjson``, ``truth.json``, as
  ``brokerguard simulate`` or ``brokerguard demo`` writes them) named by
  ``mount_console(run_dir=)`` or the ``BROKERGUARD_CONSOLE_RUN`` environment variable: the
  simulator's ground truth says what was unauthorized;
- else the **service's own records**: the events and decisions it recorded, labelled by the
  cases the analysts closed as fraud (see :mod:`brokerguard.service.exports`), exported to a
  temporary run directory for the length of the request.

Compensation policies are the shipped ones, or the file named by
``BROKERGUARD_CONSOLE_POLICIES``. The CSV files are exactly what ``brokerguard report`` writes
(UTF-8 with BOM, bilingual headers).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from brokerguard.reports import (
    COMPENSATION_COLUMNS,
    MONTHLY_COLUMNS,
    compensation_table,
    load_policies,
    monthly_table,
    write_compensation_csv,
    write_monthly_csv,
)
from brokerguard.reports.labels import labels_from_cases, load_cases
from brokerguard.service.errors import InvalidInput
from brokerguard.service.exports import CASES, export_run
from brokerguard.web._common import page_user, render, service

router = APIRouter(include_in_schema=False)
RUN_ENV = "BROKERGUARD_CONSOLE_RUN"
POLICIES_ENV = "BROKERGUARD_CONSOLE_POLICIES"


def run_dir(request: Request) -> Path | None:
    configured = getattr(request.app.state, "console_run", None) or os.environ.get(RUN_ENV)
    return Path(configured) if configured else None


def _policies() -> dict[str, Any]:
    path = os.environ.get(POLICIES_ENV)
    return load_policies(Path(path) if path else None)


def _choose(request: Request) -> list[Any]:
    policies = _policies()
    name = request.query_params.get("policy")
    if name and name not in policies:
        raise InvalidInput(f"unknown policy {name!r}", field="policy")
    return [policies[name]] if name else list(policies.values())


def _csv(write: Any, rows: list[Any], filename: str) -> Response:
    with tempfile.TemporaryDirectory() as tmp:
        data = write(rows, Path(tmp) / filename).read_bytes()
    return Response(
        data,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _tables(request: Request, monthly: bool, policies: list[Any] | None) -> tuple[list, list]:
    """The monthly rows and compensation rows (each only when asked for), from the run
    directory when one is configured, else from the service's records and fraud cases."""

    def compute(run: Path, labels: Any) -> tuple[list, list]:
        rows = monthly_table(run, labels) if monthly else []
        paid = compensation_table(run, policies, labels) if policies is not None else []
        return rows, paid

    run = run_dir(request)
    if run is not None:
        return compute(run, None)
    with tempfile.TemporaryDirectory(prefix="bg-report-") as tmp:
        with service(request).read() as conn:
            export_run(conn, Path(tmp))
        labels = labels_from_cases(load_cases(Path(tmp) / CASES), source="fraud cases")
        return compute(Path(tmp), labels)


def _tables(request: Request, monthly: bool, policies: list[Any] | None) -> tuple[list, list]:
    """The monthly rows and compensation rows (each only when asked for), from the run
    directory when one is configured, else from the service's records and fraud cases."""

    def compute(run: Path, labels: Any) -> tuple[list, list]:
        rows = monthly_table(run, labels) if monthly else []
        paid = compensation_table(run, policies, labels) if policies is not None else []
        return rows, paid

    run = run_dir(request)
    if run is not None:
        return compute(run, None)
    with tempfile.TemporaryDirectory(prefix="bg-report-") as tmp:
        with service(request).read() as conn:
            export_run(conn, Path(tmp))
        labels = labels_from_cases(load_cases(Path(tmp) / CASES), source="fraud cases")
        return compute(Path(tmp), labels)


@router.get("/console/reports")
async def reports(request: Request) -> Response:
    user = await page_user(request)
    policies = _policies()
    chosen = _choose(request)
    monthly, compensation = await run_in_threadpool(_tables, request, True, chosen)
    return render(
        request,
        "reports.html",
        user,
        run=run_dir(request),
        monthly=monthly,
        monthly_columns=MONTHLY_COLUMNS,
        compensation=compensation,
        compensation_columns=COMPENSATION_COLUMNS,
        policies=policies,
        policy=request.query_params.get("policy", ""),
    )


@router.get("/console/reports/monthly.csv")
async def monthly_csv(request: Request) -> Response:
    await page_user(request)
    rows, _ = await run_in_threadpool(_tables, request, True, None)
    return _csv(write_monthly_csv, rows, "monthly.csv")


@router.get("/console/reports/compensation.csv")
async def compensation_csv(request: Request) -> Response:
    await page_user(request)
    _, rows = await run_in_threadpool(_tables, request, False, _choose(request))
    return _csv(write_compensation_csv, rows, "compensation.csv")
