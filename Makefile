# The two commands of the README: `make run` and `make test`. Both install into .venv first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
FLASK := $(PY) -m flask --app wsgi
STAMP := $(VENV)/.installed-stamp

.PHONY: install run test test-sqlite test-postgres serve worker bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: install
	$(FLASK) db upgrade
	$(FLASK) seed-demo
	$(FLASK) demo-info
	$(FLASK) run --host 127.0.0.1 --port 5000

test: install
	$(PY) -m pytest
	@if [ -n "$$TEST_DATABASE_URL" ]; then \
		echo "== the same suite on PostgreSQL ($$TEST_DATABASE_URL) =="; \
		PORTAL_TEST_BACKEND=postgres $(PY) -m pytest -m "not browser"; \
	fi

# Production-style: migrate, then gunicorn with gunicorn.conf.py against DATABASE_URL
# (PORT or BIND choose the address; see the README on PostgreSQL and the reverse proxy).
serve: install
	$(FLASK) db upgrade
	$(VENV)/bin/gunicorn -c gunicorn.conf.py wsgi:app

clean:
	rm -rf $(VENV) instance .pytest_cache .hypothesis tests/artifacts
