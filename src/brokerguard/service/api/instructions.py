"""``GET /v1/instructions``: the feed of orders the broker should cancel, sessions it should end.

The engine raises an instruction when a conclusion reaches back to what it let through: a
session failed a phishing-resistant step-up (its earlier orders that are still open are not the
customer's, and the session is signed out), or an analyst confirmed that the sign-in behind a
session was fraud. The answer to ``POST /v1/events`` carries the instructions its batch led to;
this feed carries all of them, those from analysts' actions included, in the order they were
raised. A reader keeps the last ``seq`` it saw and asks for what came after.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from brokerguard.service import queries
from brokerguard.service.api._common import ERRORS, service
from brokerguard.service.auth import CanTakeInstructions
from brokerguard.service.schemas import InstructionOut

router = APIRouter(responses=ERRORS, tags=["decisions"])


@router.get("/v1/instructions", response_model=list[InstructionOut])
def list_instructions(
    request: Request,
    _: CanTakeInstructions,
    # ``seq`` is a 64-bit integer: a larger ``after`` overflowed the query (a 500, not a 422).
    after: Annotated[
        int, Query(ge=0, le=2**63 - 1, description="The last `seq` already read.")
    ] = 0,
    account: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=queries.MAX_LIMIT)] = 100,
) -> list[dict[str, Any]]:
    """Instructions after ``after``, oldest first (at most ``limit``), for one account or all."""
    with service(request).read() as conn:
        return queries.list_instructions(conn, after=after, account=account, limit=limit)
