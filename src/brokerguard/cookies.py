"""The cookies of the broker's site and of the console: one naming rule, one set of attributes.

Both apps are served over HTTPS in a deployment and over plain HTTP in the demo. Over HTTPS
(``secure``) every cookie is Secure, Path=/ and has no Domain, so it carries the ``__Host-``
prefix: the browser then takes it only from this very host over HTTPS, so neither a sibling
subdomain (a forgotten campaign host, say) nor a plain-HTTP answer can set or overwrite it —
planting the criminal's session, device or pending step-up in the customer's or analyst's
browser (cookie tossing). Over plain HTTP (the demo on localhost) the prefix would make the
browser drop the cookie, so the names stay bare. Every cookie is HttpOnly.

An app says once, when it is made, whether it is served over HTTPS and which ``SameSite`` its
cookies take (the site ``lax``, the console ``strict``): ``app.state.cookies`` holds its
:class:`CookiePolicy`, and the functions here read it from the request. Only the brokerguard
modules that know no app of their own (the shared page rendering) take a policy directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from starlette.requests import HTTPConnection
from starlette.responses import Response

__all__ = [
    "HOST_PREFIX",
    "CookiePolicy",
    "cookie_name",
    "drop_cookie",
    "get_cookie",
    "policy_of",
    "set_cookie",
]

HOST_PREFIX = "__Host-"
_SAMESITE = ("lax", "strict")


@dataclass(frozen=True, slots=True)
class CookiePolicy:
    """How one app's cookies are named and sent: ``secure`` behind HTTPS, and ``samesite``."""

    secure: bool
    samesite: Literal["lax", "strict"]

    def __post_init__(self) -> None:
        if not isinstance(self.secure, bool):
            raise TypeError(f"secure: must be True or False, not {self.secure!r}")
        if self.samesite not in _SAMESITE:
            raise ValueError(f"samesite: must be 'lax' or 'strict', not {self.samesite!r}")

    def name(self, base: str) -> str:
        """The name the browser keeps the cookie ``base`` under (``__Host-`` + it, if secure)."""
        if not base or not base.isascii() or not base.replace("_", "").isalnum():
            raise ValueError(
                f"cookie name {base!r}: must be letters, digits and '_' only, without a prefix"
            )
        return HOST_PREFIX + base if self.secure else base

    def get(self, request: HTTPConnection, base: str) -> str | None:
        """The cookie's value, read under its name only (a bare one tossed in is ignored)."""
        return request.cookies.get(self.name(base))

    def set(self, response: Response, base: str, value: str, *, max_age: int | None = None) -> None:
        """Set it: HttpOnly, the policy's SameSite, Path=/, no Domain, Secure if secure."""
        response.set_cookie(
            self.name(base),
            value,
            max_age=max_age,
            httponly=True,
            samesite=self.samesite,
            secure=self.secure,
            path="/",
        )

    def drop(self, response: Response, base: str) -> None:
        """Delete it (a ``__Host-`` cookie only goes with the same Secure and Path=/)."""
        response.delete_cookie(
            self.name(base), path="/", secure=self.secure, httponly=True, samesite=self.samesite
        )


def policy_of(request: HTTPConnection) -> CookiePolicy:
    """The cookie policy of the app that ``request`` reached (``app.state.cookies``)."""
    policy = getattr(request.app.state, "cookies", None)
    if not isinstance(policy, CookiePolicy):
        raise RuntimeError(
            "app.state.cookies: the app has no CookiePolicy; set one where the app is made"
        )
    return policy


def cookie_name(request: HTTPConnection, base: str) -> str:
    """The name of the cookie ``base`` in the app of ``request``."""
    return policy_of(request).name(base)


def get_cookie(request: HTTPConnection, base: str) -> str | None:
    """The value of the app's cookie ``base`` that the request carries, if any."""
    return policy_of(request).get(request, base)


def set_cookie(
    request: HTTPConnection,
    response: Response,
    base: str,
    value: str,
    *,
    max_age: int | None = None,
) -> None:
    """Set the app's cookie ``base`` (see :meth:`CookiePolicy.set`)."""
    policy_of(request).set(response, base, value, max_age=max_age)


def drop_cookie(request: HTTPConnection, response: Response, base: str) -> None:
    """Delete the app's cookie ``base`` (see :meth:`CookiePolicy.drop`)."""
    policy_of(request).drop(response, base)
