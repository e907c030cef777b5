"""What every console page shares: templates, the logged-in user, language, redirects.

Pages are plain GET handlers that render a template; every change is a POST form carrying the
session's CSRF token, checked by the service's own :func:`~brokerguard.service.auth.require_role`,
and answered with a 303 back to the page (so a reload never repeats it). A page opened without a
session redirects to the login form instead of answering JSON 401, as a browser user expects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from brokerguard.service.auth import console_user
from brokerguard.service.errors import Forbidden, InvalidInput
from brokerguard.service.runtime import Service
from brokerguard.service.users import ConsoleUser, role_at_least
from brokerguard.web.i18n import translator
from brokerguard.web.rendering import render_page, templates

__all__ = [
    "PRIVATE",
    "LoginNeeded",
    "back",
    "checked",
    "here",
    "next_page",
    "page_number",
    "page_user",
    "pager",
    "private",
    "render",
    "service",
]

TEMPLATES = templates(Path(__file__).parent / "templates")
M = TypeVar("M", bound=BaseModel)


class LoginNeeded(Exception):
    """A page was asked for without a console session: the handler redirects to the login."""


def is_page(value: str) -> bool:
    """A page number as a link writes it: ASCII digits, not absurdly long (``"²".isdigit()``
    is true and ``int("²")`` an error; so is a 5,000-digit number)."""
    return value.isascii() and value.isdigit() and len(value) <= 9


def page_number(value: str | None) -> int:
    """The page a query asks for; anything that is not a page number asks for the first."""
    return int(value) if value and is_page(value) and int(value) > 0 else 1


def pager(request: Request, page: int, total: int, size: int) -> dict[str, Any]:
    """What ``_pager.html`` reads for page ``page`` of ``total`` rows, ``size`` a page: the
    page, how many pages, the total, the page's size and the query's other parameters (which
    the previous/next links keep)."""
    return {
        "page": page,
        "pages": max(1, -(-total // size)),
        "total": total,
        "size": size,
        "query": {k: v for k, v in request.query_params.items() if k != "page"},
    }


def checked(model: type[M], values: dict[str, Any]) -> M:
    """A form's ``values`` checked by the API's request ``model`` for the same change, so the
    console takes exactly what the API takes: the first problem is an :class:`InvalidInput`
    naming its field (nothing is cut short, nothing recorded)."""
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first.get("loc", ())) or None
        raise InvalidInput(f"{field}: {first.get('msg')}", field=field) from None


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


PRIVATE = {
    # What the console shows (customers' sign-ins, addresses, devices, losses) stays out of
    # shared caches and browser histories' copies; no page may be framed (its buttons unlock
    # accounts and release held orders): SameSite=Strict keeps the session cookie from other
    # sites only, and a site on another port or subdomain of the same host is the same site.
    # Everything a page loads is the console's own.
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}
"""Headers of every console page and download."""


def private(response: Response) -> Response:
    """``response`` with the console's :data:`PRIVATE` headers."""
    response.headers.update(PRIVATE)
    return response


def render(
    request: Request, name: str, user: ConsoleUser | None, status: int = 200, **context: Any
) -> Response:
    """A console page; its language cookie is ``strict``, like the console's session cookie."""
    return private(
        render_page(
            TEMPLATES,
            translator,
            request,
            name,
            status=status,
            user=user,
            csrf=user.csrf if user is not None else "",
            here=here(request),
            **context,
        )
    )


def back(path: str) -> RedirectResponse:
    """303 to a console page after a change (``path`` is ours, quoted per segment)."""
    return RedirectResponse(quote(path, safe="/?=&"), status_code=303)


def here(request: Request) -> str:
    """This page's path and query, for a form's ``next`` field (the page to come back to)."""
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def next_page(value: object, default: str) -> RedirectResponse:
    """303 to a form's ``next`` page when it is one of the console's own (a path under
    ``/console/``, not ``//host`` nor ``/console/../``), else to ``default``: a button on the
    second page of a filtered queue brings the analyst back there, not to the queue's start."""
    path = str(value or "")
    if (
        not path.startswith("/console/")
        or "//" in path
        or "\\" in path
        or ".." in path
        or any(c < " " for c in path)
    ):
        path = default
    return RedirectResponse(path, status_code=303)


def login_redirect(_request: Request, _exc: Exception) -> Response:
    return RedirectResponse("/console/login", status_code=303)
