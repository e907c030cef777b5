"""The API's routers: thin — parse, call the service or a library function, present."""

from brokerguard.service.api import (
    accounts,
    alerts,
    cases,
    console,
    decide,
    health,
    instructions,
    policy,
    reports,
)

ROUTERS = (
    health.router,
    decide.router,
    instructions.router,
    alerts.router,
    cases.router,
    accounts.router,
    policy.router,
    reports.router,
    console.router,
)

__all__ = ["ROUTERS"]
