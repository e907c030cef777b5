"""What every console page shares: templates, the logged-in user, language, redirects.

Pages are plain GET handlers that render a template; every change is a POST form carrying the
session's CSRF token, checked by the service's own :func:`~brokerguard.service.auth.require_role`,
and answered with a 303 back to the page (so a reload never repeats it). A page opened without a
session redirects to the login form instead of answering JSON 401, as a browser user expects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from brokerguard.service.auth import console_user
from brokerguard.service.errors import Forbidden
from brokerguard.service.runtime import Service
from brokerguard.service.users import ConsoleUser, role_at_least
from brokerguard.web.i18n import LANG_COOKIE, LANGS, language, translator

__all__ = ["LoginNeeded", "back", "page_user", "render", "service"]

HERE = Path(__file__).parent
TEMPLATES = Jinja2Templates(
    env=Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html"]),
    )
)


class LoginNeeded(Exception):
    """A page was asked for without a console session: the handler redirects to the login."""


def service(request: Request) -> Service:
    return request.app.state.service  # type: ignore[no-any-return]


async def page_user(request: Request, minimum: str = "analyst") -> ConsoleUser:
    """The logged-in user of a page view; no session means the login form."""
    user = await console_user(request)
    if user is None:
        raise LoginNeeded
    if not role_at_least(user.role, minimum):
        raise Forbidden(f"this page needs the {minimum} role")
    return user


def render(
    request: Request, name: str, user: ConsoleUser | None, status: int = 200, **context: Any
) -> Response:
    lang = language(request)
    response = TEMPLATES.TemplateResponse(
        request,
        name,
        {
            "t": translator(lang),
            "lang": lang,
            "other_lang": "en" if lang == "ja" else "ja",
            "user": user,
            "csrf": user.csrf if user is not None else "",
            **context,
        },
        status_code=status,
    )
    if request.query_params.get("lang") in LANGS:
        response.set_cookie(LANG_COOKIE, lang, samesite="strict", path="/", httponly=True)
    return response


def back(path: str) -> RedirectResponse:
    """303 to a console page after a change (``path`` is ours, quoted per segment)."""
    return RedirectResponse(quote(path, safe="/?=&"), status_code=303)


def login_redirect(_request: Request, _exc: Exception) -> Response:
    return RedirectResponse("/console/login", status_code=303)
