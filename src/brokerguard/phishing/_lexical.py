"""Small lexical tests on host labels and path pieces: does it look random, is it filler.

Phishing kits register throw-away names (``evsy8``, ``qc8vtv``, ``xqawknsq``) and use short
random paths (``/UxWgoq``). Legitimate names are words, romaji or pinyin: pronounceable, with
vowels between consonants. These tests are cheap and deliberately simple so that every verdict
can be explained; their thresholds were set on the 2024-01..2025-06 months only.
"""

from __future__ import annotations

import re
from functools import lru_cache

from brokerguard.phishing._bigrams import word_likeness
from brokerguard.phishing._words import words

__all__ = [
    "CONTEXT_WORDS",
    "FILLER_WORDS",
    "is_filler",
    "looks_random",
    "max_consonant_run",
    "random_path_piece",
    "randomness",
]


_VOWELS = set("aeiouy")
# Below this mean letter-pair log-probability a name is taken for random (set on 2024-01..2025-06).
RANDOM_LIKENESS = -3.5
STRONG_RANDOM_LIKENESS = -4.5

# Words a phisher glues to a brand name (``sbisec-jp``, ``www-daiwa-co``, ``monex-login``).
FILLER_WORDS = frozenset(
    words("""
    www m my site sites jp japan japian co cojp com sec secu securities security securtle shoken
    syoken login logon signin auth account member members info online web net trade hometrade
    kabu app verify verification support help center official update confirm check service
    mobile sp pc portal new id api ss zq zhengquan zhengjuan invest fx refund refued call deal
    locali local user users home main global group card bank gate etgate s
    """)
)

# Words that put an ambiguous abbreviation (``sbi``, ``rakuten``) in a securities context.
CONTEXT_WORDS = (
    "sec",
    "shoken",
    "syoken",
    "kabu",
    "trade",
    "login",
    "zhengquan",
    "zhengjuan",
    "zq",
    "etgate",
    "invest",
    "stock",
    "securit",
)


_DIGRAPHS = ("sch", "ch", "sh", "th", "ph", "wh", "gh", "ck", "ng", "ts", "zh")


def _collapse(text: str) -> str:
    t = text.lower()
    for d in _DIGRAPHS:
        t = t.replace(d, "C")
    return t


def max_consonant_run(text: str) -> int:
    """Longest run of consonant sounds (``y`` counts as a vowel; ``ch``, ``ng``, ``zh``... count
    as one), so that ``strength`` or ``zhuang`` are not called random."""
    best = run = 0
    for c in _collapse(text):
        if c.isalpha() and c not in _VOWELS:
            run += 1
            best = max(best, run)
        else:
            run = 0
    return best


@lru_cache(maxsize=65536)
def randomness(text: str) -> int:
    """How machine-made a name looks: 0 word-like; 1 unusual letter pairs only (weak evidence:
    many real brand names are like that); 2 machine-made (digits inside, long consonant runs,
    no vowels, or very unlikely letter pairs)."""
    t = text.lower().replace("-", "")
    if len(t) < 4:
        return 0
    letters = [c for c in t if c.isalpha()]
    digits = sum(c.isdigit() for c in t)
    core = t.rstrip("0123456789").lstrip("0123456789")
    if letters and digits and (len(t) <= 7 or any(c.isdigit() for c in core)):
        return 2
    if not letters:
        return 2 if len(t) >= 5 else 0
    if len(t) <= 14 and max_consonant_run(t) >= 4:
        return 2
    sounds = [c for c in _collapse(t) if c.isalpha()]
    vowels = sum(c in _VOWELS for c in sounds)
    if len(sounds) >= 6 and vowels / len(sounds) < 0.15:
        return 2
    if len(letters) < 5:
        return 0
    likeness = word_likeness(t)
    if likeness < STRONG_RANDOM_LIKENESS:
        return 2
    return 1 if likeness < RANDOM_LIKENESS else 0


@lru_cache(maxsize=65536)
def looks_random(text: str) -> bool:
    """True for machine-made names: letters and digits interleaved, long consonant runs, almost
    no vowels, or very unlikely letter pairs. Names shorter than 4 characters are never judged.

    >>> looks_random("evsy8"), looks_random("xqawknsq"), looks_random("gongyongjinka")
    (True, True, False)
    """
    return randomness(text) == 2


@lru_cache(maxsize=65536)
def is_filler(text: str) -> bool:
    """True if ``text`` is empty, digits, or a run of filler words (``cojpsec``, ``jp01``)."""
    t = text.lower().replace("-", "").replace("_", "")
    n = len(t)
    ok = [False] * (n + 1)
    ok[0] = True
    for i in range(n):
        if not ok[i]:
            continue
        j = i
        while j < n and t[j].isdigit():
            j += 1
            ok[j] = True
        for w in FILLER_WORDS:
            if t.startswith(w, i):
                ok[i + len(w)] = True
    return ok[n]


_MIXED_TOKEN = re.compile(r"^(?=.*[a-z])(?=.+[A-Z])[A-Za-z0-9]{5,14}$")


def random_path_piece(piece: str) -> bool:
    """A kit's path segment: mixed-case letters/digits (``UxWgoq``, ``QJSmxXOQ``, not ``Galleries``
    or ``GetHome``) or a random lower-case name; never plain numbers (article ids)."""
    if piece.isdigit() or not piece.isascii():
        return False
    if _MIXED_TOKEN.match(piece) and any(c.isupper() for c in piece[1:]):
        return any(c.isdigit() for c in piece) or word_likeness(piece) < -3.0
    return piece.isalnum() and 5 <= len(piece) <= 14 and looks_random(piece)
