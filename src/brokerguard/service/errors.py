"""One error shape for every failure the API reports, and the one place that presents it.

Every error answer has the body::

    {"error": {"code": "invalid_event", "message": "...", "message_ja": "...", "field": "ip"}}

``code`` is stable and machine-readable; ``message`` says what was wrong in English (for events,
msgspec's message with the path); ``message_ja`` says in Japanese what kind of error it is;
``field`` names the offending field (dotted path, ``[i]`` for list items) or is ``null``. Batch
errors add ``line`` (1-based). The tree::

    ServiceError (400 bad_request)
    ├── MalformedBody (400 malformed_json)
    ├── InvalidInput (422 invalid_input; invalid_event for events, invalid_policy for policies)
    ├── Unauthorized (401 unauthorized)
    ├── Forbidden (403 forbidden; login_csrf: the log-in form's token did not match)
    ├── NotFound (404 not_found)
    ├── Conflict (409 conflict)
    ├── PayloadTooLarge (413 payload_too_large)
    ├── UnsupportedMediaType (415 unsupported_media_type)
    ├── TooManyAttempts (429 too_many_attempts; ``retry_after`` seconds, also a header)
    └── Unavailable (503 unavailable; recorder_full while records cannot be written)

Anything else that escapes a handler is a 500 ``internal`` with a generic message: the details
go to the log, never to the caller. This module knows nothing of HTTP frameworks, so library
code raises these errors freely; :mod:`.presenter` turns them into responses.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "Conflict",
    "Forbidden",
    "LoginCsrf",
    "InvalidInput",
    "MalformedBody",
    "NotFound",
    "PayloadTooLarge",
    "ServiceError",
    "TooManyAttempts",
    "Unauthorized",
    "Unavailable",
    "UnsupportedMediaType",
    "error_body",
]

JA: dict[str, str] = {
    "bad_request": "リクエストが正しくありません。",
    "malformed_json": "JSONとして読み取れません。",
    "invalid_input": "入力値が正しくありません。",
    "invalid_event": "イベントが正しくありません。",
    "invalid_policy": "ポリシーが正しくありません。",
    "unauthorized": "認証が必要です。",
    "forbidden": "この操作の権限がありません。",
    "login_csrf": "ログインフォームの確認用トークンが一致しません。ログイン画面を開き直してから"
    "ログインしてください。",
    "not_found": "見つかりません。",
    "method_not_allowed": "このメソッドは使えません。",
    "conflict": "現在の状態と矛盾します。",
    "payload_too_large": "リクエストが大きすぎます。",
    "unsupported_media_type": "この形式のリクエストは受け付けません。",
    "too_many_attempts": "ログインの失敗が続いたため、しばらく受け付けません。"
    "時間をおいて再試行してください。",
    "internal": "内部エラーが発生しました。",
    "unavailable": "現在ご利用いただけません。しばらくしてから再試行してください。",
    "database_away": "データベースに接続できないため、処理を行いませんでした。"
    "しばらくしてから再試行してください。",
    "statement_timeout": "データベースが制限時間内に応答しなかったため、処理を行いませんでした。"
    "しばらくしてから再試行してください。",
    "recorder_full": "記録の書き込みが追いつかないため、判定を受け付けられません。"
    "しばらくしてから再試行してください。",
}


class ServiceError(Exception):
    status = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        code: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if code is not None:
            self.code = code
        self.extra = extra or {}


class MalformedBody(ServiceError):
    status, code = 400, "malformed_json"


class InvalidInput(ServiceError):
    status, code = 422, "invalid_input"


class Unauthorized(ServiceError):
    status, code = 401, "unauthorized"


class Forbidden(ServiceError):
    status, code = 403, "forbidden"


class LoginCsrf(Forbidden):
    """A form log-in whose hidden token does not match its ``bg_login`` cookie (log-in CSRF)."""

    code = "login_csrf"


class NotFound(ServiceError):
    status, code = 404, "not_found"


class Conflict(ServiceError):
    status, code = 409, "conflict"


class PayloadTooLarge(ServiceError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(ServiceError):
    status, code = 415, "unsupported_media_type"


class TooManyAttempts(ServiceError):
    status, code = 429, "too_many_attempts"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message, extra={"retry_after": retry_after})


class Unavailable(ServiceError):
    status, code = 503, "unavailable"


def error_body(code: str, message: str, field: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "error": {
            "code": code,
            "message": message,
            "message_ja": JA.get(code, JA["bad_request"]),
            "field": field,
            **extra,
        }
    }
