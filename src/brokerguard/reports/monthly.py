"""The regulator's monthly table, as one broker's rows: logins, trades, value sold and bought.

The FSA publishes the 2025 account-takeover damage as a monthly table with exactly these
columns: firms with unauthorized trades, unauthorized logins (不正アクセス件数), unauthorized
trades (不正取引件数), value sold (売却金額) and value bought (買付金額). A broker reports its own
row of it each month; the firm count is the regulator's to add up, so it is not here.

What is counted, and when (months are calendar months in Japan time, split at JST midnight):

- **unauthorized logins**: labelled logins with valid credentials that the broker let through
  (allowed, or a challenge or hold the attacker passed — see :func:`.run.let_through`), in the
  month of the login. A stolen session cookie needs no login, so session theft shows in the
  trade columns only.
- **unauthorized trades**: unauthorized orders with at least one fill, in the month of the
  first fill.
- **value sold / bought**: the executed value (¥) of the fills of unauthorized orders, by side,
  in the month of each fill — trade values inside the victims' accounts, as the regulator sums
  them, not the customers' losses (see :mod:`.compensation` for those). Whole yen, halves
  up, of the exact sum (:mod:`brokerguard.money`, as ``evaluate`` rounds).

Every month from the first to the last event of the stream gets a row, zeros included: a
month without fraud is a row the regulator expects too.

CSV files are UTF-8 *with* a byte-order mark: Excel, which most compliance teams open them in,
reads a CSV without one in the system code page (Shift-JIS on Japanese Windows) and garbles the
Japanese headers; with it, Excel and Python's ``utf-8-sig`` both read it right.
"""

from __future__ import annotations

import csv
import io
import re
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import msgspec

from brokerguard.events import ChallengeResult, Execution, LoginAttempt, Order, SeenOnce
from brokerguard.files import replaced
from brokerguard.money import exact, yen
from brokerguard.reports.errors import ReportError
from brokerguard.reports.labels import FraudLabels
from brokerguard.reports.run import (
    DECISIONS,
    events_path,
    let_through,
    read_decisions,
    read_events,
    run_labels,
)

__all__ = [
    "JST",
    "MONTHLY_COLUMNS",
    "MonthlyRow",
    "month_of",
    "monthly_table",
    "read_monthly_csv",
    "write_monthly_csv",
]

JST = timezone(timedelta(hours=9), "JST")
"""Japan Standard Time (no daylight saving): the clock months are counted by."""


class MonthlyRow(msgspec.Struct, frozen=True, kw_only=True):
    """One month of the table. ``month`` is ``YYYY-MM`` in Japan time; values in whole yen."""

    month: str
    logins: int = 0
    trades: int = 0
    sold_jpy: int = 0
    bought_jpy: int = 0


MONTHLY_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("month", "月", "month"),
    ("logins", "不正アクセス件数", "unauthorized logins"),
    ("trades", "不正取引件数", "unauthorized trades"),
    ("sold_jpy", "売却金額（円）", "value sold (JPY)"),
    ("bought_jpy", "買付金額（円）", "value bought (JPY)"),
)
"""(field, Japanese, English) of each column, in the regulator's order."""


def month_of(ts: datetime) -> str:
    """The ``YYYY-MM`` of a moment in Japan time (23:59 UTC on the 31st is already next month)."""
    return ts.astimezone(JST).strftime("%Y-%m")


def _months(first: datetime, last: datetime) -> list[str]:
    a, b = first.astimezone(JST), last.astimezone(JST)
    year, month = a.year, a.month
    months = []
    while (year, month) <= (b.year, b.month):
        months.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return months


def monthly_table(
    run_dir: Path, labels: FraudLabels | None = None, *, decisions: Path | None = None
) -> list[MonthlyRow]:
    """The monthly table of a run directory, streamed once.

    ``labels`` default to the run's ``truth.json``; ``decisions`` to its ``decisions.ndjson``
    (without one, every labelled login with valid credentials counts as let through).
    """
    run_dir = Path(run_dir)
    path = events_path(run_dir)
    if labels is None:
        labels = run_labels(run_dir)
    records = read_decisions(decisions or run_dir / DECISIONS, labels.events)

    first: datetime | None = None
    last: datetime | None = None
    logins: list[tuple[str, datetime]] = []
    results: dict[str, list[ChallengeResult]] = defaultdict(list)
    ordered: set[tuple[str, str]] = set()  # orders whose order event is labelled
    fills: list[tuple[datetime, tuple[str, str], str, str, float]] = []
    once = SeenOnce()
    for event in read_events(path):
        if first is None or event.ts < first:
            first = event.ts
        if last is None or event.ts > last:
            last = event.ts
        if isinstance(event, ChallengeResult):
            if event.ref in labels.events:
                results[event.ref].append(event)
        elif isinstance(event, LoginAttempt):
            if event.success and event.id in labels.events and once.first(event.id):
                logins.append((event.id, event.ts))  # a repeated line is one sign-in
        elif isinstance(event, Order):
            if event.id in labels.events and event.action == "new":
                ordered.add((event.account, event.order_id))
        elif (
            isinstance(event, Execution)
            and event.account in labels.accounts
            and once.first(event.id)
        ):
            key = (event.account, event.order_id)
            fills.append((event.ts, key, event.id, event.side, event.value_jpy))
    if first is None or last is None:
        return []

    unauthorized = (
        labels.orders | ordered | {k for _, k, fid, _, _ in fills if fid in labels.events}
    )
    # Each month's values are added up exactly and rounded once, by the rule `evaluate` rounds
    # its totals by (brokerguard.money): a half yen is not ¥1 here and ¥0 there.
    counts: dict[str, dict[str, Decimal]] = {
        m: dict.fromkeys(("logins", "trades", "sold", "bought"), Decimal(0))
        for m in _months(first, last)
    }
    for login_id, ts in logins:
        if let_through(records.get(login_id), results.get(login_id, [])):
            counts[month_of(ts)]["logins"] += 1
    first_fill: dict[tuple[str, str], datetime] = {}
    for ts, key, _, side, value in fills:
        if key not in unauthorized:
            continue
        counts[month_of(ts)]["sold" if side == "sell" else "bought"] += exact(value)
        if key not in first_fill or ts < first_fill[key]:
            first_fill[key] = ts
    for ts in first_fill.values():
        counts[month_of(ts)]["trades"] += 1
    return [
        MonthlyRow(
            month=month,
            logins=int(c["logins"]),
            trades=int(c["trades"]),
            sold_jpy=yen(c["sold"]),
            bought_jpy=yen(c["bought"]),
        )
        for month, c in counts.items()
    ]


def _header(japanese: str, english: str) -> str:
    return f"{japanese} ({english})"


def write_monthly_csv(rows: Sequence[MonthlyRow], path: Path) -> Path:
    """Write the table as CSV: UTF-8 with BOM, one header line in Japanese (English)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replaced(path, "w", encoding="utf-8-sig", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow([_header(ja, en) for _, ja, en in MONTHLY_COLUMNS])
        for row in rows:
            writer.writerow([getattr(row, name) for name, _, _ in MONTHLY_COLUMNS])
    return path


# A month as written (2025-03), or as Excel saves the date it turned it into when the file is
# opened and saved again: 2025/3/1, 2025-03-01, 2025/03 or 2025年3月 (always the first day).
_MONTH = re.compile(r"(\d{4})\s*[-/年]\s*(\d{1,2})\s*(?:月|[-/]\s*0?1\s*(?:日)?)?")


def _month_of(text: str) -> str | None:
    """``YYYY-MM`` for a month cell, or None when it names no month."""
    found = _MONTH.fullmatch(text.strip())
    if found is None or not 1 <= int(found.group(2)) <= 12:
        return None
    return f"{found.group(1)}-{int(found.group(2)):02d}"


def _excel_text(path: Path) -> str:
    """The text of a CSV file as Excel leaves it: UTF-8 (with or without the BOM), or Shift-JIS
    (cp932), which Excel on Japanese Windows writes when a table is saved as "CSV (コンマ区切り)"
    rather than "CSV UTF-8"; read as UTF-8 only, the Japanese headers stopped such a file with a
    UnicodeDecodeError. Anything else is a :class:`ReportError` naming the file."""
    raw = path.read_bytes()
    for encoding in ("utf-8-sig", "cp932"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError as exc:
            problem = f"neither UTF-8 nor Shift-JIS text ({exc.reason} at byte {exc.start})"
    raise ReportError(problem, path=path)


def read_monthly_csv(path: Path) -> list[MonthlyRow]:
    """Read a table written by :func:`write_monthly_csv` (or edited in Excel) back into rows.

    A header may be Japanese, English or both as written; the file UTF-8 or, as Japanese Excel
    saves a plain CSV, Shift-JIS. A bad cell is a :class:`ReportError` naming the line and the
    column.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: monthly table not found")
    names: dict[str, str] = {}
    for name, ja, en in MONTHLY_COLUMNS:
        for alias in (name, ja, en, _header(ja, en)):
            names[alias] = name
    rows = []
    with io.StringIO(_excel_text(path), newline="") as stream:
        reader = csv.reader(stream)
        header = next(reader, None) or []
        fields = []
        for cell in header:
            if cell.strip() not in names:
                raise ReportError("unknown column", path=path, line=1, field=cell)
            fields.append(names[cell.strip()])
        missing = [n for n, _, _ in MONTHLY_COLUMNS if n not in fields]
        if missing:
            raise ReportError("column missing", path=path, line=1, field=missing[0])
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue
            if len(cells) != len(fields):
                raise ReportError(
                    f"{len(cells)} cells, the header has {len(fields)}",
                    path=path,
                    line=reader.line_num,
                )
            raw: dict[str, object] = {}
            for name, cell in zip(fields, cells, strict=True):
                text = cell.strip().replace(",", "")
                if name == "month":
                    raw[name] = text
                    continue
                try:
                    raw[name] = int(text)
                except ValueError:
                    raise ReportError(
                        f"expected a whole number, got {cell!r}",
                        path=path,
                        line=reader.line_num,
                        field=name,
                    ) from None
            month = _month_of(str(raw.get("month", "")))
            if month is None:
                raise ReportError(
                    f"expected a month as YYYY-MM, got {raw.get('month', '')!r}",
                    path=path,
                    line=reader.line_num,
                    field="month",
                )
            raw["month"] = month
            rows.append(msgspec.convert(raw, MonthlyRow))
    return rows
