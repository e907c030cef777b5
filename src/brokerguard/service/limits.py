"""The request size limit, enforced before a handler reads the body.

A request that announces a ``Content-Length`` above the limit is answered 413 at once, unread. A
body sent in chunks is counted while it is received and stopped as soon as it passes the limit
(raising :class:`~brokerguard.service.errors.PayloadTooLarge`, which the error presenter turns
into the same 413 body). Either way the service never holds more than the limit in memory.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from brokerguard.service.errors import PayloadTooLarge
from brokerguard.service.presenter import error_response

__all__ = ["DEFAULT_MAX_BODY", "BodyLimit"]

DEFAULT_MAX_BODY = 1 << 20  # 1 MiB


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int = DEFAULT_MAX_BODY) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"the request body is larger than {self.max_bytes} bytes")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    response = error_response(400, "bad_request", "Content-Length is not a number")
                    await response(scope, receive, send)
                    return
                if length > self.max_bytes:
                    exc = self._too_large()
                    response = error_response(413, exc.code, exc.message)
                    response.headers["Connection"] = "close"
                    await response(scope, receive, send)
                    return
                break
        received = 0
        limit = self.max_bytes

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise self._too_large()
            return message

        await self.app(scope, limited, send)
