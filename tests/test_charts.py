"""The charts people look at instead of tables: what they say must match the tables."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import matplotlib.pyplot as plt
import pytest

from brokerguard.charts import plot_unauthorized_value

JST = timezone(timedelta(hours=9))


def test_the_value_chart_legend_gives_each_guards_total_in_whole_yen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In millions, ¥400,000 read "¥0M", as if the guard had let nothing through."""
    figures: list = []
    monkeypatch.setattr(plt, "close", figures.append)
    t0 = datetime(2025, 3, 20, 9, tzinfo=JST)
    timelines = {
        "allow-all": [(t0, 1_000_000.0), (t0 + timedelta(hours=1), 12_345_678.4)],
        "brokerguard": [(t0, 400_000.0)],
        "passkey-at-login": [],
    }
    path = plot_unauthorized_value(timelines, tmp_path / "v.png", "unit")
    assert path.read_bytes().startswith(b"\x89PNG")
    (figure,) = figures
    labels = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert labels == ["allow-all (¥12,345,678)", "brokerguard (¥400,000)", "passkey-at-login (¥0)"]


def test_the_campaign_timeline_names_its_axes_in_both_languages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The campaign chart's time axis had no name (whose clock?) and its price axis only "¥"."""
    from brokerguard.charts import japanese_font, plot_campaign_timeline
    from brokerguard.evaluate import SymbolTimeline

    figures: list = []
    monkeypatch.setattr(plt, "close", figures.append)
    t0 = datetime(2025, 4, 2, 9, tzinfo=JST)
    line = SymbolTimeline(
        market="TSE",
        symbol="2260",
        attack=3,
        first_buy=t0,
        campaign="C0018",
        raised_at=t0 + timedelta(minutes=1),
        prices=[(t0, 130.0), (t0 + timedelta(minutes=5), 140.0)],
    )
    plot_campaign_timeline([line, line], tmp_path / "c.png", "t")
    (figure,) = figures
    axes = figure.axes
    assert "time (local time of the run)" in axes[-1].get_xlabel()
    assert all("price (¥)" in ax.get_ylabel() for ax in axes)
    if japanese_font():  # the Japanese half needs the font (matplotlib-fontja)
        assert "時刻(現地時刻)" in axes[-1].get_xlabel() and "株価(円)" in axes[0].get_ylabel()
