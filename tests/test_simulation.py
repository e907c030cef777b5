"""The closed loop: the simulator reacts to the guard's answers the way people and attackers do.

Each test runs a small scenario against a guard whose behaviour is fixed, so that the right
outcome is known: a relayed one-time password gets the phisher in, a passkey never does, a held
order is confirmed only by an attacker who changed the contact details, and so on.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import msgspec
import pytest

from brokerguard.baselines import AllowAll, OtpAtLogin, PasskeyAtLogin
from brokerguard.evaluate import evaluate_run
from brokerguard.events import (
    ChallengeResult,
    Event,
    Execution,
    LoginAttempt,
    Order,
    SessionActivity,
    read_ndjson,
)
from brokerguard.guard import Decision, Instruction
from brokerguard.sim.scenario import Scenario, parse_scenario
from brokerguard.sim.world import simulate
from brokerguard.truth import load_truth

BASE = """
name = "small"
seed = 3
start = "2025-03-17T00:00:00+09:00"
days = 4
[broker]
investors = 400
give_up_rate = 0.0
[[attack]]
kind = "{kind}"
start = "2025-03-18T09:00:00+09:00"
victims = 20
relay_otp = {relay}
change_contact_share = {contact}
target_markets = ["TSE"]
targets = 1
waves = 2
criminal_accounts = 1
"""


def small(kind: str = "phishing", relay: bool = True, contact: float = 0.0, **broker) -> Scenario:
    text = BASE.format(kind=kind, relay=str(relay).lower(), contact=contact)
    for key, value in broker.items():
        text = text.replace("[broker]\n", f"[broker]\n{key} = {value}\n")
    return parse_scenario(text)


class FixedGuard:
    """Answers every decision point of one kind with the same decision."""

    name = "fixed"

    def __init__(self, point: type, decision: Decision) -> None:
        self.point = point
        self.decision = decision

    def decide(self, event: Event) -> Decision:
        if isinstance(event, self.point):
            return self.decision
        return Decision(action="allow")

    def observe(self, event: Event) -> None:
        return None


def run(tmp_path: Path, scenario: Scenario, guard) -> tuple[dict, list[Event], Path]:
    out = tmp_path / "run"
    simulate(scenario, guard, out)
    with open(out / "events.ndjson", "rb") as f:
        events = list(read_ndjson(f))
    return evaluate_run(out), events, out


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_seed_gives_the_same_bytes(tmp_path: Path) -> None:
    scenario = small()
    a, b = tmp_path / "a", tmp_path / "b"
    simulate(scenario, OtpAtLogin(), a)
    simulate(scenario, OtpAtLogin(), b)
    for name in ("events.ndjson", "decisions.ndjson", "truth.json"):
        assert digest(a / name) == digest(b / name), name
    other = msgspec.structs.replace(scenario, seed=4)
    simulate(other, OtpAtLogin(), tmp_path / "c")
    assert digest(a / "events.ndjson") != digest(tmp_path / "c" / "events.ndjson")


def test_events_are_in_time_order_and_truth_names_only_real_events(tmp_path: Path) -> None:
    metrics, events, out = run(tmp_path, small(), AllowAll())
    stamps = [e.ts for e in events if e.__struct_config__.tag != "bar"]
    assert stamps == sorted(stamps)
    ids = {e.id for e in events}
    assert len(ids) == len(events)
    truth = load_truth(out / "truth.json")
    assert truth.victims and all(set(v.events) <= ids for v in truth.victims)
    assert metrics["attack"]["victims"] == len(truth.victims) == 20


def test_no_defense_lets_every_phisher_in_and_trade(tmp_path: Path) -> None:
    metrics, _, _ = run(tmp_path, small(), AllowAll())
    attack = metrics["attack"]
    assert attack["takeovers"] == attack["victims"] == 20
    assert attack["victims_with_unauthorized_trades"] > 15
    assert attack["unauthorized_value_jpy"] > 0
    assert metrics["campaigns"]["pumped_symbols"] == 1


def test_relayed_otp_gets_the_phisher_in(tmp_path: Path) -> None:
    metrics, _, _ = run(tmp_path, small(relay=True), OtpAtLogin())
    assert metrics["attack"]["takeovers"] == 20
    assert metrics["legit"]["login_challenge_rate"] == 1.0


def test_without_relay_otp_stops_the_phisher_at_login(tmp_path: Path) -> None:
    metrics, events, out = run(tmp_path, small(relay=False), OtpAtLogin())
    assert metrics["attack"]["takeovers"] == 0
    assert metrics["attack"]["blocked_at_login"] == 20
    assert metrics["attack"]["unauthorized_value_jpy"] == 0.0
    attacker = {e for v in load_truth(out / "truth.json").victims for e in v.events}
    failed = [e for e in events if isinstance(e, ChallengeResult) and e.id in attacker]
    assert failed and all(e.outcome == "failed" for e in failed)


def test_a_passkey_is_never_passed_by_an_attacker(tmp_path: Path) -> None:
    guard = FixedGuard(LoginAttempt, Decision(action="challenge", factors=("passkey",)))
    metrics, _, _ = run(tmp_path, small(relay=True, passkey_enrolled=1.0), guard)
    assert metrics["attack"]["takeovers"] == 0
    # Customers who enrolled pass it (on a device holding the passkey, nearly always).
    assert metrics["legit"]["logins"] > 100
    assert metrics["legit"]["login_challenges"] == metrics["legit"]["logins"]


def test_session_theft_needs_no_login_and_otp_at_login_cannot_see_it(tmp_path: Path) -> None:
    metrics, events, out = run(tmp_path, small(kind="session_theft"), OtpAtLogin())
    assert metrics["attack"]["takeovers"] == 20
    attacker = {e for v in load_truth(out / "truth.json").victims for e in v.events}
    kinds = {type(e) for e in events if e.id in attacker}
    assert LoginAttempt not in kinds
    assert SessionActivity in kinds and Order in kinds


@pytest.mark.parametrize(("contact", "executed"), [(0.0, False), (1.0, True)])
def test_held_buys_are_confirmed_only_by_an_attacker_who_changed_the_contact(
    tmp_path: Path, contact: float, executed: bool
) -> None:
    guard = FixedGuard(Order, Decision(action="hold", score=0.9))
    metrics, _, _ = run(tmp_path, small(contact=contact), guard)
    assert metrics["attack"]["takeovers"] == 20
    assert (metrics["attack"]["unauthorized_orders_executed"] > 0) is executed
    assert metrics["legit"]["order_hold_rate"] == 1.0


def test_customers_pass_challenges_at_the_configured_rate(tmp_path: Path) -> None:
    guard = FixedGuard(LoginAttempt, Decision(action="challenge", factors=("sms",)))
    _, events, _ = run(tmp_path, small(otp_pass_rate=1.0), guard)
    outcomes = [e.outcome for e in events if isinstance(e, ChallengeResult)]
    assert outcomes and set(outcomes) == {"passed"}

    _, events, out = run(tmp_path, small(otp_pass_rate=0.0), guard)
    truth = load_truth(out / "truth.json")
    attacker = {e for v in truth.victims for e in v.events}
    criminals = set(truth.criminal_accounts)
    assert criminals
    legit = [
        e for e in events if e.id not in attacker and getattr(e, "account", "") not in criminals
    ]
    legit_results = {e.outcome for e in legit if isinstance(e, ChallengeResult)}
    assert legit_results == {"failed"}
    assert not [e for e in legit if isinstance(e, SessionActivity)]  # nobody got a session


def test_denied_logins_lock_nobody_out_for_good(tmp_path: Path) -> None:
    guard = FixedGuard(LoginAttempt, Decision(action="lock", score=1.0))
    metrics, _, _ = run(tmp_path, small(), guard)
    assert metrics["attack"]["takeovers"] == 0
    assert metrics["legit"]["accounts_locked"] > 50


def test_passkey_at_login_blocks_only_the_enrolled_victims(tmp_path: Path) -> None:
    scenario = small(passkey_enrolled=0.5)
    metrics, events, _ = run(tmp_path, scenario, PasskeyAtLogin())
    enrolled = {e.account for e in events if getattr(e, "passkey_enrolled", False)}
    blocked = metrics["attack"]["blocked_at_login"]
    assert 0 < blocked < 20
    assert metrics["attack"]["takeovers"] == 20 - blocked
    assert len(enrolled) > 100


class CancelsWhatItAllowed:
    """Allows every order, then at the next event asks the broker to cancel it."""

    name = "cancels"

    def __init__(self) -> None:
        self.allowed: list[Order] = []
        self.ready: list[Instruction] = []

    def _instruct(self) -> None:
        self.ready += [
            Instruction(
                kind="cancel_orders",
                ts=o.ts,
                account=o.account,
                session=o.session,
                orders=(o.order_id,),
                cause=o.id,
            )
            for o in self.allowed
        ]
        self.allowed = []

    def decide(self, event: Event) -> Decision:
        self._instruct()
        if isinstance(event, Order):
            self.allowed.append(event)
        return Decision(action="allow")

    def observe(self, event: Event) -> None:
        self._instruct()

    def take_instructions(self) -> list[Instruction]:
        taken, self.ready = self.ready, []
        return taken


def test_the_broker_cancels_what_is_still_open_of_the_orders_a_guard_names(tmp_path: Path) -> None:
    metrics, events, out = run(tmp_path, small(), CancelsWhatItAllowed())
    with open(out / "instructions.ndjson", "rb") as f:
        instructed = {
            order_id
            for line in f
            for order_id in msgspec.json.decode(line, type=Instruction).orders
        }
    placed = {e.order_id for e in events if isinstance(e, Order) and e.action == "new"}
    assert instructed == placed  # every order was named once it was sent
    cancelled = {e.order_id: e.ts for e in events if isinstance(e, Order) and e.action == "cancel"}
    executed = {e.order_id: e.ts for e in events if isinstance(e, Execution)}
    # Orders placed while their market was closed wait for the open: those are cancelled and
    # never execute. Orders that filled at once are beyond reach and are not "cancelled".
    assert cancelled and executed
    assert all(executed.get(oid, ts) <= ts for oid, ts in cancelled.items())
    truth = load_truth(out / "truth.json")
    attackers = {(v.account, oid) for v in truth.victims for oid in v.orders}
    by_attackers = sum(
        (e.account, e.order_id) in attackers
        for e in events
        if isinstance(e, Order) and e.action == "cancel"
    )
    criminals = set(truth.criminal_accounts)
    by_customers = sum(
        (e.account, e.order_id) not in attackers and e.account not in criminals
        for e in events
        if isinstance(e, Order) and e.action == "cancel"
    )
    assert metrics["attack"]["unauthorized_orders_cancelled"] == by_attackers
    assert metrics["legit"]["orders_cancelled"] == by_customers > 0


class SignsOutAtTheFirstOrder:
    """Allows everything, and asks the broker to sign out each session that places an order."""

    name = "signs-out"

    def __init__(self) -> None:
        self.ready: list[Instruction] = []

    def decide(self, event: Event) -> Decision:
        if isinstance(event, Order):
            self.ready.append(
                Instruction(
                    kind="end_session",
                    ts=event.ts,
                    account=event.account,
                    session=event.session,
                    cause=event.id,
                )
            )
        return Decision(action="allow")

    def observe(self, event: Event) -> None:
        pass

    def take_instructions(self) -> list[Instruction]:
        taken, self.ready = self.ready, []
        return taken


@pytest.fixture(scope="module")
def signing_out(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, list[Event], Path]:
    """A run under a guard that has every session signed out at its first order."""
    return run(tmp_path_factory.mktemp("signing-out"), small(), SignsOutAtTheFirstOrder())


def test_a_session_the_broker_signed_out_makes_no_more_requests(signing_out) -> None:
    metrics, events, out = signing_out
    ended: dict[str, str] = {}
    after: list[Event] = []
    for e in events:
        session = getattr(e, "session", None)
        if session in ended and not isinstance(e, (ChallengeResult, Execution)):
            after.append(e)
        if isinstance(e, Order) and e.action == "new":
            ended.setdefault(e.session, e.account)
    assert len(ended) > 20
    assert after == []  # no page view, order, settings change or withdrawal
    truth = load_truth(out / "truth.json")
    thieves = {s for v in truth.victims for s in v.sessions}
    criminals = set(truth.criminal_accounts)
    customers = [s for s, a in ended.items() if s not in thieves and a not in criminals]
    assert metrics["attack"]["sessions_signed_out"] == len(thieves & ended.keys()) > 0
    assert metrics["legit"]["sessions_signed_out"] == len(customers) > 0


def ordering_sessions(events: list[Event], out: Path) -> dict[str, set[str]]:
    """Victim -> the attacker's sessions that placed orders on it."""
    truth = load_truth(out / "truth.json")
    ordering: dict[str, set[str]] = {}
    thieves = {s: v.account for v in truth.victims for s in v.sessions}
    for e in events:
        if isinstance(e, Order) and e.action == "new" and e.session in thieves:
            ordering.setdefault(thieves[e.session], set()).add(e.session)
    return ordering


def test_a_phisher_signed_out_signs_in_once_more_with_the_password(signing_out) -> None:
    _, events, out = signing_out
    ordering = ordering_sessions(events, out)
    assert ordering
    assert max(len(sessions) for sessions in ordering.values()) == 2  # signed in again, once


@pytest.mark.parametrize("relogins", [0, 3])
def test_a_persistent_phisher_signs_in_again_as_often_as_the_scenario_says(
    tmp_path: Path, relogins: int
) -> None:
    scenario = small()
    attack = msgspec.structs.replace(scenario.attack[0], relogins=relogins)
    scenario = msgspec.structs.replace(scenario, attack=[attack])
    _, events, out = run(tmp_path, scenario, SignsOutAtTheFirstOrder())
    ordering = ordering_sessions(events, out)
    assert ordering
    assert max(len(sessions) for sessions in ordering.values()) == relogins + 1
