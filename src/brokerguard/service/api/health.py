"""``GET /healthz`` — the only route without authentication — and the OpenAPI document."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from brokerguard.service.api._common import AUTH_ERRORS, service
from brokerguard.service.auth import Caller
from brokerguard.service.runtime import BACKLOG_HIGH
from brokerguard.service.schemas import HealthOut

router = APIRouter()


@router.get("/healthz", response_model=HealthOut, tags=["health"])
async def healthz(request: Request) -> dict[str, Any]:
    """Whether the service answers and its writer keeps up. No authentication."""
    svc = service(request)
    recorder = svc.recorder
    degraded = recorder.last_error is not None or recorder.backlog > BACKLOG_HIGH or recorder.full
    spills = await svc.spill_files()
    degraded = degraded or bool(spills)  # records outside the database: load them
    publish = svc.publisher.stats() if svc.publisher is not None else None
    if publish is not None and (not publish["connected"] and publish["outbox"]):
        degraded = True  # events wait for NATS (and will be dropped if it stays away)
    return {
        "status": "degraded" if degraded else "ok",
        "guard": svc.host.name,
        "backlog": recorder.backlog,
        "written": recorder.written,
        "dropped": recorder.dropped,
        "last_error": recorder.last_error,
        "writer_restarts": recorder.writer_restarts,
        "write_failures": recorder.write_failures,
        "failing_since": recorder.failing_since,
        "max_backlog": recorder.max_backlog,
        "spilled": recorder.spilled,
        "spill_dir": str(svc.spill_dir),
        "spill_files": [info._asdict() for info in spills],
        "publish": publish,
        "blocklist": svc.blocklist.status() if svc.blocklist is not None else None,
    }


@router.get("/v1/openapi.json", tags=["health"], responses=AUTH_ERRORS)
async def openapi(request: Request, _: Caller) -> dict[str, Any]:
    """This API's OpenAPI document (any valid key or console session)."""
    return request.app.openapi()  # type: ignore[no-any-return]
