"""Getting in and back in: the log-in page (password or passkey), log-out, and the unlock page.

The log-in page carries the clone-detection canary (:mod:`.canary`). A password that verifies is
only the first factor: the guard decides the sign-in (:func:`.flows.login`), and a wrong one is
told to the guard too (it counts failures per account and per address). A locked account —
after N failures, a freeze, or the guard's ``lock`` — goes to the unlock page, which reopens
it only after a passkey verification made after the unlock request, and lifts the guard's lock.
A customer without a passkey asks for an analyst's unlock there; the guard records the request
(``request_unlock``) so that it shows in the console's list of accounts waiting for an unlock.

Nothing before proof of identity tells whether an ID exists or is locked: a wrong password reads
the same on a locked account (only the right one leads to the unlock page), and the unlock page,
its ask, its passkey options and a failed verification answer the same for every ID typed
(no lock reason, no passkeys listed); asks are limited per ID and per client alike.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from brokerguard.auth import AccountLocked, AuthError, RateLimited, VerificationFailed
from brokerguard.auth.passkeys import SIGN_IN
from brokerguard.auth.passwords import UnlockRequest
from brokerguard.cookies import drop_cookie, set_cookie
from brokerguard.frontdoor import flows
from brokerguard.frontdoor._web import (
    PENDING_COOKIE,
    SESSION_COOKIE,
    check_csrf,
    client,
    device_cookie,
    new_device_cookie,
    redirect,
    render,
    session_of,
    set_session_cookie,
    site,
)
from brokerguard.frontdoor.canary import canary_attributes
from brokerguard.frontdoor.site import Site

router = APIRouter(include_in_schema=False)
log = logging.getLogger(__name__)
PURGE_EVERY = timedelta(minutes=1)
TYPED_COOKIE = "bgs_typed"  # the account number of a failed sign-in, for the form again


def _go(request: Request, step: flows.Next, *, json_answer: bool = False) -> Response:
    response: Response = (
        JSONResponse({"redirect": step.redirect}) if json_answer else redirect(step.redirect)
    )
    if step.token is not None:
        set_session_cookie(request, response, step.token)
    if step.stepup is not None:
        set_cookie(request, response, PENDING_COOKIE, step.stepup)
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
    failed = request.query_params.get("failed") == "1"
    response = render(
        request,
        "login.html",
        account=request.cookies.get(TYPED_COOKIE, "")[:64] if failed else "",
        failed=failed,
        refused=request.query_params.get("refused") == "1",
        unlocked=request.query_params.get("unlocked") == "1",
        rejected=request.query_params.get("rejected") == "1",
        canary=canary_attributes(site(request)),
    )
    if not device_cookie(request):
        new_device_cookie(request, response)
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
        device = device_cookie(request)

        def wrong() -> flows.Next:
            return flows.login(
                s, account, "password", ip, ua, device, success=False, referrer=referrer
            )

        if s.lockout.is_locked(account):
            # Only whoever typed the right password learns that the account is locked (and
            # only then is the guard asked whether an analyst lifted it): a wrong one reads
            # like any other wrong password, at the same Argon2 cost, told to the guard alike.
            if not s.passwords.matches(account, password):
                return wrong()
            if not s.lifted_by_analyst(account):
                return flows.Next(flows.unlock_path(account))
        try:
            s.passwords.verify(account, password)  # an unknown ID costs the same (a dummy hash)
        except AccountLocked:  # this failure was the N-th: lock at the guard too
            s.lock(account, reason="failures", by="system")
            return flows.Next("/login?failed=1")  # the owner is told by mail, not this page
        except VerificationFailed:
            return wrong()
        return flows.login(s, account, "password", ip, ua, device, referrer=referrer)

    try:
        step = await run_in_threadpool(check)
    except VerificationFailed:
        step = flows.Next("/login?failed=1")
    response = _go(request, step)
    if step.redirect == "/login?failed=1":
        # The form comes back with the account number the customer typed (it came back empty,
        # to be typed again after every wrong password); never the password. Kept for the
        # redirect only, in a cookie of the log-in page.
        response.set_cookie(
            TYPED_COOKIE,
            account,
            max_age=300,
            httponly=True,
            samesite="lax",
            path="/login",
            secure=s.config.secure_cookies,
        )
    return response


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
    drop_cookie(request, response, SESSION_COOKIE)
    return response


# --- unlock ----------------------------------------------------------------------------------
# Every answer below is the same whatever the ID typed: an account that is locked (for whatever
# reason, with or without passkeys), one that is not, one that does not exist. What differs is
# done behind it (an unlock request opened, the guard told) and shows only to the owner.


@router.get("/unlock")
async def unlock_page(request: Request) -> Response:
    """The unlock form, the typed ID filled in; nothing on it depends on the account."""
    return render(
        request,
        "unlock.html",
        account=request.query_params.get("account", "")[:64],
        asked=request.query_params.get("asked"),
    )


def _count_ask(s: Site, account: str, ip: str) -> None:
    """Count one unlock ask of ``account`` from ``ip``, or raise RateLimited.

    Per ID :data:`~.site.UNLOCK_PER_ACCOUNT` (10) an hour; per address the site's
    ``unlock_per_address`` (60 by default: a carrier's NAT address is many customers').

    Every ID is counted alike (a limit that only locked accounts had would tell which are
    locked), so the windows of IDs anyone makes up are purged once their hour has passed.
    """
    per_account, per_address = s.unlock_limits
    now = s.limiter.clock()
    if s.unlock_purge_due is None or now >= s.unlock_purge_due:
        s.limiter.purge("unlock", per_account.per)
        s.limiter.purge("unlock-client", per_address.per)
        s.unlock_purge_due = now + PURGE_EVERY
    s.limiter.hit_all(
        [
            ("unlock", account, per_account, "unlock requests for this account"),
            ("unlock-client", ip, per_address, "unlock requests from this address"),
        ]
    )


def _ask_if_locked(s: Site, account: str) -> None:
    """After the answer is sent (so that its timing tells nothing): a locked account's request
    goes to the analysts' list. When the guard cannot be told the site's request stays open
    and the page already told the customer to call the support desk if no one calls back."""
    if s.lockout.is_locked(account) and not s.ask_analyst_unlock(account):
        log.warning("unlock request of %r: the guard could not be told", account)


@router.post("/unlock/ask")
async def unlock_ask(request: Request) -> Response:
    """Ask for an analyst's unlock. A plain form without a CSRF token, like the log-in: the page
    comes before sign-in, so a forged post could do nothing that a direct one cannot. Anyone may
    ask for any ID; for a locked account the request only marks it in the analysts' list (they
    check the identity before unlocking). The answer is the same for every ID."""
    account = str((await request.form()).get("account", "")).strip()[:64]
    if not account:
        return redirect("/unlock")
    s = site(request)
    ip, _ua = client(request)
    try:
        await run_in_threadpool(_count_ask, s, account, ip)
    except RateLimited:
        return redirect(f"{flows.unlock_path(account)}&asked=limited")
    response = redirect(f"{flows.unlock_path(account)}&asked=yes")
    response.background = BackgroundTask(_ask_if_locked, s, account)
    return response


UNLOCK_NOTHING = "unlock:none"
"""What the passkey ceremony of an ID that is not locked approves: nothing. Its answer is
verified like any (the same work, so the same time), then refused: no request is open."""


def _pending(s: Site, account: str) -> tuple[bool, UnlockRequest | None]:
    """Whether the account is locked, and its open unlock request if so. The lock state and
    the requests are read for every ID — locked, not locked, made up — so that the answer takes
    the same time whichever it is (the requests of an ID that is not locked are none, or closed
    ones)."""
    locked = s.lockout.is_locked(account)
    pending = s.pending_unlock(account)
    return locked, pending if locked else None


def _account_of(body: dict[str, Any]) -> str:
    account = body.get("account")
    if not isinstance(account, str) or not account.strip():
        raise AuthError("account: the account number is required (a non-empty string)")
    return account.strip()[:64]


@router.post("/unlock/options")
async def unlock_options(request: Request) -> Response:
    """The passkey options for an unlock: discoverable passkeys (none of the account's listed),
    bound to the account's open unlock request, which a locked account gets here if it has
    none. An ID that is not locked gets options just the same, bound to nothing."""
    body = await _json(request)
    s = site(request)
    ip, _ua = client(request)
    try:
        account = _account_of(body)
    except AuthError as exc:
        return JSONResponse({"error": "bad_request", "detail": str(exc)}, status_code=400)

    def begin() -> dict[str, Any]:
        _count_ask(s, account, ip)
        locked, pending = _pending(s, account)
        if locked and pending is None:  # the first ask since the lock
            pending = s.lockout.request_unlock(account, requested_by="customer")
        # The ceremony approves this unlock request only: not an assertion made for a step-up
        # or a re-verification before the lock, say.
        approves = f"unlock:{pending.id}" if pending else UNLOCK_NOTHING
        options = s.passkeys.authentication_options(None, purpose=approves)
        return {"options": json.loads(options)}

    try:
        return JSONResponse(await run_in_threadpool(begin))
    except RateLimited:
        return JSONResponse({"error": "rate_limited"}, status_code=429)


@router.post("/unlock/verify")
async def unlock_verify(request: Request) -> Response:
    """Reopen with the passkey's answer: the site finds the account's open unlock request
    itself (a request ID in the body is ignored), and only a passkey of that account, answering
    that request's ceremony, completes it. Every failure is the same 403."""
    body = await _json(request)
    s = site(request)
    try:
        account = _account_of(body)
    except AuthError as exc:
        return JSONResponse({"error": "bad_request", "detail": str(exc)}, status_code=400)

    def finish() -> None:
        _locked, pending = _pending(s, account)
        # Checked even without a request, so that the answer costs the same either way: the
        # options of an ID that is not locked began a ceremony for UNLOCK_NOTHING, so a
        # passkey's answer to it is verified (signature and all) like one to a real request.
        approves = f"unlock:{pending.id}" if pending else UNLOCK_NOTHING
        proof = s.passkeys.authenticate(body.get("response") or {}, None, purpose=approves)
        if pending is None or proof.account != account:
            raise VerificationFailed("not a passkey of this account's unlock request")
        s.lockout.complete_by_factor(account, pending.id, proof)
        s.guard.unfreeze(account, "customer re-verified with a passkey at the front door")

    try:
        await run_in_threadpool(finish)
    except AuthError:
        return JSONResponse({"error": "unlock_failed"}, status_code=403)
    return JSONResponse({"redirect": "/login?unlocked=1"})
