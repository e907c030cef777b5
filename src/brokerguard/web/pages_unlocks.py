"""Accounts waiting for an unlock: the analysts' queue of locked and frozen accounts.

The list is :func:`~brokerguard.service.unlock_queue.waiting_unlocks`: what locked each account
(the policy's decision with its reasons, an analyst, the customer's freeze), since when, and
whether the customer asked for an analyst's unlock. The unlock itself is the account page's
action (``POST /console/accounts/{account}/actions``, supervisor+, CSRF, audited as
``account.unlock``), so there is one way to unlock; its form here carries the analyst's note,
which says how the customer's identity was checked (the broker's site completes its own unlock
request with it). The list comes a page at a time (``?page=N``, :data:`~brokerguard.service.
unlock_queue.PAGE` accounts a page) with previous/next links, and the unlock returns to the page
it was made on (:func:`is_return`).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from brokerguard.service.unlock_queue import PAGE, unlock_page
from brokerguard.service.users import role_at_least
from brokerguard.web._common import is_page, page_number, page_user, pager, render, service

router = APIRouter(include_in_schema=False)
PATH = "/console/unlocks"


def is_return(url: str) -> bool:
    """``url`` is a page of this list (``requested=1``, ``page=N``): where an unlock made on it
    may send the analyst back to (anything else could send them off the console)."""
    parts = urlsplit(url)
    if parts.scheme or parts.netloc or parts.path != PATH or parts.fragment:
        return False
    query = parse_qsl(parts.query, keep_blank_values=True)
    allowed = {"requested": lambda v: v == "1", "page": is_page}
    names = [k for k, _ in query]
    return len(names) == len(set(names)) and all(k in allowed and allowed[k](v) for k, v in query)


@router.get(PATH)
async def unlocks_page(request: Request) -> Response:
    user = await page_user(request)
    requested_only = request.query_params.get("requested") == "1"
    asked = page_number(request.query_params.get("page"))

    def load() -> tuple[list[dict[str, Any]], int, int]:
        with service(request).read() as conn:
            return unlock_page(conn, asked, requested_only=requested_only)

    rows, page, total = await run_in_threadpool(load)
    here = {"requested": "1"} if requested_only else {}
    if page > 1:
        here["page"] = str(page)
    return render(
        request,
        "unlocks.html",
        user,
        rows=rows,
        requested_only=requested_only,
        can_act=role_at_least(user.role, "supervisor"),
        back_to=PATH,
        return_to=f"{PATH}?{urlencode(here)}" if here else PATH,
        **pager(request, page, total, PAGE),
    )
