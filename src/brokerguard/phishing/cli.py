"""``brokerguard phish``: thin commands over the phishing library (mounted by ``brokerguard.cli``).

Every command reads untrusted input: a bad line is reported on standard error with its number
and never stops the rest; a bad file or option exits with status 2 and a message naming it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, BinaryIO

import msgspec
import typer
from rich.console import Console
from rich.table import Table

from brokerguard.files import write_text
from brokerguard.redact import shown_url

if TYPE_CHECKING:
    from brokerguard.phishing._brands import BrandRegistry
    from brokerguard.phishing._model import Model
    from brokerguard.phishing._score import Finding
    from brokerguard.phishing._watch import Alert, LineError, Watcher

# The library is imported inside the commands, so that mounting this sub-app costs the other
# `brokerguard` commands nothing at start-up (the public-suffix list and stix2 take ~0.2 s).
THRESHOLD = 3.0  # same default as brokerguard.phishing.THRESHOLD (checked by a test)
MODEL_BY_DEFAULT = True  # `phish score` adds the learned model unless --no-model (see README)


phish_app = typer.Typer(
    help="Phishing watch: score URLs and mails, watch new domains, act on findings.",
    no_args_is_help=True,
    add_completion=False,
)
err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)

BrandsOpt = Annotated[
    Path | None, typer.Option("--brands", help="Brand registry TOML (default: the shipped one).")
]
InputOpt = Annotated[
    str | None, typer.Option("--input", "-i", help="File with one item a line ('-' = stdin).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="One JSON object per line.")]
ModelOpt = Annotated[
    bool,
    typer.Option(
        "--model/--no-model",
        help="Add the learned model (phishing/model.json) to the rules; --no-model: rules alone.",
    ),
]


def _fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", markup=True)
    return typer.Exit(code=2)


def _warn(message: str) -> None:
    err.print(f"[yellow]warning:[/yellow] {message}", markup=True)


def _registry(path: Path | None) -> BrandRegistry:
    from brokerguard.phishing._brands import RegistryError, load_brands

    try:
        return load_brands(path)
    except RegistryError as exc:
        raise _fail(str(exc)) from None


class _NamedReads:
    """A byte stream whose read errors name the file (``<stdin>`` for standard input)."""

    def __init__(self, stream: BinaryIO, name: str) -> None:
        self.stream = stream
        self.name = name

    def readline(self, size: int = -1) -> bytes:
        try:
            return self.stream.readline(size)
        except OSError as exc:
            if exc.filename is None:
                raise OSError(exc.errno, exc.strerror, self.name) from exc
            raise


@contextmanager
def _reading(source: str | None) -> Iterator[BinaryIO]:
    """The named file (closed afterwards) or standard input for ``-``. A file that cannot be
    opened or read, and any other ``OSError`` of the command's work (standard output closed),
    exits 2 with a line naming the file and the problem (it was a traceback)."""
    from brokerguard.cluster.failure import failure_message

    if source in (None, "-"):
        stream, name = sys.stdin.buffer, "<stdin>"
    else:
        p = Path(source)
        if p.is_dir():
            raise _fail(f"{p}: is a directory, not a file")
        if not p.exists():
            raise _fail(f"{p}: no such file")
        try:
            stream, name = p.open("rb"), str(p)
        except OSError as exc:
            raise _fail(failure_message(exc)) from None
    try:
        yield _NamedReads(stream, name)  # type: ignore[misc]
    except OSError as exc:
        raise _fail(failure_message(exc)) from None
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


def _json(obj: object) -> str:
    return msgspec.json.encode(obj).decode("utf-8")


def _model_file(path: Path) -> Model:
    from brokerguard.phishing._model import load_model

    try:
        return load_model(path)
    except ValueError as exc:
        raise _fail(f"--model-file: {exc}") from None


def _score_lines(
    stream: BinaryIO, reg: BrandRegistry, threshold: float, model: bool | Model
) -> Iterator[Finding]:
    from brokerguard.phishing import URLError, error_finding, score_url
    from brokerguard.phishing._watch import LineError, bounded_lines

    for n, line in enumerate(bounded_lines(stream), start=1):
        if isinstance(line, LineError):
            _warn(line.message)
            yield error_finding("", URLError(line.message))
            continue
        try:
            yield score_url(line, reg, threshold, model=model)
        except URLError as exc:
            _warn(f"line {n}: {exc}")
            yield error_finding(line, exc)


@phish_app.command()
def score(
    urls: Annotated[list[str] | None, typer.Argument(help="URLs or host names to score.")] = None,
    input: InputOpt = None,
    json: JsonOpt = False,
    brands: BrandsOpt = None,
    threshold: Annotated[float, typer.Option(help="Evidence needed for 'phishing'.")] = THRESHOLD,
    model: ModelOpt = MODEL_BY_DEFAULT,
    model_file: Annotated[
        Path | None,
        typer.Option(
            "--model-file",
            help="Use this model file (e.g. a monthly refresh by bench/train_phishing.py "
            "--through) instead of the shipped one.",
        ),
    ] = None,
) -> None:
    """Score URLs (arguments or --input): phishing or benign, with the brand and the reasons.

    One result per input line, in input order; --json writes one object a line with url, score
    (0-1), verdict, brand, reasons, host, registrable, target, hops and error. A line that is not
    a URL gets score 0, verdict benign and its error (also on stderr); the rest go on.
    """
    from brokerguard.phishing import URLError, error_finding, score_url

    reg = _registry(brands)
    if not urls and input is None:
        raise _fail("give URLs as arguments or --input FILE ('-' for stdin)")
    used: bool | Model = model
    if model_file is not None:
        if not model:
            raise _fail("--model-file: not with --no-model (which scores with the rules alone)")
        used = _model_file(model_file)
    findings: list[Finding] = []
    if urls:
        for u in urls:
            try:
                findings.append(score_url(u, reg, threshold, model=used))
            except URLError as exc:
                _warn(str(exc))
                findings.append(error_finding(u, exc))
    with _reading(input) if input is not None else nullcontext() as stream:
        rows = _score_lines(stream, reg, threshold, used) if stream is not None else iter(())
        if json:
            for f in findings:
                sys.stdout.write(_json(f) + "\n")
            for f in rows:  # streamed: each line is written as soon as it is scored
                sys.stdout.write(_json(f) + "\n")
            return
        findings.extend(rows)
    table = Table("verdict", "score", "brand", "url", "reasons")
    for f in findings:
        why = "; ".join(r.en for r in f.reasons if r.weight > 0) or (f.error or "")
        colour = "red" if f.is_phishing else "green"
        table.add_row(
            f"[{colour}]{f.verdict}[/{colour}]", f"{f.score:.2f}", f.brand or "-", f.url, why
        )
    out.print(table)


@phish_app.command()
def watch(
    source: Annotated[str, typer.Argument(help="Feed file ('-' or nothing = stdin).")] = "-",
    json: JsonOpt = False,
    brands: BrandsOpt = None,
    any_brand: Annotated[
        bool, typer.Option("--any", help="Alert on phishing verdicts without a brand too.")
    ] = False,
    min_score: Annotated[float | None, typer.Option(help="Alert at or above this score.")] = None,
    nats_url: Annotated[
        str, typer.Option("--nats", envvar="BROKERGUARD_NATS", help="NATS server of --subject.")
    ] = "nats://127.0.0.1:4222",
    subject: Annotated[
        str | None, typer.Option(help="Read the feed from this NATS subject instead of a file.")
    ] = None,
    alerts_subject: Annotated[
        str | None, typer.Option(help="Also publish each alert (JSON) to this NATS subject.")
    ] = None,
    queue: Annotated[str, typer.Option(help="NATS queue group (watchers sharing a feed).")] = "",
    idle_exit: Annotated[
        float | None, typer.Option(help="With --subject: stop after this many idle seconds.")
    ] = None,
) -> None:
    """Watch a feed of new domains or certificate-log lines and alert on brand lookalikes.

    The feed has one host name, URL or certificate-log JSON object (certstream's all_domains)
    a line: a file, standard input, or a NATS subject (--subject; a message carries one line or
    several). Bad lines (binary, huge, not a name) are reported on stderr with their number and
    the stream goes on.
    """
    from brokerguard.phishing._watch import LineError, Watcher, bounded_lines

    reg = _registry(brands)
    watcher = Watcher(reg, min_score=min_score, brands_only=not any_brand)
    if subject is not None:
        _watch_nats(watcher, nats_url, subject, alerts_subject, queue, idle_exit, json)
        return
    alerts = errors = 0
    with _reading(source) as stream:
        for event in watcher.feed_lines(bounded_lines(stream)):
            if isinstance(event, LineError):
                errors += 1
                _warn(event.message)
                continue
            alerts += 1
            _print_alert(event, json)
            sys.stdout.flush()
    err.print(f"{alerts} alert(s), {errors} line(s) skipped")


def _watch_nats(
    watcher: Watcher,
    url: str,
    subject: str,
    alerts_subject: str | None,
    queue: str,
    idle_exit: float | None,
    as_json: bool,
) -> None:
    """The watch on a NATS subject until SIGINT/SIGTERM (or ``idle_exit`` quiet seconds)."""
    import asyncio
    import signal

    from brokerguard.phishing._feed import watch_subject
    from brokerguard.phishing._watch import LineError

    def show(event: Alert | LineError) -> None:
        if isinstance(event, LineError):
            _warn(event.message)
        else:
            _print_alert(event, as_json)
            sys.stdout.flush()

    async def run():
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await watch_subject(
            url,
            subject,
            watcher,
            show,
            alerts_subject=alerts_subject,
            queue=queue,
            idle_exit=idle_exit,
            stop=stop,
            on_ready=lambda: err.print(f"watching NATS subject {subject} on {shown_url(url)}"),
            on_status=lambda line: err.print(line, markup=False),
        )

    from brokerguard.cluster.failure import failure_message, is_failure

    try:
        stats = asyncio.run(run())
    except Exception as exc:  # no server there, nats-py's own errors, standard output closed
        if is_failure(exc):
            raise _fail(failure_message(exc, url)) from None
        raise
    err.print(
        f"{stats.alerts} alert(s), {stats.errors} line(s) skipped, "
        f"{stats.lines} line(s) in {stats.messages} message(s)"
    )


def _print_alert(alert: Alert, as_json: bool) -> None:
    f = alert.finding
    if as_json:
        from brokerguard.phishing._feed import alert_json

        sys.stdout.write(alert_json(alert).decode() + "\n")
        return
    why = "; ".join(r.en for r in f.reasons if r.weight > 0)
    sys.stdout.write(
        f"ALERT line {alert.line_no}\t{alert.name}\t{f.brand or '-'}\t{f.score:.2f}\t{why}\n"
    )


@phish_app.command()
def mail(
    file: Annotated[Path, typer.Argument(help="The forwarded mail (.eml).")],
    json: JsonOpt = False,
    brands: BrandsOpt = None,
) -> None:
    """Analyse a forwarded mail (.eml) and score its links.

    Reports the Authentication-Results, sender against display name, every link with its real
    target, and urgency phrases in Japanese and English.
    """
    from brokerguard.phishing._mail import MailError, analyse_mail

    reg = _registry(brands)
    try:
        report = analyse_mail(file.read_bytes(), reg)
    except OSError as exc:
        raise _fail(f"{file}: cannot read: {exc.strerror}") from None
    except MailError as exc:
        raise _fail(f"{file}: {exc}") from None
    if json:
        sys.stdout.write(_json(report) + "\n")
        return
    out.print(f"[bold]{report.verdict.upper()}[/bold] (score {report.score:.2f})  {report.subject}")
    out.print(
        f"From: {report.from_display} <{report.from_address}>  auth: {report.authentication or '-'}"
    )
    for en, ja in zip(report.reasons, report.reasons_ja, strict=True):
        out.print(f" - {en} / {ja}")
    for link in report.links:
        f = link.finding
        state = f"{f.verdict} {f.score:.2f} -> {f.target or f.url}" if f else f"error: {link.error}"
        out.print(f" link: {link.url}  [{link.text}]  {state}", markup=False)


@phish_app.command()
def lookalikes(
    brand: Annotated[str, typer.Argument(help="Brand id (see brands.toml).")],
    dnstwist: Annotated[
        bool, typer.Option("--dnstwist", help="dnstwist's fuzzers instead.")
    ] = False,
    limit: Annotated[int, typer.Option(help="Print at most this many (0 = all).")] = 0,
    brands: BrandsOpt = None,
) -> None:
    """Lookalike domains of a brand for registration monitoring (name<TAB>how it was made)."""
    from brokerguard.phishing import dnstwist_lookalikes, generate_lookalikes

    reg = _registry(brands)
    b = reg.get(brand)
    if b is None:
        raise _fail(f"unknown brand {brand!r}; known: {', '.join(x.id for x in reg)}")
    names: dict[str, str] = {}
    if dnstwist:
        for d in b.domains:
            names.update(dnstwist_lookalikes(d))
    else:
        names = generate_lookalikes(b)
    for i, (name, how) in enumerate(sorted(names.items())):
        if limit and i >= limit:
            break
        sys.stdout.write(f"{name}\t{how}\n")


def _findings(source: str, reg: BrandRegistry) -> list[Finding]:
    """URLs or ``phish score --json`` lines from a file, as findings."""
    from brokerguard.phishing import Finding, URLError, score_url
    from brokerguard.phishing._watch import LineError, bounded_lines

    decoder = msgspec.json.Decoder(Finding)
    found: list[Finding] = []
    with _reading(source) as stream:
        for n, line in enumerate(bounded_lines(stream), start=1):
            if isinstance(line, LineError):
                _warn(line.message)
                continue
            text = line.strip()
            if not text:
                continue
            try:
                found.append(decoder.decode(text) if text.startswith("{") else score_url(text, reg))
            except (URLError, msgspec.DecodeError) as exc:
                _warn(f"{source}:{n}: {exc}")
    return found


@phish_app.command()
def takedown(
    url: Annotated[str | None, typer.Argument(help="A phishing URL.")] = None,
    input: InputOpt = None,
    reporter: Annotated[str, typer.Option(help="Your organisation.")] = "(your organisation)",
    contact: Annotated[str, typer.Option(help="Your abuse contact.")] = "(your contact address)",
    brands: BrandsOpt = None,
) -> None:
    """Takedown request text (Japanese and English) for each phishing finding."""
    from brokerguard.phishing import URLError, score_url
    from brokerguard.phishing._takedown import takedown_request

    reg = _registry(brands)
    findings = _findings(input, reg) if input else []
    if url:
        try:
            findings.insert(0, score_url(url, reg))
        except URLError as exc:
            raise _fail(str(exc)) from None
    if not findings:
        raise _fail("give a URL or --input FILE")
    for f in findings:
        if not f.is_phishing:
            _warn(f"{f.url}: scored benign ({f.score:.2f}); no request written")
            continue
        sys.stdout.write(takedown_request(f, reporter=reporter, contact=contact, registry=reg))
        sys.stdout.write("\n" + "=" * 72 + "\n")


@phish_app.command()
def stix(
    input: Annotated[
        str, typer.Option("--input", "-i", help="URLs or `phish score --json` lines.")
    ],
    out_file: Annotated[Path, typer.Option("--out", "-o", help="Bundle file to write.")],
    campaigns: Annotated[Path | None, typer.Option(help="The engine's campaigns.ndjson.")] = None,
    organisation: Annotated[str, typer.Option(help="Creator identity.")] = "BrokerGuard user",
    brands: BrandsOpt = None,
) -> None:
    """Export phishing URLs and domains as a STIX 2.1 bundle.

    With --campaigns, the engine's campaigns are added with their attacker IPs and targeted
    symbols.
    """
    from brokerguard.phishing._stix import StixError, export_stix, read_campaigns

    reg = _registry(brands)
    try:
        camps = read_campaigns(campaigns) if campaigns else []
        text = export_stix(_findings(input, reg), camps, organisation=organisation)
    except StixError as exc:
        raise _fail(str(exc)) from None
    try:
        write_text(out_file, text + "\n")
    except OSError as exc:  # a missing directory, a full disk: named, not a traceback
        from brokerguard.cluster.failure import failure_message

        raise _fail(failure_message(exc)) from None
    err.print(f"wrote {out_file}")


# `phish blocklist` and `phish review` (the analyst's review of model-only findings) live in
# review_cli.py; imported last because they use the helpers above.
from brokerguard.phishing.review_cli import blocklist as _blocklist  # noqa: E402
from brokerguard.phishing.review_cli import review_app  # noqa: E402

phish_app.command("blocklist")(_blocklist)
phish_app.add_typer(review_app, name="review")
