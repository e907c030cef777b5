"""No U+0000 in what the service stores: refused at the door, naming where it was.

PostgreSQL cannot keep the character U+0000 (NUL) in text, so a case title, a note, an account
in a path or a filter holding one was a 500 there (and accepted on SQLite). Events are checked
where they are decoded (:func:`brokerguard.events.decode_line`, naming the field); JSON bodies
by the request models (:class:`brokerguard.service.schemas._In`); this middleware checks the
rest: the path, the query string and the console's form bodies (URL-encoded or multipart).
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, unquote_to_bytes

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from brokerguard.service.errors import PayloadTooLarge
from brokerguard.service.presenter import error_response

__all__ = ["NUL_MESSAGE", "NoNul", "has_nul"]

NUL_MESSAGE = "contains the character U+0000 (NUL), which cannot be stored"
FORM = b"application/x-www-form-urlencoded"
MULTIPART = b"multipart/form-data"  # the console has no uploads: a NUL byte is never a value


def has_nul(value: object) -> bool:
    """Whether a string, or any string inside lists and dicts, holds U+0000."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(has_nul(k) or has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(has_nul(v) for v in value)
    return False


def _encoded_nul(raw: bytes) -> bool:
    return b"\x00" in raw or b"%00" in raw


def _form_field_with_nul(raw: bytes) -> str | None:
    """The first form (or query) field whose name or value holds U+0000, by its name."""
    for name, value in parse_qsl(raw.decode("latin-1"), keep_blank_values=True):
        if "\x00" in name or "\x00" in value:
            return name.replace("\x00", "") or "(unnamed)"
    return None


class NoNul:
    """Answers 422 ``invalid_input`` to a path, query or form body holding U+0000."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if "\x00" in scope["path"] or b"\x00" in unquote_to_bytes(scope.get("raw_path") or b""):
            await error_response(422, "invalid_input", f"path: {NUL_MESSAGE}", "path")(
                scope, receive, send
            )
            return
        query = scope.get("query_string") or b""
        if _encoded_nul(query):
            field = _form_field_with_nul(query) or "query"
            response = error_response(422, "invalid_input", f"{field}: {NUL_MESSAGE}", field)
            await response(scope, receive, send)
            return
        content_type = dict(scope["headers"]).get(b"content-type", b"").lower()  # as parsed
        charset = re.search(rb"charset=\"?([a-z0-9_-]+)", content_type)
        if content_type.startswith(MULTIPART) and charset and charset[1] not in (b"utf-8", b"utf8"):
            # the parts would be decoded with it: utf-7 writes U+0000 as "+AAA-"
            message = "content-type: a multipart form's charset must be UTF-8"
            await error_response(422, "invalid_input", message, "content-type")(
                scope, receive, send
            )
            return
        if scope["method"] != "POST" or not content_type.startswith((FORM, MULTIPART)):
            await self.app(scope, receive, send)
            return
        # A form body is small (the console's notes; the body limit holds it): read it whole,
        # look, and hand the very same messages on.
        messages: list[Message] = []
        try:
            while True:
                message = await receive()
                messages.append(message)
                if message["type"] != "http.request" or not message.get("more_body", False):
                    break
        except PayloadTooLarge as exc:  # the body limit, counting a chunked body: its 413 here,
            # as this runs outside the app's error handlers
            response = error_response(413, exc.code, exc.message)
            response.headers["Connection"] = "close"
            await response(scope, receive, send)
            return
        body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.request")
        if content_type.startswith(MULTIPART) and b"\x00" in body:
            response = error_response(422, "invalid_input", f"form: {NUL_MESSAGE}", "form")
            await response(scope, receive, send)
            return
        if content_type.startswith(FORM) and _encoded_nul(body):
            field = _form_field_with_nul(body)
            if field is not None:
                response = error_response(422, "invalid_input", f"{field}: {NUL_MESSAGE}", field)
                await response(scope, receive, send)
                return

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)
