# airflow-ecs: build, run and test the images and the entrypoint runtime.
# `make` alone lists the targets.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST := $(VENV)/bin/pytest
PYTEST_ARGS ?=

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[1m%-18s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(VENV)/.installed: requirements/dev.lock pyproject.toml
	@command -v uv >/dev/null || python3 -m pip install --quiet uv
	uv venv --quiet --allow-existing --python 3.11 $(VENV)
	VIRTUAL_ENV=$(VENV) uv pip install --quiet --compile-bytecode -r requirements/dev.lock
	VIRTUAL_ENV=$(VENV) uv pip install --quiet --no-deps -e .
	touch $@

.PHONY: venv
venv: $(VENV)/.installed ## create the development venv from the lock file

.PHONY: test
test: venv ## run every test: unit, integration, images and end-to-end
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PYTEST) -p no:cacheprovider -ra $(PYTEST_ARGS) tests

.PHONY: test-fast
test-fast: venv ## unit and integration tests only (no images)
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PYTEST) -p no:cacheprovider -ra -m "not images and not e2e" $(PYTEST_ARGS) tests

.PHONY: lint
lint: venv ## ruff on Python, hadolint on Dockerfiles, shellcheck on shell scripts
	$(VENV)/bin/ruff check .
	@files=$$(git ls-files '*Dockerfile*'); if [ -n "$$files" ]; then $(VENV)/bin/hadolint $$files; fi
	@files=$$(git ls-files '*.sh' .ci/run); if [ -n "$$files" ]; then shellcheck $$files; fi

.PHONY: lock
lock: ## regenerate the lock files from pyproject.toml
	uv pip compile --quiet --universal --python-version 3.11 --extra airflow pyproject.toml -o requirements/runtime.lock
	uv pip compile --quiet --universal --python-version 3.11 --extra airflow --extra test pyproject.toml -o requirements/dev.lock

.PHONY: bench
bench: venv ## run the benchmarks and write BENCHMARKS.md
	$(PY) -m bench
