"""Charts that people would rather look at than read, drawn with matplotlib (no display needed)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["plot_unauthorized_value"]


def plot_unauthorized_value(
    timelines: dict[str, list[tuple[datetime, float]]], path: Path, title: str
) -> Path:
    """Cumulative unauthorized value (JPY) over time, one line per guard."""
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=110)
    for guard, points in timelines.items():
        if points:
            xs = [t for t, _ in points]
            ys = [v / 1e6 for _, v in points]
            ax.step(xs, ys, where="post", label=f"{guard} (¥{ys[-1]:,.0f}M)")
        else:
            ax.plot([], [], label=f"{guard} (¥0)")
    ax.set_title(title)
    ax.set_ylabel("unauthorized value executed, ¥ million (cumulative)")
    ax.set_xlabel("date (local time of the run)")
    zone = next((p[0][0].tzinfo for p in timelines.values() if p), None)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d", tz=zone))
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left")
    fig.autofmt_xdate()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
