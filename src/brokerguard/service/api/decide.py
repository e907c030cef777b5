"""``POST /v1/decide`` (one decision-point event in, the decision out) and ``POST /v1/events``.

Both are ``async``: they call the engine on the event loop's thread (see :mod:`..host`).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from brokerguard.service.api._common import ERRORS, UNAVAILABLE, json_response, service
from brokerguard.service.auth import CanDecide, CanIngest
from brokerguard.service.intake import parse_batch, parse_decision_event
from brokerguard.service.schemas import DecisionOut, IngestOut

router = APIRouter(tags=["decisions"])
EVENT_REF = {"$ref": "#/components/schemas/Event"}


@router.post(
    "/v1/decide",
    response_model=None,
    responses={200: {"model": DecisionOut}, **ERRORS, **UNAVAILABLE},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": EVENT_REF}},
            "description": "One decision-point event (login, new order, withdrawal, settings "
            "change), exactly as a line of events.ndjson.",
        }
    },
)
async def decide(request: Request, principal: CanDecide) -> Response:
    """Decide one event with the engine: action, score, factors for a challenge, reasons.

    The decision, an alert when it is not ``allow`` and an audit entry are recorded after the
    answer is sent (see the service's concurrency model). While the database cannot take the
    records and ``max_backlog`` of them wait, no decision is taken: 503 ``recorder_full``.
    """
    event, point = parse_decision_event(await request.body(), request.headers.get("content-type"))
    svc = service(request)
    svc.admit()
    answer = svc.decide(event, point, principal.actor)
    svc.record_instructions()  # in the feed (no decision raises one today)
    return json_response(answer)


@router.post(
    "/v1/events",
    response_model=None,
    responses={200: {"model": IngestOut}, **ERRORS, **UNAVAILABLE},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"type": "array", "items": EVENT_REF}},
                "application/x-ndjson": {"schema": {"type": "string"}},
            },
            "description": "Events as a JSON array or NDJSON lines, in time order.",
        }
    },
)
async def ingest(request: Request, principal: CanIngest) -> Response:
    """Ingest a batch of events in order: all of it, or nothing when one event is invalid.

    Events that need no answer go to the engine's ``observe``. A decision-point event in a
    batch is decided and recorded exactly as ``/v1/decide`` would (this is how a broker loads
    its history, like ``brokerguard replay``), but its answer reaches nobody: live decisions
    belong to ``/v1/decide``. The answer counts what was observed and decided.
    """
    events = parse_batch(await request.body(), request.headers.get("content-type"))
    return json_response(await service(request).ingest(events, principal.actor))
