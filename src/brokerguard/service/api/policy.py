"""The policy: read the one in force, replace it with a validated new one (admin)."""

from __future__ import annotations

from typing import Any

import msgspec
from fastapi import APIRouter, Request

from brokerguard.engine.policy import PolicyError, parse_policy
from brokerguard.service import actions, queries
from brokerguard.service.api._common import ERRORS, service
from brokerguard.service.auth import CanAdmin, CanRead
from brokerguard.service.errors import InvalidInput, MalformedBody, UnsupportedMediaType
from brokerguard.service.schemas import PolicyOut

router = APIRouter(tags=["policy"], responses=ERRORS)
TOML_TYPES = ("application/toml", "text/plain", "text/x-toml")


def _out(svc: Any, row: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": row["name"],
        "guard": svc.host.name,
        "origin": row["origin"],
        "created_by": row["created_by"],
        "created_at": row["created_at"],
        "source": svc.policy_source,
        "policy": msgspec.to_builtins(svc.host.guard.policy),
    }


@router.get("/v1/policy", response_model=PolicyOut)
def get_policy(request: Request, _: CanRead) -> dict[str, Any]:
    """The policy in force: its TOML source and the values the engine reads."""
    svc = service(request)
    with svc.read() as conn:
        row = queries.current_policy(conn)
    assert row is not None  # the service records its policy at start
    return _out(svc, row)


@router.put(
    "/v1/policy",
    response_model=PolicyOut,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/toml": {"schema": {"type": "string"}}},
            "description": "A complete policy file (TOML), like policies/default.toml.",
        }
    },
)
async def put_policy(request: Request, principal: CanAdmin) -> dict[str, Any]:
    """Replace the policy. It is validated first (422 naming the field, nothing changes);
    then recorded, audited and used from the next event on. The engine keeps what it learned."""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media and media not in TOML_TYPES:
        raise UnsupportedMediaType(f"send the policy as application/toml, not {media}")
    try:
        source = (await request.body()).decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedBody("the policy is not UTF-8 text") from None
    svc = service(request)
    try:
        policy = parse_policy(source, "policy")
        engine = svc.host.engine_for(policy)  # the files it names are read before it is kept
    except PolicyError as exc:
        raise InvalidInput(str(exc), field=exc.field, code="invalid_policy") from None
    row = await svc.recorder.run(
        lambda conn: actions.record_policy(conn, principal.actor, policy.name, source, "api")
    )
    svc.set_policy(policy, source, "api", engine)
    return _out(svc, row)
