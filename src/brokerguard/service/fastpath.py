"""The fast path of ``POST /v1/decide``: the same answer, without the framework's round trip.

At 1,000 decisions a second on two cores, FastAPI's middleware, routing and dependency
resolution cost more of the serving thread than deciding itself (a profile of bench/api.py:
about 30% of the thread in the framework, 15% in the decision). So a request that is plainly
well-formed — ``POST /v1/decide`` with a Bearer key already verified (cached) that has the
``decide`` scope, a JSON or absent content type, and a body within the limit — is handled here,
directly on the ASGI interface. Everything else (no key, an unknown key, a cookie, a wrong
scope or content type, an oversized body announced in advance) goes down the ordinary route in
:mod:`.api.decide`, which is also what the OpenAPI document describes. Both call the same
functions (:func:`~.intake.parse_decision_event`, :meth:`~.runtime.Service.decide`) and answer
errors with the same body (:func:`~.errors.error_body`), and the tests run both.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from starlette.types import Receive, Scope, Send

from brokerguard.service.errors import PayloadTooLarge, ServiceError, error_body
from brokerguard.service.intake import parse_decision_event

__all__ = ["PATH", "decide_fast"]

log = logging.getLogger("brokerguard.service")
PATH = "/v1/decide"
_encode = msgspec.json.Encoder().encode


async def _answer(send: Send, status: int, body: Any) -> None:
    data = _encode(body)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


async def decide_fast(service: Any, scope: Scope, receive: Receive, send: Send) -> bool:
    """Answer the request if it is one the fast path takes; False leaves it untouched."""
    authorization = content_type = length = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            authorization = value
        elif name == b"content-type":
            content_type = value
        elif name == b"content-length":
            length = value
    if authorization is None or authorization[:7].lower() != b"bearer ":
        return False
    info = service.keys.cached(authorization[7:].strip().decode("latin-1"))
    if info is None or "decide" not in info.scopes:
        return False
    media = content_type.split(b";", 1)[0].strip().lower() if content_type else b""
    if media not in (b"", b"application/json"):
        return False
    limit = service.settings.max_body
    if length is not None and (not length.isdigit() or int(length) > limit):
        return False
    chunks = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            return True  # the client went away: nothing to answer
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            exc = PayloadTooLarge(f"the request body is larger than {limit} bytes")
            await _answer(send, exc.status, error_body(exc.code, exc.message))
            return True
        chunks.append(chunk)
        more = message.get("more_body", False)
    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    try:
        event, point = parse_decision_event(body, media.decode() or None)
        service.admit()
        answer = service.decide(event, point, f"key:{info.id}")
        service.record_instructions()  # in the feed (no decision raises one today)
    except ServiceError as exc:
        await _answer(send, exc.status, error_body(exc.code, exc.message, exc.field, **exc.extra))
        return True
    except Exception:
        log.exception("unexpected error on POST %s", PATH)
        body_500 = error_body("internal", "internal error; the service log has the details")
        await _answer(send, 500, body_500)
        return True
    await _answer(send, 200, answer)
    return True
