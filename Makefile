# One command each: `make demo` and `make test` set up the virtual environment on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BG := $(VENV)/bin/brokerguard

.PHONY: venv demo test bench bench-phishing lint format clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(BG) demo --out runs/demo

test: venv
	$(PY) -m pytest -q -n 2 --dist loadfile

bench: venv
	$(PY) bench/simulate.py
	$(PY) bench/engine.py
	$(PY) bench/api.py

# Needs JPCERT/CC's list and the benign sets in ../shared/data (never copied into the repo).
bench-phishing: venv
	$(PY) bench/phishing.py

lint: venv
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

format: venv
	$(VENV)/bin/ruff format src tests bench
	$(VENV)/bin/ruff check --fix src tests bench

clean:
	rm -rf $(VENV) runs build *.egg-info
