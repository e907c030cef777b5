"""The console's login page and a logout that returns the browser to it.

``POST /console/login`` stays the service's (it checks the password and the form's token against
log-in CSRF, opens the session, writes the audit entry, and redirects a form post to
``/console/``); this module only renders its form in the console's look and language, with the
token in a hidden field and in the ``bg_login`` cookie. ``POST /console/signout`` ends the
session like the service's ``/console/logout`` (which answers 204 for scripts) but sends a
browser back to the login page.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.responses import RedirectResponse, Response

from brokerguard.cookies import drop_cookie, get_cookie
from brokerguard.service import audit
from brokerguard.service.api.console import login_form_token, set_login_cookie
from brokerguard.service.auth import SESSION_COOKIE, require_role
from brokerguard.service.users import ConsoleUser, end_session
from brokerguard.web._common import render, service

router = APIRouter(include_in_schema=False)


@router.get("/console/login")
async def login_form(request: Request) -> Response:
    failed = request.query_params.get("failed") == "1"
    throttled = request.query_params.get("throttled", "")
    minutes = min(int(throttled), 60) if throttled.isdigit() and int(throttled) > 0 else 0
    token = login_form_token(request)  # the form's token against log-in CSRF (bg_login)
    response = render(request, "login.html", None, failed=failed, throttled=minutes, token=token)
    set_login_cookie(request, response, token)
    return response


@router.post("/console/signout")
async def sign_out(
    request: Request, user: Annotated[ConsoleUser, Depends(require_role("analyst"))]
) -> Response:
    token = get_cookie(request, SESSION_COOKIE) or ""
    actor = f"user:{user.username}"
    await service(request).recorder.run(
        lambda conn: (
            end_session(conn, token),
            audit.append(conn, [audit.AuditEntry(actor, "console.logout", user.username, {})]),
        )
    )
    response = RedirectResponse("/console/login", status_code=303)
    drop_cookie(request, response, SESSION_COOKIE)
    return response
