"""Homoglyphs: reduce a host name to the Latin letters a reader would see.

Two kinds of disguise are undone here. Unicode confusables (Cyrillic ``ѕ``, Greek ``ο``,
mathematical letters, accented Latin) come from the Unicode confusables table shipped by the
``confusable_homoglyphs`` package. ASCII look-alikes (``1``/``l``/``i``, ``0``/``o``, ``rn``/``m``,
``vv``/``w``) are folded with a short table, the same pairs dnstwist's homoglyph fuzzer uses.
The scorer compares brand tokens with both the raw and the reduced form: a match only after
reduction is the homoglyph finding.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

from confusable_homoglyphs import categories, confusables

__all__ = ["ascii_fold", "is_mixed_script", "skeleton"]

_ASCII_PAIRS = (
    ("rn", "m"),
    ("vv", "w"),
    ("cl", "d"),
    ("0", "o"),
    ("1", "i"),
    ("l", "i"),
    ("|", "i"),
    ("5", "s"),
)


@lru_cache(maxsize=4096)
def _latin(char: str) -> str:
    if char.isascii():
        return char.lower()
    found = confusables.is_confusable(char, preferred_aliases=["latin"])
    if found:
        for glyph in found[0]["homoglyphs"]:
            c = glyph["c"]
            if c.isascii() and c.isalnum():
                return c.lower()
    base = "".join(
        ch for ch in unicodedata.normalize("NFKD", char) if not unicodedata.combining(ch)
    )
    return base.lower() if base.isascii() and base else char


def skeleton(text: str) -> str:
    """Replace every non-ASCII look-alike with the ASCII letter it imitates (lower case).

    >>> skeleton("ѕbіѕес")
    'sbisec'
    """
    return "".join(_latin(c) for c in unicodedata.normalize("NFKC", text))


def ascii_fold(text: str) -> str:
    """Fold ASCII look-alikes onto one letter each, so that ``sb1sec``, ``sblsec`` and ``sbisec``
    compare equal. Apply it to both sides of a comparison.

    >>> ascii_fold("sb1-sec") == ascii_fold("sbi-sec")
    True
    """
    out = text.lower()
    for a, b in _ASCII_PAIRS:
        out = out.replace(a, b)
    return out


def is_mixed_script(text: str) -> bool:
    """True if the letters of ``text`` come from more than one script (Latin with Cyrillic, ...),
    ignoring digits, hyphens and dots, which every script shares."""
    letters = "".join(c for c in text if c.isalpha())
    if not letters or letters.isascii():
        return False
    aliases = categories.unique_aliases(letters) - {"COMMON", "INHERITED"}
    return len(aliases) > 1
