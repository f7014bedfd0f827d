#!/usr/bin/env bash
# The upstream image's contract on Debian's packages: on an empty PGDATA, create the
# cluster with POSTGRES_USER as superuser, its password from POSTGRES_PASSWORD_FILE or
# POSTGRES_PASSWORD (handed to initdb through a 0600 file, never an argument), and
# POSTGRES_DB; then run the server in the foreground as PID 1.
set -Eeuo pipefail

if [ "${1:-}" = postgres ] || [ "${1#-}" != "${1:-}" ]; then
  [ "${1:-}" = postgres ] && shift
  user=${POSTGRES_USER:-postgres}
  db=${POSTGRES_DB:-$user}
  if [ ! -s "$PGDATA/PG_VERSION" ]; then
    umask 077
    pwfile=$(mktemp)
    trap 'rm -f "$pwfile"' EXIT
    if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
      cat "$POSTGRES_PASSWORD_FILE" >"$pwfile"
    elif [ -n "${POSTGRES_PASSWORD:-}" ]; then
      printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    else
      echo "postgres: set POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE (no default password)" >&2
      exit 1
    fi
    # UTF8 as upstream (en_US.utf8 there): without a locale initdb picks SQL_ASCII, and
    # psycopg 3 then returns text as bytes.
    initdb -D "$PGDATA" -U "$user" --pwfile="$pwfile" --encoding=UTF8 --locale=C.UTF-8 \
      --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    rm -f "$pwfile"
    echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
    if [ "$db" != postgres ]; then
      # Single-user mode: no server, no socket, nothing listening during set-up.
      printf 'CREATE DATABASE "%s" OWNER "%s";\n' "$db" "$user" \
        | postgres --single -D "$PGDATA" -j postgres >/dev/null
    fi
    echo "postgres: initialised $PGDATA (superuser $user, database $db)"
  fi
  exec postgres -D "$PGDATA" -c listen_addresses='*' "$@"
fi
exec "$@"
