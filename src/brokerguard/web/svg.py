"""Server-drawn SVG for the campaign page: the account/infrastructure graph and a fill chart.

Drawn here, in a few dozen lines, because the console must load nothing from the internet and a
JavaScript graph library would be one more asset to ship and audit. The graph is bipartite
(accounts on one ring, shared infrastructure on an inner ring) — readable for the tens of nodes
a campaign has, and deterministic, so a test can pin it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import escape

__all__ = ["campaign_graph", "fill_chart", "monthly_chart"]


def _ring(n: int, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    return [
        (
            cx + r * math.cos(2 * math.pi * i / max(n, 1) - math.pi / 2),
            cy + r * math.sin(2 * math.pi * i / max(n, 1) - math.pi / 2),
        )
        for i in range(n)
    ]


def campaign_graph(
    accounts: Sequence[str],
    infrastructure: Sequence[str],
    edges: Sequence[tuple[str, str]],
    *,
    size: int = 520,
    link: str = "/console/accounts/",
) -> str:
    """An SVG of accounts (outer ring, linked to their timelines) and infrastructure (inner).

    ``edges`` are (account, infrastructure) pairs; a node without one is drawn unlinked.
    """
    c = size / 2
    acc_pos = dict(zip(accounts, _ring(len(accounts), c, c, c - 60), strict=True))
    infra_pos = dict(
        zip(infrastructure, _ring(len(infrastructure), c, c, (c - 60) * 0.4), strict=True)
    )
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="graph" width="{size}" '
        f'height="{size}" viewBox="0 0 {size} {size}" role="img">'
    ]
    for a, i in edges:
        if a in acc_pos and i in infra_pos:
            (x1, y1), (x2, y2) = acc_pos[a], infra_pos[i]
            parts.append(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}"/>')
    for name, (x, y) in infra_pos.items():
        parts.append(
            f'<g class="infra"><rect x="{x - 6:.1f}" y="{y - 6:.1f}" width="12" height="12"/>'
            f'<text x="{x:.1f}" y="{y - 10:.1f}">{escape(name)}</text></g>'
        )
    for name, (x, y) in acc_pos.items():
        # quoted whole, as the templates' ``segment`` does: a ``?``, ``#`` or ``/`` in an
        # account number would otherwise link to another account's timeline
        href = escape(link + quote(name, safe=""), {'"': "&quot;"})
        parts.append(
            f'<a href="{href}"><g class="acct"><circle cx="{x:.1f}" cy="{y:.1f}" r="7"/>'
            f'<text x="{x:.1f}" y="{y + 20:.1f}">{escape(name)}</text></g></a>'
        )
    parts.append("</svg>")
    return "".join(parts)


def fill_chart(
    fills: Sequence[tuple[datetime, float, float]],
    *,
    width: int = 560,
    height: int = 240,
    labels: Mapping[str, str] | None = None,
) -> str:
    """Fill price (line) over volume (bars) of one symbol; ``fills`` are (time, price, qty).

    Drawn with its axes: a price axis on the left (low, middle, high, with ticks and its unit),
    a volume axis on the right (zero and the largest fill) and a time axis below (first, middle
    and last fill, UTC). ``labels`` names the axes in the reader's language (``price``,
    ``volume``, ``time``); without it, English. Before, the chart had two numbers and two times
    floating beside it and nothing said which was what.
    """
    if not fills:
        return ""
    names = {"price": "price (¥)", "volume": "volume", "time": "time (UTC)", **(labels or {})}
    fills = sorted(fills)
    t0, t1 = fills[0][0].timestamp(), fills[-1][0].timestamp()
    span = max(t1 - t0, 1.0)
    lo, hi = min(f[1] for f in fills), max(f[1] for f in fills)
    vmax = max(f[2] for f in fills) or 1.0
    left, right, top, vol_h = 64, 56, 22, 50
    base = height - 44  # the time axis
    price_h = base - top - vol_h - 10

    def x(ts: datetime) -> float:
        return left + (width - left - right) * (ts.timestamp() - t0) / span

    def y(price: float) -> float:
        return top + price_h * (1 - (price - lo) / (hi - lo)) if hi > lo else top + price_h / 2

    x_end = width - right
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img">',
        # axes: price (left), volume (right), time (bottom)
        f'<line class="axis" x1="{left}" y1="{top}" x2="{left}" y2="{base}"/>',
        f'<line class="axis" x1="{x_end}" y1="{base - vol_h}" x2="{x_end}" y2="{base}"/>',
        f'<line class="axis" x1="{left}" y1="{base}" x2="{x_end}" y2="{base}"/>',
        f'<text class="axis-name" x="4" y="{top - 8}">{escape(names["price"])}</text>',
        f'<text class="axis-name" x="{width - 4}" y="{base - vol_h - 8}" '
        f'text-anchor="end">{escape(names["volume"])}</text>',
        f'<text class="axis-name" x="{(left + x_end) / 2:.1f}" y="{height - 4}" '
        f'text-anchor="middle">{escape(names["time"])}</text>',
    ]
    for price in sorted({lo, (lo + hi) / 2, hi}):
        py = y(price)
        parts.append(
            f'<line class="tick" x1="{left - 4}" y1="{py:.1f}" x2="{left}" y2="{py:.1f}"/>'
        )
        parts.append(f'<text x="{left - 6}" y="{py + 3:.1f}" text-anchor="end">{price:,.0f}</text>')
    for qty, vy in ((0, base), (vmax, base - vol_h)):
        parts.append(f'<line class="tick" x1="{x_end}" y1="{vy}" x2="{x_end + 4}" y2="{vy}"/>')
        parts.append(f'<text x="{x_end + 6}" y="{vy + 3}">{qty:,.0f}</text>')
    middle = datetime.fromtimestamp((t0 + t1) / 2, fills[0][0].tzinfo)
    for when, anchor in ((fills[0][0], "start"), (middle, "middle"), (fills[-1][0], "end")):
        if anchor == "middle" and t1 - t0 < 1:
            continue
        tx = x(when)
        parts.append(
            f'<line class="tick" x1="{tx:.1f}" y1="{base}" x2="{tx:.1f}" y2="{base + 4}"/>'
        )
        parts.append(
            f'<text x="{tx:.1f}" y="{base + 16}" text-anchor="{anchor}">{when:%m-%d %H:%M}</text>'
        )
    for ts, _price, qty in fills:
        h = vol_h * qty / vmax
        parts.append(
            f'<rect class="vol" x="{x(ts) - 1.5:.1f}" y="{base - h:.1f}" '
            f'width="3" height="{h:.1f}"/>'
        )
    points = " ".join(f"{x(ts):.1f},{y(p):.1f}" for ts, p, _ in fills)
    parts.append(f'<polyline class="price" points="{points}"/>')
    parts.append("</svg>")
    return "".join(parts)


def monthly_chart(
    rows: Sequence[Any], labels: Mapping[str, str], *, width: int = 640, height: int = 300
) -> str:
    """The monthly table as two panels of paired bars, one group per month: counts (logins,
    trades) above, ¥ million (sold, bought) below, as ``brokerguard report monthly --chart``
    draws it; each panel with its axis (zero and its top value, named by ``labels`` in the
    reader's language), the months below and a legend. Empty when there are no rows."""
    if not rows:
        return ""
    left, right, top, gap, bottom = 70, 10, 30, 46, 40
    panel = (height - top - gap - bottom) / 2
    n = len(rows)
    slot = (width - left - right) / n
    bar = min(28.0, slot / 3)
    colors = ("#0b5cad", "#e07b00")
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart monthly-chart" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img">'
    ]
    panels = (
        (labels["count"], (("logins", 1.0), ("trades", 1.0)), top),
        (labels["yen"], (("sold_jpy", 1e-6), ("bought_jpy", 1e-6)), top + panel + gap),
    )
    keys = (("logins", "trades"), ("sold", "bought"))
    for (unit, series, y0), names in zip(panels, keys, strict=True):
        values = [[getattr(r, field) * scale for r in rows] for field, scale in series]
        peak = max(max(v) for v in values) or 1.0
        base = y0 + panel
        parts.append(f'<line class="axis" x1="{left}" y1="{y0}" x2="{left}" y2="{base}"/>')
        parts.append(
            f'<line class="axis" x1="{left}" y1="{base}" x2="{width - right}" y2="{base}"/>'
        )
        parts.append(f'<text class="axis-name" x="4" y="{y0 - 8}">{escape(unit)}</text>')
        fmt = "{:,.0f}" if y0 == top else "{:,.1f}"
        for value, vy in ((0.0, base), (peak, y0)):
            parts.append(
                f'<text x="{left - 6}" y="{vy + 3:.1f}" text-anchor="end">'
                f"{fmt.format(value)}</text>"
            )
        for i, series_values in enumerate(values):
            for m, value in enumerate(series_values):
                h = panel * value / peak
                bx = left + slot * m + slot / 2 + (i - 1) * bar
                parts.append(
                    f'<rect class="series{i}" fill="{colors[i]}" x="{bx:.1f}" '
                    f'y="{base - h:.1f}" width="{bar:.1f}" height="{h:.1f}"/>'
                )
        for i, name in enumerate(names):
            lx = left + 10 + i * 180
            parts.append(
                f'<rect fill="{colors[i]}" x="{lx}" y="{y0 - 18}" width="10" height="10"/>'
                f'<text x="{lx + 14}" y="{y0 - 9}" text-anchor="start">'
                f"{escape(labels[name])}</text>"
            )
    for m, row in enumerate(rows):
        mx = left + slot * m + slot / 2
        parts.append(
            f'<text x="{mx:.1f}" y="{height - bottom + 16}" text-anchor="middle">'
            f"{escape(row.month)}</text>"
        )
    parts.append(
        f'<text class="axis-name" x="{(left + width - right) / 2:.1f}" y="{height - 6}" '
        f'text-anchor="middle">{escape(labels["month"])}</text>'
    )
    parts.append("</svg>")
    return "".join(parts)
