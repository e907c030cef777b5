"""``brokerguard keys`` and ``brokerguard users``: keys printed once, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import audit
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from brokerguard.cli import app
from brokerguard.service.app import create_app

runner = CliRunner()


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


def test_keys_create_prints_a_working_key_once(url: str) -> None:
    result = runner.invoke(
        app, ["keys", "create", "--scope", "read", "--name", "soc", "--database", url]
    )
    assert result.exit_code == 0, result.output
    key = result.stdout.strip()
    assert key.startswith("bgk_") and len(key) > 40
    listed = runner.invoke(app, ["keys", "list", "--database", url])
    assert listed.exit_code == 0 and key.split("_")[1] in listed.stdout
    assert key.split("_", 2)[2] not in listed.stdout  # never shown again
    with TestClient(create_app(url)) as client:
        assert (
            client.get("/v1/alerts", headers={"Authorization": f"Bearer {key}"}).status_code == 200
        )
    key_id = "_".join(key.split("_")[:2])
    assert runner.invoke(app, ["keys", "revoke", key_id, "--database", url]).exit_code == 0
    assert runner.invoke(app, ["keys", "revoke", key_id, "--database", url]).exit_code == 2
    with TestClient(create_app(url)) as client:
        assert (
            client.get("/v1/alerts", headers={"Authorization": f"Bearer {key}"}).status_code == 401
        )


def test_keys_create_refuses_unknown_scopes(url: str) -> None:
    result = runner.invoke(app, ["keys", "create", "--scope", "read,root", "--database", url])
    assert result.exit_code == 2 and "unknown scope 'root'" in result.output


def test_users_create(url: str) -> None:
    ok = runner.invoke(
        app,
        ["users", "create", "alice", "--role", "supervisor", "--password-stdin", "--database", url],
        input="a long enough password\n",
    )
    assert ok.exit_code == 0, ok.output
    short = runner.invoke(
        app, ["users", "create", "bob", "--password-stdin", "--database", url], input="short\n"
    )
    assert short.exit_code == 2 and "at least 12" in short.output
    taken = runner.invoke(
        app,
        ["users", "create", "alice", "--password-stdin", "--database", url],
        input="a long enough password\n",
    )
    assert taken.exit_code == 2 and "taken" in taken.output
    role = runner.invoke(app, ["users", "create", "carol", "--role", "root", "--database", url])
    assert role.exit_code == 2 and "unknown role" in role.output
    with TestClient(create_app(url)) as client:
        login = client.post(
            "/console/login", json={"username": "alice", "password": "a long enough password"}
        )
        assert login.status_code == 200 and login.json()["role"] == "supervisor"


def test_a_bad_database_url_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["audit", "verify", "--database", f"sqlite:///{tmp_path}/no/such/dir.db"]
    )
    assert result.exit_code == 2 and "does not exist" in result.output
    result = runner.invoke(app, ["keys", "list", "--database", "mysql://x/y"])
    assert result.exit_code == 2 and "unsupported database" in result.output


def test_a_database_that_refuses_or_never_answers_is_one_line_in_bounded_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """PostgreSQL refusing the connection was two lines (libpq's hint below its message); an
    address that accepts the connection and never answers hung the command for ever (libpq
    has no connect timeout of its own)."""
    import time

    from servers import HangingServer

    from brokerguard.service import db

    result = runner.invoke(app, ["audit", "verify", "--database", "postgresql://127.0.0.1:1/x"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach the database" in lines[0], result.stderr
    assert "Connection refused" in lines[0]
    monkeypatch.setattr(db, "PG_CONNECT_TIMEOUT_S", 2)
    mute = HangingServer()
    try:
        url = f"postgresql://127.0.0.1:{mute.port}/x"
        t0 = time.monotonic()
        result = runner.invoke(app, ["keys", "list", "--database", url])
        assert time.monotonic() - t0 < 20
    finally:
        mute.close()
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "timeout" in lines[0], result.stderr


def test_serve_can_make_the_console_cookie_secure(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Behind HTTPS the console's session cookie must be Secure, or a browser sends it in clear
    to any plain-HTTP address of the same host. The service had the setting, but ``serve`` had
    no way to set it: the cookie was never Secure."""
    import uvicorn

    served: list = []
    monkeypatch.setattr(uvicorn, "run", lambda served_app, **_kw: served.append(served_app))
    made = runner.invoke(
        app,
        ["users", "create", "alice", "--password-stdin", "--database", url],
        input="a long enough password\n",
    )
    assert made.exit_code == 0, made.output
    for args, secure in (([], False), (["--secure-cookies"], True)):
        result = runner.invoke(app, ["serve", "--database", url, *args])
        assert result.exit_code == 0, result.output
        with TestClient(served[-1], base_url="https://guard.broker.example") as client:
            login = client.post(
                "/console/login", json={"username": "alice", "password": "a long enough password"}
            )
            assert login.status_code == 200, login.text
            cookie = login.headers["set-cookie"].lower()
            # Secure ones carry the __Host- prefix: no sibling host nor plain-HTTP answer can
            # set or overwrite them (cookie tossing a session of the criminal's).
            name = "__host-bg_session=" if secure else "bg_session="
            assert cookie.startswith(name) and ("; secure" in cookie) is secure
            assert "path=/" in cookie and "domain" not in cookie
            assert client.get("/v1/whoami").status_code == 200
            form = client.get("/console/login").headers["set-cookie"]
            assert form.startswith("__Host-bg_login=" if secure else "bg_login="), form
            chosen = client.get("/console/login?lang=en").headers.get_list("set-cookie")
            lang = next(c for c in chosen if "bg_lang=" in c)
            assert lang.startswith("__Host-bg_lang=en;" if secure else "bg_lang=en;"), chosen
            if secure:  # a bare bg_session, as a sibling host could set it, is not read
                token = client.cookies.get("__Host-bg_session")
                client.cookies.clear()
                client.cookies.set("bg_session", token)
                assert client.get("/v1/whoami").status_code == 401
                client.cookies.clear()
                client.cookies.set("__Host-bg_session", token)
                out = client.post(
                    "/console/logout", headers={"X-CSRF-Token": login.json()["csrf_token"]}
                )
                assert out.status_code == 204
                gone = out.headers["set-cookie"].lower()
                assert gone.startswith("__host-bg_session=") and "secure" in gone


def test_serve_takes_the_client_address_from_a_trusted_proxy_only(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Behind a load balancer on another host every console request came from the balancer:
    the log-in throttle's 50 failures per address then stopped every analyst at once, and the
    audit named the balancer. ``--forwarded-allow-ips`` trusts its X-Forwarded-For; another
    client's header is ignored (or anyone could pick the address the throttle counts)."""
    import uvicorn

    served: list = []
    monkeypatch.setattr(uvicorn, "run", lambda a, **kw: served.append((a, kw)))
    proxy, customer = "10.0.0.5", "198.51.100.7"
    for args, sender, seen in (
        (["--forwarded-allow-ips", "10.0.0.0/8"], proxy, customer),  # trusted: the header
        (["--forwarded-allow-ips", "10.0.0.0/8"], "203.0.113.9", "203.0.113.9"),  # not trusted
        ([], proxy, proxy),  # default: only a proxy on this host is trusted
    ):
        result = runner.invoke(app, ["serve", "--database", url, *args])
        assert result.exit_code == 0, result.output
        served_app, kw = served[-1]
        # the app as uvicorn serves it: its proxy-headers middleware around the service
        config = uvicorn.Config(
            served_app,
            proxy_headers=kw.get("proxy_headers", True),  # uvicorn's defaults where not given
            forwarded_allow_ips=kw.get("forwarded_allow_ips"),
        )
        config.load()
        with TestClient(config.loaded_app, client=(sender, 50000)) as client:
            refused = client.post(
                "/console/login",
                json={"username": "nobody", "password": "wrong password"},
                headers={"X-Forwarded-For": customer},
            )
        assert refused.status_code == 401, refused.text
        failures = [d for _a, action, _s, d in audit(url) if action == "console.login_failed"]
        assert json.loads(failures[-1])["client"] == seen


def test_records_export_into_a_file_is_one_line(url: str, tmp_path: Path) -> None:
    """``records export OUT`` with OUT a file was a traceback (``FileExistsError``)."""
    taken = tmp_path / "taken"
    taken.write_text("not a directory\n")
    result = runner.invoke(app, ["records", "export", str(taken), "--database", url])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    assert f"error: {taken}: File exists" in " ".join(result.stderr.split())
