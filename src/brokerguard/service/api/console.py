"""Console log-in: the session-cookie helpers the server-rendered console builds on.

``GET /console/login`` is a minimal form (Japanese and English, no asset from outside);
``POST /console/login`` takes that form or JSON ``{"username", "password"}``, sets the
``bg_session`` cookie and answers who logged in with the CSRF token to send back on changes.
The form is guarded against log-in CSRF (a foreign page signing the analyst's browser in to the
criminal's own account) by a double-submit token: the form's page sets it in the ``bg_login``
cookie and in a hidden field (:func:`login_form_token`), and a form post whose field does not
match the cookie is refused (403 ``login_csrf``). JSON needs none: a foreign page cannot send
``application/json`` without a CORS preflight, which the service never grants.
``POST /console/logout`` ends the session. ``GET /v1/whoami`` tells any caller who it is.
"""

from __future__ import annotations

import hmac
import math
import secrets
from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from brokerguard.cookies import drop_cookie, get_cookie, set_cookie
from brokerguard.service import audit, login_throttle
from brokerguard.service.api._common import AUTH_ERRORS, ERRORS, THROTTLED, service
from brokerguard.service.auth import ROLE_PERMISSIONS, SESSION_COOKIE, Caller
from brokerguard.service.errors import (
    InvalidInput,
    LoginCsrf,
    MalformedBody,
    TooManyAttempts,
    Unauthorized,
)
from brokerguard.service.schemas import LoginIn, WhoAmI
from brokerguard.service.users import SESSION_HOURS, create_session, end_session
from brokerguard.service.users import authenticate as check_password

router = APIRouter(tags=["console"])
LOGIN_COOKIE = "bg_login"
"""The log-in form's double-submit token (log-in CSRF); its hidden field is ``csrf_token``."""

_FORM = """<!doctype html>
<html lang="ja"><head><meta charset="utf-8"><title>BrokerGuard ログイン / Log in</title>
<style>body{{font-family:sans-serif;max-width:24rem;margin:4rem auto}}
label{{display:block;margin:.8rem 0}}input{{width:100%;padding:.4rem}}p.err{{color:#b00}}
</style></head>
<body><h1>BrokerGuard</h1>{error}
<form method="post" action="/console/login">
<input type="hidden" name="csrf_token" value="{token}">
<label>ユーザー名 / Username<input name="username" autocomplete="username" required></label>
<label>パスワード / Password
<input name="password" type="password" autocomplete="current-password" required></label>
<button type="submit">ログイン / Log in</button></form></body></html>"""


_FAILED = '<p class="err">ユーザー名またはパスワードが違います。/ Wrong username or password.</p>'


_THROTTLED = (
    '<p class="err">ログインの失敗が続いたため、約{minutes}分間受け付けません。'
    "/ Too many wrong passwords: try again in about {minutes} min.</p>"
)


def login_form_token(request: Request) -> str:
    """The log-in form's token: the browser's ``bg_login`` cookie if it has a well-formed one
    (a second tab keeps working), else a new one. Set it with :func:`set_login_cookie`."""
    given = get_cookie(request, LOGIN_COOKIE) or ""
    if (
        32 <= len(given) <= 64
        and given.isascii()
        and given.replace("-", "").replace("_", "").isalnum()
    ):
        return given
    return secrets.token_urlsafe(32)


def set_login_cookie(request: Request, response: Response, token: str) -> None:
    """The form's token as a cookie: script cannot read it, no other site sends it."""
    set_cookie(request, response, LOGIN_COOKIE, token, max_age=SESSION_HOURS * 3600)


def check_login_form_token(request: Request, given: str) -> None:
    """Raise LoginCsrf unless the form's ``csrf_token`` matches the ``bg_login`` cookie."""
    cookie = get_cookie(request, LOGIN_COOKIE) or ""
    # Compared as bytes: compare_digest refuses str with non-ASCII characters (a TypeError).
    if not given or not cookie or not hmac.compare_digest(given.encode(), cookie.encode()):
        raise LoginCsrf(
            "csrf_token: the log-in form's token is missing or does not match its cookie "
            f"({LOGIN_COOKIE}); open the log-in page again and log in from it",
            field="csrf_token",
        )


@router.get("/console/login", response_class=HTMLResponse, include_in_schema=False)
async def login_form(request: Request, failed: int = 0, throttled: int = 0) -> HTMLResponse:
    if throttled > 0:
        error = _THROTTLED.format(minutes=min(throttled, 60))
    else:
        error = _FAILED if failed else ""
    token = login_form_token(request)
    response = HTMLResponse(_FORM.format(error=error, token=token))
    set_login_cookie(request, response, token)
    return response


async def _credentials(request: Request) -> tuple[LoginIn, bool]:
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    try:
        if media == "application/json":
            try:
                raw: Any = await request.json()
            except ValueError:
                raise MalformedBody("the body is not JSON") from None
            return LoginIn.model_validate(raw), False
        form = await request.form()
        check_login_form_token(request, str(form.get("csrf_token", "")))
        return LoginIn.model_validate(
            {"username": form.get("username", ""), "password": form.get("password", "")}
        ), True
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first.get("loc", ())) or None
        raise InvalidInput(f"{field}: {first.get('msg')}", field=field) from None


@router.post(
    "/console/login",
    responses={
        200: {"model": WhoAmI},
        303: {"description": "A form log-in: on to the console, or back to the form."},
        **ERRORS,
        **THROTTLED,
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/LoginIn"}},
                "application/x-www-form-urlencoded": {
                    "schema": {"$ref": "#/components/schemas/LoginForm"}
                },
            },
        }
    },
)
async def login(request: Request) -> Response:
    """Check the password (argon2) and open a console session (cookie ``bg_session``).

    JSON in, JSON out (401 on a wrong password, 429 while guessing is throttled: see
    :mod:`~brokerguard.service.login_throttle`); a form post is redirected (303) to the
    console, or back to the form when the password was wrong or the attempt throttled. A form
    post must carry the form's ``csrf_token``, the value of its ``bg_login`` cookie (403
    ``login_csrf`` otherwise, before the password is looked at)."""
    creds, from_form = await _credentials(request)
    svc = service(request)
    client = request.client.host if request.client else "-"

    def check() -> tuple[int, Any]:
        with svc.read() as conn:
            wait = login_throttle.retry_after(conn, creds.username, client)
            if wait:  # refused unchecked: the guess is not even tried
                return wait, None
            return 0, check_password(conn, creds.username, creds.password)

    wait, user = await run_in_threadpool(check)
    if wait:
        if from_form:  # back to the form, which says to wait
            return RedirectResponse(
                f"/console/login?throttled={math.ceil(wait / 60)}", status_code=303
            )
        raise TooManyAttempts(
            f"too many wrong passwords; try again in {wait} seconds", retry_after=wait
        )
    if user is None:

        def failed(conn: Any) -> None:
            login_throttle.record_failure(conn, creds.username, client)
            detail = {"client": client}
            entry = audit.AuditEntry("anonymous", "console.login_failed", creds.username, detail)
            audit.append(conn, [entry])

        await svc.recorder.run(failed)
        if from_form:  # back to the form, which says what went wrong
            return RedirectResponse("/console/login?failed=1", status_code=303)
        raise Unauthorized("wrong username or password")

    def open_session(conn: Any) -> tuple[str, Any]:
        login_throttle.clear(conn, user.username)
        token, session_user = create_session(conn, user)
        audit.append(
            conn, [audit.AuditEntry(f"user:{user.username}", "console.login", user.username, {})]
        )
        return token, session_user

    token, session_user = await svc.recorder.run(open_session)
    body = WhoAmI(
        kind="user",
        id=session_user.username,
        role=session_user.role,
        permissions=sorted(ROLE_PERMISSIONS[session_user.role]),
        csrf_token=session_user.csrf,
    )
    response: Response
    if from_form:
        response = RedirectResponse("/console/", status_code=303)
        # used: the next log-in loads the form
        drop_cookie(request, response, LOGIN_COOKIE)
    else:
        response = JSONResponse(body.model_dump())
    set_cookie(request, response, SESSION_COOKIE, token, max_age=SESSION_HOURS * 3600)
    return response


@router.post("/console/logout", status_code=204, responses=AUTH_ERRORS)
async def logout(request: Request, principal: Caller) -> Response:
    """End the console session (its cookie no longer works anywhere)."""
    token = get_cookie(request, SESSION_COOKIE)
    if principal.kind == "user" and token:
        await service(request).recorder.run(
            lambda conn: (
                end_session(conn, token),
                audit.append(
                    conn, [audit.AuditEntry(principal.actor, "console.logout", principal.id, {})]
                ),
            )
        )
    response = Response(status_code=204)
    drop_cookie(request, response, SESSION_COOKIE)
    return response


@router.get("/v1/whoami", response_model=WhoAmI, responses=AUTH_ERRORS)
async def whoami(principal: Caller) -> WhoAmI:
    """Who the caller is and what it may do (a console session also gets its CSRF token)."""
    user = principal.user
    return WhoAmI(
        kind=principal.kind,  # type: ignore[arg-type]
        id=principal.id,
        role=user.role if user else None,
        permissions=sorted(principal.permissions),
        csrf_token=user.csrf if user else None,
    )
