"""``brokerguard phish blocklist`` and ``phish review``: findings into the block-list, through
an analyst where the learned model alone decided.

The queue lives in the service's database (``--database``, ``BROKERGUARD_DATABASE``, default
``./brokerguard.db``), so the console's block-list page shows the same rows. Every change is
audited with who made it (``cli:<name>``; ``--by`` or the login name) and when.
"""

from __future__ import annotations

import getpass
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from brokerguard.phishing.cli import THRESHOLD, BrandsOpt, _fail, _findings, _registry, err

if TYPE_CHECKING:
    import sqlalchemy as sa

__all__ = ["blocklist", "review_app"]

DEFAULT_DATABASE = "sqlite:///brokerguard.db"  # the service's default (checked by a test)

DatabaseOpt = Annotated[
    str,
    typer.Option(
        "--database",
        envvar="BROKERGUARD_DATABASE",
        help="The service's database, which holds the review queue (sqlite:///PATH or "
        "postgresql://...).",
    ),
]
ByOpt = Annotated[
    str | None, typer.Option("--by", help="Who decides (recorded; default: your login name).")
]

review_app = typer.Typer(
    help="Findings only the learned model called phishing wait here for an analyst: "
    "list them, approve (into the block-list) or reject (kept out, never queued again).",
    no_args_is_help=True,
    add_completion=False,
)


def _actor(by: str | None) -> str:
    name = (by or "").strip() or getpass.getuser()
    return f"cli:{name}"


def _engine(database: str) -> sa.Engine:
    from brokerguard.service.db import DatabaseError, make_engine, migrate

    try:
        engine = make_engine(database)
        migrate(engine)
    except DatabaseError as exc:
        raise _fail(str(exc)) from None
    return engine


def blocklist(
    input: Annotated[
        str, typer.Option("--input", "-i", help="URLs or `phish score --json` lines.")
    ],
    out_file: Annotated[Path, typer.Option("--out", "-o", help="Block-list file (merged).")],
    database: DatabaseOpt = DEFAULT_DATABASE,
    threshold: Annotated[
        float, typer.Option(help="The threshold the findings were scored with.")
    ] = THRESHOLD,
    by: ByOpt = None,
    brands: BrandsOpt = None,
) -> None:
    """Add the rules' phishing hosts to the block-list; queue the model-only ones for review.

    A finding whose rule evidence alone reaches the threshold goes straight into --out. One
    that is phishing only with the learned model's `learned_pattern` reason goes to the review
    queue (`phish review`, or the console's block-list page) and enters the list when an
    analyst approves it. Hosts an analyst rejected are left out. Plain URL lines are scored
    with the rules alone; give `phish score --json` output to have the model's findings
    reviewed. Prints how many went where.
    """
    from brokerguard.phishing._blocklist import BlocklistError
    from brokerguard.phishing._review import split_findings
    from brokerguard.service.blocklist_review import enqueue
    from brokerguard.service.db import write_transaction

    reg = _registry(brands)
    split = split_findings(_findings(input, reg), threshold)
    engine = _engine(database)
    try:
        with write_transaction(engine) as conn:
            result = enqueue(conn, split, out_file, _actor(by))
    except BlocklistError as exc:
        raise _fail(str(exc)) from None
    except OSError as exc:
        raise _fail(f"{out_file}: cannot write: {exc.strerror}") from None
    finally:
        engine.dispose()
    for host in result.rejected:
        err.print(f"left out (rejected by an analyst): {host}", highlight=False)
    err.print(
        f"{out_file}: {len(result.listed)} rule finding(s) listed, {result.entries} entries; "
        f"review queue: {len(result.queued)} queued, {len(result.waiting)} already waiting, "
        f"{len(result.already_listed)} already listed, {len(result.rejected)} rejected earlier "
        f"(`brokerguard phish review list`)",
        highlight=False,
    )


@review_app.command("list")
def review_list(
    status: Annotated[str, typer.Option(help="pending, approved, rejected or all.")] = "pending",
    json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    database: DatabaseOpt = DEFAULT_DATABASE,
) -> None:
    """The queued hosts (newest first): host, score, brand, status, who decided, the URL."""
    import msgspec

    from brokerguard.service.blocklist_review import STATUSES, list_entries

    if status not in (*STATUSES, "all"):
        raise _fail(f"--status: {status!r} is not one of {', '.join(STATUSES)}, all")
    engine = _engine(database)
    try:
        with engine.connect() as conn:
            rows = list_entries(conn, None if status == "all" else status, limit=10_000)
    finally:
        engine.dispose()
    for row in rows:
        if json:
            sys.stdout.write(msgspec.json.encode(row).decode("utf-8") + "\n")
            continue
        who = f"{row['decided_by']} {row['decided_at']:%Y-%m-%d %H:%M}" if row["decided_by"] else ""
        sys.stdout.write(
            f"{row['host']}\t{row['score']:.2f}\t{row['brand'] or '-'}\t{row['status']}\t"
            f"{who}\t{row['url']}\t{row['note']}\n"
        )
    err.print(f"{len(rows)} {status} host(s)", highlight=False)


def _decide(
    host: str, approve: bool, note: str, by: str | None, out: Path | None, database: str
) -> None:
    from brokerguard.phishing._blocklist import BlocklistError
    from brokerguard.service.blocklist_review import decide
    from brokerguard.service.db import write_transaction
    from brokerguard.service.errors import ServiceError

    engine = _engine(database)
    try:
        with write_transaction(engine) as conn:
            row = decide(conn, _actor(by), host, approve, note, out)
    except (ServiceError, BlocklistError) as exc:
        raise _fail(str(exc)) from None
    except OSError as exc:
        raise _fail(f"cannot write the block-list: {exc.strerror}") from None
    finally:
        engine.dispose()
    if approve:
        err.print(f"{row['host']} approved and written to {out or row['blocklist']}")
    else:
        err.print(f"{row['host']} rejected: kept out of the block-list, never queued again")


NoteOpt = Annotated[str, typer.Option("--note", help="Why (recorded with the decision).")]
HostArg = Annotated[str, typer.Argument(help="The queued host name.")]


@review_app.command("approve")
def review_approve(
    host: HostArg,
    note: NoteOpt = "",
    by: ByOpt = None,
    out_file: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Block-list file (default: the one it was queued for)."),
    ] = None,
    database: DatabaseOpt = DEFAULT_DATABASE,
) -> None:
    """Approve a queued host: it is written to the block-list (a running `serve --blocklist`
    picks the change up within seconds)."""
    _decide(host, True, note, by, out_file, database)


@review_app.command("reject")
def review_reject(
    host: HostArg,
    note: NoteOpt = "",
    by: ByOpt = None,
    database: DatabaseOpt = DEFAULT_DATABASE,
) -> None:
    """Reject a queued host: it stays out of the block-list and is never queued again."""
    _decide(host, False, note, by, None, database)
