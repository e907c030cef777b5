"""What the site's pages share: templates, language, the signed-in session, CSRF, the client.

The site's cookies are named and set by :mod:`brokerguard.cookies` (``__Host-`` ones over
HTTPS), with the policy :func:`~brokerguard.frontdoor.app.create_site` gives the app.

Every change is a POST: forms carry the session's CSRF token; the WebAuthn calls are JSON
``fetch`` requests with the token in ``X-CSRF-Token`` (a cross-site form cannot send JSON, and a
cross-site script cannot read the token). Pages without a session redirect to the log-in page.
"""

from __future__ import annotations

import hmac
import secrets
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from brokerguard.cookies import get_cookie, set_cookie
from brokerguard.frontdoor.sessions import SiteSession
from brokerguard.frontdoor.site import Site
from brokerguard.frontdoor.texts import translator
from brokerguard.notify.outbox import JST
from brokerguard.web.rendering import render_page, templates

__all__ = [
    "DEVICE_COOKIE",
    "SESSION_COOKIE",
    "Denied",
    "NeedLogin",
    "check_csrf",
    "client",
    "device_cookie",
    "new_device_cookie",
    "redirect",
    "render",
    "session_of",
    "site",
]

HERE = Path(__file__).parent
SESSION_COOKIE = "bgs_session"
DEVICE_COOKIE = "bgs_device"
PENDING_COOKIE = "bgs_pending"
TEMPLATES = templates(HERE / "templates")


class NeedLogin(Exception):
    """A page that needs a session was opened without one."""


class Denied(Exception):
    """A change without its CSRF token, or on someone else's record."""


def site(request: Request) -> Site:
    return request.app.state.site  # type: ignore[no-any-return]


def client(request: Request) -> tuple[str, str]:
    """The address and user agent the request came from (the guard's evidence)."""
    ip = request.client.host if request.client is not None else "0.0.0.0"
    return ip, request.headers.get("user-agent", "")[:1024]


def device_cookie(request: Request) -> str | None:
    return get_cookie(request, DEVICE_COOKIE)


def session_of(request: Request, *, required: bool = True) -> SiteSession | None:
    session = site(request).sessions.get(get_cookie(request, SESSION_COOKIE))
    if session is None and required:
        raise NeedLogin
    return session


async def check_csrf(request: Request, session: SiteSession) -> None:
    given = request.headers.get("x-csrf-token")
    if given is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        given = str((await request.form()).get("csrf_token", ""))
    # Compared as bytes: compare_digest refuses str with non-ASCII characters (a TypeError,
    # so a 500), and anyone can send such a token.
    if not given or not hmac.compare_digest(given.encode(), session.csrf.encode()):
        raise Denied("missing or wrong CSRF token")


def when(ts: datetime) -> str:
    return ts.astimezone(JST).strftime("%Y-%m-%d %H:%M")


def render(
    request: Request,
    name: str,
    session: SiteSession | None = None,
    status: int = 200,
    **context: Any,
) -> Response:
    """A page of the site: the shared rendering with the site's texts and ``lax`` cookies (like
    its session cookie), plus its security headers."""
    s = site(request)
    response = render_page(
        TEMPLATES,
        translator,
        request,
        name,
        status=status,
        session=session,
        csrf=session.csrf if session is not None else "",
        broker=s.config.broker,
        when=when,
        **context,
    )
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "same-origin"
    # Everything is the site's own; no page may be framed (a framed log-in page is a
    # clickjacking or phishing aid). The canary may still report to the broker's origin.
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
        f"font-src 'self'; connect-src 'self' {s.config.origin}; frame-ancestors 'none'; "
        "base-uri 'none'; form-action 'self'"
    )
    response.headers["X-Frame-Options"] = "DENY"
    return response


def redirect(path: str) -> RedirectResponse:
    return RedirectResponse(quote(path, safe="/?=&#%"), status_code=303)


def set_session_cookie(request: Request, response: Response, token: str) -> None:
    set_cookie(request, response, SESSION_COOKIE, token)
    if not device_cookie(request):
        new_device_cookie(request, response)


def new_device_cookie(request: Request, response: Response) -> None:
    """A browser's first visit: its device cookie, kept 400 days (the browsers' cap)."""
    set_cookie(request, response, DEVICE_COOKIE, secrets.token_urlsafe(18), max_age=400 * 86400)
