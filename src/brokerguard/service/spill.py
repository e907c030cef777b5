"""Spill files: the records a service could not write, kept on disk until the database is back.

The recorder waits for a database that is away (:mod:`.recorder`), but a stop cannot wait for
ever: after its grace the records not written — decisions, their alerts and audit entries,
events, campaign snapshots, instructions — would be lost, a hole in a broker's audit log. They
are saved here instead, and so are the records a writer process had taken when it died.
``brokerguard records load-spill FILE`` writes them once the database is back.

Where: ``serve --spill-dir DIR`` (``BROKERGUARD_SPILL_DIR``); by default the directory of the
SQLite database file, or, for PostgreSQL, the directory the service was started in
(:func:`default_dir`). The service checks at start that it can create files there.

**Format, version 2.** UTF-8 NDJSON, one JSON object a line; the file is named
``brokerguard-spill-<UTC time>-<id>.ndjson``, readable by the service's user only (it holds
customers' records). It is written under a temporary name, fsynced, renamed into place and the
directory fsynced: a file under its name is whole.

- line 1, the header: ``{"format": "brokerguard-spill", "version": 2, "id": "<32 hex>",
  "created_at": "<RFC 3339>", "reason": "stop" | "writer_lost", "database": "<the database the
  records were for, without credentials>", "records": N}``;
- N record lines, in the order the service queued them, each named by its ``kind``:

  - ``{"kind": "event", "row": {...}}`` — a row of ``events``;
  - ``{"kind": "decision", "decision": {...}, "alert": {...} | null, "audit": {"actor": ...,
    "action": ..., "subject": ..., "detail": {...}}}`` — a row of ``decisions``, its row of
    ``alerts`` if it raised one, and its audit entry *before* it has a place in the chain (no
    ``seq``, no hash: it is chained after the head when it is written, so the chain stays whole
    however late that is);
  - ``{"kind": "campaign", "row": {...}, "merge": false}`` — a snapshot of a ``campaigns`` row;
  - ``{"kind": "instruction", "row": {...}}`` — a row of ``instructions``;

  rows hold the table's columns (:mod:`.models`); timestamp columns are RFC 3339 texts with an
  offset; a record a writer process had been handed also has ``"at": ["<writer id>", n]``, its
  place in what that writer was handed (new in version 2; ``writer_progress`` says how far
  each writer wrote);
- the last line: ``{"kind": "end", "records": N, "sha256": "<hex>"}``, the SHA-256 of the bytes
  of the N record lines (newlines included): a file changed or cut short is refused whole.

A reader refuses a version it does not know (a later release's file), naming the file and the
version. A new version is made for any change an older reader would misread: version 2 added
``at`` (a version-1 reader, which would load twice what a writer had written, refuses the file
by its version). Version-1 files are still read and loaded; their records have no place.

**Loading** (:func:`load`) writes the records with the writer's own code
(:func:`~brokerguard.service.recorder.insert_records`), in the file's order, up to
:data:`~brokerguard.service.recorder.MAX_BATCH` a transaction. Each transaction also advances
the file's row in ``spill_loads`` (by the id in its header) and appends an audit entry
``records.load_spill`` saying which records of which file it wrote; it holds the database's
write lock, and reads how far the file was loaded inside it. So a load that stops (the database
away again, the command interrupted) goes on where it stopped, and a file loaded twice — or two
loads at once, or a copy of the file — writes nothing twice. A record its writer process wrote
before it died, without saying so (its place at or below the writer's ``writer_progress``), is
skipped whole: event, decision, alert, audit entry. (Version-1 files, whose records have no
place: a decision already stored is skipped with its alert and audit entry, but its event row,
which has no key to know it by, is written a second time.) So is a campaign snapshot older than
the stored row (the service wrote newer ones since its restart). A record the database refuses
for good (a constraint) is logged, counted as ``rejected`` and passed over; it stays in the
file. A file loaded whole is renamed ``<name>.loaded``.

The service does not load spill files itself when it starts: it says loudly that they wait (the
log, ``/healthz``). The database that was away may not be back; the spill directory may hold
another service's files, or files meant for another database, and an audit chain takes no entry
back; and an operator should know that records of the past are being added.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import msgspec
import sqlalchemy as sa

from brokerguard.redact import shown_url
from brokerguard.service import audit
from brokerguard.service.db import database_away, normalize_url, write_transaction
from brokerguard.service.models import (
    UTCDateTime,
    alerts,
    campaigns,
    decisions,
    events,
    instructions,
    spill_loads,
    writer_progress,
)
from brokerguard.service.recorder import (
    MAX_BATCH,
    Backoff,
    CampaignRecord,
    DecisionRecord,
    EventRecord,
    InstructionRecord,
    Record,
    _aware,
    _brief,
    _GaveUp,
    _write_waiting,
    insert_records,
)

__all__ = [
    "FORMAT",
    "LOAD_ACTION",
    "VERSION",
    "Header",
    "LoadReport",
    "Spill",
    "SpillError",
    "SpillInfo",
    "check_dir",
    "default_dir",
    "load",
    "loaded_name",
    "pending",
    "read",
    "same_database",
    "shown_database",
    "write",
]

log = logging.getLogger("brokerguard.service.spill")
FORMAT = "brokerguard-spill"
VERSION = 2
READS = (1, 2)  # the versions this release reads: 1 has no records' places
PREFIX = "brokerguard-spill-"
SUFFIX = ".ndjson"
LOADED = ".loaded"
LOAD_ACTION = "records.load_spill"


class SpillError(Exception):
    """A spill file that cannot be read or loaded, or a spill directory that cannot be used;
    the message names the file (or directory) and the problem."""


class LoadInterrupted(SpillError):
    """The database went away during a load: what was loaded stays, a new load goes on."""


class Header(msgspec.Struct):
    format: str
    version: int
    id: str
    created_at: datetime
    reason: str
    database: str
    records: int


class _Audit(msgspec.Struct, forbid_unknown_fields=True):
    actor: str
    action: str
    subject: str
    detail: dict[str, Any]


_LINE = {"tag_field": "kind", "forbid_unknown_fields": True, "omit_defaults": True}


class _Event(msgspec.Struct, tag="event", **_LINE):
    row: dict[str, Any]
    at: tuple[str, int] | None = None  # the record's place (version 2)


class _Decision(msgspec.Struct, tag="decision", **_LINE):
    decision: dict[str, Any]
    alert: dict[str, Any] | None
    audit: _Audit
    at: tuple[str, int] | None = None


class _Campaign(msgspec.Struct, tag="campaign", **_LINE):
    row: dict[str, Any]
    merge: bool = False
    at: tuple[str, int] | None = None


class _Instruction(msgspec.Struct, tag="instruction", **_LINE):
    row: dict[str, Any]
    at: tuple[str, int] | None = None


class _End(msgspec.Struct, tag="end", tag_field="kind", forbid_unknown_fields=True):
    records: int
    sha256: str


_Line = _Event | _Decision | _Campaign | _Instruction | _End
_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(_Line)


class Spill(NamedTuple):
    path: Path
    header: Header
    records: list[Record]


class SpillInfo(NamedTuple):
    """A spill file waiting to be loaded, as ``/healthz`` and the start's log name it."""

    path: str
    records: int | None
    created_at: datetime | None
    reason: str | None
    problem: str | None  # a header that cannot be read


# --- where ---------------------------------------------------------------------------------------
def default_dir(database_url: str) -> Path:
    """Beside the SQLite database file; for any other database, the current directory."""
    url = sa.make_url(normalize_url(database_url))
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        return Path(url.database).resolve().parent
    return Path.cwd().resolve()


def check_dir(directory: Path) -> Path:
    """The spill directory, absolute, once a file could be made in it: :class:`SpillError`
    if not (a stop during an outage is no time to find that out)."""
    directory = Path(directory).resolve()
    if not directory.is_dir():
        raise SpillError(f"spill directory {directory}: not a directory (make it, or name another)")
    try:
        with tempfile.TemporaryFile(dir=directory, prefix=".brokerguard-spill-check-"):
            pass
    except OSError as exc:
        problem = f"cannot make files in it ({exc.strerror})"
        raise SpillError(f"spill directory {directory}: {problem}") from None
    return directory


def shown_database(database_url: str) -> str:
    """The database as a spill file's header names it: no credentials; an SQLite file by its
    absolute path."""
    url = sa.make_url(normalize_url(database_url))
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        return f"sqlite:///{Path(url.database).resolve()}"
    return shown_url(url.render_as_string(hide_password=True))


def _identity(database_url: str) -> tuple[str, ...]:
    url = sa.make_url(normalize_url(database_url))
    backend = url.get_backend_name()
    if backend == "sqlite":
        return (backend, str(Path(url.database or "").resolve()))
    port = str(url.port or (5432 if backend == "postgresql" else ""))
    return (backend, (url.host or "").lower(), port, url.database or "")


def same_database(a: str, b: str) -> bool:
    """Whether two URLs name the same database (users, passwords and drivers aside)."""
    try:
        return _identity(a) == _identity(b)
    except sa.exc.ArgumentError:
        return False


# --- writing -------------------------------------------------------------------------------------
def _line(record: Record) -> _Event | _Decision | _Campaign | _Instruction:
    if isinstance(record, EventRecord):
        return _Event(record.row, record.at)
    if isinstance(record, DecisionRecord):
        entry = record.audit
        return _Decision(
            record.decision,
            record.alert,
            _Audit(entry.actor, entry.action, entry.subject, dict(entry.detail)),
            record.at,
        )
    if isinstance(record, CampaignRecord):
        return _Campaign(record.row, record.merge, record.at)
    if isinstance(record, InstructionRecord):
        return _Instruction(record.row, record.at)
    raise TypeError(f"not a record: {type(record).__name__}")


def write(
    directory: Path,
    records: Sequence[Record],
    *,
    reason: str,
    database: str,
    now: datetime | None = None,
) -> Path:
    """Save ``records`` to a new spill file in ``directory``, durably; returns its path."""
    created = now or datetime.now(UTC)
    ident = uuid.uuid4().hex
    name = f"{PREFIX}{created:%Y%m%dT%H%M%S}Z-{ident[:12]}{SUFFIX}"
    directory = Path(directory)
    path, temporary = directory / name, directory / f".{name}.tmp"
    header = Header(FORMAT, VERSION, ident, created, reason, shown_database(database), len(records))
    digest = hashlib.sha256()
    try:
        # customers' records: readable by the service's user only, whatever the umask
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(_ENCODER.encode(header) + b"\n")
            for record in records:
                line = _ENCODER.encode(_line(record)) + b"\n"
                digest.update(line)
                out.write(line)
            out.write(_ENCODER.encode(_End(len(records), digest.hexdigest())) + b"\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)  # under its name, a spill file is whole
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_dir(directory)
    return path


def _fsync_dir(directory: Path) -> None:
    """Make the rename durable (a directory cannot be opened so on every system)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --- reading -------------------------------------------------------------------------------------
def _header(path: Path, raw: bytes) -> Header:
    try:
        value = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        problem = "not a BrokerGuard spill file (its first line is not JSON)"
        raise SpillError(f"{path}: {problem}") from None
    if not isinstance(value, dict) or value.get("format") != FORMAT:
        raise SpillError(
            f'{path}: not a BrokerGuard spill file (its first line has no "format": "{FORMAT}")'
        )
    version = value.get("version")
    if type(version) is not int or version not in READS:
        known = ", ".join(str(v) for v in READS)
        raise SpillError(
            f"{path}: spill format version {version!r} is not known to this BrokerGuard, which"
            f" reads versions {known}: load it with the release that wrote it, or a later one"
        )
    try:
        return msgspec.convert(value, Header)
    except msgspec.ValidationError as exc:
        raise SpillError(f"{path}: line 1 (the header): {exc}") from None


def _time(text: str, where: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise SpillError(f"{where}: {text!r} is not an RFC 3339 time") from None
    if value.tzinfo is None:
        raise SpillError(f"{where}: {text!r} has no UTC offset")
    return value


def _row(table: sa.Table, row: dict[str, Any], where: str) -> dict[str, Any]:
    """A table's row as the writer had it: known columns only, times as datetimes."""
    unknown = sorted(set(row) - set(table.c.keys()))
    if unknown:
        raise SpillError(f"{where}: {', '.join(unknown)} is not a column of {table.name}")
    out = dict(row)
    for column in table.columns:
        value = out.get(column.name)
        if isinstance(column.type, UTCDateTime) and isinstance(value, str):
            out[column.name] = _time(value, f"{where}: {table.name}.{column.name}")
    return out


def _record(
    line: _Event | _Decision | _Campaign | _Instruction, where: str, version: int
) -> Record:
    if line.at is not None and version < 2:
        raise SpillError(f"{where}: a record's place (at) in a version-{version} file")
    if isinstance(line, _Event):
        return EventRecord(_row(events, line.row, where), line.at)
    if isinstance(line, _Decision):
        entry = audit.AuditEntry(
            line.audit.actor, line.audit.action, line.audit.subject, line.audit.detail
        )
        alert = _row(alerts, line.alert, where) if line.alert is not None else None
        return DecisionRecord(_row(decisions, line.decision, where), alert, entry, line.at)
    if isinstance(line, _Campaign):
        return CampaignRecord(_row(campaigns, line.row, where), line.merge, line.at)
    return InstructionRecord(_row(instructions, line.row, where), line.at)


def read(path: Path) -> Spill:
    """Read and check a whole spill file; :class:`SpillError` naming the file and the problem
    (not one, an unknown version, changed or cut short, a line that does not read)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SpillError(f"{path}: cannot read it ({exc.strerror})") from None
    first, _, rest = data.partition(b"\n")
    header = _header(path, first)
    lines = rest.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    try:
        end = _DECODER.decode(lines[-1]) if lines else None
    except msgspec.DecodeError:
        end = None
    if not isinstance(end, _End):
        raise SpillError(f"{path}: cut short: its last line is not the end line")
    body = rest[: len(rest) - len(lines[-1]) - (1 if rest.endswith(b"\n") else 0)]
    if hashlib.sha256(body).hexdigest() != end.sha256:
        raise SpillError(
            f"{path}: its records do not match the checksum of its end line: the file was"
            " changed or damaged"
        )
    count = len(lines) - 1
    if not header.records == end.records == count:
        raise SpillError(
            f"{path}: the header says {header.records} records, the end line {end.records},"
            f" and the file has {count}"
        )
    records: list[Record] = []
    for number, raw in enumerate(lines[:-1], start=2):
        where = f"{path}: line {number}"
        try:
            line = _DECODER.decode(raw)
        except msgspec.DecodeError as exc:
            raise SpillError(f"{where}: {exc}") from None
        if isinstance(line, _End):
            raise SpillError(f"{where}: an end line before the last line")
        records.append(_record(line, where, header.version))
    return Spill(path, header, records)


def pending(directory: Path) -> list[SpillInfo]:
    """The spill files in ``directory`` not loaded yet, oldest first, from their headers."""
    found: list[SpillInfo] = []
    try:
        paths = sorted(Path(directory).glob(f"{PREFIX}*{SUFFIX}"))
    except OSError:
        return found
    for path in paths:
        try:
            with path.open("rb") as stream:
                header = _header(path, stream.readline(1 << 16))
        except OSError as exc:
            found.append(SpillInfo(str(path), None, None, None, f"cannot read it ({exc})"))
        except SpillError as exc:
            found.append(SpillInfo(str(path), None, None, None, str(exc)))
        else:
            found.append(
                SpillInfo(str(path), header.records, header.created_at, header.reason, None)
            )
    return found


def loaded_name(path: Path) -> Path:
    return path.with_name(path.name + LOADED)


# --- loading -------------------------------------------------------------------------------------
@dataclass
class LoadReport:
    """What a load did: this run's counts; ``already`` when the file had been loaded whole."""

    records: int
    written: int = 0
    skipped: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (line, problem)
    already: bool = False


class _Moved(Exception):
    """Another load advanced the same file meanwhile: go on from where it is."""

    def __init__(self, through: int) -> None:
        super().__init__(through)
        self.through = through


def _through(conn: sa.Connection, spill_id: str) -> int:
    done = conn.scalar(sa.select(spill_loads.c.through).where(spill_loads.c.id == spill_id))
    return int(done or 0)


def _stored(conn: sa.Connection, records: list[Record]) -> set[int]:
    """The positions of the records stored already: one its writer process wrote (its place
    within the writer's ``writer_progress``), a decision already written (with its alert and
    audit entry), a campaign snapshot no newer than the stored row."""
    writers = sorted({r.at[0] for r in records if r.at is not None})
    query_writers = sa.select(writer_progress.c.writer, writer_progress.c.through).where(
        writer_progress.c.writer.in_(writers)
    )
    through: dict[str, int] = {}
    if writers:
        through = {row.writer: int(row.through) for row in conn.execute(query_writers)}
    ids = [r.decision["id"] for r in records if isinstance(r, DecisionRecord)]
    query_ids = sa.select(decisions.c.id).where(decisions.c.id.in_(ids))
    stored = set(conn.scalars(query_ids)) if ids else set()
    camp_ids = [r.row["id"] for r in records if isinstance(r, CampaignRecord) and not r.merge]
    query = sa.select(campaigns.c.id, campaigns.c.updated_at).where(campaigns.c.id.in_(camp_ids))
    newest = {row.id: _aware(row.updated_at) for row in conn.execute(query)} if camp_ids else {}
    skip: set[int] = set()
    for i, record in enumerate(records):
        written = record.at is not None and record.at[1] <= through.get(record.at[0], 0)
        if written or isinstance(record, DecisionRecord) and record.decision["id"] in stored:
            skip.add(i)
        elif isinstance(record, CampaignRecord) and not record.merge:
            known = newest.get(record.row["id"])
            if known is not None and known >= record.row["updated_at"]:
                skip.add(i)
    return skip


class _Loader:
    def __init__(self, engine: sa.Engine, spill: Spill, backoff: Backoff, actor: str) -> None:
        self.engine, self.spill, self.backoff, self.actor = engine, spill, backoff, actor
        self.report = LoadReport(len(spill.records))

    def run(self, chunk: int) -> LoadReport:
        total = len(self.spill.records)
        with self.engine.connect() as conn:
            done = _through(conn, self.spill.header.id)
        if done >= total:
            self.report.already = True
            return self.report
        while done < total:
            end = min(done + chunk, total)
            try:
                if self._write(done, end, one_by_one=False) is not None:
                    # a record the database refuses for good: each apart (a savepoint each),
                    # the chunk still in one transaction
                    problem = self._write(done, end, one_by_one=True)
                    if problem is not None:
                        raise SpillError(f"{self.spill.path}: cannot load it: {_brief(problem)}")
                done = end
            except _Moved as moved:  # another load of the file: the database says where it is
                done = moved.through
        return self.report

    def _write(self, start: int, end: int, *, one_by_one: bool) -> sa.exc.SQLAlchemyError | None:
        """Records ``start:end`` and the file's progress, in one transaction; the error of a
        write that can never succeed, or None. ``one_by_one``: a record the database refuses
        is rolled back alone (to its savepoint), logged and passed over."""
        records = self.spill.records[start:end]
        outcome: list[tuple[int, int, list[tuple[int, str]]]] = []

        def insert(engine: sa.Engine, records: list[Record]) -> None:
            outcome.clear()
            with write_transaction(engine) as conn:
                through = _through(conn, self.spill.header.id)
                if through != start:
                    raise _Moved(through)
                skip = _stored(conn, records)
                fresh = [r for i, r in enumerate(records) if i not in skip]
                refused: list[tuple[int, str]] = []
                if not one_by_one:
                    insert_records(conn, fresh)
                else:
                    for i, record in enumerate(records):
                        if i not in skip:
                            refused += self._alone(conn, record, line=start + i + 2)
                written = len(fresh) - len(refused)
                self._advance(conn, start, end, written, len(skip), [n for n, _ in refused])
                outcome.append((written, len(skip), refused))

        try:
            problem = _write_waiting(self.engine, records, self.backoff, insert)
        except _GaveUp as exc:
            raise LoadInterrupted(
                f"{self.spill.path}: the database is away ({exc}): the first {start} of"
                f" {len(self.spill.records)} records are loaded; load the file again once it is"
                " back, it goes on from there"
            ) from None
        if problem is None:
            written, skipped, refused = outcome[0]
            self.report.written += written
            self.report.skipped += skipped
            self.report.rejected += refused
        return problem

    def _alone(self, conn: sa.Connection, record: Record, line: int) -> list[tuple[int, str]]:
        """Write one record at a savepoint; ``[(line, problem)]`` if the database refused it
        (logged), else nothing. The database away is no refusal: it ends the transaction, to
        be tried again. (The header is line 1.)"""
        try:
            with conn.begin_nested():
                insert_records(conn, [record])
        except sa.exc.OperationalError as exc:
            if database_away(exc):
                raise
            problem: sa.exc.SQLAlchemyError = exc
        except sa.exc.SQLAlchemyError as exc:
            problem = exc
        else:
            return []
        log.error("%s: line %d is refused by the database: %s", self.spill.path, line, problem)
        return [(line, _brief(problem))]

    def _advance(
        self,
        conn: sa.Connection,
        start: int,
        end: int,
        written: int,
        skipped: int,
        rejected: list[int],
    ) -> None:
        header = self.spill.header
        now = datetime.now(UTC)
        values = {"file": self.spill.path.name, "through": end, "loaded_at": now}
        if start == 0:
            conn.execute(
                spill_loads.insert().values(
                    id=header.id,
                    created_at=header.created_at,
                    records=header.records,
                    written=written,
                    skipped=skipped,
                    rejected=len(rejected),
                    **values,
                )
            )
        else:
            conn.execute(
                spill_loads.update()
                .where(spill_loads.c.id == header.id)
                .values(
                    written=spill_loads.c.written + written,
                    skipped=spill_loads.c.skipped + skipped,
                    rejected=spill_loads.c.rejected + len(rejected),
                    **values,
                )
            )
        detail = {
            "file": self.spill.path.name,
            "spilled_at": header.created_at.isoformat(),
            "records": f"{start + 1}-{end} of {header.records}",
            "written": written,
            "skipped": skipped,
            "rejected_lines": rejected,
        }
        audit.append(conn, [audit.AuditEntry(self.actor, LOAD_ACTION, header.id, detail)], now)


def load(
    engine: sa.Engine,
    spill: Spill,
    *,
    backoff: Backoff | None = None,
    chunk: int = MAX_BATCH,
    actor: str = "cli",
) -> LoadReport:
    """Write a spill file's records (see the module); :class:`LoadInterrupted` if the database
    goes away meanwhile (what was written stays, and a new load goes on from there)."""
    loader = _Loader(engine, spill, backoff if backoff is not None else Backoff(), actor)
    return loader.run(max(1, chunk))
