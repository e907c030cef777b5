"""Whole yen: one rule (half up) and exact sums, for the evaluation and the reports alike."""

from __future__ import annotations

import doctest
import itertools
from decimal import Decimal

import brokerguard.money as money
from brokerguard.money import yen, yen_sum


def test_docstring_examples_run() -> None:
    failed, tried = doctest.testmod(money)
    assert tried > 0 and failed == 0


def test_halves_go_up_whatever_the_neighbouring_even() -> None:
    assert [yen(v) for v in (0.5, 1.5, 2.5, 100.5, 2.49, 2.51)] == [1, 2, 3, 101, 2, 3]
    assert yen(Decimal("2.5")) == 3
    assert yen(-2.5) == -3  # away from zero: a refund of half a yen is a whole one


def test_a_sum_does_not_depend_on_the_order_of_its_terms() -> None:
    values = (94793.53, 32912.43, 56377.58, 98959.54, 770.97, 35008.45)  # ¥318,822.50
    assert {yen_sum(p) for p in itertools.permutations(values)} == {318_823}
