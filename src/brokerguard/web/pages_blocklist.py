"""The block-list review: hosts only the learned model called phishing, approved or rejected.

The same queue as ``brokerguard phish review`` (the ``blocklist_review`` table). Any analyst
may decide: the decision is audited with the analyst's name, and an approval reaches the
running guard at once (:meth:`~brokerguard.service.runtime.Service.review_blocklist`). Reported
URLs are shown defanged (``hxxps://a[.]example``): readable, never a link to a phishing page.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from brokerguard.phishing._takedown import defang
from brokerguard.service.auth import require_role
from brokerguard.service.blocklist_review import MAX_NOTE, STATUSES, list_entries
from brokerguard.service.errors import InvalidInput
from brokerguard.service.users import ConsoleUser
from brokerguard.web._common import back, page_user, render, service

router = APIRouter(include_in_schema=False)
Worker = Annotated[ConsoleUser, Depends(require_role("analyst"))]


@router.get("/console/blocklist")
async def review_page(request: Request) -> Response:
    user = await page_user(request)
    asked = request.query_params.get("status", "pending")
    status = asked if asked in STATUSES else None  # anything else: every row

    def load() -> list[dict]:
        with service(request).read() as conn:
            return list_entries(conn, status, limit=500)

    rows = await run_in_threadpool(load)
    for row in rows:
        row["shown_url"] = defang(row["url"])
    watch = service(request).blocklist
    return render(
        request,
        "blocklist.html",
        user,
        rows=rows,
        shown=status,
        statuses=STATUSES,
        served=watch.status() if watch is not None else None,
    )


async def _decide(request: Request, host: str, user: ConsoleUser, approve: bool) -> Response:
    note = str((await request.form()).get("note", "")).strip()
    if len(note) > MAX_NOTE:
        raise InvalidInput(f"the note has at most {MAX_NOTE} characters", field="note")
    await service(request).review_blocklist(f"user:{user.username}", host, approve, note)
    return back("/console/blocklist")


@router.post("/console/blocklist/{host}/approve")
async def approve(request: Request, host: str, user: Worker) -> Response:
    return await _decide(request, host, user, True)


@router.post("/console/blocklist/{host}/reject")
async def reject(request: Request, host: str, user: Worker) -> Response:
    return await _decide(request, host, user, False)
