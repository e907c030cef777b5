"""Whole yen: the one rounding rule for every ¥ figure that people read.

The evaluation (``brokerguard evaluate``), the regulator's monthly table and the compensation
calculator all report the same executed values, and an analyst checks one against the other;
so they must round the same way, in one place. The rule is **half up**, the one the reports
always documented: ¥0.5 is ¥1, in the customer's favour when it is a loss or a payout. (Python's
``round`` rounds half to even — ¥100.5 to ¥100 — and was where ``evaluate`` and the reports
parted by ¥1.)

Amounts arrive as floats (a fill's ``value_jpy`` is quantity × price to the sen). They are
rounded as written (``repr``), and sums are added up exactly in :class:`~decimal.Decimal`:
added as floats, six fills totalling ¥318,822.50 come to 318,822.49999999994 and would round
down, and the result would depend on the order of the additions.

>>> yen(100.5), yen(101.5), yen(0.49)
(101, 102, 0)
>>> yen_sum([94793.53, 32912.43, 56377.58, 98959.54, 770.97, 35008.45])
318823
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import ROUND_HALF_UP, Decimal

__all__ = ["exact", "yen", "yen_sum"]


def exact(value: float | Decimal) -> Decimal:
    """``value`` as written: the float 100.1 is 100.1, not 100.09999999999999431566…"""
    return value if isinstance(value, Decimal) else Decimal(repr(value))


def yen(value: float | Decimal) -> int:
    """Whole yen, halves rounded up (away from zero: −¥0.5 is −¥1)."""
    return int(exact(value).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def yen_sum(values: Iterable[float | Decimal]) -> int:
    """The exact sum of ``values`` as written, in whole yen (:func:`yen`)."""
    return yen(sum((exact(v) for v in values), Decimal(0)))
