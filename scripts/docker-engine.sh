#!/usr/bin/env bash
# Make sure a Docker engine answers. Use the one that is there; otherwise, on
# Debian or Ubuntu as root, install Debian's docker.io and start dockerd in the
# background (machines without systemd); elsewhere stop with a clear message.
set -Eeuo pipefail

if docker info >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "docker-engine: no Docker engine answers 'docker info'; start one (or set DOCKER_HOST) and retry" >&2
  exit 1
fi
if ! command -v dockerd >/dev/null 2>&1; then
  bash "$(dirname "$0")/machine-deps.sh" docker
fi
# A dockerd killed with its machine's session leaves its pid file behind, and a
# new one refuses to start while it is there.
if [ -f /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
  rm -f /var/run/docker.pid
fi
echo "docker-engine: starting dockerd in the background (log: /var/log/dockerd.log)"
nohup dockerd --data-root /var/lib/docker >/var/log/dockerd.log 2>&1 &
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    echo "docker-engine: ready"
    exit 0
  fi
  sleep 1
done
echo "docker-engine: dockerd did not answer within 60 s; see /var/log/dockerd.log" >&2
tail -n 20 /var/log/dockerd.log >&2 || true
exit 1
