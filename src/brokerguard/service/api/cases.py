"""Cases: investigations opened from an alert, a campaign or an account."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request

from brokerguard.service import actions, queries
from brokerguard.service.api._common import ERRORS, service
from brokerguard.service.auth import CanRead, CanWorkCases
from brokerguard.service.errors import NotFound
from brokerguard.service.schemas import (
    CaseIn,
    CaseOut,
    CaseStatus,
    CaseUpdate,
    NoteIn,
    NoteOut,
    Outcome,
)

router = APIRouter(tags=["cases"], responses=ERRORS)
CaseId = Annotated[int, Path(ge=1, le=2**31 - 1)]


@router.post("/v1/cases", response_model=CaseOut, status_code=201)
async def create_case(request: Request, body: CaseIn, principal: CanWorkCases) -> dict[str, Any]:
    """Open a case; from an alert it takes the alert's account and acknowledges the alert."""
    fields = body.model_dump()
    return await service(request).recorder.run(
        lambda conn: actions.create_case(conn, principal.actor, **fields)
    )


@router.get("/v1/cases", response_model=list[CaseOut])
def list_cases(
    request: Request,
    _: CanRead,
    status: CaseStatus | None = None,
    outcome: Outcome | None = None,
    account: Annotated[str, Query(min_length=1, max_length=128)] | None = None,
    limit: Annotated[int, Query(ge=1, le=queries.MAX_LIMIT)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> list[dict[str, Any]]:
    with service(request).read() as conn:
        return queries.list_cases(
            conn, status=status, outcome=outcome, account=account, limit=limit, offset=offset
        )


@router.get("/v1/cases/{case_id}", response_model=CaseOut)
def get_case(request: Request, case_id: CaseId, _: CanRead) -> dict[str, Any]:
    with service(request).read() as conn:
        case = queries.get_case(conn, case_id)
    if case is None:
        raise NotFound(f"no case {case_id}", field="case_id")
    return case


@router.patch("/v1/cases/{case_id}", response_model=CaseOut)
async def update_case(
    request: Request,
    case_id: CaseId,
    body: CaseUpdate,
    principal: CanWorkCases,
) -> dict[str, Any]:
    """Change status, outcome (fraud / not_fraud), labels, assignee or title.

    Closing a case needs an outcome (409 otherwise). A new outcome on a sign-in alert feeds the
    engine: fraud marks the sign-in's infrastructure and makes the victim re-verify; not fraud
    teaches the engine the sign-in as the customer's.
    """
    changes = body.model_dump(exclude_unset=True)
    return await service(request).update_case(principal.actor, case_id, changes)


@router.post("/v1/cases/{case_id}/notes", response_model=NoteOut, status_code=201)
async def add_note(
    request: Request,
    case_id: CaseId,
    body: NoteIn,
    principal: CanWorkCases,
) -> dict[str, Any]:
    return await service(request).recorder.run(
        lambda conn: actions.add_note(conn, principal.actor, case_id, body.text)
    )
