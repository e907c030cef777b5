"""Inside the account: the portfolio, the order form, and the step-up page.

The step-up page offers exactly the factors the guard's decision named and the customer has
(:meth:`~brokerguard.auth.StepUp.start` filters them), runs the passkey ceremony in the browser
or takes the code sent to the registered address, and reports the outcome to the guard as a
``ChallengeResult``. Only a passed step-up resumes the operation; "this was not me" on a held
order fails it. A sign-in's step-up is tied to the browser that started it by a cookie holding
the step-up's random id; every other step-up to the session that started it.
"""

from __future__ import annotations

import contextlib
import json

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from brokerguard.auth import AuthError, Challenge, RateLimited
from brokerguard.cookies import get_cookie
from brokerguard.frontdoor import flows
from brokerguard.frontdoor._web import (
    PENDING_COOKIE,
    Denied,
    check_csrf,
    client,
    redirect,
    render,
    session_of,
    site,
)
from brokerguard.frontdoor.book import INSTRUMENTS, shortfall
from brokerguard.frontdoor.pages_access import _go, _json
from brokerguard.frontdoor.sessions import SiteSession
from brokerguard.frontdoor.site import Site

router = APIRouter(include_in_schema=False)


@router.get("/portfolio")
async def portfolio(request: Request) -> Response:
    session = session_of(request)
    s = site(request)
    customer = s.book.customer(session.account)
    return render(
        request,
        "portfolio.html",
        session,
        customer=customer,
        instruments=INSTRUMENTS,
        orders=s.book.orders(session.account),
        done=request.query_params.get("done"),
    )


@router.get("/order")
async def order_form(request: Request) -> Response:
    """The order form; ``?refused=`` (an order that waited at step-up and was beyond the
    account's means when it resumed, :func:`flows.refused_path`) shows it again with the same
    text as an order refused at once."""
    session = session_of(request)
    q = request.query_params
    refused = q.get("refused")
    if refused not in flows.BEYOND_MEANS:
        return _order_page(request, session, {})
    typed = {n: q.get(n, "")[:32] for n in ("symbol", "side", "quantity", "limit_price")}
    return _order_page(request, session, typed, "quantity", refused)


def _order_page(
    request: Request,
    session: SiteSession,
    typed: dict[str, str],
    problem_field: str | None = None,
    problem: str | None = None,
    status: int = 200,
) -> Response:
    """The order form, with what was typed and, for a refused order, the field and reason."""
    return render(
        request,
        "order.html",
        session,
        status,
        instruments=INSTRUMENTS,
        typed=typed,
        problem_field=problem_field,
        problem=problem,
    )


def _order_problem(typed: dict[str, str]) -> tuple[str, str] | None:
    """The first field of an order form that cannot be an order, with the text saying why."""
    if typed["symbol"] not in INSTRUMENTS:
        return "symbol", "order_bad_symbol"
    if typed["side"] not in ("buy", "sell"):
        return "side", "order_bad_side"
    try:
        quantity = int(typed["quantity"])
    except ValueError:
        return "quantity", "order_bad_quantity"
    if not 0 < quantity <= 1_000_000:
        return "quantity", "order_bad_quantity"
    if typed["limit_price"]:
        try:
            price = float(typed["limit_price"])
        except ValueError:
            return "limit_price", "order_bad_price"
        if not 0 < price < 1e8:
            return "limit_price", "order_bad_price"
    return None


def _beyond_means(
    s: Site, account: str, typed: dict[str, str], limit_price: float | None
) -> str | None:
    """The text saying why the customer cannot place this order, or None (:func:`shortfall`)."""
    customer = s.book.customer(account)
    if customer is None:
        return None
    return shortfall(customer, typed["symbol"], typed["side"], int(typed["quantity"]), limit_price)


@router.post("/order")
async def order(request: Request) -> Response:
    """An order: refused input, or an order the guard refused, shows the form again with what
    was typed and the reason (it went to ``/order?invalid=1``, an empty form saying nothing, or
    to the portfolio, the order's details gone)."""
    session = session_of(request)
    await check_csrf(request, session)
    form = await request.form()
    typed = {
        name: str(form.get(name, "")).strip()[:32]
        for name in ("symbol", "side", "quantity", "limit_price")
    }

    def refused(field: str, key: str) -> Response:
        return _order_page(request, session, typed, field, key, 400)

    problem = _order_problem(typed)
    if problem is not None:
        return refused(*problem)
    limit_price = float(typed["limit_price"]) if typed["limit_price"] else None
    short = _beyond_means(site(request), session.account, typed, limit_price)
    if short is not None:
        return refused("quantity", short)
    ip, ua = client(request)
    step = await run_in_threadpool(
        flows.order,
        site(request),
        session,
        typed["symbol"],
        typed["side"],
        int(typed["quantity"]),
        limit_price,
        ip,
        ua,
    )
    if step.redirect == "/portfolio?done=refused":
        return _order_page(request, session, typed, None, "order_refused")
    return _go(request, step)


# --- step-up ---------------------------------------------------------------------------------
def _challenge(request: Request, challenge_id: str) -> Challenge | None:
    """The step-up if this browser may answer it: a sign-in's only in the browser that signed
    in (its cookie), any other only in the session that asked for the operation.

    Not in another session of the same customer: whoever holds one (a phisher's proxy, an old
    session's stolen cookie) would otherwise open a step-up — his own sign-in, his passkey, his
    order — and lead the customer, signed in on the real site, to its page to pass it for him.
    """
    try:
        challenge = site(request).stepup.get(challenge_id)
    except AuthError:
        return None
    if challenge.operation == "login":
        pending = get_cookie(request, PENDING_COOKIE)
        return challenge if pending == challenge_id else None
    session = session_of(request, required=False)
    if (
        session is not None
        and session.account == challenge.account
        and session.guard_session == challenge.session
    ):
        return challenge
    return None


async def _guard_change(request: Request) -> None:
    session = session_of(request, required=False)
    if session is not None:
        await check_csrf(request, session)
    elif not request.headers.get("content-type", "").startswith("application/json"):
        # A sign-in's step-up has no session yet: the JSON body proves it is no cross-site form,
        # and forms carry the step-up's own id in a hidden field compared with the cookie.
        form = await request.form()
        if form.get("stepup") != get_cookie(request, PENDING_COOKIE):
            raise Denied("step-up form without its id")


@router.get("/stepup/{challenge_id}")
async def stepup_page(request: Request, challenge_id: str) -> Response:
    challenge = _challenge(request, challenge_id)
    if challenge is None or challenge.status != "open":
        return render(request, "message.html", None, 410, key="stepup_gone", back="/login")
    left = request.query_params.get("left")
    waiting = site(request).waiting.get(challenge_id)
    return render(
        request,
        "stepup.html",
        session_of(request, required=False),
        challenge=challenge,
        left=left,
        reasons=waiting.reasons if waiting is not None else (),
        sent=challenge.sent,
        pending=challenge_id,
    )


@router.post("/stepup/{challenge_id}/options")
async def stepup_options(request: Request, challenge_id: str) -> Response:
    challenge = _challenge(request, challenge_id)
    if challenge is None:
        return JSONResponse({"error": "not_found"}, status_code=404)
    await _guard_change(request)
    await _json(request)
    try:
        prompt = await run_in_threadpool(site(request).stepup.select, challenge_id, "passkey")
    except AuthError as exc:
        return JSONResponse({"error": exc.code}, status_code=409)
    return Response(prompt.passkey_options or "{}", media_type="application/json")


@router.post("/stepup/{challenge_id}/send")
async def stepup_send(request: Request, challenge_id: str) -> Response:
    challenge = _challenge(request, challenge_id)
    if challenge is None:
        return redirect(f"/stepup/{challenge_id}")
    await _guard_change(request)
    form = await request.form()
    factor = str(form.get("factor", "oob"))
    try:
        await run_in_threadpool(site(request).stepup.select, challenge_id, factor)  # type: ignore[arg-type]
    except RateLimited:
        pass  # the page still shows where the last code went
    except AuthError:
        return redirect(f"/stepup/{challenge_id}")
    return redirect(f"/stepup/{challenge_id}")


@router.post("/stepup/{challenge_id}/answer")
async def stepup_answer(request: Request, challenge_id: str) -> Response:
    challenge = _challenge(request, challenge_id)
    is_json = request.headers.get("content-type", "").startswith("application/json")
    if challenge is None:
        gone = "/stepup/" + challenge_id
        return JSONResponse({"redirect": gone}) if is_json else redirect(gone)
    await _guard_change(request)
    if is_json:
        body = await _json(request)
        factor, response = "passkey", json.dumps(body.get("response") or {})
    else:
        form = await request.form()
        factor = str(form.get("factor", "oob"))
        response = str(form.get("code", ""))
    try:
        outcome = await run_in_threadpool(
            site(request).stepup.answer,
            challenge_id,
            factor,  # type: ignore[arg-type]
            response,
        )
    except AuthError:
        step = flows.Next(f"/stepup/{challenge_id}")
        return _go(request, step, json_answer=is_json)
    if outcome.status == "passed":
        step = outcome.result if isinstance(outcome.result, flows.Next) else flows.Next("/")
    elif outcome.status == "retry":
        step = flows.Next(f"/stepup/{challenge_id}?left={outcome.attempts_left}")
    else:
        step = flows.Next("/stepup-failed")
    return _go(request, step, json_answer=is_json)


@router.post("/stepup/{challenge_id}/reject")
async def stepup_reject(request: Request, challenge_id: str) -> Response:
    challenge = _challenge(request, challenge_id)
    if challenge is None:
        return redirect(f"/stepup/{challenge_id}")
    await _guard_change(request)
    with contextlib.suppress(AuthError):
        await run_in_threadpool(site(request).stepup.reject, challenge_id)
    if session_of(request, required=False) is not None:
        return redirect("/portfolio?done=rejected")
    # The guard signed this session out: it was doubtful, and its order was "not mine". The
    # sign-in page still tells whoever is here that the order was cancelled.
    return redirect("/login?rejected=1")


@router.get("/stepup-failed")
async def stepup_failed(request: Request) -> Response:
    back = "/portfolio" if session_of(request, required=False) else "/login"
    return render(request, "message.html", None, key="stepup_failed", back=back)
