"""Getting in and back in: the log-in page (password or passkey), log-out, and the unlock page.

The log-in page carries the clone-detection canary (:mod:`.canary`). A password that verifies is
only the first factor: the guard decides the sign-in (:func:`.flows.login`), and a wrong one is
told to the guard too (it counts failures per account and per address). A locked account —
after N failures, a freeze, or the guard's ``lock`` — goes to the unlock page, which reopens
it only after a passkey verification made after the unlock request, and lifts the guard's lock.
A customer without a passkey asks for an analyst's unlock there; the guard records the request
(``request_unlock``) so that it shows in the console's list of accounts waiting for an unlock.
"""

from __future__ import annotations

import json
import secrets
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from brokerguard.auth import AccountLocked, AuthError, Limit, VerificationFailed
from brokerguard.auth.passkeys import SIGN_IN
from brokerguard.frontdoor import flows
from brokerguard.frontdoor._web import (
    DEVICE_COOKIE,
    PENDING_COOKIE,
    SESSION_COOKIE,
    check_csrf,
    client,
    device_cookie,
    redirect,
    render,
    session_of,
    set_session_cookie,
    site,
)
from brokerguard.frontdoor.canary import canary_attributes
from brokerguard.frontdoor.site import Site

router = APIRouter(include_in_schema=False)
UNLOCK_ATTEMPTS = Limit(10, timedelta(hours=1))


def _go(request: Request, step: flows.Next, *, json_answer: bool = False) -> Response:
    response: Response = (
        JSONResponse({"redirect": step.redirect}) if json_answer else redirect(step.redirect)
    )
    if step.token is not None:
        set_session_cookie(request, response, step.token)
    if step.stepup is not None:
        response.set_cookie(PENDING_COOKIE, step.stepup, httponly=True, samesite="lax", path="/")
    return response


async def _json(request: Request) -> dict[str, Any]:
    if not request.headers.get("content-type", "").startswith("application/json"):
        raise AuthError("expected a JSON body")  # a cross-site form cannot send JSON
    try:
        body = json.loads(await request.body())
    except ValueError:
        raise AuthError("malformed JSON") from None
    if not isinstance(body, dict):
        raise AuthError("expected a JSON object")
    return body


@router.get("/")
async def home(request: Request) -> Response:
    return redirect("/portfolio" if session_of(request, required=False) else "/login")


@router.get("/login")
async def login_page(request: Request) -> Response:
    response = render(
        request,
        "login.html",
        failed=request.query_params.get("failed") == "1",
        refused=request.query_params.get("refused") == "1",
        unlocked=request.query_params.get("unlocked") == "1",
        rejected=request.query_params.get("rejected") == "1",
        canary=canary_attributes(site(request)),
    )
    if not device_cookie(request):
        response.set_cookie(
            DEVICE_COOKIE,
            secrets.token_urlsafe(18),
            httponly=True,
            samesite="lax",
            path="/",
            max_age=400 * 86400,
            secure=site(request).config.secure_cookies,
        )
    return response


@router.post("/login")
async def login_password(request: Request) -> Response:
    form = await request.form()
    account = str(form.get("account", "")).strip()[:64]
    password = str(form.get("password", ""))
    s = site(request)
    ip, ua = client(request)
    referrer = request.headers.get("referer")

    def check() -> flows.Next:
        if not account or s.book.customer(account) is None:
            # The same Argon2 cost as a real check: no guessing of account numbers by time.
            s.passwords.verify(f"unknown\x1f{account}", password)
        was_locked = s.lockout.is_locked(account) and not s.lifted_by_analyst(account)
        try:
            s.passwords.verify(account, password)
        except AccountLocked:
            if not was_locked:  # this failure was the N-th: lock at the guard too
                s.lock(account, reason="failures", by="system")
            return flows.Next(flows.unlock_path(account))
        except VerificationFailed:
            device = device_cookie(request)
            return flows.login(
                s, account, "password", ip, ua, device, success=False, referrer=referrer
            )
        return flows.login(
            s, account, "password", ip, ua, device_cookie(request), referrer=referrer
        )

    try:
        step = await run_in_threadpool(check)
    except VerificationFailed:
        step = flows.Next("/login?failed=1")
    return _go(request, step)


@router.post("/login/passkey/options")
async def passkey_options(request: Request) -> Response:
    await _json(request)
    options = await run_in_threadpool(
        site(request).passkeys.authentication_options, None, purpose=SIGN_IN
    )
    return Response(options, media_type="application/json")


@router.post("/login/passkey")
async def login_passkey(request: Request) -> Response:
    body = await _json(request)
    s = site(request)
    ip, ua = client(request)

    def check() -> flows.Next:
        try:
            proof = s.passkeys.authenticate(body, purpose=SIGN_IN)
        except AuthError:
            return flows.Next("/login?failed=1")
        if s.lockout.is_locked(proof.account):
            return flows.Next(flows.unlock_path(proof.account))
        return flows.login(s, proof.account, "passkey", ip, ua, device_cookie(request))

    return _go(request, await run_in_threadpool(check), json_answer=True)


@router.post("/logout")
async def logout(request: Request) -> Response:
    session = session_of(request, required=False)
    if session is not None:
        await check_csrf(request, session)
        ip, ua = client(request)
        await run_in_threadpool(site(request).end_session, session, ip, ua)
    response = redirect("/login")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# --- unlock ----------------------------------------------------------------------------------
@router.get("/unlock")
async def unlock_page(request: Request) -> Response:
    account = request.query_params.get("account", "")[:64]
    s = site(request)
    if account:
        await run_in_threadpool(s.lifted_by_analyst, account)
    state = s.lockout.state(account) if account else None
    return render(
        request,
        "unlock.html",
        account=account,
        state=state,
        has_passkey=bool(account) and s.passkeys.has_passkey(account),
        asked=request.query_params.get("asked"),
    )


def _locked_first(s: Site, account: str) -> None:
    """Refuse an account that is not locked before its attempt is counted: every ID anyone
    makes up would otherwise leave a rate-limit window in the store, and never be purged."""
    if not s.lockout.is_locked(account):
        raise AuthError(f"account {account!r} is not locked")


@router.post("/unlock/ask")
async def unlock_ask(request: Request) -> Response:
    """Ask for an analyst's unlock. A plain form without a CSRF token, like the log-in: the page
    comes before sign-in, so a forged post could do nothing that a direct one cannot. Anyone may
    ask for any locked account; the request only marks it in the analysts' list (they check the
    identity before unlocking), and asking is bounded like the passkey path."""
    account = str((await request.form()).get("account", ""))[:64]
    s = site(request)

    def ask() -> bool:
        _locked_first(s, account)
        s.limiter.hit("unlock", account, UNLOCK_ATTEMPTS, what="unlock attempts")
        return s.ask_analyst_unlock(account)

    try:
        told = await run_in_threadpool(ask)
    except AuthError:  # not locked, or asked too often
        return redirect(f"{flows.unlock_path(account)}&asked=refused")
    return redirect(f"{flows.unlock_path(account)}&asked={'yes' if told else 'failed'}")


@router.post("/unlock/options")
async def unlock_options(request: Request) -> Response:
    body = await _json(request)
    account = str(body.get("account", ""))[:64]
    s = site(request)

    def begin() -> dict[str, Any]:
        # Anyone may ask (the page is before sign-in): limited, and an open request is reused,
        # so that asking cannot fill the store.
        _locked_first(s, account)
        s.limiter.hit("unlock", account, UNLOCK_ATTEMPTS, what="unlock attempts")
        still_open = [r for r in s.lockout.requests(account) if r.status == "open"]
        request_ = (
            still_open[-1]
            if still_open
            else s.lockout.request_unlock(account, requested_by="customer")
        )
        # The ceremony approves this unlock request only: not an assertion made for a step-up
        # or a re-verification before the lock, say.
        options = s.passkeys.authentication_options(account, purpose=f"unlock:{request_.id}")
        return {"request": request_.id, "options": json.loads(options)}

    try:
        return JSONResponse(await run_in_threadpool(begin))
    except AuthError as exc:
        return JSONResponse({"error": exc.code}, status_code=409)


@router.post("/unlock/verify")
async def unlock_verify(request: Request) -> Response:
    body = await _json(request)
    account = str(body.get("account", ""))[:64]
    s = site(request)

    def finish() -> None:
        request_id = str(body.get("request", ""))
        proof = s.passkeys.authenticate(
            body.get("response") or {}, account, purpose=f"unlock:{request_id}"
        )
        s.lockout.complete_by_factor(account, request_id, proof)
        s.guard.unfreeze(account, "customer re-verified with a passkey at the front door")

    try:
        await run_in_threadpool(finish)
    except AuthError as exc:
        return JSONResponse({"error": exc.code}, status_code=403)
    return JSONResponse({"redirect": "/login?unlocked=1"})
