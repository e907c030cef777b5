"""A software authenticator, so tests verify real WebAuthn ceremonies without a browser.

:class:`SoftAuthenticator` plays both the browser and the authenticator: it holds real ES256
(P-256) key pairs, writes ``clientDataJSON`` with the page's origin the way a browser does,
builds ``authenticatorData`` (RP ID hash, flags UP/UV/AT, signature counter, the COSE public key
in CBOR) and a ``none`` attestation, and signs assertions. Its output is the JSON that
``navigator.credentials.create()/get()`` return, so py_webauthn verifies it for real.

Like a browser it refuses an RP ID that is not the page's host or a parent domain of it (a
phishing page cannot ask for the broker's passkey); ``unsafe_rp_id`` skips that rule, to show that
the broker's verification refuses such an assertion as well.

It is for tests and demos only: the private keys live in memory, unprotected.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import struct
from typing import Any
from urllib.parse import urlsplit

import cbor2
import msgspec
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url

__all__ = ["BrowserRefused", "SoftAuthenticator", "SoftCredential"]

UP, UV, BE, BS, AT = 0x01, 0x04, 0x08, 0x10, 0x40
AAGUID = bytes(16)  # "none" attestation: no model is claimed


class BrowserRefused(Exception):
    """What the browser's ``SecurityError``/``NotAllowedError`` would be."""


class SoftCredential(msgspec.Struct, kw_only=True):
    credential_id: bytes
    rp_id: str
    user_handle: bytes
    key: Any  # ec.EllipticCurvePrivateKey
    sign_count: int = 0


def _b64(data: bytes) -> str:
    return bytes_to_base64url(data)


def _cose_key(public: ec.EllipticCurvePublicKey) -> bytes:
    numbers = public.public_numbers()
    # COSE_Key: kty EC2 (2), alg ES256 (-7), crv P-256 (1), x, y
    return cbor2.dumps(
        {1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")}
    )


def _rp_allowed(rp_id: str, origin: str) -> bool:
    host = urlsplit(origin).hostname or ""
    return host == rp_id or host.endswith("." + rp_id)


class SoftAuthenticator:
    """An authenticator with its own credentials; ``counter_step=0`` imitates synced passkeys."""

    def __init__(self, *, user_verified: bool = True, counter_step: int = 1) -> None:
        self.credentials: dict[bytes, SoftCredential] = {}
        self.user_verified = user_verified
        self.counter_step = counter_step

    def create(self, options: str | dict[str, Any], origin: str) -> dict[str, Any]:
        """Answer ``navigator.credentials.create(options)`` on a page at ``origin``."""
        opts = json.loads(options) if isinstance(options, str) else options
        rp_id = opts["rp"].get("id") or urlsplit(origin).hostname
        if not _rp_allowed(rp_id, origin):
            raise BrowserRefused(f"RP ID {rp_id!r} is not allowed on {origin}")
        excluded = {base64url_to_bytes(c["id"]) for c in opts.get("excludeCredentials", [])}
        if excluded & set(self.credentials):
            raise BrowserRefused("this authenticator already holds a passkey for the account")
        key = ec.generate_private_key(ec.SECP256R1())
        cred = SoftCredential(
            credential_id=secrets.token_bytes(16),
            rp_id=rp_id,
            user_handle=base64url_to_bytes(opts["user"]["id"]),
            key=key,
        )
        self.credentials[cred.credential_id] = cred
        client_data = self._client_data("webauthn.create", opts["challenge"], origin)
        attested = AAGUID + struct.pack(">H", len(cred.credential_id)) + cred.credential_id
        auth_data = self._auth_data(cred, extra_flags=AT) + attested + _cose_key(key.public_key())
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        return {
            "id": _b64(cred.credential_id),
            "rawId": _b64(cred.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": _b64(client_data),
                "attestationObject": _b64(attestation),
                "transports": ["internal", "hybrid"],
            },
            "clientExtensionResults": {},
            "authenticatorAttachment": "platform",
        }

    def get(
        self,
        options: str | dict[str, Any],
        origin: str,
        *,
        unsafe_rp_id: str | None = None,
        credential_id: bytes | None = None,
    ) -> dict[str, Any]:
        """Answer ``navigator.credentials.get(options)`` on a page at ``origin``.

        ``unsafe_rp_id`` signs for that RP ID whatever the page's origin — no real browser
        does this; tests use it to show that the relying party refuses the result anyway.
        """
        opts = json.loads(options) if isinstance(options, str) else options
        rp_id = opts.get("rpId") or urlsplit(origin).hostname
        if unsafe_rp_id is not None:
            rp_id = unsafe_rp_id
        elif not _rp_allowed(rp_id, origin):
            raise BrowserRefused(f"RP ID {rp_id!r} is not allowed on {origin}")
        allowed = {base64url_to_bytes(c["id"]) for c in opts.get("allowCredentials", [])}
        candidates = [
            c
            for c in self.credentials.values()
            if (unsafe_rp_id is not None or c.rp_id == rp_id)
            and (not allowed or c.credential_id in allowed)
            and (credential_id is None or c.credential_id == credential_id)
        ]
        if not candidates:
            raise BrowserRefused(f"no passkey for {rp_id!r} on this authenticator")
        cred = candidates[0]
        cred.sign_count += self.counter_step
        client_data = self._client_data("webauthn.get", opts["challenge"], origin)
        auth_data = self._auth_data(cred, rp_id=rp_id)
        signed = auth_data + hashlib.sha256(client_data).digest()
        signature = cred.key.sign(signed, ec.ECDSA(hashes.SHA256()))
        return {
            "id": _b64(cred.credential_id),
            "rawId": _b64(cred.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": _b64(client_data),
                "authenticatorData": _b64(auth_data),
                "signature": _b64(signature),
                "userHandle": _b64(cred.user_handle),
            },
            "clientExtensionResults": {},
            "authenticatorAttachment": "platform",
        }

    def clone(self) -> SoftAuthenticator:
        """A copy holding the same keys and counters: what an extracted key would give."""
        twin = SoftAuthenticator(user_verified=self.user_verified, counter_step=self.counter_step)
        twin.credentials = {k: msgspec.structs.replace(c) for k, c in self.credentials.items()}
        return twin

    def _client_data(self, type_: str, challenge: str, origin: str) -> bytes:
        data = {"type": type_, "challenge": challenge, "origin": origin, "crossOrigin": False}
        return json.dumps(data, separators=(",", ":")).encode()

    def _auth_data(
        self, cred: SoftCredential, *, extra_flags: int = 0, rp_id: str | None = None
    ) -> bytes:
        flags = UP | (UV if self.user_verified else 0) | extra_flags
        rp_hash = hashlib.sha256((rp_id or cred.rp_id).encode()).digest()
        return rp_hash + bytes([flags]) + struct.pack(">I", cred.sign_count)
