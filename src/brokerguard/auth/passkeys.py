"""Passkeys (WebAuthn): registration, sign-in, several per customer, rename, removal.

Passkeys are the one factor a phishing proxy cannot relay: the browser writes the page's origin
into the signed client data and only uses a credential for its own RP ID, so an assertion made on
``https://sbisec.example-phish.top`` never verifies for the broker. The cryptography and the
checks of the ceremonies are py_webauthn's (:func:`webauthn.verify_registration_response`,
:func:`webauthn.verify_authentication_response`); this module adds what a broker needs around
them:

- the challenge of every ceremony is stored server-side, bound to the account and to what it
  approves (``purpose``: a sign-in, one step-up, one re-verification, one unlock request),
  single-use and short-lived (a replayed or late response finds nothing, and an assertion the
  customer made to approve one thing never approves another);
- the signature counter: a counter that does not increase means two copies of one key exist
  (a cloned authenticator) — the sign-in is refused and the passkey flagged until removed;
  authenticators that always report 0 (synced passkeys) stay valid;
- several passkeys per customer, each with a name the customer can change;
- removal only with a fresh passkey verification (:func:`~brokerguard.auth.common.require_fresh`),
  and a notice to the customer on every registration and removal.

A web layer calls ``registration_options`` / ``register`` and ``authentication_options`` /
``authenticate`` and passes the JSON through to ``navigator.credentials`` unchanged.
"""

from __future__ import annotations

import json
import secrets
import threading
from datetime import datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlsplit

import msgspec
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url, parse_client_data_json
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from brokerguard.auth.common import Clock, Verified, require_fresh, utcnow
from brokerguard.auth.errors import (
    AuthError,
    CodeExpired,
    CredentialFlagged,
    NotFound,
    VerificationFailed,
)
from brokerguard.auth.store import AuthStore, Records
from brokerguard.notify.outbox import Notify

__all__ = ["Passkey", "PasskeyConfig", "Passkeys", "clean_name"]

Purpose = Literal["register", "authenticate"]
SIGN_IN = "sign-in"
"""The ``purpose`` of a plain passkey sign-in; every other use of an assertion names its own."""
_SEP = "\x1f"


class PasskeyConfig(msgspec.Struct, frozen=True, kw_only=True):
    """The relying party: its RP ID (the broker's registrable domain) and the allowed origins.

    Every origin must be ``https`` (``http`` only for ``localhost``) on the RP ID or one of its
    subdomains — the browser enforces the same rule, so any other origin could never work and is
    a configuration mistake.
    """

    rp_id: str
    rp_name: str
    origins: tuple[str, ...]
    user_verification: Literal["required", "preferred"] = "required"
    ceremony_ttl: timedelta = timedelta(minutes=5)
    reauth_window: timedelta = timedelta(minutes=5)
    max_passkeys: int = 10

    def __post_init__(self) -> None:
        if not self.rp_id or "/" in self.rp_id or ":" in self.rp_id:
            raise ValueError(f"`rp_id` must be a bare domain name, got {self.rp_id!r}")
        if not self.origins:
            raise ValueError("`origins` must name at least one origin")
        for origin in self.origins:
            parts = urlsplit(origin)
            host = parts.hostname or ""
            local = host == "localhost"
            if parts.scheme != "https" and not (local and parts.scheme == "http"):
                raise ValueError(f"`origins`: {origin!r} must use https")
            if parts.path not in ("", "/") or parts.query or parts.fragment:
                raise ValueError(f"`origins`: {origin!r} must be scheme://host[:port] only")
            if host != self.rp_id and not host.endswith("." + self.rp_id):
                raise ValueError(f"`origins`: {origin!r} is not on the RP ID {self.rp_id!r}")


class Passkey(msgspec.Struct, kw_only=True):
    """One registered passkey of a customer. ``flagged`` says why it is refused, if it is."""

    credential_id: str  # base64url
    account: str
    name: str
    public_key: bytes  # COSE
    sign_count: int
    created: datetime
    last_used: datetime | None = None
    transports: list[str] = []
    backed_up: bool = False
    flagged: str | None = None


class _Ceremony(msgspec.Struct, frozen=True, kw_only=True):
    account: str | None
    purpose: Purpose
    expires: datetime
    approves: str = ""  # an authentication's ``purpose``: what its assertion may be used for


class _Owner(msgspec.Struct, frozen=True):
    account: str


class _UserHandle(msgspec.Struct, frozen=True):
    value: bytes


def clean_name(name: str) -> str:
    """A passkey's name as kept: control characters and runs of spaces made one space, ends
    trimmed; a ValueError when nothing is left or more than 64 characters are."""
    name = " ".join("".join(c if c.isprintable() else " " for c in name).split())
    if not 1 <= len(name) <= 64:
        raise ValueError("a passkey name must have 1 to 64 printable characters")
    return name


def _client_challenge(response: str | dict[str, Any]) -> str:
    """The challenge the browser signed (base64url), to find the server's ceremony record."""
    try:
        data = json.loads(response) if isinstance(response, str) else response
        raw = base64url_to_bytes(data["response"]["clientDataJSON"])
        return bytes_to_base64url(parse_client_data_json(raw).challenge)
    except Exception as exc:  # anything unreadable is a failed verification, never a 500
        raise VerificationFailed(f"unreadable WebAuthn response: {exc}") from None


class Passkeys:
    """The passkey ceremonies of one relying party, with records in an :class:`AuthStore`."""

    def __init__(
        self,
        config: PasskeyConfig,
        store: AuthStore,
        *,
        notifier: Notify | None = None,
        clock: Clock = utcnow,
    ) -> None:
        self.config = config
        self.notifier = notifier
        self.clock = clock
        self._passkeys = Records(store, "passkey", Passkey)
        self._owners = Records(store, "passkey-id", _Owner)
        self._ceremonies = Records(store, "passkey-ceremony", _Ceremony)
        self._handles = Records(store, "passkey-user", _UserHandle)
        self._lock = threading.Lock()  # sign counts are read-compare-written
        self._begun = 0

    # --- queries -------------------------------------------------------------------------------
    def list(self, account: str) -> list[Passkey]:
        """The customer's passkeys, oldest first."""
        found = self._passkeys.values(account + _SEP)
        return sorted(found, key=lambda p: (p.created, p.credential_id))

    def has_passkey(self, account: str) -> bool:
        """True when the customer has a usable (not flagged) passkey."""
        return any(p.flagged is None for p in self.list(account))

    def get(self, account: str, credential_id: str) -> Passkey:
        passkey = self._passkeys.get(account + _SEP + credential_id)
        if passkey is None:
            raise NotFound(f"account {account!r} has no passkey {credential_id!r}")
        return passkey

    # --- registration --------------------------------------------------------------------------
    def registration_options(
        self, account: str, user_name: str, display_name: str | None = None
    ) -> str:
        """Options for ``navigator.credentials.create()``, as JSON; valid for ``ceremony_ttl``."""
        mine = self.list(account)
        if len(mine) >= self.config.max_passkeys:
            raise AuthError(f"account {account!r} already has {len(mine)} passkeys (the maximum)")
        uv = UserVerificationRequirement(self.config.user_verification)
        options = generate_registration_options(
            rp_id=self.config.rp_id,
            rp_name=self.config.rp_name,
            user_name=user_name,
            user_id=self._user_handle(account),
            user_display_name=display_name or user_name,
            timeout=int(self.config.ceremony_ttl.total_seconds() * 1000),
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.REQUIRED, user_verification=uv
            ),
            exclude_credentials=[self._descriptor(p) for p in mine],
        )
        self._begin(options.challenge, account, "register")
        return options_to_json(options)

    def register(self, account: str, response: str | dict[str, Any], name: str) -> Passkey:
        """Verify the browser's answer to :meth:`registration_options` and store the passkey."""
        name = clean_name(name)
        challenge = self._take(response, account, "register")
        try:
            verified = verify_registration_response(
                credential=response,
                expected_challenge=challenge,
                expected_rp_id=self.config.rp_id,
                expected_origin=list(self.config.origins),
                require_user_verification=self.config.user_verification == "required",
            )
        except WebAuthnException as exc:
            raise VerificationFailed(f"passkey registration refused: {exc}") from None
        credential_id = bytes_to_base64url(verified.credential_id)
        transports = _transports(response)
        passkey = Passkey(
            credential_id=credential_id,
            account=account,
            name=name,
            public_key=verified.credential_public_key,
            sign_count=verified.sign_count,
            created=self.clock(),
            transports=transports,
            backed_up=verified.credential_backed_up,
        )
        with self._lock:
            if self._owners.get(credential_id) is not None:
                raise VerificationFailed("this passkey is already registered")
            self._owners.put(credential_id, _Owner(account))
            self._passkeys.put(account + _SEP + credential_id, passkey)
        self._notice(account, "passkey_registered", name)
        return passkey

    # --- authentication ------------------------------------------------------------------------
    def authentication_options(self, account: str | None = None, *, purpose: str = SIGN_IN) -> str:
        """Options for ``navigator.credentials.get()``, as JSON.

        With ``account`` (a step-up, or a sign-in after the ID was typed) only that customer's
        passkeys are allowed; without it the browser offers its discoverable passkeys.

        ``purpose`` names what the assertion will approve — the sign-in (the default), or one
        step-up, one re-verification, one unlock request (``"stepup:<id>"``, ...): only
        :meth:`authenticate` with the same ``purpose`` accepts it. The customer's passkey signs
        the challenge, not the operation, so without this an assertion made to approve one
        thing could be sent to approve another (by whoever holds the session).
        """
        allow = (
            [self._descriptor(p) for p in self.list(account) if p.flagged is None]
            if account
            else []
        )
        options = generate_authentication_options(
            rp_id=self.config.rp_id,
            timeout=int(self.config.ceremony_ttl.total_seconds() * 1000),
            allow_credentials=allow,
            user_verification=UserVerificationRequirement(self.config.user_verification),
        )
        self._begin(options.challenge, account, "authenticate", purpose)
        return options_to_json(options)

    def authenticate(
        self,
        response: str | dict[str, Any],
        account: str | None = None,
        *,
        purpose: str = SIGN_IN,
    ) -> Verified:
        """Verify an assertion; returns who signed in. Raises on any failed check.

        The assertion must answer a ceremony begun for the same ``account`` and ``purpose``
        (see :meth:`authentication_options`); that ceremony is used up either way.
        The signature, origin and RP ID are checked by py_webauthn before the counter is
        compared, so only a validly signed assertion can flag a passkey as cloned.
        """
        challenge = self._take(response, account, "authenticate", purpose)
        try:
            data = json.loads(response) if isinstance(response, str) else response
            credential_id = bytes_to_base64url(base64url_to_bytes(data["rawId"]))
        except Exception:
            raise VerificationFailed("unreadable WebAuthn response: no rawId") from None
        owner = self._owners.get(credential_id)
        if owner is None or (account is not None and owner.account != account):
            raise VerificationFailed("unknown passkey for this account")
        with self._lock:
            passkey = self.get(owner.account, credential_id)
            if passkey.flagged:
                raise CredentialFlagged(f"passkey refused: {passkey.flagged}")
            try:
                verified = verify_authentication_response(
                    credential=response,
                    expected_challenge=challenge,
                    expected_rp_id=self.config.rp_id,
                    expected_origin=list(self.config.origins),
                    credential_public_key=passkey.public_key,
                    credential_current_sign_count=0,  # compared below, after the signature
                    require_user_verification=self.config.user_verification == "required",
                )
            except WebAuthnException as exc:
                raise VerificationFailed(f"passkey sign-in refused: {exc}") from None
            now = self.clock()
            new, old = verified.new_sign_count, passkey.sign_count
            if (new > 0 or old > 0) and new <= old:
                passkey.flagged = (
                    f"signature counter went from {old} to {new} at {now.isoformat()}:"
                    " a cloned authenticator"
                )
                self._passkeys.put(owner.account + _SEP + credential_id, passkey)
                raise CredentialFlagged(f"passkey refused: {passkey.flagged}")
            passkey.sign_count = new
            passkey.last_used = now
            passkey.backed_up = verified.credential_backed_up
            self._passkeys.put(owner.account + _SEP + credential_id, passkey)
        return Verified(account=owner.account, factor="passkey", at=now, detail=credential_id)

    # --- management ----------------------------------------------------------------------------
    def rename(self, account: str, credential_id: str, name: str) -> Passkey:
        with self._lock:
            passkey = self.get(account, credential_id)
            passkey.name = clean_name(name)
            self._passkeys.put(account + _SEP + credential_id, passkey)
        return passkey

    def remove(self, account: str, credential_id: str, *, reauth: Verified | None) -> Passkey:
        """Remove a passkey; needs a passkey verification of the same customer, still fresh.

        Any of the customer's passkeys will do (a lost phone's passkey is removed with the
        other one); a customer with no working passkey goes through the unlock/identity flow.
        """
        require_fresh(
            reauth,
            account=account,
            now=self.clock(),
            within=self.config.reauth_window,
            what="removing a passkey",
        )
        with self._lock:
            passkey = self.get(account, credential_id)
            self._passkeys.delete(account + _SEP + credential_id)
            self._owners.delete(credential_id)
        self._notice(account, "passkey_removed", passkey.name)
        return passkey

    # --- internals -----------------------------------------------------------------------------
    def _user_handle(self, account: str) -> bytes:
        # A random handle, not the account number: the handle is stored on the authenticator.
        handle = self._handles.get(account)
        if handle is None:
            handle = _UserHandle(secrets.token_bytes(32))
            self._handles.put(account, handle)
        return handle.value

    def _descriptor(self, passkey: Passkey) -> PublicKeyCredentialDescriptor:
        transports = []
        for t in passkey.transports:
            try:
                transports.append(AuthenticatorTransport(t))
            except ValueError:
                continue
        return PublicKeyCredentialDescriptor(
            id=base64url_to_bytes(passkey.credential_id), transports=transports or None
        )

    def purge(self) -> int:
        """Delete expired ceremonies nobody finished; returns how many. Runs now and then."""
        now, gone = self.clock(), 0
        for key in self._ceremonies.keys():  # noqa: SIM118 - Records, not a dict
            ceremony = self._ceremonies.get(key)
            if ceremony is not None and ceremony.expires < now and self._ceremonies.delete(key):
                gone += 1
        return gone

    def _begin(
        self, challenge: bytes, account: str | None, purpose: Purpose, approves: str = ""
    ) -> None:
        self._begun += 1
        if self._begun % 256 == 0:  # abandoned ceremonies must not pile up in the store
            self.purge()
        expires = self.clock() + self.config.ceremony_ttl
        self._ceremonies.put(
            bytes_to_base64url(challenge),
            _Ceremony(account=account, purpose=purpose, expires=expires, approves=approves),
        )

    def _take(
        self,
        response: str | dict[str, Any],
        account: str | None,
        purpose: Purpose,
        approves: str = "",
    ) -> bytes:
        challenge = _client_challenge(response)
        ceremony = self._ceremonies.take(challenge)
        if (
            ceremony is None
            or ceremony.purpose != purpose
            or ceremony.account != account
            or ceremony.approves != approves
        ):
            raise VerificationFailed("no pending ceremony for this challenge")
        if self.clock() > ceremony.expires:
            raise CodeExpired("the passkey ceremony expired; start again")
        return base64url_to_bytes(challenge)

    def _notice(self, account: str, kind: str, name: str) -> None:
        if self.notifier is not None:
            self.notifier.notify(account, kind, {"name": name})


def _transports(response: str | dict[str, Any]) -> list[str]:
    try:
        data = json.loads(response) if isinstance(response, str) else response
        found = data["response"].get("transports") or []
        return [str(t) for t in found][:8]
    except Exception:
        return []
