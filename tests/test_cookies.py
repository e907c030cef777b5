"""The one cookie helper of the broker's site and the console (:mod:`brokerguard.cookies`).

The site and the console each had their own ``cookie_name`` and cookie setter of the same shape,
each reading its own app's setting; a change to one (the ``__Host-`` prefix, say) had to be made
twice. Both now set their cookies through one policy that each app states once.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from brokerguard.cookies import (
    CookiePolicy,
    cookie_name,
    drop_cookie,
    get_cookie,
    set_cookie,
)
from brokerguard.frontdoor.app import create_site
from brokerguard.frontdoor.guardclient import GuardClient
from brokerguard.frontdoor.site import SiteConfig
from brokerguard.service.app import create_app
from brokerguard.service.runtime import Settings


def _app(policy: CookiePolicy | None) -> Starlette:
    async def show(request: Request) -> Response:
        return PlainTextResponse(f"{cookie_name(request, 'c')}={get_cookie(request, 'c')}")

    async def put(request: Request) -> Response:
        response = PlainTextResponse("set")
        set_cookie(request, response, "c", "v", max_age=60)
        return response

    async def drop(request: Request) -> Response:
        response = PlainTextResponse("gone")
        drop_cookie(request, response, "c")
        return response

    app = Starlette(routes=[Route("/", show), Route("/set", put), Route("/drop", drop)])
    if policy is not None:
        app.state.cookies = policy
    return app


def _attributes(header: str) -> tuple[str, set[str]]:
    first, *rest = [part.strip() for part in header.split(";")]
    return first, {part.lower() for part in rest}


@pytest.mark.parametrize("samesite", ["lax", "strict"])
def test_over_http_the_names_stay_bare_and_the_cookie_is_not_secure(samesite: str) -> None:
    client = TestClient(_app(CookiePolicy(secure=False, samesite=samesite)))
    first, attributes = _attributes(client.get("/set").headers["set-cookie"])
    assert first == "c=v"
    assert attributes == {"httponly", "max-age=60", "path=/", f"samesite={samesite}"}
    assert client.get("/").text == "c=v"


def test_over_https_the_cookie_carries_the_host_prefix_and_a_bare_one_is_not_read() -> None:
    app = _app(CookiePolicy(secure=True, samesite="strict"))
    client = TestClient(app, base_url="https://host.example")
    first, attributes = _attributes(client.get("/set").headers["set-cookie"])
    assert first == "__Host-c=v"
    assert {"secure", "httponly", "path=/", "samesite=strict"} <= attributes
    assert not [a for a in attributes if a.startswith("domain")]
    assert client.get("/").text == "__Host-c=v"
    tossed = TestClient(app, base_url="https://host.example")
    tossed.cookies.set("c", "planted")  # what a sibling subdomain could set
    assert tossed.get("/").text == "__Host-c=None"
    gone, attributes = _attributes(client.get("/drop").headers["set-cookie"])
    assert gone.startswith("__Host-c=") and {"secure", "path=/", "max-age=0"} <= attributes


def test_bad_names_and_settings_are_refused_saying_what_is_wrong() -> None:
    policy = CookiePolicy(secure=True, samesite="lax")
    for bad in ("", "__Host-c", "a b", "c;d", "名前"):
        with pytest.raises(ValueError, match="letters, digits and '_' only"):
            policy.name(bad)
    with pytest.raises(ValueError, match="samesite: must be 'lax' or 'strict', not 'none'"):
        CookiePolicy(secure=True, samesite="none")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="secure: must be True or False"):
        CookiePolicy(secure="yes", samesite="lax")  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match=r"app\.state\.cookies"):
        TestClient(_app(None)).get("/")


@pytest.mark.parametrize("secure", [False, True])
def test_the_site_and_the_console_state_their_policies(tmp_path: Path, secure: bool) -> None:
    """The site's cookies are ``lax`` (a customer arriving from a link keeps the session), the
    console's ``strict``; both Secure with the prefix exactly when served over HTTPS."""
    site = create_site(
        SiteConfig(
            origin="https://www.broker.example" if secure else "http://localhost",
            rp_id="www.broker.example" if secure else "localhost",
            store_path=tmp_path / "site.db",
            secure_cookies=secure,
        ),
        GuardClient("http://127.0.0.1:9", "bgk_test"),
    )
    assert site.state.cookies == CookiePolicy(secure=secure, samesite="lax")
    site.state.site.close()
    service = create_app(
        f"sqlite:///{tmp_path / 'bg.db'}", settings=Settings(secure_cookies=secure)
    )
    assert service.state.cookies == CookiePolicy(secure=secure, samesite="strict")
