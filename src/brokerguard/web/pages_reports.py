"""Reports: the regulator's monthly table and the compensation calculator, with CSV downloads.

Where their data comes from (a run directory, else the service's records labelled by fraud
cases) is :mod:`brokerguard.service.reporting`'s business, shared with ``/v1/reports``.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from brokerguard.reports import (
    COMPENSATION_COLUMNS,
    MONTHLY_COLUMNS,
    write_compensation_csv,
    write_monthly_csv,
)
from brokerguard.service.reporting import (
    choose_policies,
    compensation_policies,
    csv_response,
    report_tables,
    run_dir,
)
from brokerguard.web._common import page_user, private, render, service

router = APIRouter(include_in_schema=False)


@router.get("/console/reports")
async def reports(request: Request) -> Response:
    user = await page_user(request)
    policies = compensation_policies()
    chosen = choose_policies(request.query_params.get("policy"))
    run = run_dir(request.app.state)
    monthly, compensation = await run_in_threadpool(
        report_tables, service(request), run, True, chosen
    )
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
    run = run_dir(request.app.state)
    rows, _ = await run_in_threadpool(report_tables, service(request), run, True, None)
    return private(csv_response(write_monthly_csv, rows, "monthly.csv"))


@router.get("/console/reports/compensation.csv")
async def compensation_csv(request: Request) -> Response:
    await page_user(request)
    chosen = choose_policies(request.query_params.get("policy"))
    run = run_dir(request.app.state)
    _, rows = await run_in_threadpool(report_tables, service(request), run, False, chosen)
    return private(csv_response(write_compensation_csv, rows, "compensation.csv"))
