"""The reports package's public surface is what ``__all__`` says, and its examples run."""

from __future__ import annotations

import doctest
import importlib

import pytest

import brokerguard.reports as reports

MODULES = ["labels", "monthly", "prices", "policies", "compensation", "run", "errors"]


def test_all_is_sorted_and_every_name_exists() -> None:
    assert list(reports.__all__) == sorted(reports.__all__)
    for name in reports.__all__:
        assert getattr(reports, name) is not None


@pytest.mark.parametrize("name", MODULES)
def test_module_all_names_exist_and_have_docstrings(name: str) -> None:
    module = importlib.import_module(f"brokerguard.reports.{name}")
    assert module.__doc__
    for member in module.__all__:
        assert hasattr(module, member), member


@pytest.mark.parametrize("name", ["labels", "prices", "policies"])
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(f"brokerguard.reports.{name}")
    failed, tried = doctest.testmod(module)
    assert tried > 0 and failed == 0
