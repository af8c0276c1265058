# The two commands of the README: `make run` and `make test`.
SHELL := /bin/bash
VENV := .venv
PY_VERSION := $(shell cat .python-version)
# pyenv (which reads .python-version) where present, else a python3.12 on PATH.
PYTHON ?= $(shell (pyenv which python 2>/dev/null | grep -q . && pyenv which python) || command -v python$(PY_VERSION) || command -v python3)
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
I18N_IGNORE := --ignore=.venv --ignore=staticfiles --ignore=test-artifacts --ignore=data

.PHONY: run test lint format install messages bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

run: install
	DEBUG=$${DEBUG-1} $(BIN)/python manage.py migrate --noinput
	DEBUG=$${DEBUG-1} $(BIN)/python manage.py serve --host $(HOST) --port $(PORT)

test: install
	$(BIN)/ruff check .
	$(BIN)/python manage.py makemigrations --check --dry-run
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

messages: install
	$(BIN)/python manage.py makemessages -l zh_Hans -e html,txt,py,md $(I18N_IGNORE)
	$(BIN)/python manage.py makemessages -d djangojs -l zh_Hans $(I18N_IGNORE)
	$(BIN)/python manage.py compilemessages -l zh_Hans $(I18N_IGNORE)
	$(BIN)/python -m pytest tests/test_translations.py -q

bench: install
	$(BIN)/python bench/relay.py
	$(BIN)/python bench/sidebar.py
