"""The reference site on a real guard: an embedded BrokerGuard service (uvicorn, SQLite file),
the site's own SQLite file, a real SMTP server (aiosmtpd) and software passkeys verified by
py_webauthn. Starlette's TestClient drives the site; ``client=(ip, port)`` sets the address
the guard sees."""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

from servers import Inbox
from starlette.testclient import TestClient

from brokerguard.auth.testing import SoftAuthenticator
from brokerguard.frontdoor.app import create_site
from brokerguard.frontdoor.embedded import EmbeddedGuard
from brokerguard.frontdoor.guardclient import GuardClient
from brokerguard.frontdoor.site import Site, SiteConfig
from brokerguard.notify import Retry, SmtpChannel

ORIGIN = "http://localhost"
PASSWORD = "correct-horse-battery"
HOME_IP = "153.156.10.20"  # an address of a Japanese home ISP (OCN)
CODE = re.compile(r"(?:確認コード|Code): (\d{6})")


class SiteRig:
    def __init__(self, app: Any, guard: EmbeddedGuard, inbox: Inbox, tmp: Path) -> None:
        self.app = app
        self.guard = guard
        self.inbox = inbox
        self.tmp = tmp
        self.api = GuardClient(guard.url, guard.key)

    @property
    def site(self) -> Site:
        return self.app.state.site

    def client(self, ip: str = HOME_IP) -> TestClient:
        return TestClient(self.app, base_url=ORIGIN, client=(ip, 40000), follow_redirects=False)

    def customer(self, account: str, **kw: Any) -> None:
        self.site.add_customer(
            account, PASSWORD, name=f"Customer {account}", email=f"{account}@example.jp", **kw
        )

    # --- mail ------------------------------------------------------------------------------
    def mails(self, to: str) -> list[Any]:
        self.site.outbox.wait_idle(30)
        found = []
        for _sender, rcpts, raw in self.inbox.messages:
            if to in rcpts:
                found.append(message_from_bytes(raw, policy=policy.default))
        return found

    def wait_mail(self, to: str, subject_part: str, timeout: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for mail in self.mails(to):
                if subject_part in str(mail["subject"]):
                    return mail
            time.sleep(0.05)
        subjects = [str(m["subject"]) for m in self.mails(to)]
        raise AssertionError(f"no mail to {to} with {subject_part!r}; got {subjects}")

    def last_code(self, to: str) -> str:
        for mail in reversed(self.mails(to)):
            found = CODE.search(mail.get_content())
            if found:
                return found.group(1)
        raise AssertionError(f"no code mailed to {to}")


@contextmanager
def site_rig(
    tmp: Path, inbox: Inbox, smtp_port: int, guard: EmbeddedGuard, poll: float = 0.0
) -> Iterator[SiteRig]:
    """The site on ``guard``; it reads the guard's feed every ``poll`` seconds (0: only when a
    test calls ``site.follow_instructions()``)."""
    config = SiteConfig(
        origin=ORIGIN, rp_id="localhost", store_path=tmp / "site.db", instructions_poll=poll
    )
    channels = {
        "email": SmtpChannel("127.0.0.1", smtp_port, sender="notice@demo.example", timeout=5)
    }
    app = create_site(config, GuardClient(guard.url, guard.key), channels)
    app.state.site.outbox.retry = Retry(attempts=2, base=0.05, cap=0.1)
    with TestClient(app, base_url=ORIGIN):  # runs the lifespan: notifier, instruments
        rig = SiteRig(app, guard, inbox, tmp)
        try:
            yield rig
        finally:
            rig.api.close()


def csrf_of(html: str) -> str:
    found = re.search(r'data-csrf="([^"]+)"', html)
    assert found, "page has no CSRF token"
    return found.group(1)


def login(client: TestClient, account: str, password: str = PASSWORD) -> str:
    """Password log-in as a browser does it: the form's page first (it gives a new browser its
    device cookie), then the form; returns where the site sent the browser."""
    assert client.get("/login").status_code == 200
    answer = client.post("/login", data={"account": account, "password": password})
    assert answer.status_code == 303, answer.text
    return answer.headers["location"]


def post_json(client: TestClient, path: str, body: Any, csrf: str = "") -> Any:
    return client.post(path, json=body, headers={"x-csrf-token": csrf} if csrf else {})


def stepup_with_code(rig: SiteRig, client: TestClient, where: str, email: str) -> str:
    """Answer an open step-up with the code mailed to ``email``; returns the next location."""
    page = client.get(where)
    assert page.status_code == 200, page.text
    hidden = re.search(r'name="stepup" value="([^"]*)"', page.text).group(1)
    csrf = re.search(r'name="csrf_token" value="([^"]*)"', page.text).group(1)
    sent = client.post(
        where + "/send", data={"factor": "oob", "csrf_token": csrf, "stepup": hidden}
    )
    assert sent.status_code == 303
    code = rig.last_code(email)
    answer = client.post(
        where + "/answer",
        data={"factor": "oob", "code": code, "csrf_token": csrf, "stepup": hidden},
    )
    assert answer.status_code == 303
    return answer.headers["location"]


def enrol_passkey(rig: SiteRig, client: TestClient, account: str, auth: SoftAuthenticator) -> str:
    """Add a passkey from the security page (stepped up by a mailed code first)."""
    csrf = csrf_of(client.get("/settings").text)
    begun = client.post("/settings/passkeys/begin", data={"csrf_token": csrf})
    assert begun.status_code == 303
    where = begun.headers["location"]
    if where.startswith("/stepup/"):
        assert "パスキーの登録" in client.get(where).text  # the operation, in words
        where = stepup_with_code(rig, client, where, f"{account}@example.jp")
    assert where.startswith("/settings?add=1"), where
    options = post_json(client, "/settings/passkeys/options", {}, csrf)
    assert options.status_code == 200, options.text
    created = auth.create(options.json(), ORIGIN)
    done = post_json(client, "/settings/passkeys", {"name": "My phone", "response": created}, csrf)
    assert done.status_code == 200, done.text
    return csrf


def passkey_login(client: TestClient, auth: SoftAuthenticator, origin: str = ORIGIN) -> Any:
    options = post_json(client, "/login/passkey/options", {})
    assert options.status_code == 200
    return post_json(client, "/login/passkey", auth.get(options.json(), origin))


def canary_body(origin: str) -> bytes:
    return json.dumps({"o": base64.b64encode(origin.encode()).decode()}).encode()
