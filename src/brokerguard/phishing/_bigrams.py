"""How word-like a name is: mean log-probability of its letter pairs under a bigram model.

Throw-away phishing domains (``basiuoyqas``, ``xnxbzs``, ``jwaveyj``) are typed or generated at
random; legitimate names are English words, romaji or pinyin. The model's letter-pair
frequencies come from the public-domain Webster's 2nd word list (via the ``english-words``
package) plus every romaji and pinyin syllable pair, so Japanese and Chinese names are not
mistaken for noise. The table is small and shipped as ``bigrams.json``; ``python -m
brokerguard.phishing._bigrams`` rebuilds it (needs ``english-words``, a dev dependency).
"""

from __future__ import annotations

import itertools
import json
import math
from functools import lru_cache
from importlib import resources
from pathlib import Path

from brokerguard.phishing._words import words

__all__ = ["build_table", "word_likeness"]


_ALPHABET = "abcdefghijklmnopqrstuvwxyz"
_EDGE = "^"  # word start / end marker

_ROMAJI = words(
    """
a i u e o
ka ki ku ke ko sa shi su se so ta chi tsu te to na ni nu ne no ha hi fu he ho
ma mi mu me mo ya yu yo ra ri ru re ro wa wo n ga gi gu ge go za ji zu ze zo da de do ba bi bu be bo
pa pi pu pe po kya kyu kyo sha shu sho cha chu cho nya nyu nyo hya hyu hyo mya myu myo rya ryu ryo
gya gyu gyo ja ju jo bya byu byo pya pyu pyo
"""
)

_PINYIN_INITIALS = words("b p m f d t n l g k h j q x zh ch sh r z c s y w")
_PINYIN_FINALS = words(
    """
a o e i u v ai ei ui ao ou iu ie ue er
an en in un ang eng ing ong ia iao ian iang
iong ua uo uai uan uang
"""
)


def _syllablewords() -> list[str]:
    pinyin = [i + f for i in _PINYIN_INITIALS for f in _PINYIN_FINALS] + _PINYIN_FINALS
    words = []
    for syllables in (_ROMAJI, pinyin):
        words += ["".join(p) for p in itertools.product(syllables, repeat=2)]
    return words


def build_table() -> dict[str, float]:
    """Letter-pair log-probabilities (``"^a"``, ``"ab"``, ``"z^"``), add-one smoothed."""
    from english_words import get_english_words_set

    words = sorted(get_english_words_set(["web2"], lower=True, alpha=True)) + _syllablewords()
    counts: dict[str, int] = {}
    for w in words:
        s = _EDGE + w + _EDGE
        for a, b in zip(s, s[1:], strict=False):
            counts[a + b] = counts.get(a + b, 0) + 1
    table: dict[str, float] = {}
    for a in _EDGE + _ALPHABET:
        row = [counts.get(a + b, 0) + 1 for b in _ALPHABET + _EDGE]
        total = sum(row)
        for b, c in zip(_ALPHABET + _EDGE, row, strict=True):
            table[a + b] = round(math.log(c / total), 3)
    return table


@lru_cache(maxsize=1)
def _table() -> dict[str, float]:
    data = resources.files("brokerguard.phishing").joinpath("bigrams.json").read_text("utf-8")
    return json.loads(data)


@lru_cache(maxsize=65536)
def word_likeness(name: str) -> float:
    """Mean log-probability per letter pair of the letters of ``name`` (digits and hyphens split
    it into words). Typical English or romaji names score above -2.6; random strings below -3.

    >>> word_likeness("securities") > word_likeness("xnxbzs")
    True
    """
    table = _table()
    total = 0.0
    n = 0
    word = []
    for c in name.lower() + " ":
        if c in _ALPHABET:
            word.append(c)
            continue
        if word:
            s = _EDGE + "".join(word) + _EDGE
            for a, b in zip(s, s[1:], strict=False):
                total += table[a + b]
                n += 1
            word = []
    return total / n if n else 0.0


if __name__ == "__main__":  # pragma: no cover - maintenance entry point
    out = Path(__file__).with_name("bigrams.json")
    out.write_text(json.dumps(build_table(), sort_keys=True, separators=(",", ":")) + "\n")
    print(f"wrote {out}")
