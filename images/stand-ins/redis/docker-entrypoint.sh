#!/usr/bin/env bash
# As the upstream image: `docker run redis --some-option` means redis-server --some-option.
set -Eeuo pipefail
if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
  set -- redis-server "$@"
fi
exec "$@"
