"""Alerts (decisions that were not ``allow``) and campaigns: list, read, triage."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from brokerguard.service import actions, queries
from brokerguard.service.api._common import ERRORS, service
from brokerguard.service.auth import CanAct, CanRead, CanWorkCases
from brokerguard.service.errors import NotFound
from brokerguard.service.schemas import (
    AlertOut,
    AlertStatus,
    AlertUpdate,
    CampaignOut,
    CampaignStatus,
    CampaignUpdate,
    Detector,
    Severity,
)

router = APIRouter(responses=ERRORS)
Limit = Annotated[int, Query(ge=1, le=queries.MAX_LIMIT)]
Offset = Annotated[int, Query(ge=0, le=10_000_000)]
Text = Annotated[str, Query(min_length=1, max_length=128)]


@router.get("/v1/alerts", response_model=list[AlertOut], tags=["alerts"])
def list_alerts(
    request: Request,
    _: CanRead,
    severity: Severity | None = None,
    detector: Detector | None = None,
    status: AlertStatus | None = None,
    account: Text | None = None,
    campaign: Text | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[dict[str, Any]]:
    """Alerts, newest first, filtered by severity, detector (of the strongest signal), status,
    account or campaign."""
    with service(request).read() as conn:
        return queries.list_alerts(
            conn,
            severity=severity,
            detector=detector,
            status=status,
            account=account,
            campaign=campaign,
            limit=limit,
            offset=offset,
        )


@router.get("/v1/alerts/{alert_id}", response_model=AlertOut, tags=["alerts"])
def get_alert(request: Request, alert_id: str, _: CanRead) -> dict[str, Any]:
    with service(request).read() as conn:
        alert = queries.get_alert(conn, alert_id)
    if alert is None:
        raise NotFound(f"no alert {alert_id!r}", field="alert_id")
    return alert


@router.patch("/v1/alerts/{alert_id}", response_model=AlertOut, tags=["alerts"])
async def update_alert(
    request: Request,
    alert_id: str,
    body: AlertUpdate,
    principal: CanWorkCases,
) -> dict[str, Any]:
    """Acknowledge, close, assign or snooze an alert."""
    changes = body.model_dump(exclude_unset=True)
    return await service(request).recorder.run(
        lambda conn: actions.update_alert(conn, principal.actor, alert_id, changes)
    )


@router.get("/v1/campaigns", response_model=list[CampaignOut], tags=["campaigns"])
def list_campaigns(
    request: Request,
    _: CanRead,
    status: CampaignStatus | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[dict[str, Any]]:
    """Cross-account campaigns the engine raised, newest first (refreshed every second)."""
    with service(request).read() as conn:
        return queries.list_campaigns(conn, status=status, limit=limit, offset=offset)


@router.get("/v1/campaigns/{campaign_id}", response_model=CampaignOut, tags=["campaigns"])
def get_campaign(request: Request, campaign_id: str, _: CanRead) -> dict[str, Any]:
    with service(request).read() as conn:
        campaign = queries.get_campaign(conn, campaign_id)
    if campaign is None:
        raise NotFound(f"no campaign {campaign_id!r}", field="campaign_id")
    return campaign


@router.patch("/v1/campaigns/{campaign_id}", response_model=CampaignOut, tags=["campaigns"])
async def update_campaign(
    request: Request,
    campaign_id: str,
    body: CampaignUpdate,
    principal: CanAct,
) -> dict[str, Any]:
    """Mark a campaign contained or closed (the analyst's view; the engine keeps watching), or
    dismissed: not an attack, and the engine stops containing its symbols and infrastructure."""
    return await service(request).update_campaign(principal.actor, campaign_id, body.status)
