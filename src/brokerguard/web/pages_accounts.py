"""The account timeline and the actions on an account.

The timeline is the service's own (:func:`~brokerguard.service.queries.account_timeline`), with
each sign-in placed (country and network from :mod:`brokerguard.netinfo`) and its device named
(:mod:`brokerguard.useragent`). Actions go through the same steps as ``POST
/v1/accounts/{account}/actions``: recorded with their audit entry by
:func:`~brokerguard.service.actions.record_account_action`, then told to the engine (a held
order's answer, a lock).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from brokerguard.netinfo import shared_lookup
from brokerguard.service import actions, queries
from brokerguard.service.auth import require_role
from brokerguard.service.errors import InvalidInput, NotFound
from brokerguard.service.schemas import AccountActionIn
from brokerguard.service.unlock_queue import waiting_unlocks
from brokerguard.service.users import ConsoleUser, role_at_least
from brokerguard.useragent import parse_user_agent
from brokerguard.web._common import (
    back,
    checked,
    page_number,
    page_user,
    pager,
    render,
    service,
)
from brokerguard.web.i18n import language, translator
from brokerguard.web.pages_unlocks import is_return
from brokerguard.web.rendering import segment

router = APIRouter(include_in_schema=False)
Supervisor = Annotated[ConsoleUser, Depends(require_role("supervisor"))]
NEEDS_TARGET = ("release_order", "cancel_order", "trust_device")
PAGE = 100  # timeline items per page
CUSTOMERS_OWN = ("request_unlock",)  # the customer's word, told by the broker's site
"""Pages besides the account's own that post actions here and are sent back to (``back``)."""


def page_of(account: str) -> Response:
    """303 to the account's page, its ID quoted whole (``back`` keeps ``/``: a browser would
    resolve ``X/../V1`` to V1's page)."""
    return RedirectResponse(f"/console/accounts/{segment(account)}", status_code=303)


def _describe(item: dict[str, Any], t: Callable[[str], str]) -> dict[str, Any]:
    """What the page shows of one event: where, which device, which factors, what it did —
    in the reader's language (``t``): the codes of the events (``new buy``, ``phone``,
    ``oob passed``, ``portfolio``, ``password``, ``(isp)``) were shown as they are, in English,
    on the Japanese page."""

    def word(prefix: str, code: object) -> str:
        key = f"{prefix}{code}"
        said = t(key)
        return str(code) if said == key else said  # a code the catalogue lacks shows itself

    body = json.loads(item["body"]) if item.get("body") else {}
    view: dict[str, Any] = {"body": body, "where": "", "device": "", "factors": "", "what": ""}
    ip = body.get("ip")
    if ip:
        net = shared_lookup()(ip)
        view["where"] = f"{ip} · {net.country} · {net.asn} ({word('network_', net.kind)})"
    ua = body.get("user_agent")
    if ua:
        browser, os, kind = parse_user_agent(ua)
        cookie = body.get("device")
        view["device"] = f"{browser} / {os} / {word('device_', kind)}" + (
            f" · {cookie}" if cookie else ""
        )
    if body.get("factors"):
        view["factors"] = ", ".join(word("factor_", f) for f in body["factors"])
    kind = item["type"]
    if kind == "login":
        view["what_key"] = "signin_success" if body.get("success") else "signin_failed"
    elif kind in ("order", "execution"):
        price = body.get("limit_price") or body.get("price") or ""
        action = word("order_", body["action"]) if body.get("action") else ""
        side = word("side_", body["side"]) if body.get("side") else ""
        view["what"] = (
            f"{action} {side} {body.get('symbol', '')} "
            f"({body.get('market', '')}) × {body.get('quantity', '')} @ {price}"
        ).strip()
    elif kind == "settings":
        view["what"] = word("field_", body.get("field", ""))
    elif kind == "withdrawal":
        view["what"] = f"¥{body.get('amount_jpy', 0):,.0f}"
    elif kind == "challenge":
        view["what"] = (
            f"{word('factor_', body.get('factor', ''))} "
            f"{word('outcome_', body.get('outcome', ''))} ← {body.get('ref', '')}"
        )
    elif kind == "session":
        view["what"] = word("session_", body.get("action", ""))
    elif kind == "analyst":  # an analyst's conclusion, as the engine heard it
        login = body.get("login") or {}
        about = f"← {login.get('id', '')} ({login.get('ip', '')})" if login else ""
        device = body.get("device") or ""
        view["what_key"] = body.get("action", "")  # named in the reader's language
        view["what"] = " ".join(x for x in (about, device) if x)
    return view


@router.get("/console/accounts/{account:path}")
async def timeline(request: Request, account: str) -> Response:
    """The account's actions and its timeline, :data:`PAGE` items a page (``?page=N``, past the
    last page the last): at most 300 items on one page, the rest left out without a word, hid
    the start of a long-watched account. The held orders and the devices the actions offer are
    the account's, not only the page's."""
    user = await page_user(request)
    if not account:  # ``/console/accounts/``: the path's ID may hold ``/``, not be empty
        raise NotFound("no account named", field="account")
    svc = service(request)
    asked = page_number(request.query_params.get("page"))

    def load() -> tuple[int, dict[str, Any], list, list, list, list[str]]:
        with svc.read() as conn:
            page = asked
            timeline = queries.account_timeline(conn, account, PAGE, (page - 1) * PAGE)
            if not timeline["items"] and page > 1:  # past the last page: the last
                page = max(1, -(-timeline["total"] // PAGE))
                timeline = queries.account_timeline(conn, account, PAGE, (page - 1) * PAGE)
            instructed = queries.list_instructions(conn, account=account, limit=100)
            return (
                page,
                timeline,
                waiting_unlocks(conn, account=account),
                instructed,
                queries.held_orders(conn, account),
                queries.signin_devices(conn, account),
            )

    page, data, waiting, instructed, holds, devices = await run_in_threadpool(load)
    t = translator(language(request))
    items = [{**item, **_describe(item, t)} for item in data["items"]]
    held = [{**i, **_describe(i, t)} for i in holds if svc.host.pending(i["event_id"]) is not None]
    return render(
        request,
        "account.html",
        user,
        account=account,
        items=items,
        held=held,
        devices=devices,
        locked=account in svc.host.locked,
        waiting=waiting[0] if waiting else None,  # also a policy's lock: the engine holds none
        past=data["actions"],
        instructions=instructed,
        can_act=role_at_least(user.role, "supervisor"),
        **pager(request, page, data["total"], PAGE),
    )


@router.post("/console/accounts/{account:path}/actions")
async def act(request: Request, account: str, user: Supervisor) -> Response:
    form = await request.form()
    action = str(form.get("action", ""))
    target = str(form.get("target", "")).strip() or None
    note = str(form.get("note", ""))
    if action not in actions.ACCOUNT_ACTIONS or action in CUSTOMERS_OWN:
        raise InvalidInput(f"unknown account action {action!r}", field="action")
    if action in NEEDS_TARGET and target is None:
        raise InvalidInput(f"{action} needs a target", field="target")
    checked(AccountActionIn, {"action": action, "target": target, "note": note})
    actor = f"user:{user.username}"
    await service(request).act_on_account(actor, account, action, target, note)
    returns = str(form.get("back", ""))
    return back(returns) if is_return(returns) else page_of(account)
