"""Reports: the regulator's monthly table and the compensation calculator, with CSV downloads.

Where their data comes from (a run directory, else the service's records labelled by fraud
cases) is :mod:`brokerguard.service.reporting`'s business, shared with ``/v1/reports``.
"""

from __future__ import annotations

from typing import Any

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
from brokerguard.web._common import page_number, page_user, pager, private, render, service
from brokerguard.web.i18n import language, translator
from brokerguard.web.svg import monthly_chart

router = APIRouter(include_in_schema=False)


PAGE = 100  # compensation rows per page


def _summary(rows: list[Any], policies: dict[str, Any]) -> list[dict[str, Any]]:
    """Per policy: how many victims it pays, how many it does not, and the total paid."""
    summary = {
        name: {"policy": p, "name": name, "paid": 0, "unpaid": 0, "total": 0}
        for name, p in policies.items()
    }
    for row in rows:
        line = summary.get(row.policy)
        if line is None:
            continue
        line["paid" if row.payout_jpy > 0 else "unpaid"] += 1
        line["total"] += row.payout_jpy
    return [line for line in summary.values() if line["paid"] or line["unpaid"]]


@router.get("/console/reports")
async def reports(request: Request) -> Response:
    """The monthly table (with its chart) and the compensation calculator: a summary per
    policy first, then the rows, :data:`PAGE` a page (``?page=N``) — every row of every policy
    on one page made it tens of thousands of rows long on a broker's real losses."""
    user = await page_user(request)
    policies = compensation_policies()
    chosen = choose_policies(request.query_params.get("policy"))
    run = run_dir(request.app.state)
    monthly, compensation = await run_in_threadpool(
        report_tables, service(request), run, True, chosen
    )
    t = translator(language(request))
    page = page_number(request.query_params.get("page"))
    labels = {
        "count": t("chart_count"),
        "yen": t("chart_million_yen"),
        "month": t("chart_month"),
        "logins": t("chart_logins"),
        "trades": t("chart_trades"),
        "sold": t("chart_sold"),
        "bought": t("chart_bought"),
    }
    return render(
        request,
        "reports.html",
        user,
        run=run,
        monthly=monthly,
        monthly_columns=MONTHLY_COLUMNS,
        monthly_chart=monthly_chart(monthly, labels),
        summary=_summary(compensation, policies),
        compensation=compensation[(page - 1) * PAGE : page * PAGE],
        compensation_columns=COMPENSATION_COLUMNS,
        policies=policies,
        policy=request.query_params.get("policy", ""),
        **pager(request, page, len(compensation), PAGE),
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
