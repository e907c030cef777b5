"""Reports: the regulator's monthly table and the compensation calculator, with CSV downloads.

Source data: a **run directory** (``events.ndjson``, ``decisions.ndjson``, ``truth.json``, as
``brokerguard simulate`` or ``brokerguard demo`` writes them) named by ``mount_console(run_dir=)``
or the ``BROKERGUARD_CONSOLE_RUN`` environment variable. The service's own tables do not keep
market prices, which the loss valuation needs, so the reports read the run directory that the
demo also loads into the service. Compensation policies are the shipped ones, or the file named
by ``BROKERGUARD_CONSOLE_POLICIES``. The CSV files are exactly what ``brokerguard report`` writes
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
from brokerguard.service.errors import InvalidInput, NotFound
from brokerguard.web._common import page_user, render

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


def _need_run(request: Request) -> Path:
    run = run_dir(request)
    if run is None:
        raise NotFound(f"no run directory configured for reports ({RUN_ENV})", field="run")
    return run


@router.get("/console/reports")
async def reports(request: Request) -> Response:
    user = await page_user(request)
    run = run_dir(request)
    policies = _policies()
    chosen = _choose(request)
    monthly: list[Any] = []
    compensation: list[Any] = []
    if run is not None:
        monthly = await run_in_threadpool(monthly_table, run)
        compensation = await run_in_threadpool(compensation_table, run, chosen)
    return render(
        request,
        "reports.html",
        user,
        run=run,
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
    rows = await run_in_threadpool(monthly_table, _need_run(request))
    return _csv(write_monthly_csv, rows, "monthly.csv")


@router.get("/console/reports/compensation.csv")
async def compensation_csv(request: Request) -> Response:
    await page_user(request)
    run = _need_run(request)
    rows = await run_in_threadpool(compensation_table, run, _choose(request))
    return _csv(write_compensation_csv, rows, "compensation.csv")
