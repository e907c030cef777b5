"""The service's commands: ``serve``, ``keys``, ``users``, ``audit`` and ``records``, mounted on
``brokerguard``.

Thin commands over the library, like the rest of the CLI. Heavy imports (FastAPI, SQLAlchemy,
uvicorn) happen inside the commands, so ``brokerguard simulate`` does not pay for them. Every
command that takes ``--database`` also reads ``BROKERGUARD_DATABASE``; the default is the
embedded SQLite file ``brokerguard.db`` in the working directory. User errors exit with status 2
and a message; ``audit verify`` exits 1 when the chain is broken, ``records load-spill`` when the
database goes away during the load.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from brokerguard.cluster.cli import EpochOpt
from brokerguard.redact import shown_url

__all__ = ["audit_app", "keys_app", "mount", "records_app", "serve", "users_app"]

console = Console(stderr=True)
DEFAULT_DATABASE = "sqlite:///brokerguard.db"

DatabaseOpt = Annotated[
    str,
    typer.Option(
        "--database",
        envvar="BROKERGUARD_DATABASE",
        help="Database URL: sqlite:///PATH (default ./brokerguard.db) or postgresql://...",
    ),
]

keys_app = typer.Typer(help="API keys for the broker's systems (stored hashed, shown once).")
users_app = typer.Typer(help="Console users (analyst, supervisor, admin).")
audit_app = typer.Typer(help="The hash-chained audit log.")
records_app = typer.Typer(
    help="The service's recorded events, decisions and fraud cases; spill files loaded back."
)


def _fail(message: str, code: int = 2) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}", soft_wrap=True, highlight=False)
    return typer.Exit(code=code)


def _engine(database: str):  # type: ignore[no-untyped-def]
    """An engine on ``database`` with the schema brought up to date."""
    from brokerguard.service.db import DatabaseError, make_engine, migrate

    try:
        engine = make_engine(database)
        migrate(engine)
    except DatabaseError as exc:
        raise _fail(str(exc)) from None
    return engine


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    database: DatabaseOpt = DEFAULT_DATABASE,
    policy: Annotated[
        Path | None, typer.Option(help="Policy TOML file (default: the last one set, or shipped).")
    ] = None,
    state: Annotated[
        Path | None,
        typer.Option(help="Keep the engine's state in this SQLite file (flushed every second)."),
    ] = None,
    access_log: Annotated[bool, typer.Option(help="Log every request.")] = False,
    nats_url: Annotated[
        str | None,
        typer.Option(
            "--nats",
            envvar="BROKERGUARD_NATS",
            help="Publish every event taken, with the decisions, to this NATS JetStream.",
        ),
    ] = None,
    stream: Annotated[
        str, typer.Option(envvar="BROKERGUARD_STREAM", help="JetStream stream name (--nats).")
    ] = "BG_EVENTS",
    subject: Annotated[
        str,
        typer.Option(
            envvar="BROKERGUARD_SUBJECT", help="Subject prefix (<prefix>.<partition>; --nats)."
        ),
    ] = "bg.events",
    partitions: Annotated[
        int,
        typer.Option(
            min=1, envvar="BROKERGUARD_PARTITIONS", help="Partitions (by account) of the stream."
        ),
    ] = 16,
    outbox: Annotated[
        int,
        typer.Option(
            min=1,
            envvar="BROKERGUARD_OUTBOX",
            help="Messages held for NATS while it is unreachable; more are dropped and counted.",
        ),
    ] = 100_000,
    epoch_seconds: EpochOpt = 60.0,  # with --nats, as ingest puts them
    blocklist: Annotated[
        Path | None,
        typer.Option(
            envvar="BROKERGUARD_BLOCKLIST",
            help="Phishing block-list file (`phish blocklist --out`), instead of the policy's: "
            "reloaded when it changes; a broken version is logged and the old list kept.",
        ),
    ] = None,
    blocklist_poll: Annotated[
        float, typer.Option(min=0.1, help="Seconds between checks of the --blocklist file.")
    ] = 5.0,
    max_backlog: Annotated[
        int,
        typer.Option(
            min=1,
            envvar="BROKERGUARD_MAX_BACKLOG",
            help="Records that may wait in memory while the database is away; at this many, "
            "decisions are refused (503 recorder_full) until it is back. None is dropped.",
        ),
    ] = 200_000,
    spill_dir: Annotated[
        Path | None,
        typer.Option(
            envvar="BROKERGUARD_SPILL_DIR",
            help="Directory for spill files: records a stop could not write (the database "
            "away), for `brokerguard records load-spill`. Default: beside the SQLite file, "
            "else the current directory.",
        ),
    ] = None,
    statement_timeout: Annotated[
        float,
        typer.Option(
            min=0,
            envvar="BROKERGUARD_STATEMENT_TIMEOUT",
            help="PostgreSQL: seconds a statement may run (a lock wait) before it is "
            "cancelled: the record writer's (reported in /healthz and tried again) and the "
            "reads' and analysts' actions' (503 statement_timeout); 0: no limit.",
        ),
    ] = 30.0,
    report_timeout: Annotated[
        float,
        typer.Option(
            min=0,
            envvar="BROKERGUARD_REPORT_TIMEOUT",
            help="PostgreSQL: seconds the report tables' reads (monthly, compensation) may run "
            "before they are cancelled; they scan the records; 0: no limit.",
        ),
    ] = 600.0,
    secure_cookies: Annotated[
        bool,
        typer.Option(
            envvar="BROKERGUARD_SECURE_COOKIES",
            help="Mark the console's session cookie Secure: give it when browsers reach the "
            "console over HTTPS (a TLS proxy in front), so the cookie never goes over plain HTTP.",
        ),
    ] = False,
    forwarded_allow_ips: Annotated[
        str | None,
        typer.Option(
            envvar="FORWARDED_ALLOW_IPS",
            help="Reverse proxies whose X-Forwarded-For names the client (comma-separated "
            "addresses or networks; default 127.0.0.1,::1). The console's log-in throttle and "
            "audit count that address: behind a proxy not listed, every client is the proxy.",
        ),
    ] = None,
) -> None:
    """Run the decision API (one process: the engine's state is in its memory).

    With ``--blocklist FILE`` sign-in referrers are checked against that file (not the
    policy's ``detectors.login.blocklist``); the file is checked every ``--blocklist-poll``
    seconds and after each approval in the console's block-list review, and a new version is
    swapped in only when every line reads (``/healthz`` says how many entries and since when).

    With ``--nats`` it also publishes what it takes and decides to the cluster's stream, as
    ``brokerguard ingest`` would (README, "Scale-out"); NATS being down never fails a decision.
    """
    import uvicorn

    from brokerguard.engine import PolicyError
    from brokerguard.phishing._blocklist import BlocklistError
    from brokerguard.service.app import create_app
    from brokerguard.service.db import DatabaseError
    from brokerguard.service.runtime import Settings
    from brokerguard.service.spill import SpillError
    from brokerguard.stores.sqlite import StateFileError

    settings = Settings(
        nats_url=nats_url or None,
        nats_stream=stream,
        nats_subject=subject,
        nats_partitions=partitions,
        outbox=outbox,
        epoch_seconds=epoch_seconds,
        blocklist_path=blocklist,
        blocklist_poll_seconds=blocklist_poll,
        max_backlog=max_backlog,
        spill_dir=spill_dir,
        statement_timeout=statement_timeout,
        report_timeout=report_timeout,
        secure_cookies=secure_cookies,
        warm_reports=True,
    )
    try:
        app = create_app(database, policy, state, settings=settings)
    except (DatabaseError, PolicyError, StateFileError, BlocklistError, SpillError) as exc:
        raise _fail(str(exc)) from None
    published = f", publishing to {shown_url(nats_url)} {stream}" if nats_url else ""
    watch = app.state.service.blocklist
    listed = f", block-list {watch.path}: {watch.status()['entries']} entries" if watch else ""
    console.print(
        f"BrokerGuard on http://{host}:{port}  (database {shown_url(database)}{published}{listed})",
        highlight=False,
    )
    waiting = app.state.service.spills_at_start
    if waiting:
        console.print(
            f"[red]{len(waiting)} spill files wait in {app.state.service.spill_dir}:[/red] records"
            " an earlier run could not write, not in the database until loaded with"
            " `brokerguard records load-spill FILE`",
            highlight=False,
            soft_wrap=True,
        )
    uvicorn.run(
        app,
        host=host,
        port=port,
        workers=1,
        access_log=access_log,
        log_level="info",
        timeout_graceful_shutdown=10,
        proxy_headers=True,
        forwarded_allow_ips=forwarded_allow_ips,
    )


@keys_app.command("create")
def keys_create(
    scope: Annotated[
        list[str],
        typer.Option("--scope", help="decide, ingest, read or admin (repeat, or comma-separate)."),
    ],
    name: Annotated[str, typer.Option(help="What the key is for.")] = "",
    database: DatabaseOpt = DEFAULT_DATABASE,
) -> None:
    """Create an API key and print it once (only its hash is stored)."""
    from brokerguard.service import audit
    from brokerguard.service.db import write_transaction
    from brokerguard.service.keys import create_key, parse_scopes

    try:
        scopes = parse_scopes(scope)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    engine = _engine(database)
    with write_transaction(engine) as conn:
        info, key = create_key(conn, scopes, name=name, created_by="cli")
        detail = {"scopes": sorted(info.scopes), "name": name}
        audit.append(conn, [audit.AuditEntry("cli", "key.create", info.id, detail)])
    engine.dispose()
    console.print(
        f"key {info.id} ({', '.join(sorted(info.scopes))}) created; it is shown only now. "
        "Send it as `Authorization: Bearer KEY`."
    )
    typer.echo(key)


@keys_app.command("list")
def keys_list(database: DatabaseOpt = DEFAULT_DATABASE) -> None:
    """List keys (ids, scopes, when made and revoked), never the keys themselves."""
    from brokerguard.service.keys import list_keys

    engine = _engine(database)
    with engine.connect() as conn:
        for row in list_keys(conn):
            revoked = f" revoked {row['revoked_at']:%Y-%m-%d %H:%M}" if row["revoked_at"] else ""
            typer.echo(
                f"{row['id']}\t{row['scopes']}\t{row['created_at']:%Y-%m-%d %H:%M}"
                f"\t{row['name']}{revoked}"
            )
    engine.dispose()


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (bgk_…).")],
    database: DatabaseOpt = DEFAULT_DATABASE,
) -> None:
    """Revoke a key (a running server stops accepting it within 30 seconds)."""
    from brokerguard.service import audit
    from brokerguard.service.db import write_transaction
    from brokerguard.service.keys import revoke_key

    engine = _engine(database)
    with write_transaction(engine) as conn:
        done = revoke_key(conn, key_id)
        if done:
            audit.append(conn, [audit.AuditEntry("cli", "key.revoke", key_id, {})])
    engine.dispose()
    if not done:
        raise _fail(f"no active key {key_id!r}")
    console.print(f"key {key_id} revoked")


@users_app.command("create")
def users_create(
    username: Annotated[str, typer.Argument(help="The login name.")],
    role: Annotated[str, typer.Option(help="analyst, supervisor or admin.")] = "analyst",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
    database: DatabaseOpt = DEFAULT_DATABASE,
) -> None:
    """Create a console user; the password is asked for (or read from stdin) and argon2-hashed."""
    from brokerguard.service import audit
    from brokerguard.service.db import write_transaction
    from brokerguard.service.users import ROLES, UserError, create_user

    if role not in ROLES:
        raise _fail(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    engine = _engine(database)
    try:
        with write_transaction(engine) as conn:
            user = create_user(conn, username, password, role)
            audit.append(conn, [audit.AuditEntry("cli", "user.create", username, {"role": role})])
    except UserError as exc:
        raise _fail(str(exc)) from None
    finally:
        engine.dispose()
    console.print(f"user {user.username} ({user.role}) created")


@audit_app.command("verify")
def audit_verify(
    database: DatabaseOpt = DEFAULT_DATABASE,
    head: Annotated[
        str | None,
        typer.Option(help="SEQ:HASH printed by an earlier verify: check it is still there."),
    ] = None,
) -> None:
    """Recompute the audit chain; exit 1 naming the first entry that was removed or altered."""
    from brokerguard.service import audit

    anchor = None
    if head is not None:
        seq_text, _, digest = head.partition(":")
        if not (seq_text.isascii() and seq_text.isdigit()) or len(digest) != 64:
            raise _fail("--head is SEQ:HASH as printed by audit verify")
        anchor = (int(seq_text), digest)
    engine = _engine(database)
    try:
        with engine.connect() as conn:
            report = audit.verify(conn)
            found = audit.hash_at(conn, anchor[0]) if anchor is not None else None
    finally:
        engine.dispose()
    if report.problem is not None:
        console.print(
            f"[red]audit log broken at entry {report.problem.seq}:[/red] {report.problem.problem} "
            f"({report.entries} entries verified before it)",
            highlight=False,
        )
        raise typer.Exit(code=1)
    if anchor is not None and found != anchor[1]:
        what = "is missing" if found is None else "has another hash"
        console.print(
            f"[red]audit log broken at entry {anchor[0]}:[/red] the recorded head {what}",
            highlight=False,
        )
        raise typer.Exit(code=1)
    console.print(f"audit log intact: {report.entries} entries")
    typer.echo(f"head {report.head_seq}:{report.head_hash}")


@records_app.command("export")
def records_export(
    out: Annotated[Path, typer.Argument(help="Directory to write the run into.")],
    database: DatabaseOpt = DEFAULT_DATABASE,
) -> None:
    """Write the records as a run directory for `brokerguard report`: events.ndjson,
    decisions.ndjson, and cases.ndjson (the cases closed as fraud, as report labels)."""
    from brokerguard.cluster.failure import failure_message
    from brokerguard.service.exports import CASES, export_run

    engine = _engine(database)
    try:
        with engine.connect() as conn:
            export_run(conn, out)
    except OSError as exc:  # OUT a file, not writable, a full disk: named, not a traceback
        if exc.filename is None:
            exc = OSError(exc.errno, exc.strerror or str(exc), str(out))
        raise _fail(failure_message(exc)) from None
    finally:
        engine.dispose()
    console.print(
        f"records written to {out}; e.g. `brokerguard report monthly {out} --labels {out / CASES}`",
        highlight=False,
    )


@records_app.command("load-spill")
def records_load_spill(
    file: Annotated[Path, typer.Argument(help="A spill file (brokerguard-spill-….ndjson).")],
    database: DatabaseOpt = DEFAULT_DATABASE,
    any_database: Annotated[
        bool,
        typer.Option(
            "--any-database",
            help="Load it even though its header names another database than --database.",
        ),
    ] = False,
) -> None:
    """Write the records a stopping service saved to a spill file (the database was away).

    They are written as the service writes them: audit entries chained after the head. Each
    transaction records how far the file is loaded, so an interrupted load goes on where it
    stopped and a second load writes nothing. A file loaded whole is renamed FILE.loaded.
    Exits 2 for a file that cannot be read (not one, an unknown version, changed or cut
    short), 1 if the database goes away meanwhile."""
    from brokerguard.service import spill

    try:
        read = spill.read(file)
    except spill.SpillError as exc:
        raise _fail(str(exc)) from None
    meant = read.header.database
    if not any_database and not spill.same_database(meant, database):
        raise _fail(
            f"{file}: its records are for {meant}, not {spill.shown_database(database)};"
            " give that database with --database, or pass --any-database to load them here"
        )
    engine = _engine(database)
    try:
        report = spill.load(engine, read)
    except spill.LoadInterrupted as exc:
        raise _fail(str(exc), code=1) from None
    except spill.SpillError as exc:
        raise _fail(str(exc)) from None
    finally:
        engine.dispose()
    if report.already:
        console.print(f"{file}: already loaded, nothing written", highlight=False, soft_wrap=True)
    else:
        rejected = "".join(f"\n  line {line}: {problem}" for line, problem in report.rejected)
        console.print(
            f"{file}: {report.written} records written, {report.skipped} already stored,"
            f" {len(report.rejected)} refused by the database (they stay in the file){rejected}",
            highlight=False,
            soft_wrap=True,
        )
    if not file.name.endswith(spill.LOADED):
        done = spill.loaded_name(file)
        try:
            file.rename(done)
        except OSError as exc:
            console.print(
                f"[yellow]warning:[/yellow] {file} is loaded but could not be renamed to"
                f" {done.name} ({exc.strerror}); loading it again writes nothing",
                highlight=False,
                soft_wrap=True,
            )
        else:
            console.print(f"renamed to {done}", highlight=False, soft_wrap=True)


def mount(app: typer.Typer) -> None:
    """Add the service's commands to the ``brokerguard`` command."""
    app.command("serve")(serve)
    app.add_typer(keys_app, name="keys")
    app.add_typer(users_app, name="users")
    app.add_typer(audit_app, name="audit")
    app.add_typer(records_app, name="records")
