"""The reference site as an ASGI app: ``create_site(config, guard, channels)``.

Pages are server-rendered (Jinja2) in Japanese and English; the one stylesheet and the two
small scripts (WebAuthn glue, the canary) are served by the app from the installed package —
no CDN, no web font, nothing from the internet. At start-up the site tells the guard its
instruments' reference data, as a broker's market-data feed would.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response
from starlette.staticfiles import StaticFiles

from brokerguard.auth import AuthError
from brokerguard.cookies import CookiePolicy
from brokerguard.frontdoor import canary, pages_access, pages_account, pages_security
from brokerguard.frontdoor._web import Denied, NeedLogin, redirect, render
from brokerguard.frontdoor.book import instrument_events
from brokerguard.frontdoor.guardclient import GuardClient, GuardError
from brokerguard.frontdoor.site import MAX_BODY, Site, SiteConfig
from brokerguard.notify.outbox import Channel
from brokerguard.service.errors import PayloadTooLarge
from brokerguard.service.limits import BodyLimit
from brokerguard.service.presenter import allowed_methods
from brokerguard.web.fonts import router as fonts_router

__all__ = ["create_site"]


def create_site(
    config: SiteConfig, guard: GuardClient, channels: dict[str, Channel] | None = None
) -> FastAPI:
    """The site; ``channels`` are the notifier's (``email``: SMTP, ``sms``: a webhook)."""
    site = Site(config, guard, dict(channels or {}))

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        site.start()
        # The guard may come up later; trading signals then lack reference data.
        with contextlib.suppress(GuardError):
            await run_in_threadpool(guard.send, instrument_events())
        try:
            yield
        finally:
            await run_in_threadpool(site.close)

    app = FastAPI(
        title="BrokerGuard reference site",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.site = site
    app.state.cookies = CookiePolicy(secure=config.secure_cookies, samesite="lax")
    for router in (
        pages_access.router,
        pages_account.router,
        pages_security.router,
        canary.router,
        fonts_router,
    ):
        app.include_router(router)
    app.mount(
        "/static", StaticFiles(directory=Path(__file__).parent / "static"), name="site-static"
    )

    async def need_login(_request: Request, _exc: Exception) -> Response:
        return redirect("/login")

    async def denied(request: Request, _exc: Exception) -> Response:
        return render(request, "message.html", None, 403, key="error", back="/")

    async def guard_down(request: Request, _exc: Exception) -> Response:
        return render(request, "message.html", None, 503, key="guard_down", back="/")

    async def bad_request(_request: Request, exc: Exception) -> Response:
        """An AuthError no page caught: a body that is not the JSON object a WebAuthn call
        sends (``pages_access._json``) is the client's mistake, a 400 — never a 500."""
        return JSONResponse({"error": getattr(exc, "code", "auth_error")}, status_code=400)

    async def too_large(_request: Request, exc: Exception) -> Response:
        """A body sent in chunks past :data:`MAX_BODY` (one announced larger never gets here)."""
        return JSONResponse({"error": "payload_too_large"}, status_code=413)

    async def http_error(request: Request, exc: Exception) -> Response:
        """A path the site has no page for (404) or a method it does not take there (405): a
        page in the reader's language for a browser (it got ``{"detail":"Not Found"}``), JSON
        for a script; a 405's ``Allow`` names every method of the path (Starlette named only
        the first route's: ``PUT /login`` said ``Allow: GET``, hiding the form's POST)."""
        assert isinstance(exc, HTTPException)
        headers = dict(exc.headers or {})
        if exc.status_code == 405 and (allowed := allowed_methods(request)):
            headers["Allow"] = allowed
        key = {404: "not_found", 405: "bad_method"}.get(exc.status_code, "error")
        if "text/html" in request.headers.get("accept", ""):
            response = render(request, "message.html", None, exc.status_code, key=key, back="/")
        else:
            response = JSONResponse({"error": key}, status_code=exc.status_code)
        response.headers.update(headers)
        return response

    # what anyone may post (the log-in form, canary reports) is read up to MAX_BODY, no more
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY)
    app.add_exception_handler(PayloadTooLarge, too_large)
    app.add_exception_handler(NeedLogin, need_login)
    app.add_exception_handler(Denied, denied)
    app.add_exception_handler(GuardError, guard_down)
    app.add_exception_handler(AuthError, bad_request)
    app.add_exception_handler(HTTPException, http_error)
    return app
