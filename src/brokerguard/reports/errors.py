"""The one error of the reports: bad input, named by file, line and field.

Reports are read by people who must fix the input (an analyst's case export, an edited policy
file), so every message says where the problem is and what it is, in one line::

    cases.csv: line 4: field `kind`: expected login, trade or withdrawal, got 'trades'
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["ReportError"]


class ReportError(ValueError):
    """Input a report cannot use. ``path``, ``line`` (1-based) and ``field`` say where."""

    def __init__(
        self,
        problem: str,
        *,
        path: Path | str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.problem = problem
        self.path = None if path is None else Path(path)
        self.line = line
        self.field = field
        where = [str(path)] if path is not None else []
        if line is not None:
            where.append(f"line {line}")
        if field is not None:
            where.append(f"field `{field}`")
        super().__init__(": ".join([*where, problem]))
