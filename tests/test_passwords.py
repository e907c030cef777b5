"""Argon2 passwords, lock after N failures, and unlock only through a re-verification."""

from __future__ import annotations

from datetime import timedelta

import pytest
from argon2 import PasswordHasher
from auth_helpers import BROKER, CONFIG, FakeClock, Recorder

from brokerguard.auth.common import Verified
from brokerguard.auth.errors import (
    AccountLocked,
    AuthError,
    NotFound,
    ReauthRequired,
    VerificationFailed,
)
from brokerguard.auth.passkeys import Passkeys
from brokerguard.auth.passwords import Lockout, Passwords
from brokerguard.auth.store import MemoryStore
from brokerguard.auth.testing import SoftAuthenticator

# Real Argon2id, with small parameters so the suite stays quick.
CHEAP = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
DEARER = PasswordHasher(time_cost=2, memory_cost=2048, parallelism=1)


def setup(max_failures: int = 3):
    clock, notices, store = FakeClock(), Recorder(), MemoryStore()
    lockout = Lockout(store, max_failures=max_failures, notifier=notices, clock=clock)
    passwords = Passwords(store, lockout, hasher=CHEAP, clock=clock)
    passwords.set("A1", "correct horse battery")
    return passwords, lockout, notices, clock, store


def test_a_password_is_stored_as_argon2id_and_verifies() -> None:
    passwords, _, _, clock, store = setup()
    raw = store.get("password", "A1") or b""
    assert b"$argon2id$" in raw and b"correct horse" not in raw
    proof = passwords.verify("A1", "correct horse battery")
    assert proof == Verified(account="A1", factor="password", at=clock.now)
    with pytest.raises(VerificationFailed, match="wrong ID or password"):
        passwords.verify("A1", "Correct horse battery")
    with pytest.raises(VerificationFailed, match="wrong ID or password"):
        passwords.verify("nobody", "correct horse battery")
    with pytest.raises(ValueError, match="at least 10"):
        passwords.set("A1", "short")


def test_a_hash_with_old_parameters_is_replaced_at_the_next_sign_in() -> None:
    passwords, lockout, _, clock, store = setup()
    before = store.get("password", "A1") or b""
    assert b"m=1024,t=1" in before
    upgraded = Passwords(store, lockout, hasher=DEARER, clock=clock)
    with pytest.raises(VerificationFailed):
        upgraded.verify("A1", "wrong password!")
    assert store.get("password", "A1") == before  # only a correct password can be rehashed
    upgraded.verify("A1", "correct horse battery")
    after = store.get("password", "A1") or b""
    assert b"m=2048,t=2" in after
    upgraded.verify("A1", "correct horse battery")


def test_the_nth_consecutive_failure_locks_and_tells_the_customer() -> None:
    passwords, lockout, notices, _, _ = setup(max_failures=3)
    for _ in range(2):
        with pytest.raises(VerificationFailed):
            passwords.verify("A1", "guess guess guess")
    passwords.verify("A1", "correct horse battery")  # a success ends the run
    for _ in range(2):
        with pytest.raises(VerificationFailed):
            passwords.verify("A1", "guess guess guess")
    assert not lockout.is_locked("A1")
    with pytest.raises(AccountLocked, match="after 3 failures"):
        passwords.verify("A1", "guess guess guess")
    state = lockout.state("A1")
    assert state.locked and state.reason == "failures" and state.by == "system"
    with pytest.raises(AccountLocked):  # the right password does not reopen it
        passwords.verify("A1", "correct horse battery")
    assert notices.kinds() == ["account_locked"]
    assert notices.sent[0][2] == {"reason": "failures"}


def test_unlock_by_a_passkey_verified_after_the_request() -> None:
    passwords, lockout, _, clock, store = setup(max_failures=1)
    passkeys = Passkeys(CONFIG, store, clock=clock)
    phone = SoftAuthenticator()
    options = passkeys.registration_options("A1", user_name="a1")
    passkeys.register("A1", phone.create(options, BROKER), "phone")
    early = passkeys.authenticate(phone.get(passkeys.authentication_options("A1"), BROKER), "A1")
    with pytest.raises(AccountLocked):
        passwords.verify("A1", "guess guess guess")
    assert lockout.is_locked("A1")
    clock.advance(minutes=1)
    request = lockout.request_unlock("A1", requested_by="customer")
    with pytest.raises(VerificationFailed, match="older than the unlock request"):
        lockout.complete_by_factor("A1", request.id, early)
    otp_proof = Verified(account="A1", factor="sms", at=clock.now)
    with pytest.raises(ReauthRequired, match="got a sms"):
        lockout.complete_by_factor("A1", request.id, otp_proof)
    assert lockout.is_locked("A1")
    clock.advance(seconds=30)
    proof = passkeys.authenticate(phone.get(passkeys.authentication_options("A1"), BROKER), "A1")
    done = lockout.complete_by_factor("A1", request.id, proof)
    assert done.status == "completed" and done.completed_by == "customer"
    assert done.method == f"passkey:{proof.detail}" and done.completed_at == clock.now
    assert not lockout.is_locked("A1") and lockout.state("A1").failures == 0
    assert passwords.verify("A1", "correct horse battery")
    with pytest.raises(AuthError, match="is completed"):
        lockout.complete_by_factor("A1", request.id, proof)


def test_unlock_by_an_analyst_records_who_and_how() -> None:
    _, lockout, notices, clock, _ = setup()
    lockout.lock("A1", reason="customer", by="customer")  # the freeze button
    assert notices.sent[-1][2] == {"reason": "customer"}
    request = lockout.request_unlock("A1", requested_by="analyst:suzuki")
    with pytest.raises(ValueError, match="name the analyst and the identity check"):
        lockout.complete_by_analyst("A1", request.id, analyst="suzuki", method=" ")
    with pytest.raises(NotFound):
        lockout.complete_by_analyst("A2", request.id, analyst="suzuki", method="call-back")
    clock.advance(minutes=3)
    done = lockout.complete_by_analyst(
        "A1",
        request.id,
        analyst="suzuki",
        method="call-back to registered phone + ID document",
        note="customer confirmed the last three trades",
    )
    assert (done.requested_by, done.completed_by) == ("analyst:suzuki", "analyst:suzuki")
    assert done.method == "call-back to registered phone + ID document"
    assert not lockout.is_locked("A1")
    assert [r.status for r in lockout.requests("A1")] == ["completed"]


def test_unlock_needs_a_locked_account_and_a_fresh_proof() -> None:
    _, lockout, _, clock, _ = setup()
    with pytest.raises(AuthError, match="not locked"):
        lockout.request_unlock("A1", requested_by="customer")
    lockout.lock("A1", reason="guard", by="guard")
    request = lockout.request_unlock("A1", requested_by="customer")
    proof = Verified(account="A1", factor="passkey", at=clock.now)
    clock.advance(minutes=11)
    with pytest.raises(ReauthRequired, match="last 10 minutes"):
        lockout.complete_by_factor("A1", request.id, proof)
    lockout.cancel("A1", request.id)
    assert lockout.requests("A1")[0].status == "cancelled" and lockout.is_locked("A1")
    assert timedelta(minutes=10) == lockout.unlock_window


def test_the_production_argon2_parameters_are_argon2s_defaults() -> None:
    """The tests hash with the lowest cost in their own process (tests/conftest.py,
    ``cheap_argon2``); a fresh interpreter, as ``brokerguard`` runs, hashes console users' and
    the site's customers' passwords with argon2's defaults (RFC 9106's low-memory profile:
    64 MiB, 3 passes, 4 lanes), and the check of an unknown user costs as much as a known one."""
    import subprocess
    import sys

    probe = (
        "from argon2 import extract_parameters, profiles\n"
        "from brokerguard.auth.passwords import Lockout, Passwords\n"
        "from brokerguard.auth.store import MemoryStore\n"
        "from brokerguard.service import users\n"
        "store = MemoryStore()\n"
        "site = Passwords(store, Lockout(store))\n"
        "site.set('A1', 'correct horse battery')\n"
        "made = [users._hasher.hash('correct horse battery'), users._DUMMY,\n"
        "        site._hashes.get('A1').hash]\n"
        "want = profiles.RFC_9106_LOW_MEMORY\n"
        "for h in made:\n"
        "    p = extract_parameters(h)\n"
        "    assert (p.type, p.time_cost, p.memory_cost, p.parallelism) == (\n"
        "        want.type, want.time_cost, want.memory_cost, want.parallelism), (h, p)\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.stdout == "ok\n", done.stderr[-3000:]
