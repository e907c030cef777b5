"""The investor's security page: sign-ins, sessions, passkeys, notices, and the freeze button.

- Recent sign-ins with place (country and network from :mod:`brokerguard.netinfo`) and device
  (:mod:`brokerguard.useragent`), refused attempts included.
- Active sessions, each with "sign out".
- Passkeys: add (the guard steps the change up first: a stolen password alone must not enrol
  a criminal's passkey), rename, and remove — only after a passkey verification of the last
  five minutes in this session.
- Notification settings (:mod:`.prefs`).
- "Freeze my account": locks the account here and at the guard at once (every later decision is
  ``lock``: no order, no withdrawal), signs every session out, and sends the lock notice.
  Reopening goes through the unlock page.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from brokerguard.auth import AuthError
from brokerguard.auth.passkeys import clean_name
from brokerguard.cookies import drop_cookie, get_cookie
from brokerguard.frontdoor import flows
from brokerguard.frontdoor._web import (
    SESSION_COOKIE,
    check_csrf,
    redirect,
    render,
    session_of,
    site,
)
from brokerguard.frontdoor.pages_access import _go, _json
from brokerguard.frontdoor.prefs import OPTIONAL
from brokerguard.frontdoor.sessions import SiteSession
from brokerguard.netinfo import shared_lookup
from brokerguard.useragent import parse_user_agent

router = APIRouter(include_in_schema=False)
PERMIT = timedelta(minutes=5)
_PERMITS = threading.Lock()  # taking a session's passkey permit (see passkey_register)


def reauth_purpose(session: SiteSession) -> str:
    """A re-verification's passkey ceremony is this session's: neither a step-up's assertion
    nor one made in another session (the thief's) stands in for it, nor it for them."""
    return f"reauth:{session.id}"


def place(ip: str) -> dict[str, str]:
    """Country and network of an address, as the security page shows them: an unknown country
    (``??``) and a network named only by its kind are text keys (``place_unknown``,
    ``network_<kind>``) for the page's language — the Japanese page said ``??`` and
    ``private``."""
    info = shared_lookup()(ip)
    network = info.asn if info.asn not in ("?", "private") else f"network_{info.kind}"
    country = info.country if info.country not in ("??", "?", "") else "place_unknown"
    return {"country": country, "network": network, "kind": info.kind}


def device_of(user_agent: str) -> tuple[str, str, str]:
    """Browser, system and the key of the kind of device (``device_pc`` …): "(pc)" was English
    on the Japanese page."""
    browser, system, kind = parse_user_agent(user_agent)
    return browser, system, f"device_{kind}"


@router.get("/settings")
async def settings_page(request: Request) -> Response:
    session = session_of(request)
    s = site(request)
    account = session.account
    now = datetime.now(UTC)
    permit = session.passkey_permit is not None and session.passkey_permit > now
    fresh = session.reauth is not None and now - session.reauth.at < s.passkeys.config.reauth_window
    return render(
        request,
        "settings.html",
        session,
        logins=s.sessions.logins(account)[:20],
        sessions=s.sessions.of(account),
        passkeys=s.passkeys.list(account),
        prefs=s.prefs.get(account),
        optional=OPTIONAL,
        place=place,
        device=device_of,
        permit=permit,
        fresh=fresh,
        saved=request.query_params.get("saved") == "1",
        error=request.query_params.get("error"),
        name_error=request.query_params.get("name_error"),
    )


@router.post("/settings/sessions/{session_id}/signout")
async def sign_out(request: Request, session_id: str) -> Response:
    session = session_of(request)
    await check_csrf(request, session)
    s = site(request)
    target = next((x for x in s.sessions.of(session.account) if x.id == session_id), None)
    if target is not None:  # told to the guard with the session's own address and browser
        await run_in_threadpool(s.end_session, target, target.ip, target.user_agent)
    if session_id == session.id:
        response = redirect("/login")
        drop_cookie(request, response, SESSION_COOKIE)
        return response
    return redirect("/settings")


# --- passkeys --------------------------------------------------------------------------------
@router.post("/settings/passkeys/begin")
async def passkey_begin(request: Request) -> Response:
    """Ask the guard about a passkey change; a stepped-up change resumes into the permit."""
    session = session_of(request)
    await check_csrf(request, session)
    s = site(request)
    token = get_cookie(request, SESSION_COOKIE) or ""

    def grant() -> None:
        current = s.sessions.get(token)
        if current is not None:
            current.passkey_permit = datetime.now(UTC) + PERMIT
            s.sessions.save(token, current)

    step = await run_in_threadpool(
        flows.guarded_setting, s, session, "passkey", grant, "/settings?add=1#passkeys"
    )
    if step.error:
        step.redirect = f"/settings?error={step.error}"
    return _go(request, step)


@router.post("/settings/passkeys/options")
async def passkey_options(request: Request) -> Response:
    session = session_of(request)
    await check_csrf(request, session)
    await _json(request)
    if session.passkey_permit is None or session.passkey_permit < datetime.now(UTC):
        return JSONResponse({"error": "reauth_required"}, status_code=403)
    s = site(request)
    customer = s.book.customer(session.account)
    name = customer.name if customer is not None else session.account
    try:
        options = await run_in_threadpool(
            s.passkeys.registration_options, session.account, session.account, name
        )
    except AuthError as exc:
        return JSONResponse({"error": exc.code}, status_code=409)
    return Response(options, media_type="application/json")


@router.post("/settings/passkeys")
async def passkey_register(request: Request) -> Response:
    session = session_of(request)
    await check_csrf(request, session)
    body = await _json(request)
    if session.passkey_permit is None or session.passkey_permit < datetime.now(UTC):
        return JSONResponse({"error": "reauth_required"}, status_code=403)
    s = site(request)
    try:  # a blank name is refused, not named "passkey" behind the customer's back
        name = clean_name(str(body.get("name") or ""))
    except ValueError:
        return JSONResponse({"error": "name_invalid"}, status_code=400)
    token = get_cookie(request, SESSION_COOKIE) or ""

    def register() -> bool:
        # One passkey per step-up: whoever got through it once (a relayed code, say) must not
        # add more keys. The permit is taken before registering, in one step under a lock, so
        # that registrations sent at once cannot all pass the check; given back if this fails.
        with _PERMITS:
            current = s.sessions.get(token)
            permit = current.passkey_permit if current is not None else None
            if current is None or permit is None or permit < datetime.now(UTC):
                return False
            current.passkey_permit = None
            s.sessions.save(token, current)
        try:
            s.passkeys.register(session.account, body.get("response") or {}, name)
        except BaseException:
            with _PERMITS:
                current = s.sessions.get(token)
                if current is not None:
                    current.passkey_permit = permit
                    s.sessions.save(token, current)
            raise
        s.snapshot(session.account)  # the guard now offers "passkey" in this account's step-ups
        return True

    try:
        registered = await run_in_threadpool(register)
    except (AuthError, ValueError) as exc:
        return JSONResponse({"error": getattr(exc, "code", "invalid")}, status_code=400)
    if not registered:
        return JSONResponse({"error": "reauth_required"}, status_code=403)
    return JSONResponse({"redirect": "/settings#passkeys"})


@router.post("/settings/passkeys/{credential_id}/rename")
async def passkey_rename(request: Request, credential_id: str) -> Response:
    session = session_of(request)
    await check_csrf(request, session)
    form = await request.form()
    try:
        site(request).passkeys.rename(session.account, credential_id, str(form.get("name", "")))
    except ValueError:
        # said next to the name's field of that passkey (a bare "Error" at the top of the
        # page, far from the field, did not say which field or why)
        return redirect(f"/settings?name_error={credential_id}#pk-{credential_id}")
    except AuthError:
        return redirect("/settings?error=invalid#passkeys")
    return redirect("/settings?saved=1#passkeys")


@router.post("/settings/reauth/options")
async def reauth_options(request: Request) -> Response:
    session = session_of(request)
    await check_csrf(request, session)
    await _json(request)
    options = await run_in_threadpool(
        site(request).passkeys.authentication_options,
        session.account,
        purpose=reauth_purpose(session),
    )
    return Response(options, media_type="application/json")


@router.post("/settings/reauth")
async def reauth(request: Request) -> Response:
    session = session_of(request)
    await check_csrf(request, session)
    body = await _json(request)
    s = site(request)
    token = get_cookie(request, SESSION_COOKIE) or ""
    try:
        proof = await run_in_threadpool(
            s.passkeys.authenticate, body, session.account, purpose=reauth_purpose(session)
        )
    except AuthError as exc:
        return JSONResponse({"error": exc.code}, status_code=403)
    session.reauth = proof
    s.sessions.save(token, session)
    return JSONResponse({"redirect": "/settings#passkeys"})


@router.post("/settings/passkeys/{credential_id}/remove")
async def passkey_remove(request: Request, credential_id: str) -> Response:
    session = session_of(request)
    await check_csrf(request, session)
    s = site(request)
    try:
        await run_in_threadpool(
            s.passkeys.remove, session.account, credential_id, reauth=session.reauth
        )
    except AuthError as exc:
        return redirect(f"/settings?error={exc.code}#passkeys")
    await run_in_threadpool(s.snapshot, session.account)
    return redirect("/settings?saved=1#passkeys")


# --- notifications and the freeze ----------------------------------------------------------
@router.post("/settings/notifications")
async def notifications(request: Request) -> Response:
    session = session_of(request)
    await check_csrf(request, session)
    form = await request.form()
    kinds = {k: form.get(f"kind_{k}") == "on" for k in OPTIONAL}
    channels = [c for c in ("email", "sms") if form.get(f"channel_{c}") == "on"]
    s = site(request)

    def apply() -> None:
        s.prefs.set(session.account, kinds, channels)

    if not channels:
        return redirect("/settings?error=channels#notifications")
    step = await run_in_threadpool(
        flows.guarded_setting,
        s,
        session,
        "notifications",
        apply,
        "/settings?saved=1#notifications",
    )
    if step.error:
        step.redirect = f"/settings?error={step.error}"
    return _go(request, step)


@router.post("/settings/freeze")
async def freeze(request: Request) -> Response:
    session = session_of(request)
    await check_csrf(request, session)
    form = await request.form()
    if form.get("confirm") != "on":
        return redirect("/settings?error=confirm#freeze")
    s = site(request)
    account = session.account
    await run_in_threadpool(s.lock, account, reason="customer", by="customer")
    response = redirect(flows.unlock_path(account))
    drop_cookie(request, response, SESSION_COOKIE)
    return response
