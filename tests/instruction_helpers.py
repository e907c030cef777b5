"""A customer, and a doubtful session in their account that sells and then buys a small cap:
the setting in which the engine's instructions (orders to cancel) are tested."""

from __future__ import annotations

from engine_helpers import HINET, OCN, Rig, device, ip_in

from brokerguard.engine.policy import Policy, default_policy_path, parse_policy

HOLDING = "TSE:9984"
THIN = "TSE:1234"


def lenient_orders_text(
    cancel_above: float | None = None, order_prior: float = -8.0, end_sessions: bool = True
) -> str:
    """The default policy with orders held only when nearly certain, so that a doubtful
    session's first sell goes through (as it does for accounts with almost no history)."""
    text = default_policy_path().read_text(encoding="utf-8")
    assert "[order]\nprior = -3.5" in text and "cancel_orders_above_llr = 0.0" in text
    assert "end_doubtful_sessions = true" in text
    text = text.replace("[order]\nprior = -3.5", f"[order]\nprior = {order_prior}")
    if cancel_above is not None:
        text = text.replace(
            "cancel_orders_above_llr = 0.0", f"cancel_orders_above_llr = {cancel_above}"
        )
    if not end_sessions:
        text = text.replace("end_doubtful_sessions = true", "end_doubtful_sessions = false")
    return text


def lenient_orders(
    cancel_above: float | None = None, order_prior: float = -8.0, end_sessions: bool = True
) -> Policy:
    return parse_policy(lenient_orders_text(cancel_above, order_prior, end_sessions))


def kinds(instructions) -> list[tuple[str, str]]:
    """Each instruction's kind and session, in the order raised."""
    return [(i.kind, i.session) for i in instructions]


def cancels(instructions) -> list:
    """The ``cancel_orders`` instructions among ``instructions``."""
    return [i for i in instructions if i.kind == "cancel_orders"]


def rig_with_customer(policy=None, r: Rig | None = None) -> Rig:
    r = r if r is not None else Rig(policy)
    r.instrument("TSE", "9984", 8000.0, 10_000_000, 12e12)
    r.instrument("TSE", "1234", 100.0, 10_000, 1e9)  # a thin small cap
    r.history("A1", ip_in(OCN, 1), device(1), "ck-A1")
    r.holdings("A1", 10_000.0, {HOLDING: 1000})
    r.tick(days=1)
    return r


def doubtful_session_sells_then_buys(r: Rig) -> tuple[str, str, str]:
    """A sign-in from abroad that passed only a relayable code; it sells, then buys a small cap.

    Returns (session, the sell's order id, the held buy's event id).
    """
    eid, d = r.login("A1", ip_in(HINET, 5), device(1), None)
    assert d.action == "challenge"
    session = r.session_of(eid)
    r.challenge("A1", eid, "sms", "passed", session=session)  # a phisher relays the code
    r.tick(minutes=2)
    sell, d = r.order("A1", session, HOLDING, "sell", 1000)
    assert d.action == "allow"
    r.tick(minutes=20)
    buy, d = r.order("A1", session, THIN, "buy", 50_000, 150.0)
    assert d.action == "hold"
    return session, f"o-{sell}", buy


class Recorder:
    """The engine, with every event it is given kept in order (the broker's log)."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.log: list = []
        self.trace = None

    def decide(self, event):
        self.log.append(event)
        return self.engine.decide(event)

    def observe(self, event) -> None:
        self.log.append(event)
        self.engine.observe(event)

    def __getattr__(self, name: str):
        return getattr(self.engine, name)
