"""The one presenter: every error the API reports becomes :func:`~.errors.error_body`.

Handlers are installed for the service's own errors, FastAPI's request validation (422 naming the
field from its location), Starlette's HTTP errors (unknown route 404, wrong method 405) and,
the database away (503 ``database_away``) and, last, anything unexpected (500 ``internal``; the
traceback goes to the log only).
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response
from starlette.routing import Match

from brokerguard.service.db import database_away, statement_timed_out
from brokerguard.service.errors import ServiceError, error_body

__all__ = ["allowed_methods", "error_response", "install_error_handlers"]

log = logging.getLogger("brokerguard.service")


def error_response(
    status: int, code: str, message: str, field: str | None = None, **extra: Any
) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if status == 429 and "retry_after" in extra:
        headers = {"Retry-After": str(extra["retry_after"])}
    return JSONResponse(error_body(code, message, field, **extra), status, headers=headers)


def _loc_field(loc: tuple[Any, ...] | list[Any]) -> str | None:
    """``("body", "labels", 0)`` -> ``labels[0]``; ``("query", "limit")`` -> ``limit``."""
    parts = (
        list(loc[1:])
        if loc and loc[0] in ("body", "query", "path", "header", "cookie")
        else list(loc)
    )
    field = ""
    for part in parts:
        if isinstance(part, int):
            field += f"[{part}]"
        else:
            field += ("." if field else "") + str(part)
    return field or None


async def _service_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServiceError)
    return error_response(exc.status, exc.code, exc.message, exc.field, **exc.extra)


async def _validation_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    first = errors[0] if errors else {}
    field = _loc_field(tuple(first.get("loc", ())))
    message = str(first.get("msg", "invalid input"))
    if field:
        message = f"{field}: {message}"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more)"
    return error_response(422, "invalid_input", message, field)


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def allowed_methods(request: Request) -> str | None:
    """Every method some route serves at the request's path, for a 405's ``Allow``.

    Starlette answers 405 with the methods of the first route whose path matched, and FastAPI
    makes one route per decorated function: a path with a GET and a POST said ``Allow: GET``
    to a PUT, hiding the POST from the client. Each method is asked of the routes as a request
    of that method (a full match), which needs nothing of how the routers nest.
    """
    routes = request.app.router.routes
    allowed = [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    ]
    return ", ".join(allowed) or None


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "bad_request" if exc.status_code < 500 else "internal")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    response = error_response(exc.status_code, code, message)
    if exc.headers:
        response.headers.update(exc.headers)
    if exc.status_code == 405 and (allowed := allowed_methods(request)):
        response.headers["Allow"] = allowed
    return response


async def _database_error(request: Request, exc: Exception) -> Response:
    """The database away (a restart, an outage): 503, which a caller retries; not a 500."""
    assert isinstance(exc, sa.exc.OperationalError)
    if not database_away(exc):
        return await _unexpected(request, exc)
    if statement_timed_out(exc):  # a lock held elsewhere, a query that never ends
        service = getattr(request.app.state, "service", None)
        seconds = getattr(getattr(service, "settings", None), "statement_timeout", None)
        limit = f" ({seconds:g} s, --statement-timeout)" if seconds else ""
        log.warning("statement timeout on %s %s: %s", request.method, request.url.path, exc.orig)
        message = (
            f"the database did not answer within the statement timeout{limit} (a lock held"
            " elsewhere, or a query too long); nothing was done: try again later"
        )
        return error_response(503, "statement_timeout", message)
    log.warning("database away on %s %s: %s", request.method, request.url.path, exc.orig)
    message = "the database is away; nothing was done: try again when /healthz says ok"
    return error_response(503, "database_away", message)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal", "internal error; the service log has the details")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(sa.exc.OperationalError, _database_error)
    app.add_exception_handler(Exception, _unexpected)
