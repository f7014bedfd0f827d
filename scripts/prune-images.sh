#!/usr/bin/env bash
# Remove this project's dangling images: those a rebuild replaced under the same tag
# (found by the source label every image and build stage of ours carries). Images a
# container still uses stay; nothing of other projects is touched.
set -Eeuo pipefail

SOURCE_LABEL=org.opencontainers.image.source=https://github.com/airflow-ecs/airflow-ecs
removed=0
for id in $(docker image ls -q --filter dangling=true --filter "label=$SOURCE_LABEL"); do
  if docker image rm "$id" >/dev/null 2>&1; then
    removed=$((removed + 1))
  fi
done
if [ "$removed" -gt 0 ]; then
  echo "prune-images: removed $removed image(s) replaced by a newer build"
fi
