"""Accounts: the timeline of what the service saw, and what analysts do to an account."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request

from brokerguard.service import queries
from brokerguard.service.api._common import ERRORS, service
from brokerguard.service.auth import CanAct, CanRead
from brokerguard.service.errors import InvalidInput
from brokerguard.service.schemas import AccountActionIn, AccountActionOut, TimelineOut

router = APIRouter(tags=["accounts"], responses=ERRORS)
Account = Annotated[str, Path(min_length=1, max_length=128)]


@router.get("/v1/accounts/{account:path}/timeline", response_model=TimelineOut)
def timeline(
    request: Request,
    _: CanRead,
    account: Account,
    limit: Annotated[int, Query(ge=1, le=queries.MAX_LIMIT)] = 200,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> dict[str, Any]:
    """The account's events (sign-ins, sessions, orders, fills, settings changes, …), newest
    first, each with the decision taken on it; and the analysts' actions on the account.
    ``total`` says how many items there are in all, so that a caller pages on with ``offset``
    instead of losing what lies past ``limit``.

    Records are written a moment after the decision (normally well under a second).
    """
    svc = service(request)
    with svc.read() as conn:
        data = queries.account_timeline(conn, account, limit, offset)
    for item in data["items"]:
        body = item.pop("body")
        item["event"] = json.loads(body) if body is not None else None
    data["locked"] = account in svc.host.locked
    data["offset"] = offset
    return data


@router.get("/v1/accounts/{account:path}/actions", response_model=list[AccountActionOut])
def list_actions(
    request: Request,
    _: CanRead,
    account: Account,
    limit: Annotated[int, Query(ge=1, le=queries.MAX_LIMIT)] = 100,
) -> list[dict[str, Any]]:
    """Actions taken on the account, newest first (the broker's systems may poll this)."""
    with service(request).read() as conn:
        return queries.list_account_actions(conn, account, limit)


@router.post(
    "/v1/accounts/{account:path}/actions", response_model=AccountActionOut, status_code=201
)
async def act(
    request: Request,
    account: Account,
    body: AccountActionIn,
    principal: CanAct,
) -> dict[str, Any]:
    """Act on an account; what the engine hears of each action is in
    :meth:`~brokerguard.service.runtime.Service.act_on_account` (409 when a release or cancel
    names no held order of the account, or one answered or expired meanwhile: nothing done)."""
    if body.action in ("release_order", "cancel_order", "trust_device") and not body.target:
        raise InvalidInput(f"{body.action} needs a target", field="target")
    return await service(request).act_on_account(
        principal.actor, account, body.action, body.target, body.note
    )
