"""The monthly table as a bar chart: counts above, yen below, one group of bars per month.

Counts (logins, trades) and values (¥ sold, ¥ bought) differ by six orders of magnitude, so they
get a panel each rather than two y-axes on one. Labels are English and Japanese when a Japanese
font is installed (:func:`brokerguard.charts.japanese_font`), English otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from brokerguard.charts import japanese_font, save_figure  # sets the Agg backend: no display
from brokerguard.reports.errors import ReportError
from brokerguard.reports.monthly import MonthlyRow

__all__ = ["CHART_SUFFIXES", "chart_path", "monthly_title", "plot_monthly"]

CHART_SUFFIXES = (".png", ".svg", ".pdf")
"""What a chart may be drawn as, by the file name's suffix (PNG when the name has none)."""


def chart_path(path: Path) -> Path:
    """Where a chart named ``path`` is drawn: ``path`` itself when it ends in ``.png``, ``.svg``
    or ``.pdf`` (any case), ``path`` + ``.png`` when it has no suffix; any other suffix is a
    :class:`ReportError` (matplotlib would draw ``m`` as ``m.png`` behind the caller's back and
    refuse ``m.csv`` with a traceback)."""
    path = Path(path)
    if not path.suffix:
        return path.with_name(path.name + ".png")
    if path.suffix.lower() not in CHART_SUFFIXES:
        raise ReportError(
            f"a chart is drawn as PNG, SVG or PDF, named by its suffix; got {path.suffix!r} "
            f"(try {path.with_suffix('.png').name})",
            path=path,
            field="chart",
        )
    return path


def _t(en: str, ja: str, sep: str = " / ") -> str:
    return f"{en}{sep}{ja}" if japanese_font() else en


def monthly_title(run: Path) -> str:
    """The chart's title for a run directory: its name (``.`` named by the directory it is),
    in English and Japanese when a Japanese font can draw it."""
    name = Path(run).resolve().name
    return _t(
        f"{name}: unauthorized access and trading, by month",
        f"{name}：月次 不正アクセス・不正取引",
        "\n",
    )


def plot_monthly(rows: Sequence[MonthlyRow], path: Path, title: str) -> Path:
    """Draw the monthly table at ``path`` (parents created), as :func:`chart_path` names it;
    returns the file drawn."""
    path = chart_path(path)
    font = japanese_font()
    style = {}
    if font is not None:
        style = {"font.family": "sans-serif", "font.sans-serif": [font, "DejaVu Sans"]}
    months = [row.month for row in rows]
    xs = list(range(len(rows)))
    width = 0.38
    with plt.rc_context(style):
        fig, (top, bottom) = plt.subplots(
            2, 1, figsize=(max(8.0, 1.2 * len(rows) + 4), 6.5), dpi=110, sharex=True
        )
        for ax, series, unit in (
            (
                top,
                [
                    (_t("unauthorized logins", "不正アクセス件数"), [r.logins for r in rows]),
                    (_t("unauthorized trades", "不正取引件数"), [r.trades for r in rows]),
                ],
                _t("count", "件数"),
            ),
            (
                bottom,
                [
                    (_t("value sold", "売却金額"), [r.sold_jpy / 1e6 for r in rows]),
                    (_t("value bought", "買付金額"), [r.bought_jpy / 1e6 for r in rows]),
                ],
                _t("¥ million", "百万円"),
            ),
        ):
            keys = []  # drawn apart: an empty series' bars give the legend no colour of theirs
            for i, (label, values) in enumerate(series):
                offset = (i - 0.5) * width
                color = ("tab:blue", "tab:orange")[i]
                bars = ax.bar([x + offset for x in xs], values, width, color=color)
                keys.append(Patch(color=color, label=label))
                fmt = "{:,.0f}" if ax is top else "{:,.1f}"
                ax.bar_label(bars, labels=[fmt.format(v) for v in values], fontsize=8)
            # From zero up, with room for the legend above the tallest bar; a range of months
            # without fraud still gets an axis of 0 to 1 (not -0.06 to 0.06), and counts are
            # whole numbers.
            peak = max((v for _, values in series for v in values), default=0.0)
            ax.set_ylim(0, max(peak, 1.0) * 1.35)
            if ax is top:
                ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylabel(unit)
            ax.grid(True, axis="y", alpha=0.3)
            ax.legend(handles=keys, loc="upper center", ncol=2, fontsize=9)
        if not rows:
            for ax in (top, bottom):
                ax.text(
                    0.5,
                    0.4,
                    _t("no events in this period", "この期間のイベントなし"),
                    ha="center",
                    va="center",
                    transform=ax.transAxes,
                    color="0.4",
                )
        bottom.set_xticks(xs, months)
        bottom.set_xlim(-0.8, len(rows) - 0.2)
        bottom.set_xlabel(_t("month (Japan time)", "月(日本時間)"))
        fig.suptitle(title)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        save_figure(fig, path)
        plt.close(fig)
    return path
