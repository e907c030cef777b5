"""``brokerguard ingest``, ``worker``, ``campaign-stage`` and ``status``: the scale-out commands.

Mounted on the ``brokerguard`` command by :func:`mount`. Settings come, in this order of
precedence, from the command line, the environment (``BROKERGUARD_NATS``, ``BROKERGUARD_REDIS``,
``BROKERGUARD_DATABASE``, ``BROKERGUARD_PREFIX``, ``BROKERGUARD_STREAM``,
``BROKERGUARD_PARTITIONS``, ...: ``BROKERGUARD_`` and the option's name), a TOML file
(``--config FILE`` or ``BROKERGUARD_CONFIG``: the options' names as keys, ``nats = "nats://..."``,
``ack_wait = 30``) and the defaults. User errors exit with status 2 and a message.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tomllib
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from brokerguard.files import write_text
from brokerguard.redact import shown_url

__all__ = ["campaign_stage", "ingest", "mount", "status", "worker"]

console = Console(stderr=True)

NatsOpt = Annotated[str, typer.Option("--nats", envvar="BROKERGUARD_NATS", help="NATS server URL.")]
RedisOpt = Annotated[
    str, typer.Option("--redis", envvar="BROKERGUARD_REDIS", help="Redis URL for the state.")
]
StreamOpt = Annotated[
    str, typer.Option("--stream", envvar="BROKERGUARD_STREAM", help="JetStream stream name.")
]
SubjectOpt = Annotated[
    str,
    typer.Option(
        "--subject", envvar="BROKERGUARD_SUBJECT", help="Subject prefix (<prefix>.<partition>)."
    ),
]
PrefixOpt = Annotated[
    str, typer.Option(envvar="BROKERGUARD_PREFIX", help="Key prefix of the state in Redis.")
]
DurableOpt = Annotated[
    str,
    typer.Option(
        envvar="BROKERGUARD_DURABLE", help="Durable consumer names: <durable>-<partition>."
    ),
]


PartitionsOpt = Annotated[
    int,
    typer.Option(
        min=1, envvar="BROKERGUARD_PARTITIONS", help="Partitions (by account) of the stream."
    ),
]


EpochOpt = Annotated[
    float,
    typer.Option(
        min=0.0,
        envvar="BROKERGUARD_EPOCH_SECONDS",
        help="Epoch markers every this many seconds of event time, for the campaign stage "
        "(0: none).",
    ),
]
StageShardsOpt = Annotated[
    int,
    typer.Option(
        min=1, envvar="BROKERGUARD_STAGE_SHARDS", help="Shards (by symbol) of the campaign stage."
    ),
]
FactsStreamOpt = Annotated[
    str,
    typer.Option(envvar="BROKERGUARD_FACTS_STREAM", help="JetStream stream of the facts."),
]
FactsSubjectOpt = Annotated[
    str,
    typer.Option(
        envvar="BROKERGUARD_FACTS_SUBJECT", help="Subject prefix of the facts (<prefix>.<shard>)."
    ),
]


StageDurableOpt = Annotated[
    str,
    typer.Option(
        envvar="BROKERGUARD_STAGE_DURABLE",
        help="Durable consumer names of the campaign stage: <stage-durable>-<shard>.",
    ),
]
StatementTimeoutOpt = Annotated[
    float,
    typer.Option(
        min=0,
        envvar="BROKERGUARD_STATEMENT_TIMEOUT",
        help="With --database (PostgreSQL): seconds a statement may run (a lock wait) before "
        "it is cancelled and the batch comes again; 0: no limit.",
    ),
]


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}", soft_wrap=True, highlight=False)
    return typer.Exit(code=2)


def _serve_metrics(metrics: Any, port: int | None) -> Any:
    """Serve ``metrics`` on ``port`` (None: no metrics); exit 2 when the port is taken."""
    if port is None:
        return None
    try:
        metrics.serve(port)
    except OSError as exc:
        raise _fail(f"cannot serve metrics on port {port}: {exc.strerror}") from None
    return metrics


def _run_connected(coro: Any, nats_url: str, redis_url: str) -> Any:
    """Run a cluster process's coroutine; a server that cannot be reached, runs without
    JetStream or does not answer, and any other ``OSError``, exits 2 with one line naming it
    (:func:`_failure`)."""
    from brokerguard.cluster.failure import is_failure

    try:
        return asyncio.run(coro)
    except Exception as exc:
        if is_failure(exc):
            raise _failure(exc, nats_url, redis_url) from None
        raise


def _failure(exc: BaseException, nats_url: str, redis_url: str | None = None) -> typer.Exit:
    """What ended a command, said as it is (:func:`~brokerguard.cluster.failure.failure_message`):
    "cannot reach NATS" only when no connection could be made; NATS's own errors later on as
    NATS's; any other ``OSError`` (a full disk under an output file, a missing directory) naming
    the file and the system's word. (Every ``OSError`` of a whole run was "cannot reach NATS".)"""
    from brokerguard.cluster.failure import failure_message

    return _fail(failure_message(exc, nats_url, redis_url))


KEYS = {"nats": "nats_url", "redis": "redis_url"}  # file key -> parameter name, where they differ


def _load_config(ctx: typer.Context, param: typer.CallbackParam, value: Path | None) -> Path | None:
    """Read the TOML file into the command's defaults (the command line and environment win)."""
    if value is None:
        return None
    try:
        data = tomllib.loads(value.read_text())
    except OSError as exc:
        raise _fail(f"{value}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise _fail(f"{value}: {exc}") from None
    data = data.get("cluster", data)  # the keys at the top, or under [cluster]
    names = {p.name for p in ctx.command.params if p.name != "config"}
    defaults: dict[str, Any] = {}
    for key, v in data.items():
        name = KEYS.get(key, key.replace("-", "_"))
        if name in names:
            defaults[name] = v
        elif name not in {p for c in _COMMANDS for p in c}:
            raise _fail(f"{value}: unknown key `{key}`")
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    return value


_COMMANDS: list[set[str]] = []  # every scale-out command's parameter names (one file for all)

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        envvar="BROKERGUARD_CONFIG",
        is_eager=True,
        callback=_load_config,
        help="TOML file of settings (keys: the options' names).",
    ),
]


def ingest(
    source: Annotated[str, typer.Argument(help="An events.ndjson file, or - for standard input.")],
    nats_url: NatsOpt = "nats://127.0.0.1:4222",
    stream: StreamOpt = "BG_EVENTS",
    subject: SubjectOpt = "bg.events",
    partitions: PartitionsOpt = 16,
    epoch_seconds: EpochOpt = 60.0,
    with_analyst: Annotated[
        bool,
        typer.Option(
            "--with-analyst",
            help="Also publish 'analyst' events (an export of the service's records has them).",
        ),
    ] = False,
    config: ConfigOpt = None,
) -> None:
    """Publish events to the JetStream stream, partitioned by account."""
    import nats

    from brokerguard.cluster.stream import PartitionMismatch
    from brokerguard.cluster.stream import ingest as publish
    from brokerguard.events import EventError

    if source == "-":
        lines = sys.stdin.buffer
    else:
        path = Path(source)
        if path.is_dir():
            path = path / "events.ndjson"
        if not path.is_file():
            raise _fail(f"{source}: no such events file")
        lines = open(path, "rb")  # noqa: SIM115 - closed below
    try:
        count = asyncio.run(
            publish(
                lines,
                nats_url,
                stream,
                subject,
                partitions,
                epoch_seconds=epoch_seconds,
                analyst=with_analyst,
            )
        )
    except EventError as exc:
        raise _fail(f"{source}: {exc}") from None
    except PartitionMismatch as exc:
        raise _fail(str(exc)) from None
    except (OSError, nats.errors.Error) as exc:
        raise _failure(exc, nats_url) from None
    finally:
        if lines is not sys.stdin.buffer:
            lines.close()
    console.print(f"published {count:,} events to {stream} ({partitions} partitions)")


def worker(
    nats_url: NatsOpt = "nats://127.0.0.1:4222",
    redis_url: RedisOpt = "redis://127.0.0.1:6379/0",
    prefix: PrefixOpt = "bg",
    stream: StreamOpt = "BG_EVENTS",
    subject: SubjectOpt = "bg.events",
    partitions: PartitionsOpt = 16,
    durable: DurableOpt = "bg-worker",
    batch: Annotated[
        int,
        typer.Option(
            min=1,
            envvar="BROKERGUARD_BATCH",
            help="Events fetched per batch (and at most unacknowledged per partition).",
        ),
    ] = 500,
    idle_exit: Annotated[
        float, typer.Option(help="Stop after this many seconds without events (0: never).")
    ] = 0.0,
    ack_wait: Annotated[
        float,
        typer.Option(
            envvar="BROKERGUARD_ACK_WAIT", help="Seconds before an unacked batch is redelivered."
        ),
    ] = 30.0,
    lease_ttl: Annotated[
        float,
        typer.Option(
            envvar="BROKERGUARD_LEASE_TTL",
            help="Seconds before a dead worker's partitions move to the others.",
        ),
    ] = 10.0,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            envvar="BROKERGUARD_METRICS_PORT", help="Serve Prometheus metrics on this port."
        ),
    ] = None,
    decisions: Annotated[
        Path | None, typer.Option(help="Append decisions here (JSON lines).")
    ] = None,
    campaigns: Annotated[
        Path | None, typer.Option(help="Append campaign lines here (JSON lines).")
    ] = None,
    instructions: Annotated[
        Path | None,
        typer.Option(
            help="Append the engine's instructions (orders to cancel, sessions to sign out) "
            "here (JSON lines, as `replay` writes them)."
        ),
    ] = None,
    database: Annotated[
        str | None,
        typer.Option(
            "--database",
            envvar="BROKERGUARD_DATABASE",
            help="Write decisions, alerts, campaigns and instructions to the service's tables "
            "(migrated first; the feed `GET /v1/instructions` reads them).",
        ),
    ] = None,
    statement_timeout: StatementTimeoutOpt = 30.0,
    policy: Annotated[
        Path | None,
        typer.Option(
            envvar="BROKERGUARD_POLICY",
            help="Policy TOML file every partition's engine runs (default: the shipped one).",
        ),
    ] = None,
    campaign_stage: Annotated[
        bool,
        typer.Option(
            "--campaign-stage",
            envvar="BROKERGUARD_CAMPAIGN_STAGE",
            help="Leave campaigns to `brokerguard campaign-stage`: send it facts, read "
            "its containment, wait for it at each epoch.",
        ),
    ] = False,
    stage_shards: StageShardsOpt = 1,
    facts_stream: FactsStreamOpt = "BG_FACTS",
    facts_subject: FactsSubjectOpt = "bg.facts",
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
    config: ConfigOpt = None,
    stats_file: Annotated[
        Path | None, typer.Option("--stats", hidden=True, help="Write the run's figures (bench).")
    ] = None,
) -> None:
    """Consume this worker's share of the partitions; ack after state and records are written."""

    from brokerguard.cluster.stream import PartitionMismatch
    from brokerguard.cluster.worker import run_worker
    from brokerguard.engine import PolicyError, load_policy
    from brokerguard.phishing._blocklist import BlocklistError
    from brokerguard.service.blocklist_watch import BlocklistWatch

    try:
        engine_policy = load_policy(policy) if policy is not None else None
        watch = BlocklistWatch(blocklist) if blocklist is not None else None
        if watch is not None:
            watch.load()
    except (PolicyError, BlocklistError) as exc:
        raise _fail(str(exc)) from None
    # the same name as `replay --policy` and `simulate --guard FILE` give the engine
    guard_name = f"brokerguard:{policy.stem}" if policy is not None else "brokerguard"
    from brokerguard.cluster.metrics import WorkerMetrics

    metrics = _serve_metrics(WorkerMetrics(), metrics_port) if metrics_port is not None else None
    try:
        stats = _run_connected(
            run_worker(
                nats_url,
                redis_url,
                prefix=prefix,
                stream=stream,
                subject=subject,
                partitions=partitions,
                durable=durable,
                batch=batch,
                lease_ttl=lease_ttl,
                idle_exit=idle_exit,
                ack_wait=ack_wait,
                decisions=decisions,
                campaigns=campaigns,
                instructions=instructions,
                database=database,
                metrics=metrics,
                policy=engine_policy,
                guard_name=guard_name,
                campaign_stage=campaign_stage,
                stage_shards=stage_shards,
                facts_stream=facts_stream,
                facts_subject=facts_subject,
                blocklist=watch,
                blocklist_poll=blocklist_poll,
                statement_timeout=statement_timeout,
            ),
            nats_url,
            redis_url,
        )
    except PartitionMismatch as exc:
        raise _fail(str(exc)) from None
    if stats_file is not None:
        import time

        figures = {**stats.as_dict(), "process_cpu": time.process_time()}
        write_text(stats_file, json.dumps(figures))
    console.print(
        f"worker: {stats.events:,} events, {stats.decisions:,} decisions, "
        f"{stats.skipped:,} redelivered events skipped, {stats.unreadable:,} unreadable "
        f"messages passed over, {stats.batches:,} batches, "
        f"partitions taken {stats.acquired}, handed over {stats.released}, lost {stats.lost}, "
        f"rebuilt {stats.rebuilt}"
    )


def campaign_stage(
    nats_url: NatsOpt = "nats://127.0.0.1:4222",
    redis_url: RedisOpt = "redis://127.0.0.1:6379/0",
    prefix: PrefixOpt = "bg",
    partitions: PartitionsOpt = 16,
    shard: Annotated[int, typer.Option(min=0, help="The shard this process runs.")] = 0,
    stage_shards: StageShardsOpt = 1,
    facts_stream: FactsStreamOpt = "BG_FACTS",
    facts_subject: FactsSubjectOpt = "bg.facts",
    stage_durable: StageDurableOpt = "bg-stage",
    idle_exit: Annotated[
        float, typer.Option(help="Stop after this many seconds without facts (0: never).")
    ] = 0.0,
    lease_ttl: Annotated[
        float,
        typer.Option(
            envvar="BROKERGUARD_LEASE_TTL",
            help="Seconds before a standby takes over the shard of a dead holder.",
        ),
    ] = 10.0,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            envvar="BROKERGUARD_STAGE_METRICS_PORT", help="Serve Prometheus metrics on this port."
        ),
    ] = None,
    campaigns: Annotated[
        Path | None, typer.Option(help="Append campaign lines here (JSON lines).")
    ] = None,
    database: Annotated[
        str | None,
        typer.Option(
            "--database",
            envvar="BROKERGUARD_DATABASE",
            help="Write campaigns to the service's tables (migrated first).",
        ),
    ] = None,
    statement_timeout: StatementTimeoutOpt = 30.0,
    policy: Annotated[
        Path | None,
        typer.Option(envvar="BROKERGUARD_POLICY", help="Policy TOML file (the workers' one)."),
    ] = None,
    config: ConfigOpt = None,
    stats_file: Annotated[
        Path | None, typer.Option("--stats", hidden=True, help="Write the run's figures (bench).")
    ] = None,
) -> None:
    """Run one shard of the campaign stage: campaigns over all partitions' facts."""

    from brokerguard.cluster.stage import run_campaign_stage
    from brokerguard.engine import PolicyError, load_policy

    if shard >= stage_shards:
        raise _fail(f"--shard {shard} is not below --stage-shards {stage_shards}")
    from brokerguard.cluster.metrics import StageMetrics

    metrics = _serve_metrics(StageMetrics(), metrics_port) if metrics_port is not None else None
    try:
        engine_policy = load_policy(policy) if policy is not None else None
    except PolicyError as exc:
        raise _fail(str(exc)) from None
    stats = _run_connected(
        run_campaign_stage(
            nats_url,
            redis_url,
            shard=shard,
            shards=stage_shards,
            partitions=partitions,
            prefix=prefix,
            facts_stream=facts_stream,
            facts_subject=facts_subject,
            durable=stage_durable,
            idle_exit=idle_exit,
            lease_ttl=lease_ttl,
            campaigns=campaigns,
            database=database,
            policy=engine_policy,
            metrics=metrics,
            statement_timeout=statement_timeout,
        ),
        nats_url,
        redis_url,
    )
    if stats_file is not None:
        write_text(stats_file, json.dumps(stats.as_dict()))
    console.print(
        f"campaign stage {shard}/{stage_shards}: {stats.facts:,} facts, {stats.epochs:,} epochs, "
        f"{stats.containment} keys contained, {stats.campaign_lines} campaign lines, "
        f"{stats.unreadable} unreadable messages passed over"
    )


def status(
    nats_url: NatsOpt = "nats://127.0.0.1:4222",
    redis_url: RedisOpt = "redis://127.0.0.1:6379/0",
    prefix: PrefixOpt = "bg",
    stream: StreamOpt = "BG_EVENTS",
    durable: DurableOpt = "bg-worker",
    facts_stream: FactsStreamOpt = "BG_FACTS",
    stage_shards: StageShardsOpt = 1,
    stage_durable: StageDurableOpt = "bg-stage",
    as_json: Annotated[bool, typer.Option("--json", help="Print the status as JSON.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Workers, partition owners, lag and redeliveries (and the campaign stage's shards);
    exit status 1 when unhealthy."""
    import nats
    from rich.table import Table

    from brokerguard.cluster.failure import is_failure
    from brokerguard.cluster.status import cluster_status

    try:
        st = asyncio.run(
            cluster_status(
                nats_url,
                redis_url,
                prefix=prefix,
                stream=stream,
                durable=durable,
                facts_stream=facts_stream,
                stage_shards=stage_shards,
                stage_durable=stage_durable,
            )
        )
    except nats.js.errors.NotFoundError:
        raise _fail(f"no stream {stream} on {shown_url(nats_url)}") from None
    except Exception as exc:  # NATS without JetStream or silent, Redis away or silent, ...
        if is_failure(exc):  # (a traceback, or "cannot reach NATS" for a server that was reached)
            raise _failure(exc, nats_url, redis_url) from None
        raise
    if as_json:
        print(json.dumps(st, indent=1))
    else:
        out = Console()
        out.print(
            f"stream {st['stream']}: {st['messages']:,} messages, {st['partitions']} partitions, "
            f"lag {st['lag']:,}; workers: "
            + (", ".join(f"{w} ({left:.0f} s)" for w, left in st["workers"].items()) or "none")
        )
        table = Table("partition", "owner", "lag", "ack pending", "redelivered", "acked to", "ok")
        for r in st["partition"]:
            table.add_row(
                str(r["partition"]),
                r["owner"] or "-",
                *(f"{r[k]:,}" if r[k] is not None else "-" for k in ("lag", "ack_pending")),
                f"{r['redelivered']:,}" if r["redelivered"] is not None else "-",
                f"{r['ack_floor']:,}" if r["ack_floor"] is not None else "-",
                "yes" if r["healthy"] else "NO",
            )
        out.print(table)
        if st["stage"] is not None:
            stage = Table("stage shard", "holder", "lag", "ack pending", "done below epoch", "ok")
            for r in st["stage"]:
                stage.add_row(
                    str(r["shard"]),
                    r["owner"] or "-",
                    *(f"{r[k]:,}" if r[k] is not None else "-" for k in ("lag", "ack_pending")),
                    str(r["done_below_epoch"]) if r["done_below_epoch"] is not None else "-",
                    "yes" if r["healthy"] else "NO",
                )
            out.print(stage)
        out.print("healthy" if st["healthy"] else "UNHEALTHY: work waiting with no owner")
    if not st["healthy"]:
        raise typer.Exit(code=1)


def mount(app: typer.Typer) -> None:
    """Add the scale-out commands to the ``brokerguard`` command."""
    import inspect

    commands = (
        ("ingest", ingest),
        ("worker", worker),
        ("campaign-stage", campaign_stage),
        ("status", status),
    )
    for name, fn in commands:
        _COMMANDS.append(set(inspect.signature(fn).parameters))
        app.command(name)(fn)
