"""The service: BrokerGuard over HTTP — decisions, records, audit log, console logins.

``create_app(database_url, policy_path=None, state_path=None)`` builds the ASGI app;
``brokerguard serve`` runs it. See the README's "Service" section for the API, authentication
and the concurrency model, and the modules for the details:

- :mod:`.models`, :mod:`.db`, ``migrations/``: tables, connections, Alembic migrations
- :mod:`.audit`: the hash-chained audit log; :mod:`.keys`, :mod:`.users`, :mod:`.auth`: callers
- :mod:`.host`: the engine on one thread; :mod:`.recorder`: the one database writer
- :mod:`.intake`, :mod:`.records`, :mod:`.queries`, :mod:`.actions`: events in, rows out
- :mod:`.app`, ``api/``, :mod:`.presenter`, :mod:`.limits`, :mod:`.openapi`: the HTTP surface
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from brokerguard.service.app import create_app
    from brokerguard.service.runtime import Service, Settings

__all__ = ["Service", "Settings", "create_app"]


def __getattr__(name: str) -> Any:
    # Imported on first use: the writer process imports this package's database modules and
    # should not pay for FastAPI.
    if name == "create_app":
        from brokerguard.service.app import create_app

        return create_app
    if name in ("Service", "Settings"):
        from brokerguard.service import runtime

        return getattr(runtime, name)
    raise AttributeError(name)
