"""Where the console's and the API's reports get their data, and how they are downloaded.

Source data, in this order:

- a **run directory** (``events.ndjson``, ``decisions.ndjson``, ``truth.json``, as
  ``brokerguard simulate`` or ``brokerguard demo`` writes them) named by
  ``create_app(console_run=)`` or the ``BROKERGUARD_CONSOLE_RUN`` environment variable: the
  simulator's ground truth says what was unauthorized;
- else the **service's own records**: the events and decisions it recorded, labelled by the
  cases the analysts closed as fraud (see :mod:`brokerguard.service.exports`), exported to a
  temporary run directory when they changed.

The tables computed from the records are kept in memory per service, with a watermark of the
records they were computed from (:func:`~brokerguard.service.exports.records_mark`: maxima and
counts, one cheap statement). A request whose watermark matches is answered from memory; a new
event, decision, case change or campaign change moves it and the next request computes afresh.
What is kept is the monthly rows and the victims' losses, each computed only when a request
asks for it; the compensation rows are worked out from the losses on every request (cheap), so
a changed policy file shows at once. The export itself is only what the tables read: the fraud
cases; the events of the victims, the events the cases label, every challenge result, the first
and the last event, and for the losses every price (bars and fills); and the decisions on the
labelled events.

Compensation policies are the shipped ones, or the file named by
``BROKERGUARD_CONSOLE_POLICIES``. The CSV files are exactly what ``brokerguard report`` writes
(UTF-8 with BOM, bilingual headers). Every function here blocks: call it from a thread pool.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from starlette.responses import Response

from brokerguard.events import ChallengeResult, Execution, MarketBar
from brokerguard.reports import MonthlyRow, load_policies, monthly_table
from brokerguard.reports.compensation import LossReport, compensate, victim_losses
from brokerguard.reports.labels import labels_from_cases, load_cases
from brokerguard.reports.run import DECISIONS, EVENTS
from brokerguard.service.errors import InvalidInput
from brokerguard.service.exports import (
    CASES,
    records_mark,
    write_cases,
    write_decisions,
    write_events,
)

log = logging.getLogger("brokerguard.service")

__all__ = [
    "POLICIES_ENV",
    "RUN_ENV",
    "choose_policies",
    "compensation_policies",
    "csv_response",
    "report_tables",
    "run_dir",
    "warm_reports",
]

RUN_ENV = "BROKERGUARD_CONSOLE_RUN"
POLICIES_ENV = "BROKERGUARD_CONSOLE_POLICIES"


def run_dir(app_state: Any) -> Path | None:
    """The run directory the reports read, or None to read the service's records."""
    configured = getattr(app_state, "console_run", None) or os.environ.get(RUN_ENV)
    return Path(configured) if configured else None


def compensation_policies() -> dict[str, Any]:
    path = os.environ.get(POLICIES_ENV)
    return load_policies(Path(path) if path else None)


def choose_policies(name: str | None) -> list[Any]:
    """The policy named (InvalidInput naming ``policy`` if unknown), or every policy."""
    policies = compensation_policies()
    if name and name not in policies:
        raise InvalidInput(f"unknown policy {name!r}", field="policy")
    return [policies[name]] if name else list(policies.values())


@dataclass
class _Tables:
    """What was computed from the records at one watermark (None: not asked for yet)."""

    mark: tuple[Any, ...]
    monthly: list[MonthlyRow] | None = None
    losses: LossReport | None = None
    # each policy's rows on these losses, by the policy's whole text (an edited policy file
    # is another key): working them out took 0.4 s a request on a run with 600 victims
    paid: dict[bytes, list[Any]] = field(default_factory=dict)


@dataclass
class _Cache:
    lock: threading.Lock = field(default_factory=threading.Lock)
    tables: _Tables | None = None

    def at(self, mark: tuple[Any, ...]) -> _Tables:
        """The kept tables if they were computed at ``mark``, else empty ones kept for it."""
        if self.tables is None or self.tables.mark != mark:
            self.tables = _Tables(mark)
        return self.tables


_caches: weakref.WeakKeyDictionary[Any, _Cache] = weakref.WeakKeyDictionary()
_caches_lock = threading.Lock()


def _cache(service: Any) -> _Cache:
    with _caches_lock:
        cache = _caches.get(service)
        if cache is None:
            cache = _caches[service] = _Cache()
        return cache


def _records_tables(service: Any, monthly: bool, losses: bool) -> _Tables:
    """The tables of ``service``'s records at their current watermark, each one asked for
    computed at most once per watermark. One computation at a time per service: a request
    arriving meanwhile waits for it and then reads it from memory."""
    cache = _cache(service)
    with cache.lock, tempfile.TemporaryDirectory(prefix="bg-report-") as tmp:
        directory = Path(tmp)
        with service.read(report=True) as conn:  # under report_timeout, not statement_timeout
            # the watermark first: the records exported below are at least as new as it says
            mark = records_mark(conn)
            tables = cache.at(mark)
            monthly = monthly and tables.monthly is None
            losses = losses and tables.losses is None
            if not (monthly or losses):
                return tables
            write_cases(conn, directory / CASES)
            labels = labels_from_cases(load_cases(directory / CASES), source="fraud cases")
            # what the tables read of the events (see monthly_table and victim_losses): the
            # challenge results, the labelled events, the victims' events, the first and last
            # event; for the losses also every price (bars, fills)
            kinds = {ChallengeResult} | ({MarketBar, Execution} if losses else set())
            write_events(
                conn,
                directory / EVENTS,
                types={k.__struct_config__.tag for k in kinds},
                accounts=labels.accounts,
                ids=labels.events,
            )
            write_decisions(conn, directory / DECISIONS, only=labels.events)
        if monthly:
            tables.monthly = monthly_table(directory, labels)
        if losses:
            tables.losses = victim_losses(directory, labels)
        return tables


_run_caches: dict[Path, _Cache] = {}


def run_mark(run: Path) -> tuple[Any, ...]:
    """What a run directory's tables depend on, cheaply: each file's name, size and time of
    last change (a rewritten run, or a truth file edited in place, moves it)."""
    stats = sorted((f.name, f.stat()) for f in run.iterdir() if f.is_file())
    return tuple((name, st.st_size, st.st_mtime_ns) for name, st in stats)


def _run_tables(run: Path, monthly: bool, losses: bool) -> _Tables:
    """The tables of a run directory (the demo's console reads one), each computed at most once
    while the directory's files stay as they are: the demo's run takes seconds a table."""
    with _caches_lock:
        cache = _run_caches.setdefault(run.resolve(), _Cache())
    with cache.lock:
        tables = cache.at(run_mark(run))
        if monthly and tables.monthly is None:
            tables.monthly = monthly_table(run)
        if losses and tables.losses is None:
            tables.losses = victim_losses(run)
        return tables


def report_tables(
    service: Any, run: Path | None, monthly: bool, policies: list[Any] | None
) -> tuple[list[Any], list[Any]]:
    """The monthly rows and the compensation rows, each only when asked for (``monthly``; a
    list of policies), from ``run`` when given, else from ``service``'s records and cases
    (from memory while they have not changed)."""
    if run is not None:
        tables = _run_tables(run, monthly, policies is not None)
    else:
        tables = _records_tables(service, monthly, policies is not None)
    rows = list(tables.monthly or []) if monthly else []
    paid = []
    if policies is not None:
        assert tables.losses is not None
        report = tables.losses
        # compensation_table's own loop, on the kept losses, each policy's rows kept with them
        for policy in policies:
            key = msgspec.json.encode(policy)
            rows_of = tables.paid.get(key)
            if rows_of is None:
                rows_of = [
                    compensate(loss, policy, report.valuation_date) for loss in report.victims
                ]
                tables.paid[key] = rows_of
            paid.extend(rows_of)
    return rows, paid


def warm_reports(service: Any, run: Path | None) -> threading.Thread:
    """Compute the reports page's tables (the monthly rows and every policy's compensation) in
    a background thread, now: the first visit of the page then reads them from memory instead
    of waiting seconds for them (4–6 s on the demo's run). A request arriving meanwhile waits
    for this computation (one at a time per cache) rather than starting its own. A failure is
    logged and left to the page, which computes again and says what went wrong."""

    def work() -> None:
        started = time.perf_counter()
        try:
            report_tables(service, run, True, list(compensation_policies().values()))
        except Exception:  # the page will compute again and show the error itself
            log.warning("reports could not be computed at start-up", exc_info=True)
            return
        log.info("report tables ready in %.1f s", time.perf_counter() - started)

    thread = threading.Thread(target=work, name="bg-warm-reports", daemon=True)
    thread.start()
    return thread


def csv_response(write: Callable[[Any, Path], Path], rows: list[Any], filename: str) -> Response:
    """Rows written by a ``write_*_csv`` function, as a download."""
    with tempfile.TemporaryDirectory() as tmp:
        data = write(rows, Path(tmp) / filename).read_bytes()
    return Response(
        data,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
