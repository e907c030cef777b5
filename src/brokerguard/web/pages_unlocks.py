"""Accounts waiting for an unlock: the analysts' queue of locked and frozen accounts.

The list is :func:`~brokerguard.service.unlock_queue.waiting_unlocks`: what locked each account
(the policy's decision with its reasons, an analyst, the customer's freeze), since when, and
whether the customer asked for an analyst's unlock. The unlock itself is the account page's
action (``POST /console/accounts/{account}/actions``, supervisor+, CSRF, audited as
``account.unlock``), so there is one way to unlock; its form here carries the analyst's note,
which says how the customer's identity was checked (the broker's site completes its own unlock
request with it).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from brokerguard.service.unlock_queue import waiting_unlocks
from brokerguard.service.users import role_at_least
from brokerguard.web._common import page_user, render, service

router = APIRouter(include_in_schema=False)
PATH = "/console/unlocks"


@router.get(PATH)
async def unlocks_page(request: Request) -> Response:
    user = await page_user(request)
    requested_only = request.query_params.get("requested") == "1"

    def load() -> list[dict[str, Any]]:
        with service(request).read() as conn:
            return waiting_unlocks(conn, requested_only=requested_only)

    rows = await run_in_threadpool(load)
    return render(
        request,
        "unlocks.html",
        user,
        rows=rows,
        requested_only=requested_only,
        can_act=role_at_least(user.role, "supervisor"),
        back_to=PATH,
    )
