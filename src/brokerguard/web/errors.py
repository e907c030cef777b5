"""Errors on console pages as pages: a browser user gets HTML, scripts keep the JSON shape.

The service answers every error with one JSON body (:mod:`brokerguard.service.presenter`). A
person who clicks a button they may not use, or follows a stale link, should see a page in
their language with a way back instead. So for paths under ``/console/`` whose request accepts
``text/html`` (every browser navigation does), the same error is rendered with ``error.html``;
anything else — the tests, curl, the JSON API — gets the presenter's answer unchanged.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from brokerguard.service.auth import console_user
from brokerguard.service.errors import JA, ServiceError
from brokerguard.web._common import render

__all__ = ["install_console_errors"]


def _wants_page(request: Request) -> bool:
    return request.url.path.startswith("/console/") and "text/html" in request.headers.get(
        "accept", ""
    )


def install_console_errors(app: FastAPI) -> None:
    """Wrap the service's handler of :class:`ServiceError` (call after it is installed)."""
    json_handler = app.exception_handlers[ServiceError]

    async def handler(request: Request, exc: Exception) -> Response:
        if not _wants_page(request) or not isinstance(exc, ServiceError):
            return await json_handler(request, exc)
        user = await console_user(request)
        return render(
            request,
            "error.html",
            user,
            status=exc.status,
            code=exc.status,
            message_en=str(exc),
            message_ja=JA.get(exc.code, JA["bad_request"]),
        )

    app.add_exception_handler(ServiceError, handler)
