"""The decision points of the site, each asked of the guard and carried out as it answers.

``allow`` goes ahead; ``challenge`` and ``hold`` open a step-up (:class:`~brokerguard.auth.StepUp`)
whose *resume* is the operation itself, so it runs only after the customer passed; ``deny``
refuses; ``lock`` locks the account here and at the guard. The functions return where the
browser goes next (a :class:`Next`), so the HTTP handlers stay thin.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, urlencode

from brokerguard.auth import NotEnrolled, RateLimited
from brokerguard.events import Execution, LoginAttempt, Order, SettingsChange
from brokerguard.frontdoor.book import INSTRUMENTS, PlacedOrder, new_order_id
from brokerguard.frontdoor.guardclient import GuardVerdict
from brokerguard.frontdoor.sessions import LoginRecord, SiteSession
from brokerguard.frontdoor.site import Site
from brokerguard.notify import login_fields

__all__ = ["Next", "guarded_setting", "login", "order"]


@dataclass
class Next:
    """Where the browser goes: a page, with a new session token when a sign-in completed."""

    redirect: str
    token: str | None = None
    stepup: str | None = None  # an open step-up the browser must be allowed to answer
    error: str | None = None


def unlock_path(account: str) -> str:
    """The unlock page for ``account``, quoted whole: the ID is what someone typed at the sign-in
    (``&`` or ``#`` in it would add parameters to the page or cut its address short)."""
    return f"/unlock?account={quote(account, safe='')}"


def _usable_referrer(value: str | None) -> str | None:
    if not value or len(value) > 2048 or not value.lower().startswith(("http://", "https://")):
        return None
    if any(c.isspace() or not c.isprintable() for c in value):
        return None
    return value


def _stamp() -> tuple[datetime, str]:
    return datetime.now(UTC), secrets.token_hex(6)


def login(
    site: Site,
    account: str,
    factor: str,
    ip: str,
    user_agent: str,
    device: str | None,
    *,
    success: bool = True,
    referrer: str | None = None,
) -> Next:
    """A sign-in whose first factor was checked (``success``); ask the guard and act on it.

    ``referrer`` is the page the log-in form was posted from (HTTP ``Referer``): a proxy that
    relays the broker's page from a phishing host often leaves that host in it, and the guard
    checks it against its block-list (``phishing_referrer``). One the event model would refuse
    is dropped rather than failing the sign-in.
    """
    now, tag = _stamp()
    guard_session = f"web-{tag}"
    event = LoginAttempt(
        id=f"login-{tag}",
        ts=now,
        account=account,
        session=guard_session,
        ip=ip,
        user_agent=user_agent,
        device=device,
        factors=[factor],  # type: ignore[list-item]
        success=success,
        referrer=_usable_referrer(referrer),
    )
    if success:
        site.snapshot(account)
    verdict = site.guard.decide(event)

    def note(result: str) -> None:
        site.sessions.note_login(
            account, LoginRecord(ts=now, ip=ip, user_agent=user_agent, factor=factor, result=result)
        )

    def establish() -> Next:
        # Also the resume of a sign-in's step-up, which may be answered minutes later: an
        # account locked meanwhile (the customer's freeze, failures) gets no session.
        if site.lockout.is_locked(account):
            return Next(unlock_path(account))
        token = site.sessions.open(account, ip, user_agent, guard_session)
        known = site.sessions.known_device(account, device)
        site.notifier.notify(account, "new_login" if known else "new_device", login_fields(event))
        return Next("/portfolio", token=token)

    action = verdict.action
    if not success:
        note("wrong_password")
        if action == "lock" and not site.lockout.is_locked(account):
            site.lock(account, reason="guard", by="guard")
        # Whoever typed a wrong password is not told that the account is (now) locked: the
        # owner gets the lock notice by mail, and the unlock page is linked from this one.
        return Next("/login?failed=1")
    if action == "allow":
        note("allowed")
        return establish()
    if action in ("challenge", "hold"):
        note("challenged")
        try:
            challenge = site.stepup.start(event, verdict.decision, establish, operation="login")
        except (NotEnrolled, RateLimited):  # no factor, or a hold's code cannot be sent now
            return Next("/login?refused=1")
        site.wait_for(challenge, verdict.decision.reasons)
        return Next(f"/stepup/{challenge.id}", stepup=challenge.id)
    if action == "lock":
        note("locked")
        site.lock(account, reason="guard", by="guard")
        return Next(unlock_path(account))
    note("refused")
    return Next("/login?refused=1")


def order(
    site: Site,
    session: SiteSession,
    symbol: str,
    side: str,
    quantity: int,
    limit_price: float | None,
    ip: str,
    user_agent: str,
) -> Next:
    """A new order: decided by the guard, filled at once when it may go ahead."""
    now, tag = _stamp()
    account = session.account
    placed = PlacedOrder(
        id=new_order_id(),
        account=account,
        ts=now,
        symbol=symbol,
        side=side,
        quantity=quantity,
        limit_price=limit_price,
        status="waiting",
    )
    event = Order(
        id=f"order-{tag}",
        ts=now,
        account=account,
        session=session.guard_session,
        order_id=placed.id,
        symbol=symbol,
        market="TSE",
        side=side,  # type: ignore[arg-type]
        quantity=quantity,
        price_type="limit" if limit_price is not None else "market",
        limit_price=limit_price,
        ip=ip,
        user_agent=user_agent,
    )
    verdict = site.guard.decide(event)
    action = verdict.action
    if action == "allow":
        short = _fill(site, placed)
        if short is not None:  # spent by another order between the form's check and now
            return Next(refused_path(placed, short))
        return Next("/portfolio?done=placed")
    if action in ("challenge", "hold"):
        site.book.record(placed)

        def resume() -> Next:
            # The cash or shares may be spent meanwhile (other orders waited at step-up too):
            # checked again now, refused as an order beyond the account's means is at once.
            short = _fill(site, placed)
            if short is not None:
                return Next(refused_path(placed, short))
            site.notifier.notify(account, "unusual_order", {"order": _describe(placed)})
            return Next("/portfolio?done=placed")

        try:
            challenge = site.stepup.start(event, verdict.decision, resume)
        except (NotEnrolled, RateLimited):  # no factor, or a hold's code cannot be sent now
            placed.status = "refused"
            site.book.record(placed)
            return Next("/portfolio?done=refused")

        def refuse() -> None:
            placed.status = "refused"
            site.book.record(placed)

        site.wait_for(challenge, verdict.decision.reasons, refuse)
        if action == "hold":
            site.notifier.notify(account, "order_held", {"order": _describe(placed)})
        return Next(f"/stepup/{challenge.id}", stepup=challenge.id)
    placed.status = "refused"
    site.book.record(placed)
    if action == "lock":
        return Next("/portfolio?done=frozen")
    return Next("/portfolio?done=refused")


def _describe(placed: PlacedOrder) -> str:
    price = f"@{placed.limit_price:g}" if placed.limit_price is not None else "market"
    return f"{placed.side.upper()} {placed.symbol} (TSE) x{placed.quantity} {price}"


BEYOND_MEANS = ("order_not_held", "order_no_cash")
"""The texts of an order beyond the account's means (:func:`.book.shortfall`)."""


def refused_path(placed: PlacedOrder, short: str) -> str:
    """The order form again, with the order and the text ``short`` saying why it was refused."""
    typed = {
        "refused": short,
        "symbol": placed.symbol,
        "side": placed.side,
        "quantity": str(placed.quantity),
        "limit_price": f"{placed.limit_price:g}" if placed.limit_price is not None else "",
    }
    return "/order?" + urlencode(typed)


def _fill(site: Site, placed: PlacedOrder) -> str | None:
    """Fill ``placed`` if the account can afford it now and tell the guard; else it is
    refused and the text saying why is returned."""
    short = site.book.execute_within_means(placed)
    if short is not None:
        return short
    price = placed.limit_price or INSTRUMENTS[placed.symbol].price
    now = datetime.now(UTC)
    site.tell(
        Execution(
            id=f"fill-{placed.id}",
            ts=now,
            account=placed.account,
            order_id=placed.id,
            symbol=placed.symbol,
            market="TSE",
            side=placed.side,  # type: ignore[arg-type]
            quantity=placed.quantity,
            price=price,
            value_jpy=price * placed.quantity,
        )
    )
    return None


def guarded_setting(site: Site, session: SiteSession, field: str, apply, back: str) -> Next:
    """A settings change (a passkey to add, notification settings): the guard decides first.

    The policy always steps up passkey changes: a criminal holding only a stolen password
    must not be able to enrol a passkey of their own.
    """
    now, tag = _stamp()
    event = SettingsChange(
        id=f"settings-{tag}",
        ts=now,
        account=session.account,
        session=session.guard_session,
        field=field,  # type: ignore[arg-type]
    )
    verdict: GuardVerdict = site.guard.decide(event)
    if verdict.action == "allow":
        apply()
        return Next(back)
    if verdict.action in ("challenge", "hold"):

        def resume() -> Next:
            apply()
            return Next(back)

        try:
            challenge = site.stepup.start(event, verdict.decision, resume)
        except (NotEnrolled, RateLimited):  # no factor, or a hold's code cannot be sent now
            return Next(back, error="refused")
        site.wait_for(challenge, verdict.decision.reasons)
        return Next(f"/stepup/{challenge.id}", stepup=challenge.id)
    if verdict.action == "lock":
        return Next(back, error="frozen")
    return Next(back, error="refused")
