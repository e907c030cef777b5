"""The analyst console: server-rendered pages in Japanese and English, mounted on the service.

``mount_console(app)`` adds the pages under ``/console/`` and the stylesheet under
``/console/static/``; :func:`~brokerguard.service.app.create_app` calls it. Every asset is
served by the application (no CDN, no web font, no script from outside): brokers run this
inside closed networks. Pages use the service's console sessions and roles: analysts triage
alerts and work cases; supervisors and admins also act on accounts and campaigns.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from brokerguard.web import (
    fonts,
    pages_accounts,
    pages_alerts,
    pages_blocklist,
    pages_cases,
    pages_reports,
    pages_unlocks,
    session,
)
from brokerguard.web._common import LoginNeeded, login_redirect

__all__ = ["ROUTERS", "mount_console"]

ROUTERS = (
    session.router,
    fonts.router,
    pages_alerts.router,
    pages_accounts.router,
    pages_cases.router,
    pages_reports.router,
    pages_blocklist.router,
    pages_unlocks.router,
)


def mount_console(app: FastAPI, run_dir: str | Path | None = None) -> None:
    """Add the console to ``app``; call before the service's routers so that its login page
    (``GET /console/login``) is the one served. ``run_dir`` feeds the reports page."""
    for router in ROUTERS:
        app.include_router(router)
    static = Path(__file__).parent / "static"
    app.mount("/console/static", StaticFiles(directory=static), name="console-static")
    app.add_exception_handler(LoginNeeded, login_redirect)
    app.state.console_run = str(run_dir) if run_dir is not None else None
