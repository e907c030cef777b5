"""Who is calling, and may they: API keys for systems, console sessions for people.

Every route but ``/healthz`` (and the console's login form) depends on :func:`require`, which
resolves the caller to a :class:`Principal` and checks one permission:

============ ================================ =========================================
permission   API key scope that grants it     console roles that have it
============ ================================ =========================================
decide       decide                           —
ingest       ingest                           —
read         read, admin                      analyst, supervisor, admin
cases        admin                            analyst, supervisor, admin
actions      admin                            supervisor, admin
admin        admin                            admin
instructions decide, ingest, read, admin      analyst, supervisor, admin
============ ================================ =========================================

``instructions`` is reading the feed of orders to cancel and sessions to sign out
(``GET /v1/instructions``): the
broker's systems that send events or ask for decisions act on it.

No credentials, or a key that is unknown or revoked, is 401; a valid caller without the
permission is 403. Keys come as ``Authorization: Bearer KEY``. A console session comes as the
``bg_session`` cookie (HttpOnly, SameSite=Strict); a request with it that changes something must
also carry the session's CSRF token in the ``X-CSRF-Token`` header or a ``csrf_token`` form field.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from brokerguard.cookies import get_cookie
from brokerguard.service.errors import Forbidden, Unauthorized
from brokerguard.service.keys import KeyInfo
from brokerguard.service.users import ConsoleUser, role_at_least

__all__ = [
    "CanAct",
    "CanAdmin",
    "CanDecide",
    "CanIngest",
    "CanRead",
    "CanWorkCases",
    "Caller",
    "KEY_PERMISSIONS",
    "PERMISSIONS",
    "ROLE_PERMISSIONS",
    "SESSION_COOKIE",
    "Principal",
    "authenticate",
    "console_user",
    "require",
    "require_role",
]

PERMISSIONS = ("decide", "ingest", "read", "cases", "actions", "admin", "instructions")
KEY_PERMISSIONS: dict[str, frozenset[str]] = {
    "decide": frozenset({"decide", "instructions"}),
    "ingest": frozenset({"ingest", "instructions"}),
    "read": frozenset({"read", "instructions"}),
    "admin": frozenset({"read", "cases", "actions", "admin", "instructions"}),
}
ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "analyst": frozenset({"read", "cases", "instructions"}),
    "supervisor": frozenset({"read", "cases", "actions", "instructions"}),
    "admin": frozenset({"read", "cases", "actions", "admin", "instructions"}),
}
SESSION_COOKIE = "bg_session"
"""The console session's cookie (``__Host-bg_session`` with ``secure_cookies``: see
:mod:`brokerguard.cookies`)."""
CSRF_HEADER = "x-csrf-token"
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer KEY`.")
BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


@dataclass(frozen=True, slots=True)
class Principal:
    kind: str  # "key" | "user"
    id: str  # the key's id or the username
    permissions: frozenset[str]
    user: ConsoleUser | None = None

    @property
    def actor(self) -> str:
        """How the audit log names this caller."""
        return f"{self.kind}:{self.id}"


def _key_principal(info: KeyInfo) -> Principal:
    granted: frozenset[str] = frozenset().union(*(KEY_PERMISSIONS[s] for s in info.scopes))
    return Principal("key", info.id, granted)


async def _csrf_ok(request: Request, user: ConsoleUser) -> bool:
    token = request.headers.get(CSRF_HEADER)
    if token is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()
        value = form.get("csrf_token")
        token = value if isinstance(value, str) else None
    # in constant time, as bytes (compare_digest refuses str with non-ASCII characters)
    return token is not None and hmac.compare_digest(token.encode(), user.csrf.encode())


async def authenticate(request: Request) -> Principal:
    """The caller of ``request``; raises :class:`Unauthorized` when there is none."""
    service = request.app.state.service
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, key = header.partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise Unauthorized("the Authorization header must be `Bearer KEY`")
        info = service.keys.cached(key)
        if info is None:
            info = await run_in_threadpool(service.keys.verify, key)
        if info is None:
            raise Unauthorized("unknown or revoked API key")
        return _key_principal(info)
    token = get_cookie(request, SESSION_COOKIE)
    if token:
        user = await run_in_threadpool(service.console_session, token)
        if user is None:
            raise Unauthorized("the console session expired; log in again")
        if request.method not in _SAFE and not await _csrf_ok(request, user):
            raise Forbidden("the CSRF token is missing or wrong", field="X-CSRF-Token")
        return Principal("user", user.username, ROLE_PERMISSIONS[user.role], user)
    raise Unauthorized("authentication required: send `Authorization: Bearer KEY`")


def require(permission: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the caller, who must hold ``permission`` (see the table above)."""
    if permission not in PERMISSIONS:
        raise ValueError(f"unknown permission {permission!r}")

    async def dependency(request: Request, credentials: BearerCredentials) -> Principal:
        principal = await authenticate(request)
        if permission not in principal.permissions:
            what = "API key" if principal.kind == "key" else "console role"
            raise Forbidden(f"this {what} does not grant the {permission!r} permission")
        return principal

    dependency.__name__ = f"require_{permission}"
    return dependency


async def _any_caller(request: Request, credentials: BearerCredentials) -> Principal:
    return await authenticate(request)


Caller = Annotated[Principal, Depends(_any_caller)]
"""Any authenticated caller."""
CanDecide = Annotated[Principal, Depends(require("decide"))]
CanIngest = Annotated[Principal, Depends(require("ingest"))]
CanRead = Annotated[Principal, Depends(require("read"))]
CanWorkCases = Annotated[Principal, Depends(require("cases"))]
CanAct = Annotated[Principal, Depends(require("actions"))]
CanAdmin = Annotated[Principal, Depends(require("admin"))]
CanTakeInstructions = Annotated[Principal, Depends(require("instructions"))]


async def console_user(request: Request) -> ConsoleUser | None:
    """The logged-in console user, or None (for pages that show a login link instead)."""
    token = get_cookie(request, SESSION_COOKIE)
    if not token:
        return None
    return await run_in_threadpool(request.app.state.service.console_session, token)


def require_role(minimum: str) -> Callable[..., Awaitable[ConsoleUser]]:
    """A dependency for console pages: a logged-in user with at least the ``minimum`` role.

    Unsafe methods must carry the session's CSRF token, as for the API.
    """

    async def dependency(request: Request) -> ConsoleUser:
        user = await console_user(request)
        if user is None:
            raise Unauthorized("log in to the console first")
        if not role_at_least(user.role, minimum):
            raise Forbidden(f"this page needs the {minimum} role")
        if request.method not in _SAFE and not await _csrf_ok(request, user):
            raise Forbidden("the CSRF token is missing or wrong", field="X-CSRF-Token")
        return user

    dependency.__name__ = f"require_role_{minimum}"
    return dependency
