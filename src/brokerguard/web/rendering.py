"""Rendering a page in the reader's language: what the console and the broker's site share.

Both are server-rendered Jinja pages in Japanese or English, the language chosen by ``?lang=``
and remembered in a cookie (:mod:`.i18n`). One implementation puts the translator and the
language into every template and sets the cookie when the language was just chosen, so the two
cannot drift apart; what differs stays with each caller — its template folder and message
catalogue, the console's user, the site's session and security headers.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from brokerguard.cookies import policy_of, set_cookie
from brokerguard.web.i18n import LANG_COOKIE, LANGS, language

__all__ = ["render_page", "segment", "templates"]


def segment(value: object) -> str:
    """``value`` quoted whole as one segment of a path: ``/`` too, which ``urlencode`` leaves, so
    that a browser cannot read an ID such as ``V1/.`` or ``X/../V1`` as other segments (and
    resolve the link to another ID's page)."""
    return quote(str(value), safe="")


def templates(folder: Path) -> Jinja2Templates:
    """The templates of ``folder``, HTML escaped by default; ``| segment`` quotes an ID for a
    path."""
    env = Environment(loader=FileSystemLoader(folder), autoescape=select_autoescape())
    env.filters["segment"] = segment
    return Jinja2Templates(env=env)


def render_page(
    jinja: Jinja2Templates,
    translator: Callable[[str], Callable[..., str]],
    request: Request,
    name: str,
    /,  # pages pass any name in the context ("pages", "request", ...)
    *,
    status: int = 200,
    **context: Any,
) -> Response:
    """Template ``name`` with ``t`` (``translator`` of the request's language), ``lang``,
    ``other_lang`` and ``other_lang_query`` (this page's query in the other language: the
    language link keeps the page's filters, its page number, the account it is about) besides
    ``context``; a ``?lang=`` choice is kept in the language cookie, set like the app's other
    cookies (its ``app.state.cookies``: ``__Host-bg_lang``, Secure, behind HTTPS). A bare
    ``bg_lang`` of before that is deleted then: it is read only until the reader chooses again.
    """
    lang = language(request)
    other = "en" if lang == "ja" else "ja"
    kept = [(k, v) for k, v in request.query_params.multi_items() if k != "lang"]
    response = jinja.TemplateResponse(
        request,
        name,
        {
            "t": translator(lang),
            "lang": lang,
            "other_lang": other,
            "other_lang_query": "?" + urlencode([*kept, ("lang", other)]),
            **context,
        },
        status_code=status,
    )
    if request.query_params.get("lang") in LANGS:
        set_cookie(request, response, LANG_COOKIE, lang)
        policy = policy_of(request)
        if policy.secure and LANG_COOKIE in request.cookies:
            response.delete_cookie(LANG_COOKIE, path="/", httponly=True, samesite=policy.samesite)
    return response
