"""Reports: the regulator's monthly table and the compensation per victim, as JSON or CSV.

The same tables as the console's reports page and ``brokerguard report``; where their data comes
from is :mod:`brokerguard.service.reporting` (a configured run directory, else the service's
records labelled by the cases closed as fraud).
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from brokerguard.reports import write_compensation_csv, write_monthly_csv
from brokerguard.service.api._common import ERRORS, service
from brokerguard.service.auth import CanRead
from brokerguard.service.reporting import choose_policies, csv_response, report_tables, run_dir
from brokerguard.service.schemas import CompensationOut, MonthlyOut

router = APIRouter(tags=["reports"], responses=ERRORS)
PolicyName = Annotated[
    str | None,
    Query(max_length=100, description="One compensation policy (default: every policy)."),
]
CSV = {200: {"content": {"text/csv": {}}, "description": "UTF-8 CSV with bilingual headers."}}


async def _monthly(request: Request) -> list[Any]:
    run = run_dir(request.app.state)
    rows, _ = await run_in_threadpool(report_tables, service(request), run, True, None)
    return rows


async def _compensation(request: Request, policy: str | None) -> list[Any]:
    chosen = choose_policies(policy)
    run = run_dir(request.app.state)
    _, rows = await run_in_threadpool(report_tables, service(request), run, False, chosen)
    return rows


@router.get("/v1/reports/monthly", response_model=list[MonthlyOut])
async def monthly(request: Request, _: CanRead) -> list[dict[str, Any]]:
    """The regulator-style monthly table: unauthorized logins and trades, value sold and bought."""
    return [msgspec.to_builtins(r) for r in await _monthly(request)]


@router.get("/v1/reports/monthly.csv", response_class=Response, responses=CSV)
async def monthly_csv(request: Request, _: CanRead) -> Response:
    return csv_response(write_monthly_csv, await _monthly(request), "monthly.csv")


@router.get("/v1/reports/compensation", response_model=list[CompensationOut])
async def compensation(
    request: Request, _: CanRead, policy: PolicyName = None
) -> list[dict[str, Any]]:
    """Each damaged victim's compensation under each policy (or the one named)."""
    return [msgspec.to_builtins(r) for r in await _compensation(request, policy)]


@router.get("/v1/reports/compensation.csv", response_class=Response, responses=CSV)
async def compensation_csv(request: Request, _: CanRead, policy: PolicyName = None) -> Response:
    rows = await _compensation(request, policy)
    return csv_response(write_compensation_csv, rows, "compensation.csv")
