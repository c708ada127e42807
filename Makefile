# make serve: a working voice agent on http://127.0.0.1:8000, offline.   make test: the whole suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: serve test lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.local-installed: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[local]'
	touch $@

$(VENV)/.test-installed: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[all,test]'
	touch $@

serve: $(VENV)/.local-installed
	HF_HUB_OFFLINE=1 $(VENV)/bin/voice serve --host $(HOST) --port $(PORT)

lint: $(VENV)/.test-installed
	$(VENV)/bin/ruff check voice adapters
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache

test: $(VENV)/.test-installed lint
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q

bench: $(VENV)/.test-installed
	$(PY) bench/overhead.py

clean:
	rm -rf $(VENV) *.egg-info
