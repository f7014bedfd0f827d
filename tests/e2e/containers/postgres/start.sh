#!/usr/bin/env bash
# Initialise a cluster once (user and database from POSTGRES_USER/POSTGRES_DB, password
# from POSTGRES_PASSWORD_FILE), then run the server in the foreground.
set -Eeuo pipefail
bin=$(echo /usr/lib/postgresql/*/bin)
data=${PGDATA:-/tmp/pgdata}
if [ ! -s "$data/PG_VERSION" ]; then
  "$bin/initdb" -D "$data" -U "${POSTGRES_USER:-airflow}" --pwfile="${POSTGRES_PASSWORD_FILE:?}" \
    --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 --no-sync >/dev/null
  echo "host all all 0.0.0.0/0 scram-sha-256" >> "$data/pg_hba.conf"
  "$bin/pg_ctl" -D "$data" -o "-c listen_addresses=''" -w start >/dev/null
  "$bin/createdb" -h /var/run/postgresql -U "${POSTGRES_USER:-airflow}" "${POSTGRES_DB:-airflow}"
  "$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null
fi
exec "$bin/postgres" -D "$data" -c listen_addresses='*' -c fsync=off
