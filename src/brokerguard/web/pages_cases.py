"""Campaigns (symbols, fills chart, account/infrastructure graph, buy waves) and cases."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from brokerguard.netinfo import shared_lookup
from brokerguard.service import actions, queries
from brokerguard.service.auth import require_role
from brokerguard.service.errors import Conflict, InvalidInput, NotFound
from brokerguard.service.models import events
from brokerguard.service.schemas import CaseIn, NoteIn
from brokerguard.service.users import ConsoleUser, role_at_least
from brokerguard.web._common import back, checked, page_number, page_user, render, service
from brokerguard.web.i18n import language, translator
from brokerguard.web.svg import campaign_graph, fill_chart

router = APIRouter(include_in_schema=False)
Worker = Annotated[ConsoleUser, Depends(require_role("analyst"))]
Supervisor = Annotated[ConsoleUser, Depends(require_role("supervisor"))]
CASE_STATUSES = ("open", "investigating", "closed")
OUTCOMES = ("fraud", "not_fraud")
PAGE = 100  # cases per page of the list
MAX_CASE_ID = 2**31 - 1  # the cases table's integer ids (the API's ``CaseId`` bound)


def _existing(case_id: int) -> int:
    """``case_id`` if a case could have it: a larger one cannot even be looked up (SQLite cannot
    bind it, PostgreSQL's integer refuses it), so it is missing like any other."""
    if not 1 <= case_id <= MAX_CASE_ID:
        raise NotFound(f"no case {case_id}", field="case_id")
    return case_id


def _account_events(conn: sa.Connection, accounts: list[str], types: tuple[str, ...]) -> list:
    if not accounts:
        return []
    rows = conn.execute(
        sa.select(events.c.type, events.c.ts, events.c.account, events.c.body)
        .where(events.c.account.in_(accounts[:500]), events.c.type.in_(types))
        .order_by(events.c.ts)
        .limit(20_000)
    )
    return [(r.type, r.ts, r.account, json.loads(r.body)) for r in rows]


def _infrastructure(camp: dict[str, Any], logins: list) -> tuple[list[str], list]:
    """The campaign's shared infrastructure and which account used which piece of it.

    The engine's own keys (``ip:``/``asn:``/``ua:``) come first; to them the console adds what
    the accounts' sign-ins share: an address used by two or more of them, or a hosting or
    anonymizer network (a home ISP shared by many customers is no evidence, so it is left out).
    """
    used: dict[str, set[str]] = defaultdict(set)
    for _type, _ts, account, body in logins:
        ip = body.get("ip")
        if ip:
            net = shared_lookup()(ip)
            used[f"ip:{ip}"].add(account)
            if net.kind in ("hosting", "anonymizer"):
                used[f"asn:{net.asn}"].add(account)
        if body.get("user_agent"):
            used[f"ua:{body['user_agent']}"].add(account)
    engine_keys = list(camp["infrastructure"])
    shared = sorted(
        k
        for k, accounts in used.items()
        if k not in engine_keys
        and (k.startswith("asn:") or (k.startswith("ip:") and len(accounts) > 1))
    )
    nodes = (engine_keys + shared)[:40]
    edges = sorted((a, k) for k in nodes for a in used.get(k, ()))
    return nodes, edges


_DEFAULT_TITLES = (
    # the titles actions.create_case writes when none is given (English, in the records)
    (re.compile(r"^(login|order|withdrawal|settings) (\w+): (.+)$"), "alert"),
    (re.compile(r"^campaign (\S+)$"), "campaign"),
    (re.compile(r"^account (.+)$"), "account"),
)


def case_title(title: str, t: Callable[[str], str]) -> str:
    """A case's title in the reader's language when it is one the service wrote itself
    (``login challenge: A0001``, ``campaign C0018-…``, ``account A0001`` were English on the
    Japanese pages); a title an analyst typed is shown as typed."""
    for pattern, kind in _DEFAULT_TITLES:
        found = pattern.match(title)
        if found is None:
            continue
        if kind == "alert":
            point, action, account = found.groups()
            decision = t(f"decision_{action}")
            if decision == f"decision_{action}":
                return title
            return f"{t('event_' + point)} ({decision}): {account}"
        return f"{t(kind)} {found.group(1)}"
    return title


def _timeline_row(entry: dict[str, Any], t: Callable[[str], str]) -> dict[str, str]:
    """A campaign timeline entry as the page shows it: the time in UTC, the kind of entry and
    the engine's detail in the reader's language (``symbol TSE:2260`` on raising,
    ``analyst`` on a dismissal were English on the Japanese page)."""
    at = datetime.fromisoformat(entry["at"]).strftime("%Y-%m-%d %H:%M")
    what, detail = str(entry["what"]), str(entry["detail"])
    kind, _, rest = detail.partition(" ")
    if what == "raised" and rest and t(f"campaign_{kind}") != f"campaign_{kind}":
        detail = f"{t('campaign_' + kind)} {rest}"
    elif what == "dismissed" and detail == "analyst":
        detail = t("origin_analyst")
    return {"at": at, "what": t(f"campaign_{what}"), "detail": detail}


@router.get("/console/campaigns")
async def campaign_list(request: Request) -> Response:
    user = await page_user(request)

    def load() -> list[dict]:
        with service(request).read() as conn:
            return queries.list_campaigns(conn, limit=200)

    return render(request, "campaigns.html", user, campaigns=await run_in_threadpool(load))


@router.get("/console/campaigns/{campaign_id}")
async def campaign_page(request: Request, campaign_id: str) -> Response:
    user = await page_user(request)

    def load() -> tuple[dict | None, list]:
        with service(request).read() as conn:
            camp = queries.get_campaign(conn, campaign_id)
            if camp is None:
                return None, []
            return camp, _account_events(
                conn, list(camp["accounts"]), ("login", "session", "execution")
            )

    camp, seen = await run_in_threadpool(load)
    if camp is None:
        raise NotFound(f"no campaign {campaign_id!r}", field="campaign_id")
    symbols = list(camp["symbols"])
    fills: dict[str, list[tuple[datetime, float, float]]] = defaultdict(list)
    waves: dict[str, dict[str, Any]] = {}
    for kind, ts, account, body in seen:
        symbol = f"{body.get('market')}:{body.get('symbol')}"
        if kind != "execution" or symbol not in symbols:
            continue
        fills[symbol].append((ts, float(body["price"]), float(body["quantity"])))
        if body.get("side") == "buy":
            hour = ts.strftime("%Y-%m-%d %H:00")
            wave = waves.setdefault(hour, {"hour": hour, "accounts": set(), "value": 0.0})
            wave["accounts"].add(account)
            wave["value"] += float(body.get("value_jpy", 0))
    t = translator(language(request))
    axes = {"price": t("axis_price"), "volume": t("axis_volume"), "time": t("axis_time")}
    charts = {s: fill_chart(fills.get(s, []), labels=axes) for s in symbols}
    logins = [e for e in seen if e[0] in ("login", "session")]
    infrastructure, edges = _infrastructure(camp, logins)
    graph = campaign_graph(camp["accounts"], infrastructure, edges)
    top = max((w["value"] for w in waves.values()), default=1.0) or 1.0
    return render(
        request,
        "campaign.html",
        user,
        camp=camp,
        charts=charts,
        graph=graph,
        infrastructure=infrastructure,
        waves=sorted(waves.values(), key=lambda w: w["hour"]),
        top=top,
        timeline=[_timeline_row(e, t) for e in camp["timeline"]],
        can_act=role_at_least(user.role, "supervisor"),
    )


@router.post("/console/campaigns/{campaign_id}/status")
async def campaign_status(request: Request, campaign_id: str, user: Supervisor) -> Response:
    status = str((await request.form()).get("status", ""))
    if status not in ("active", "contained", "closed", "dismissed"):
        raise InvalidInput(f"unknown campaign status {status!r}", field="status")
    actor = f"user:{user.username}"
    await service(request).update_campaign(actor, campaign_id, status)
    return back(f"/console/campaigns/{campaign_id}")


@router.get("/console/cases")
async def case_list(request: Request) -> Response:
    """The cases, newest first, :data:`PAGE` a page (``?page=N``), as the alert queue pages."""
    user = await page_user(request)
    q = request.query_params
    status = q.get("status") if q.get("status") in CASE_STATUSES else None
    page = page_number(q.get("page"))

    def load() -> tuple[list[dict], int]:
        with service(request).read() as conn:
            rows = queries.list_cases(conn, status=status, limit=PAGE, offset=(page - 1) * PAGE)
            return rows, queries.count_cases(conn, status=status)

    rows, total = await run_in_threadpool(load)
    t = translator(language(request))
    rows = [{**row, "title": case_title(row["title"], t)} for row in rows]
    return render(
        request,
        "cases.html",
        user,
        cases=rows,
        statuses=CASE_STATUSES,
        page=page,
        pages=max(1, -(-total // PAGE)),
        total=total,
        query={k: v for k, v in q.items() if k != "page"},
    )


@router.post("/console/cases")
async def open_case(request: Request, user: Worker) -> Response:
    """Open a case from an alert, a campaign or an account (form fields of those names)."""
    form = await request.form()
    fields = {
        name: (str(form.get(name, "")).strip() or None)
        for name in ("alert_id", "campaign_id", "account", "title")
    }
    checked(CaseIn, fields)
    actor = f"user:{user.username}"
    case = await service(request).recorder.run(
        lambda conn: actions.create_case(conn, actor, **fields)
    )
    return back(f"/console/cases/{case['id']}")


async def _case(request: Request, case_id: int) -> dict[str, Any]:
    def load() -> dict | None:
        with service(request).read() as conn:
            return queries.get_case(conn, case_id)

    case = await run_in_threadpool(load)
    if case is None:
        raise NotFound(f"no case {case_id}", field="case_id")
    return case


@router.get("/console/cases/{case_id}")
async def case_page(request: Request, case_id: int) -> Response:
    user = await page_user(request)
    _existing(case_id)
    case = await _case(request, case_id)
    case = {**case, "title": case_title(case["title"], translator(language(request)))}
    return render(request, "case.html", user, case=case, statuses=CASE_STATUSES, outcomes=OUTCOMES)


@router.post("/console/cases/{case_id}")
async def update_case(request: Request, case_id: int, user: Worker) -> Response:
    _existing(case_id)
    form = await request.form()
    status = str(form.get("status", ""))
    outcome = str(form.get("outcome", "")) or None
    if status not in CASE_STATUSES:
        raise InvalidInput(f"unknown case status {status!r}", field="status")
    if outcome is not None and outcome not in OUTCOMES:
        raise InvalidInput(f"unknown outcome {outcome!r}", field="outcome")
    changes: dict[str, Any] = {"status": status, "outcome": outcome}
    if "labels" in form:
        labels = [x.strip() for x in str(form.get("labels", "")).split(",") if x.strip()]
        if any(len(x) > 100 for x in labels):
            raise InvalidInput("a label has at most 100 characters", field="labels")
        changes["labels"] = labels
    actor = f"user:{user.username}"
    try:
        await service(request).update_case(actor, case_id, changes)
    except Conflict as exc:
        if exc.field != "outcome" or "text/html" not in request.headers.get("accept", ""):
            raise  # a script keeps the API's JSON answer (console/errors.py)
        # Closing without an outcome: the form again with what was chosen and typed, the
        # outcome's field saying it is needed (it was an error page, the labels typed lost).
        case = await _case(request, case_id)
        title = case_title(case["title"], translator(language(request)))
        typed = {**case, "title": title, "status": status, "outcome": outcome}
        if "labels" in changes:
            typed["labels"] = changes["labels"]
        return render(
            request,
            "case.html",
            user,
            status=409,
            case=typed,
            statuses=CASE_STATUSES,
            outcomes=OUTCOMES,
            problem="outcome_needed",
        )
    return back(f"/console/cases/{case_id}")


@router.post("/console/cases/{case_id}/notes")
async def add_note(request: Request, case_id: int, user: Worker) -> Response:
    _existing(case_id)
    text = str((await request.form()).get("text", "")).strip()
    if not text:
        raise InvalidInput("a note needs text", field="text")
    checked(NoteIn, {"text": text})
    actor = f"user:{user.username}"
    await service(request).recorder.run(lambda conn: actions.add_note(conn, actor, case_id, text))
    return back(f"/console/cases/{case_id}")
