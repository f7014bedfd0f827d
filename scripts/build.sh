#!/usr/bin/env bash
# Build the base image and the role images, showing each build step as it starts.
# The full build output goes to build/logs/; on failure its tail is shown.
#
# Environment: IMAGE_PREFIX, TAG, BASE_IMAGE (the Debian image), VERSION, REVISION,
# CREATED, CA_BUNDLE (a CA bundle for pip behind a TLS-inspecting proxy), ROLES,
# NO_CACHE (1: run every build step afresh, without the layer cache, e.g. to time a
# cold build).
set -Eeuo pipefail
cd "$(dirname "$0")/.."

: "${IMAGE_PREFIX:?}" "${TAG:?}" "${VERSION:?}"
BASE_IMAGE=${BASE_IMAGE:-debian:trixie-slim}
REVISION=${REVISION:-unknown}
CREATED=${CREATED:-unknown}
ROLES=${ROLES:-scheduler worker webserver}

# The CA bundle is copied into the build context at build/ca/ (ignored by git; the
# only part of build/ that .dockerignore lets through). Only the builder stages COPY
# it. It is kept between builds, byte-identical, so the layer cache stays valid.
mkdir -p build/ca build/logs
if [ -n "${CA_BUNDLE:-}" ]; then
  if [ ! -f "$CA_BUNDLE" ]; then
    echo "build: CA_BUNDLE=$CA_BUNDLE is not a file; unset it or name the proxy's CA bundle" >&2
    exit 1
  fi
  cmp -s "$CA_BUNDLE" build/ca/ca-bundle.crt || cp "$CA_BUNDLE" build/ca/ca-bundle.crt
  echo "build: giving the CA bundle $CA_BUNDLE to the builder stages (not to the final image)"
else
  rm -f build/ca/ca-bundle.crt
fi
touch build/ca/.keep

# build NAME LOG DOCKER_BUILD_ARGS...
build() {
  local name=$1 log=$2 started=$SECONDS
  shift 2
  echo "build: $name"
  if ! docker build "$@" 2>&1 | tee "$log" | grep --line-buffered -E '^Step [0-9]+/[0-9]+ : ' \
      | sed -u -E 's/^(.{1,110}).*/  \1/'; then
    echo "build: $name failed; the end of $log:" >&2
    tail -n 40 "$log" >&2
    return 1
  fi
  # The legacy builder reports a failed step in its output and a non-zero exit status
  # that the pipeline above keeps; a tagged image confirms success.
  docker image inspect "$name" >/dev/null
  echo "build: $name done in $(( SECONDS - started )) s"
}

common=()
if [ "${NO_CACHE:-0}" != 0 ]; then
  common+=(--no-cache)
fi
common+=(--build-arg "VERSION=$VERSION" --build-arg "REVISION=$REVISION"
         --build-arg "CREATED=$CREATED")
# The build stage is built and tagged first: the legacy builder would otherwise leave
# it as a dangling image at every build; the full build then reuses its layers.
build "${IMAGE_PREFIX}base-build:$TAG" build/logs/base-build.log -f images/base/Dockerfile \
  --target app -t "${IMAGE_PREFIX}base-build:$TAG" --build-arg "BASE_IMAGE=$BASE_IMAGE" \
  "${common[@]}" .
build "${IMAGE_PREFIX}base:$TAG" build/logs/base.log -f images/base/Dockerfile \
  -t "${IMAGE_PREFIX}base:$TAG" --build-arg "BASE_IMAGE=$BASE_IMAGE" "${common[@]}" .
for role in $ROLES; do
  build "${IMAGE_PREFIX}$role:$TAG" "build/logs/$role.log" -t "${IMAGE_PREFIX}$role:$TAG" \
    --build-arg "BASE_IMAGE=${IMAGE_PREFIX}base:$TAG" "${common[@]}" "images/$role"
done
# The images these builds replaced under the same tags, unless a container still runs
# one (make down removes those).
bash scripts/prune-images.sh
