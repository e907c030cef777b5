"""Charts that people would rather look at than read, drawn with matplotlib (no display needed).

Labels are English and Japanese when a Japanese font is installed — a system font such as IPAex
Gothic or Noto Sans CJK JP, or the IPAex Gothic that the ``matplotlib-fontja`` package ships —
and English only otherwise (matplotlib's own DejaVu Sans has no Japanese glyphs). Fonts come from
installed packages only, never from the network.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import font_manager  # noqa: E402

from brokerguard.files import write_bytes  # noqa: E402

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from brokerguard.evaluate import SymbolTimeline

__all__ = [
    "bilingual",
    "japanese_font",
    "plot_campaign_timeline",
    "plot_unauthorized_value",
    "save_figure",
]

JAPANESE_FONTS = (
    "IPAexGothic",
    "IPAGothic",
    "Noto Sans CJK JP",
    "Noto Sans JP",
    "Source Han Sans JP",
    "TakaoGothic",
    "VL Gothic",
)
"""Font families with Japanese glyphs, in order of preference."""


def save_figure(fig: Figure, path: Path) -> None:
    """Write ``fig`` to ``path`` (its format from the suffix; PNG without one). Matplotlib's
    own ``savefig(path)`` let a failed write pass in silence (a full disk left a cut chart and
    the command said it was drawn); the image is drawn in memory and written whole, so a failure
    raises an ``OSError`` naming the file and leaves the chart of the last run as it was."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format=path.suffix.lstrip(".").lower() or "png")
    write_bytes(path, buffer.getvalue())


@lru_cache(maxsize=1)
def japanese_font() -> str | None:
    """The family of an installed Japanese font, or None (then charts are labelled in English)."""
    spec = importlib.util.find_spec("matplotlib_fontja")  # located, not imported: no rc changes
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            ttf = Path(location) / "fonts" / "ipaexg.ttf"
            if ttf.is_file():
                font_manager.fontManager.addfont(str(ttf))
    installed = {font.name for font in font_manager.fontManager.ttflist}
    return next((name for name in JAPANESE_FONTS if name in installed), None)


def bilingual(en: str, ja: str, sep: str = " / ") -> str:
    """A label in English and Japanese when the Japanese can be drawn, else in English."""
    return f"{en}{sep}{ja}" if japanese_font() else en


_t = bilingual


@contextmanager
def _style() -> Iterator[None]:
    font = japanese_font()
    if font is None:
        yield
        return
    families = [font, *matplotlib.rcParams["font.sans-serif"]]
    with plt.rc_context({"font.family": "sans-serif", "font.sans-serif": families}):
        yield


def plot_unauthorized_value(
    timelines: dict[str, list[tuple[datetime, float]]], path: Path, title: str
) -> Path:
    """Cumulative unauthorized value (JPY) over time, one line per guard; the legend gives each
    guard's total in whole yen, as the tables do (in millions, ¥400,000 read ¥0M: as if the
    guard had stopped everything)."""
    with _style():
        fig, ax = plt.subplots(figsize=(9, 4.5), dpi=110)
        for guard, points in timelines.items():
            if points:
                xs = [t for t, _ in points]
                ys = [v / 1e6 for _, v in points]
                total = round(points[-1][1])
                ax.step(xs, ys, where="post", label=f"{guard} (¥{total:,})")
            else:
                ax.plot([], [], label=f"{guard} (¥0)")
        ax.set_title(title)
        ax.set_ylabel(
            _t(
                "unauthorized value executed, ¥ million (cumulative)",
                "不正取引・出金額(累計, 百万円)",
                "\n",
            )
        )
        ax.set_xlabel(_t("date (local time of the run)", "日付(現地時刻)"))
        times = [t for points in timelines.values() for t, _ in points]
        zone = times[0].tzinfo if times else None
        short = bool(times) and max(times) - min(times) < timedelta(days=4)
        ax.xaxis.set_major_formatter(
            mdates.DateFormatter("%m-%d %H:%M" if short else "%m-%d", tz=zone)
        )
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper left")
        fig.autofmt_xdate()
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        save_figure(fig, path)
        plt.close(fig)
    return path


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    return f"{hours / 24:.1f} days"


def _broken(
    points: list[tuple[datetime, float]], gap: timedelta
) -> tuple[list[datetime], list[float]]:
    """Points as x and y lists with a break (NaN) wherever trading paused longer than ``gap``."""
    xs: list[datetime] = []
    ys: list[float] = []
    for i, (t, p) in enumerate(points):
        if i and t - points[i - 1][0] > gap:
            xs.append(points[i - 1][0] + gap)
            ys.append(float("nan"))
        xs.append(t)
        ys.append(p)
    return xs, ys


def _panel_title(line: SymbolTimeline) -> str:
    name = f"{line.market}:{line.symbol}"
    if line.attack is not None and line.raised_at is not None:
        seconds = line.delay_s or 0.0
        delay = _duration(seconds) if seconds >= 60 else "<1 min"
        return (
            f"{name}: pumped by attack {line.attack + 1}, campaign {line.campaign} raised "
            f"{delay} after the first buy"
            + (
                f" / 攻撃{line.attack + 1}の銘柄、初回買いから{delay}で検知"
                if japanese_font()
                else ""
            )
        )
    if line.attack is not None:
        return f"{name}: pumped by attack {line.attack + 1}, no campaign raised" + (
            f" / 攻撃{line.attack + 1}の銘柄、未検知" if japanese_font() else ""
        )
    return f"{name}: named by campaign {line.campaign}, not a pumped symbol (false alarm)" + (
        " / 操作銘柄ではない(誤検知)" if japanese_font() else ""
    )


def plot_campaign_timeline(timelines: list[SymbolTimeline], path: Path, title: str) -> Path:
    """One panel per symbol: its price, the first coordinated buy and when a campaign named it.

    Each panel spans the two days around those moments, so that a delay of minutes stays visible
    in a run of weeks; the shaded band is the time the pump ran before the campaign was raised.
    """
    rows = max(1, len(timelines))
    with _style():
        fig, axes = plt.subplots(
            rows, 1, figsize=(10, 2.4 * rows + 1.0), dpi=110, squeeze=False, layout="constrained"
        )
        if not timelines:
            ax = axes[0][0]
            ax.text(
                0.5,
                0.5,
                _t("no pumped symbol and no campaign in this run", "操作銘柄・キャンペーンなし"),
                ha="center",
                va="center",
                transform=ax.transAxes,
            )
            ax.set_axis_off()
        labels = {
            "price": _t("price (5-minute bars, ¥)", "株価(5分足, 円)"),
            "daily": _t("daily close (¥)", "日足終値(円)"),
            "buy": _t("first coordinated buy", "最初の協調買い"),
            "raised": _t("campaign raised", "キャンペーン検知"),
            "gap": _t("pump running undetected", "未検知の時間"),
        }
        for ax, line in zip((row[0] for row in axes), timelines, strict=False):
            moments = [t for t in (line.first_buy, line.raised_at) if t is not None]
            zone = moments[0].tzinfo
            lo, hi = min(moments) - timedelta(days=1), max(moments) + timedelta(days=1)
            intraday = [(t, p) for t, p in line.prices if lo <= t <= hi]
            daily = [(t, p) for t, p in line.daily if lo - timedelta(days=3) <= t <= hi]
            if daily:
                ax.step(
                    [t for t, _ in daily],
                    [p for _, p in daily],
                    where="post",
                    color="0.6",
                    linestyle="--",
                    linewidth=1,
                    label=labels["daily"],
                )
            if intraday:
                xs, ys = _broken(intraday, timedelta(minutes=30))
                ax.plot(
                    xs,
                    ys,
                    color="tab:blue",
                    marker=".",
                    markersize=3,
                    linewidth=1,
                    label=labels["price"],
                )
            if line.first_buy is not None:
                ax.axvline(line.first_buy, color="tab:red", linewidth=1.6, label=labels["buy"])
            if line.raised_at is not None:
                ax.axvline(
                    line.raised_at,
                    color="tab:green",
                    linewidth=1.6,
                    linestyle="-.",
                    label=labels["raised"],
                )
            if line.first_buy is not None and line.raised_at is not None:
                if line.raised_at > line.first_buy:
                    ax.axvspan(
                        line.first_buy,
                        line.raised_at,
                        color="tab:orange",
                        alpha=0.2,
                        label=labels["gap"],
                    )
            elif line.first_buy is not None:
                ax.axvspan(line.first_buy, hi, color="tab:orange", alpha=0.12, label=labels["gap"])
            ax.set_xlim(lo, hi)
            ax.set_title(_panel_title(line), fontsize=9, loc="left")
            ax.set_ylabel(_t("price (¥)", "株価(円)", "\n"))
            ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d %H:%M", tz=zone))
            ax.grid(True, alpha=0.3)
        if timelines:  # the time axis named once, under the last panel (it had no name)
            axes[-1][0].set_xlabel(_t("time (local time of the run)", "時刻(現地時刻)"))
        handles: dict[str, object] = {}
        for row in axes:
            for handle, label in zip(*row[0].get_legend_handles_labels(), strict=True):
                handles.setdefault(label, handle)
        fig.suptitle(title)
        if handles:
            fig.legend(
                list(handles.values()),
                list(handles.keys()),
                loc="outside lower center",
                ncol=min(3 if japanese_font() else 5, len(handles)),
                fontsize=8,
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        save_figure(fig, path)
        plt.close(fig)
    return path
