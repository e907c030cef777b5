"""The clone-detection canary of the log-in page, and where its reports go.

A phishing kit either relays the broker's real page through a reverse proxy or serves a copy.
Either way the page's own script runs under a foreign origin. The script (``canary.js``)
compares ``location.origin`` with the broker's origin — written into the page split and
reversed, so a proxy that rewrites the broker's host name in everything it relays does not
rewrite it — and, when they differ, reports the origin (base64, for the same reason) with
``navigator.sendBeacon`` to ``/canary`` twice: by a relative URL, which a relaying proxy
forwards from its own address, and to the broker's absolute origin, which reaches the broker
from a copied page. The stylesheet beacon works without script: ``/canary/style.css`` is
fetched with the page's origin in ``Referer`` (the browser's default policy), and a foreign one
is a report as well.

The site turns a report into a :class:`~brokerguard.events.CanaryHit` with the address it came
from and sends it to the guard, which distrusts password sign-ins from that address (or its
hosting network) for a day (signal ``canary_proxy``). Reports are limited per address so that a
flood cannot fill the guard's state.
"""

from __future__ import annotations

import base64
import json
import secrets
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from brokerguard.auth import Limit, RateLimited
from brokerguard.events import CanaryHit
from brokerguard.frontdoor._web import client, site
from brokerguard.frontdoor.guardclient import GuardError
from brokerguard.frontdoor.site import Site

__all__ = ["canary_attributes", "foreign_origin", "router"]

router = APIRouter(include_in_schema=False)
PER_ADDRESS = Limit(10, timedelta(minutes=10))


def canary_attributes(s: Site) -> dict[str, str]:
    """What the page's canary script reads: the broker's origin, split and reversed."""
    own = s.config.origin
    half = len(own) // 2
    return {"a": own[:half][::-1], "b": own[half:][::-1]}


def _origin_of(url: str) -> str | None:
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. "http://[::1": anyone can send it; no origin, never a 500
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}".lower()


def foreign_origin(s: Site, reported: str | None) -> str | None:
    """The reported origin when it is not one of the broker's own; else None."""
    if not reported:
        return None
    if reported == "null":
        return "null"
    origin = _origin_of(reported)
    own = {o.lower() for o in (s.config.origin, *s.config.extra_origins)}
    if origin is None or origin in own:
        return None
    return origin


def report(s: Site, origin: str, ip: str, user_agent: str) -> bool:
    """Forward one hit to the guard; False when the address is over its limit."""
    s.canary_reports += 1
    if s.canary_reports % 256 == 0:  # per-address windows must not pile up in the store
        s.limiter.purge("canary", PER_ADDRESS.per)
    try:
        s.limiter.hit_all([("canary", ip, PER_ADDRESS, "canary reports from this address")])
    except RateLimited:
        return False
    hit = CanaryHit(
        id=f"canary-{secrets.token_hex(8)}",
        ts=datetime.now(UTC),
        ip=ip,
        origin=origin,
        user_agent=user_agent,
    )
    try:
        s.guard.send([hit])
    except GuardError:
        return False
    return True


@router.post("/canary")
async def beacon(request: Request) -> Response:
    s = site(request)
    raw = await request.body()
    reported = None
    try:
        body = json.loads(raw[:4096] or b"{}")
        reported = base64.b64decode(str(body.get("o", "")), validate=True).decode()
    except (ValueError, AttributeError):
        reported = None
    origin = foreign_origin(s, reported) or foreign_origin(s, request.headers.get("origin"))
    if origin is not None:
        ip, ua = client(request)
        await run_in_threadpool(report, s, origin, ip, ua)
    return Response(status_code=204)


@router.get("/canary/style.css")
async def style_beacon(request: Request) -> Response:
    s = site(request)
    origin = foreign_origin(s, request.headers.get("referer"))
    if origin is not None:
        ip, ua = client(request)
        await run_in_threadpool(report, s, origin, ip, ua)
    return Response(
        "/* */\n", media_type="text/css", headers={"Cache-Control": "no-store, max-age=0"}
    )
