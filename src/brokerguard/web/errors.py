"""Errors on console pages as pages: a browser user gets HTML, scripts keep the JSON shape.

The service answers every error with one JSON body (:mod:`brokerguard.service.presenter`). A
person who clicks a button they may not use, or follows a stale link, should see a page in
their language with a way back instead. So for paths under ``/console/`` whose request accepts
``text/html`` (every browser navigation does), the same error is rendered with ``error.html``;
anything else — the tests, curl, the JSON API — gets the presenter's answer unchanged. That goes
for the service's own errors, a request the routes' parameters refuse (``/console/cases/abc``),
the framework's own (a path that names no page, a wrong method) and the database's (away, or a
read past the statement timeout: 503).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from brokerguard.service.auth import console_user
from brokerguard.service.errors import JA, ServiceError
from brokerguard.web._common import render

__all__ = ["install_console_errors"]

Handler = Callable[[Request, Exception], Awaitable[Response]]


def _wants_page(request: Request) -> bool:
    return request.url.path.startswith("/console/") and "text/html" in request.headers.get(
        "accept", ""
    )


def _as_page(json_handler: Handler) -> Handler:
    """``json_handler``'s answer, rendered as the error page when a browser asked."""

    async def handler(request: Request, exc: Exception) -> Response:
        answer = await json_handler(request, exc)
        if not _wants_page(request):
            return answer
        error = json.loads(bytes(answer.body))["error"]
        try:
            user = await console_user(request)
        except sa.exc.OperationalError:  # the database is what failed: the page without a user
            user = None
        return render(
            request,
            "error.html",
            user,
            status=answer.status_code,
            code=answer.status_code,
            message_en=error["message"],
            message_ja=error.get("message_ja") or JA["bad_request"],
        )

    return handler


def install_console_errors(app: FastAPI) -> None:
    """Wrap the service's handlers of its errors, of refused parameters, of HTTP errors and of
    the database's (away, or a statement past its timeout) (call after they are installed)."""
    for kind in (ServiceError, RequestValidationError, HTTPException, sa.exc.OperationalError):
        app.add_exception_handler(kind, _as_page(app.exception_handlers[kind]))
