#!/usr/bin/env bash
# Runs mailcluster on this machine without Docker: a private PostgreSQL and
# a backend storing bodies on the local filesystem, all state under
# ${MAILCLUSTER_DEV_DIR:-.dev}. Ctrl-C stops everything; running it again
# keeps the mail. (The full local cluster with directory and frontends is
# `mailcluster dev`, which arrives with the frontend roles.)
set -euo pipefail
cd "$(dirname "$0")/.."
DIR="$(realpath -m "${MAILCLUSTER_DEV_DIR:-.dev}")"
scripts/tools.sh
go build -o bin/mailcluster ./cmd/mailcluster

PGBIN="${MAILCLUSTER_PG_BIN:-$(dirname "$(ls /usr/lib/postgresql/*/bin/postgres | tail -n1)")}"
mkdir -p "$DIR/pg/data" "$DIR/pg/sock" "$DIR/blobs"
as_pg=()
if [ "$(id -u)" = 0 ]; then
  chown -R postgres:postgres "$DIR/pg"; chmod 755 "$DIR" "$DIR/pg"
  as_pg=(runuser -u postgres --)
fi
chmod 700 "$DIR/pg/data"
if [ ! -f "$DIR/pg/data/PG_VERSION" ]; then
  "${as_pg[@]}" "$PGBIN/initdb" -D "$DIR/pg/data" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 --no-instructions >/dev/null
fi
"${as_pg[@]}" "$PGBIN/postgres" -D "$DIR/pg/data" -k "$DIR/pg/sock" -c listen_addresses= >"$DIR/postgres.log" 2>&1 &
PG_PID=$!
cleanup() { kill "${BE_PID:-}" 2>/dev/null || true; wait "${BE_PID:-}" 2>/dev/null || true; kill -INT "$PG_PID" 2>/dev/null || true; wait "$PG_PID" 2>/dev/null || true; }
trap cleanup EXIT
trap 'exit 0' INT TERM
for _ in $(seq 100); do [ -S "$DIR/pg/sock/.s.PGSQL.5432" ] && break; sleep 0.1; done
"${as_pg[@]}" "$PGBIN/psql" -h "$DIR/pg/sock" -U postgres -Atqc "SELECT 1 FROM pg_database WHERE datname='mailcluster'" | grep -q 1 ||
  "${as_pg[@]}" "$PGBIN/psql" -h "$DIR/pg/sock" -U postgres -qc "CREATE DATABASE mailcluster"

export MAILCLUSTER_POSTGRES_DSN="host=$DIR/pg/sock user=postgres dbname=mailcluster sslmode=disable"
export MAILCLUSTER_BLOB_DRIVER=fs MAILCLUSTER_BLOB_FS_ROOT="$DIR/blobs"
export MAILCLUSTER_GRPC_INSECURE=true MAILCLUSTER_GRPC_LISTEN="${MAILCLUSTER_GRPC_LISTEN:-127.0.0.1:7070}"
echo "mailcluster: backend on $MAILCLUSTER_GRPC_LISTEN (plaintext gRPC, development only); state in $DIR; Ctrl-C stops" >&2
bin/mailcluster backend &
BE_PID=$!
wait "$BE_PID"
