# The two commands of the README are `make run` and `make test`; the table there lists the rest.
# Every target that needs the code installs into .venv first, from the lockfile.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
FLASK := $(PY) -m flask --app wsgi
STAMP := $(VENV)/.installed-stamp
LOCK := requirements.lock
PORT ?= 5000
# The lockfile pins uv too; the venv gets that version first and uv installs the rest.
UV_VERSION = $(shell sed -n 's/^uv==\([^ ]*\).*/\1/p' $(LOCK))
# `make lock` upgrades every pin; `make lock UPGRADE=` only adds what pyproject.toml asks for.
UPGRADE ?= --upgrade

.PHONY: install lock run test test-sqlite test-postgres lint serve worker bench clean

install: $(STAMP)

# Exactly the lockfile's versions, hash-checked (packages not in it are removed), then the
# portal itself, editable, with nothing resolved again.
$(STAMP): pyproject.toml $(LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "uv==$(UV_VERSION)"
	$(UV) pip sync --quiet --python $(PY) --require-hashes $(LOCK)
	$(UV) pip install --quiet --python $(PY) --no-deps -e .
	touch $(STAMP)

# Resolve pyproject.toml (with the test and dev extras) for CPython 3.11 on Linux x86_64.
lock: install
	$(UV) pip compile pyproject.toml --quiet --extra test --extra dev $(UPGRADE) \
		--generate-hashes --python-version 3.11 --python-platform x86_64-unknown-linux-gnu \
		--output-file $(LOCK)

# The web server and the worker together (Procfile), so queued emails go out within seconds;
# Ctrl-C stops both. Links in emails follow PORT (honcho gives each process its own PORT).
run: install
	$(FLASK) db upgrade
	$(FLASK) seed-demo
	$(FLASK) demo-info
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" PUBLIC_BASE_URL="$${PUBLIC_BASE_URL:-http://127.0.0.1:$(PORT)}" $(VENV)/bin/honcho start --procfile Procfile --port $(PORT)

# Lint first (seconds), then the suite on SQLite, then on PostgreSQL when TEST_DATABASE_URL is set.
test: lint test-sqlite
	@if [ -n "$$TEST_DATABASE_URL" ]; then \
		$(MAKE) --no-print-directory test-postgres; \
	fi

test-sqlite: install
	$(PY) -m pytest

# The same suite on the PostgreSQL database in TEST_DATABASE_URL (browser tests run on SQLite).
test-postgres: install
	@if [ -z "$$TEST_DATABASE_URL" ]; then \
		echo "Set TEST_DATABASE_URL=postgresql://USER@HOST:PORT/DB (an empty database)." >&2; \
		exit 2; \
	fi
	@echo "== the same suite on PostgreSQL ($$TEST_DATABASE_URL) =="
	PORTAL_TEST_BACKEND=postgres $(PY) -m pytest -m "not browser"

# ruff (lint and the format check) over the whole tree; mypy, strict, over portal/.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy portal

# Production-style: migrate, then gunicorn with gunicorn.conf.py against DATABASE_URL
# (PORT or BIND choose the address; see the README on PostgreSQL and the reverse proxy).
serve: install
	$(FLASK) db upgrade
	$(VENV)/bin/gunicorn -c gunicorn.conf.py wsgi:app

# The background worker (outbox, reminders, autopay) against DATABASE_URL, until Ctrl-C.
worker: install
	$(FLASK) db upgrade
	$(FLASK) worker

# The load benchmark (needs wrk); options through BENCH_ARGS, e.g. BENCH_ARGS="--postgres URL".
bench: install
	$(PY) bench/load.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) instance .pytest_cache .hypothesis .mypy_cache .ruff_cache tests/artifacts
