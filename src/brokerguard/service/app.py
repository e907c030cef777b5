"""The application factory: ``create_app(database_url, policy_path=None, state_path=None)``.

Builds the :class:`~.runtime.Service` (database migrated, policy chosen, engine built), the
FastAPI app with its routers under ``/v1`` (plus ``/healthz``), the analyst console under
``/console/`` (:mod:`brokerguard.web`), the
request size limit, the error presenter and the OpenAPI document (served at
``/v1/openapi.json`` to authenticated callers; no interactive docs, which would load scripts
from the internet). The recorder thread and the periodic flush start with the app's lifespan
and stop with it, writing what is queued.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

import brokerguard
from brokerguard.cookies import CookiePolicy
from brokerguard.service.api import ROUTERS
from brokerguard.service.db import DEFAULT_DATABASE
from brokerguard.service.fastpath import PATH as FAST_PATH
from brokerguard.service.fastpath import decide_fast
from brokerguard.service.limits import BodyLimit
from brokerguard.service.nul import NoNul
from brokerguard.service.openapi import install_openapi
from brokerguard.service.presenter import install_error_handlers
from brokerguard.service.reporting import run_dir, warm_reports
from brokerguard.service.runtime import Service, Settings
from brokerguard.web import mount_console
from brokerguard.web.errors import install_console_errors

__all__ = ["BrokerGuardApp", "create_app"]


class BrokerGuardApp(FastAPI):
    """FastAPI, with ``POST /v1/decide`` answered by :mod:`.fastpath` when it can be."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["path"] == FAST_PATH
            and scope["method"] == "POST"
            and await decide_fast(self.state.service, scope, receive, send)
        ):
            return
        await super().__call__(scope, receive, send)


DESCRIPTION = """BrokerGuard's decision API and records.

Authenticate with an API key (`Authorization: Bearer KEY`, made with `brokerguard keys create`)
or a console session. Every error has the body `{"error": {"code", "message", "message_ja",
"field"}}`."""


def create_app(
    database_url: str = DEFAULT_DATABASE,
    policy_path: str | Path | None = None,
    state_path: str | Path | None = None,
    *,
    settings: Settings | None = None,
    console_run: str | Path | None = None,
) -> FastAPI:
    """The service as an ASGI app. Opens and migrates the database now, so errors show early.

    ``console_run`` is the run directory the console's reports read (see
    :mod:`brokerguard.web.pages_reports`).
    """
    settings = replace(
        settings or Settings(),
        database_url=database_url,
        policy_path=Path(policy_path) if policy_path is not None else None,
        state_path=Path(state_path) if state_path is not None else None,
    )
    service = Service(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        if settings.warm_reports:
            app.state.report_warmer = warm_reports(service, run_dir(app.state))
        try:
            yield
        finally:
            await service.stop()

    app = BrokerGuardApp(
        title="BrokerGuard",
        version=getattr(brokerguard, "__version__", "0"),
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.service = service
    app.state.cookies = CookiePolicy(secure=settings.secure_cookies, samesite="strict")
    mount_console(app, console_run)  # first: its GET /console/login is the page served
    for router in ROUTERS:
        app.include_router(router)
    app.add_middleware(NoNul)  # inside the body limit: it reads a form body whole
    app.add_middleware(BodyLimit, max_bytes=settings.max_body)
    install_error_handlers(app)
    install_console_errors(app)  # console pages show errors as pages
    install_openapi(app)
    return app
