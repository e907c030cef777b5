"""``brokerguard demo-site``: the reference broker front door, with a guard of its own if needed."""

from __future__ import annotations

import shutil
import signal
import tempfile
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated
from urllib.parse import urlsplit

import typer
from rich.console import Console

__all__ = ["demo_site", "mount"]

console = Console()
DEMO_ACCOUNT = "demo01"
DEMO_PASSWORD = "demo-password-1"
SECOND_ACCOUNT = "demo02"


def _exit_on_sigterm(signum: int, _frame: FrameType | None) -> None:
    """SIGTERM (``kill``, ``docker stop``, systemd) ends the command like Ctrl-C does: through
    its ``finally``, which stops the embedded guard and removes its temporary folder. Python's
    default would end the process on the spot and leave the folder (a guard database with API
    keys and every decision of the demo) behind in the temporary directory. Exit code 143, as a
    shell reports a process ended by SIGTERM."""
    raise SystemExit(128 + signum)


def demo_site(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8100,
    origin: Annotated[
        str | None,
        typer.Option(help="The site's origin as browsers see it (default http://localhost:PORT)."),
    ] = None,
    guard_url: Annotated[
        str | None,
        typer.Option(help="BrokerGuard service URL; without it an embedded one is started."),
    ] = None,
    guard_key: Annotated[
        str | None,
        typer.Option(envvar="BROKERGUARD_KEY", help="API key (scopes decide, ingest, admin)."),
    ] = None,
    store: Annotated[Path, typer.Option(help="The site's own SQLite file.")] = Path("demo-site.db"),
    smtp_host: Annotated[str | None, typer.Option(help="SMTP relay for notices.")] = None,
    smtp_port: Annotated[int, typer.Option(help="SMTP port.")] = 25,
    mail_from: Annotated[str, typer.Option(help="Sender of notices.")] = "notice@demo.example",
    webhook_url: Annotated[
        str | None, typer.Option(help="SMS/push provider webhook for notices.")
    ] = None,
    webhook_secret: Annotated[
        str, typer.Option(envvar="BROKERGUARD_WEBHOOK_SECRET", help="Webhook signing secret.")
    ] = "",
    seed: Annotated[bool, typer.Option(help="Create the demo customer if missing.")] = True,
    customer_email: Annotated[
        str, typer.Option(help="The demo customer's e-mail address.")
    ] = "demo01@demo.example",
    unlock_per_address: Annotated[
        int,
        typer.Option(
            min=1,
            max=100_000,
            help="Unlock asks per hour from one client address, whatever ID (per ID: 10). "
            "Customers of a mobile carrier share its NAT addresses.",
        ),
    ] = 60,  # site.UNLOCK_PER_ADDRESS (not imported here: the CLI starts without it)
) -> None:
    """Run the reference broker site (log-in, portfolio, orders, security page) on a guard."""
    import uvicorn

    from brokerguard.frontdoor.app import create_site
    from brokerguard.frontdoor.embedded import EmbeddedGuard
    from brokerguard.frontdoor.guardclient import GuardClient
    from brokerguard.frontdoor.site import SiteConfig
    from brokerguard.frontdoor.terminal import TerminalChannel
    from brokerguard.notify import SmtpChannel, WebhookChannel

    origin = origin or f"http://localhost:{port}"
    rp_id = urlsplit(origin).hostname or "localhost"
    if guard_url is not None and not guard_key:
        raise typer.BadParameter("--guard-key (or BROKERGUARD_KEY) is needed with --guard-url")
    # uvicorn catches SIGTERM for its graceful shutdown, then raises it again with the handler
    # found here: this one, so that the folder goes whenever the signal comes.
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm) if main else None
    scratch: Path | None = None
    embedded = None
    try:
        if guard_url is None:
            scratch = Path(tempfile.mkdtemp(prefix="bg-demo-guard-"))
            embedded = EmbeddedGuard(scratch)
            embedded.start()
            guard_url, guard_key = embedded.url, embedded.key
            console.print(f"embedded BrokerGuard on {guard_url} (files in {embedded.directory})")
        channels = {}
        if smtp_host:
            channels["email"] = SmtpChannel(smtp_host, smtp_port, sender=mail_from)
        if webhook_url:
            channels["sms"] = WebhookChannel(webhook_url, webhook_secret.encode())
        if not channels:  # the codes of step-ups must reach the person trying the demo somehow
            channels["email"] = TerminalChannel()
            console.print("no --smtp-host: notices (and their codes) are printed here")
        # browsers reach the site over HTTPS: its session and device cookies then never go over
        # HTTP
        secure = urlsplit(origin).scheme == "https"
        config = SiteConfig(
            origin=origin,
            rp_id=rp_id,
            store_path=store,
            secure_cookies=secure,
            unlock_per_address=unlock_per_address,
        )
        app = create_site(config, GuardClient(guard_url, guard_key or ""), channels)
        site = app.state.site
        if seed and site.book.customer(DEMO_ACCOUNT) is None:
            site.add_customer(
                DEMO_ACCOUNT,
                DEMO_PASSWORD,
                name="Demo Taro",
                email=customer_email,
                positions={"7203": 300},
            )
        if seed and site.book.customer(SECOND_ACCOUNT) is None:  # a second one, no history
            user, _, domain = customer_email.partition("@")
            site.add_customer(
                SECOND_ACCOUNT,
                DEMO_PASSWORD,
                name="Demo Hanako",
                email=f"{user}+{SECOND_ACCOUNT}@{domain}",
                lang="en",
            )
        console.print(
            f"demo site on {origin}  (log in as {DEMO_ACCOUNT} or {SECOND_ACCOUNT} / "
            f"{DEMO_PASSWORD})"
        )
        uvicorn.run(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=5)
    finally:
        if main:  # a second SIGTERM must not cut the clean-up short
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            if embedded is not None:
                embedded.stop()
        finally:
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)
            if main:
                signal.signal(signal.SIGTERM, previous)


def mount(app: typer.Typer) -> None:
    app.command("demo-site")(demo_site)
