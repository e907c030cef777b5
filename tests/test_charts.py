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
