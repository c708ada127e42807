# make serve: a working voice agent on http://127.0.0.1:8000, offline.   make test: the whole suite.
# Both install what they need on a fresh Debian machine (system packages with apt-get when run as root; otherwise
# they say what to install).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
# what the test suite runs besides Python, as program=Debian package: a browser, Node.js, espeak-ng and flite voices,
# PostgreSQL, HAProxy
TEST_SYSTEM := chromium=chromium node=nodejs npm=npm espeak-ng=espeak-ng flite=flite \
	/usr/lib/postgresql/15/bin/postgres=postgresql-15 haproxy=haproxy

.PHONY: serve test lint bench clean system-test

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.serve-installed: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[local,webrtc,twilio,deepgram,openai]'
	touch $@

$(VENV)/.test-installed: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[all,test]'
	touch $@

tests/js/node_modules/.installed: tests/js/package-lock.json
	npm ci --prefix tests/js --no-audit --no-fund --loglevel=error
	touch $@

system-test:
	@missing=""; for pair in $(TEST_SYSTEM); do \
	  command -v "$${pair%%=*}" >/dev/null 2>&1 || missing="$$missing $${pair#*=}"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; export DEBIAN_FRONTEND=noninteractive; \
	    apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else \
	    echo "make test needs these Debian packages:$$missing"; \
	    echo "install them with: sudo apt-get install --no-install-recommends$$missing"; exit 1; \
	  fi; \
	fi

serve: $(VENV)/.serve-installed
	HF_HUB_OFFLINE=1 $(VENV)/bin/voice serve --host $(HOST) --port $(PORT)

lint: $(VENV)/.test-installed
	$(VENV)/bin/ruff check voice adapters bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache

test: system-test $(VENV)/.test-installed tests/js/node_modules/.installed lint
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q --durations=15

bench: $(VENV)/.test-installed
	$(PY) bench/overhead.py

clean:
	rm -rf $(VENV) *.egg-info tests/js/node_modules
