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
IMAGE_PREFIX ?= airflow-ecs/
TAG ?= $(VERSION)
BASE_IMAGE ?= debian:trixie-slim
ROLES := scheduler worker webserver
REVISION := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
CREATED := $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
# A CA bundle for pip behind a TLS-inspecting proxy; given to the build stages only.
CA_BUNDLE ?= $(firstword $(SSL_CERT_FILE) $(REQUESTS_CA_BUNDLE) $(PIP_CERT))

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

.PHONY: docker
docker: ## make sure a Docker engine answers (installs and starts one on Debian as root)
	@bash scripts/docker-engine.sh

.PHONY: base-images
base-images: docker ## pull the base images, or build stand-ins from Debian packages
	@DEBIAN_IMAGE=$(BASE_IMAGE) bash scripts/base-images.sh

.PHONY: build
build: base-images ## build the base and role images ($(IMAGE_PREFIX)ROLE:$(TAG))
	@mkdir -p build/ca
	@# Kept in build/ (untracked) between builds, so the layer cache stays valid.
	@if [ -n "$(CA_BUNDLE)" ] && [ -f "$(CA_BUNDLE)" ]; then cmp -s "$(CA_BUNDLE)" build/ca/ca-bundle.crt \
	  || cp "$(CA_BUNDLE)" build/ca/ca-bundle.crt; \
	  echo "build: giving the CA bundle $(CA_BUNDLE) to the build stages (not to the final image)"; fi
	@touch build/ca/.keep
	@echo "build: $(IMAGE_PREFIX)base:$(TAG)"
	docker build --quiet -f images/base/Dockerfile -t $(IMAGE_PREFIX)base:$(TAG) \
	  --build-arg BASE_IMAGE=$(BASE_IMAGE) --build-arg VERSION=$(VERSION) \
	  --build-arg REVISION=$(REVISION) --build-arg CREATED=$(CREATED) .
	@for role in $(ROLES); do echo "build: $(IMAGE_PREFIX)$$role:$(TAG)"; \
	  docker build --quiet -t $(IMAGE_PREFIX)$$role:$(TAG) \
	    --build-arg BASE_IMAGE=$(IMAGE_PREFIX)base:$(TAG) --build-arg VERSION=$(VERSION) \
	    --build-arg REVISION=$(REVISION) --build-arg CREATED=$(CREATED) images/$$role || exit 1; done

.PHONY: test
test: venv build ## run every test: unit, integration, images and end-to-end
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
