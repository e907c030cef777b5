"""What every router shares: the service, documented error answers, JSON encoding."""

from __future__ import annotations

from typing import Any

import msgspec
from fastapi import Request
from starlette.responses import Response

from brokerguard.service.runtime import Service
from brokerguard.service.schemas import ErrorOut

__all__ = ["AUTH_ERRORS", "ERRORS", "THROTTLED", "UNAVAILABLE", "json_response", "service"]

_encoder = msgspec.json.Encoder()


def service(request: Request) -> Service:
    return request.app.state.service  # type: ignore[no-any-return]


def json_response(value: Any, status: int = 200) -> Response:
    """msgspec-encoded JSON: the hot path skips pydantic's validation of the answer."""
    return Response(_encoder.encode(value), status, media_type="application/json")


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorOut} for status in statuses}


AUTH_ERRORS = _errors(401, 403)
ERRORS = _errors(400, 401, 403, 404, 409, 413, 415, 422)
UNAVAILABLE = _errors(503)  # records wait for the database: see Service.admit
THROTTLED = _errors(429)  # password guessing: see service.login_throttle
