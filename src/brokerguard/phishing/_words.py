"""Word lists written as text blocks, so that long lists of names stay readable in the source."""

from __future__ import annotations

__all__ = ["words"]


def words(text: str) -> list[str]:
    """The whitespace-separated words of ``text``."""
    return text.split()
