"""The front door's only way to the guard: BrokerGuard's public HTTP API, with an API key.

A broker's own login and order systems talk to the guard exactly like this, so the reference
site uses nothing else: ``POST /v1/decide`` for each decision point, ``POST /v1/events`` for
what needs no answer (challenge outcomes, account set-up, reference data, canary hits) and
``POST /v1/accounts/{a}/actions`` for the customer's freeze and its lifting after
re-verification (the service's account lock: while it holds, every decision is ``lock``), and
for the customer's request of an analyst's unlock.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import httpx

from brokerguard.events import Event, encode
from brokerguard.guard import Decision, Reason

__all__ = ["GuardClient", "GuardError", "GuardVerdict"]


class GuardError(RuntimeError):
    """The guard could not be asked or refused the request (its error message included)."""


class GuardVerdict:
    """The guard's answer: the :class:`Decision` and the service's ids."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body
        self.decision = Decision(
            action=body["action"],
            score=float(body["score"]),
            factors=tuple(body.get("factors") or ()),
            reasons=tuple(Reason(**r) for r in body.get("reasons") or ()),
        )

    @property
    def action(self) -> str:
        return self.decision.action


def _actions_path(account: str) -> str:
    """The account's actions at the guard, the account quoted whole: it is what someone typed
    at the sign-in form, and unquoted ``X/../../cases?`` sent the site's key to another
    endpoint. (An ID of only ``.`` or ``..`` still ends in a path no route answers: an error.)"""
    return f"/v1/accounts/{quote(account, safe='')}/actions"


class GuardClient:
    """A small synchronous client (the site's handlers run in a thread pool)."""

    def __init__(
        self,
        base_url: str,
        key: str,
        *,
        timeout: float = 5.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        # How the service's audit log names this caller: ``key:`` and the key's public id.
        self.actor = f"key:{key[:12]}" if key.startswith("bgk_") else ""
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {key}"},
            timeout=timeout,
            transport=transport,
        )

    def decide(self, event: Event) -> GuardVerdict:
        """Ask about a decision point (login, order, withdrawal, settings change)."""
        return GuardVerdict(self._post("/v1/decide", encode(event), "application/json"))

    def send(self, events: Sequence[Event]) -> dict[str, Any]:
        """Tell the guard what needs no answer, in time order."""
        body = b"".join(encode(e) + b"\n" for e in events)
        return self._post("/v1/events", body, "application/x-ndjson")

    def freeze(self, account: str, note: str) -> dict[str, Any]:
        return self._act(account, "freeze", note)

    def unfreeze(self, account: str, note: str) -> dict[str, Any]:
        return self._act(account, "unlock", note)

    def request_unlock(self, account: str, note: str) -> dict[str, Any]:
        """The customer asked for an analyst's unlock: it appears in the console's list of
        accounts waiting for an unlock, marked as requested."""
        return self._act(account, "request_unlock", note)

    def actions(self, account: str) -> list[dict[str, Any]]:
        """The account's actions at the guard, newest first (needs the ``read`` permission)."""
        return self._get(_actions_path(account))

    def instructions(self, after: int = 0, limit: int = 500) -> list[dict[str, Any]]:
        """The guard's feed of instructions after ``after`` (a ``seq``), oldest first."""
        return self._get(f"/v1/instructions?after={after}&limit={limit}")

    def _get(self, path: str) -> list[dict[str, Any]]:
        try:
            answer = self._http.get(path)
        except httpx.HTTPError as exc:
            raise GuardError(f"guard at {self.base_url} unreachable: {exc}") from exc
        if answer.status_code >= 400:
            raise GuardError(f"guard answered {answer.status_code}: {answer.text[:300]}")
        return answer.json()  # type: ignore[no-any-return]

    def _act(self, account: str, action: str, note: str) -> dict[str, Any]:
        body = json.dumps({"action": action, "note": note}).encode()
        return self._post(_actions_path(account), body, "application/json")

    def _post(self, path: str, body: bytes, content_type: str) -> dict[str, Any]:
        try:
            answer = self._http.post(path, content=body, headers={"content-type": content_type})
        except httpx.HTTPError as exc:
            raise GuardError(f"guard at {self.base_url} unreachable: {exc}") from exc
        if answer.status_code >= 400:
            raise GuardError(f"guard answered {answer.status_code} to {path}: {answer.text[:300]}")
        return answer.json()  # type: ignore[no-any-return]

    def close(self) -> None:
        self._http.close()
