"""The alert queue: filters, assignment to oneself, and a snooze per account."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from brokerguard.service import actions, queries
from brokerguard.service.auth import require_role
from brokerguard.service.errors import InvalidInput, NotFound
from brokerguard.service.records import DETECTORS, SEVERITIES
from brokerguard.service.users import ConsoleUser
from brokerguard.web._common import (
    back,
    next_page,
    page_number,
    page_user,
    pager,
    render,
    service,
)
from brokerguard.web.i18n import language, translator

router = APIRouter(include_in_schema=False)
Worker = Annotated[ConsoleUser, Depends(require_role("analyst"))]
STATUSES = ("open", "acknowledged", "closed")
SNOOZE = timedelta(hours=24)
PAGE = 100  # alerts per page of the queue


def _choice(value: str | None, allowed: tuple[str, ...] | list[str]) -> str | None:
    return value if value in allowed else None


@router.get("/console/")
async def home(request: Request) -> Response:
    await page_user(request)
    return back("/console/alerts")


@router.get("/console/alerts")
async def alert_queue(request: Request) -> Response:
    user = await page_user(request)
    q = request.query_params
    filters = {
        "severity": _choice(q.get("severity"), SEVERITIES),
        "detector": _choice(q.get("detector"), [*DETECTORS, "policy"]),
        "status": _choice(q.get("status"), STATUSES),
    }
    show_snoozed = q.get("snoozed") == "1"
    page = page_number(q.get("page"))
    now = datetime.now(UTC)
    shown = {**filters, "awake_at": None if show_snoozed else now}

    def load() -> tuple[list[dict], int, int]:
        with service(request).read() as conn:
            rows = queries.list_alerts(conn, **shown, limit=PAGE, offset=(page - 1) * PAGE)
            total = queries.count_alerts(conn, **shown)
            snoozed = queries.count_alerts(conn, **filters, snoozed_at=now)
        return rows, total, snoozed

    rows, total, snoozed = await run_in_threadpool(load)
    return render(
        request,
        "alerts.html",
        user,
        alerts=rows,
        filters=filters,
        severities=SEVERITIES,
        detectors=[*DETECTORS, "policy"],
        statuses=STATUSES,
        snoozed=snoozed,
        show_snoozed=show_snoozed,
        **pager(request, page, total, PAGE),
    )


def _value(value: Any, t: Callable[[str], str]) -> str:
    """One piece of evidence as a reader reads it: yes/no in their language, numbers with
    separators, lists and mappings spelled out."""
    if isinstance(value, bool):
        return t("yes" if value else "no")
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, list | tuple):
        return ", ".join(_value(v, t) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_value(v, t)}" for k, v in value.items())
    return "" if value is None else str(value)


# evidence whose value is an infrastructure key or a moment, not a count
_INFRASTRUCTURE_VALUES = ("key", "keys")
_MOMENT_VALUES = ("since",)


def _evidence(key: str, value: Any, t: Callable[[str], str]) -> str:
    """A value as its key means it: an infrastructure key (``asn:64500``) as its kind in the
    reader's language and its value, a moment (seconds since 1970) as a UTC time."""
    if key in _MOMENT_VALUES and isinstance(value, int | float) and value > 0:
        return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M UTC")
    if key in _INFRASTRUCTURE_VALUES:
        keys = value if isinstance(value, list | tuple) else [value]
        return ", ".join(_infrastructure(str(k), t) for k in keys)
    return _value(value, t)


def _infrastructure(key: str, t: Callable[[str], str]) -> str:
    kind, _, shown = key.partition(":")
    name = t(f"entity_{kind}")
    return f"{name} {shown}" if shown and name != f"entity_{kind}" else key


def _signal(signal: dict[str, Any], lang: str, t: Callable[[str], str], host: Any) -> dict:
    """What the alert page shows of one signal: the policy's sentence for its code (the one a
    decision's reason carries) in the reader's language, its weight, and its evidence as rows
    of a name (in the reader's language when the catalogue knows it) and a value. A signal
    that counted for the customer (weight 0 or less) says the sentence is not the case."""
    said = host.reason(signal["code"])
    text = getattr(said, lang) if said is not None else ""
    if text and signal.get("llr", 0) <= 0:
        text = t("signal_not_the_case").format(text=text)
    rows = []
    for key, value in (signal.get("evidence") or {}).items():
        name = t(f"evidence_{key}")
        known = name != f"evidence_{key}"
        kind, _, shown = key.partition(":")
        if not known and shown and t(f"evidence_kind_{kind}") != f"evidence_kind_{kind}":
            # a prefixed key (``ip:<address>``...): the kind's name and the key's value
            name, known = f"{t(f'evidence_kind_{kind}')} {shown}", True
        rows.append({"key": key, "name": name if known else "", "value": _evidence(key, value, t)})
    return {"code": signal["code"], "llr": signal.get("llr"), "text": text, "evidence": rows}


@router.get("/console/alerts/{alert_id}")
async def alert_page(request: Request, alert_id: str) -> Response:
    """One alert: its reasons and the detector signals, each with the policy's sentence for it
    in the reader's language (the code kept, small, for analysts) and its evidence as a table:
    the page showed the signals' codes and evidence dicts as they are."""
    user = await page_user(request)

    def load() -> dict | None:
        with service(request).read() as conn:
            return queries.get_alert(conn, alert_id)

    alert = await run_in_threadpool(load)
    if alert is None:
        raise NotFound(f"no alert {alert_id!r}", field="alert_id")
    lang = language(request)
    t = translator(lang)
    host = service(request).host
    signals = [_signal(s, lang, t, host) for s in alert["signals"] or []]
    return render(request, "alert.html", user, a=alert, signals=signals)


@router.post("/console/alerts/{alert_id}/assign")
async def assign(request: Request, alert_id: str, user: Worker) -> Response:
    actor = f"user:{user.username}"
    await service(request).recorder.run(
        lambda conn: actions.update_alert(conn, actor, alert_id, {"assignee": user.username})
    )
    return next_page((await request.form()).get("next"), "/console/alerts")


@router.post("/console/accounts/{account:path}/snooze")
async def snooze(request: Request, account: str, user: Worker) -> Response:
    """Snooze every open alert of one account for a day (the queue hides them meanwhile)."""
    if not account:
        raise InvalidInput("an account is needed", field="account")
    actor = f"user:{user.username}"
    until = datetime.now(UTC) + SNOOZE

    def work(conn) -> None:  # noqa: ANN001 - a write transaction's connection
        for alert in queries.list_alerts(conn, account=account, status="open", limit=1000):
            actions.update_alert(conn, actor, alert["id"], {"snoozed_until": until})

    await service(request).recorder.run(work)
    return next_page((await request.form()).get("next"), "/console/alerts")
