#!/usr/bin/env bash
# SMTP ingest benchmark of the project against the reference peer, in one
# run of ../shared/bench/baseline.sh (its SMTP section: 4 KiB, 64 KiB and
# 1 MiB messages at 1, 8 and 32 connections, end-to-end delivered).
#
# The project runs as `mailcluster dev` (private PostgreSQL with default
# durability, seeded slapd with user1..user2000, one backend with the
# filesystem blob store, one frontend serving SMTP, and IMAP for mailload's
# -verify and purges, with plaintext LOGIN allowed as on the peer). CPU is
# accounted over the whole process tree.
#
#   scripts/bench-smtp.sh                 # STATE=/tmp/mcbench, BASE_PORT=23000
#   REPS=1 QUICK=1 scripts/bench-smtp.sh  # smoke test
#
# Env: STATE (state dir, kept between runs), BASE_PORT, BENCH (the bench
# directory), BACKENDS (1), SKIP (default "imap pop3 idle"); the rest is
# passed to baseline.sh (REPS, QUICK, OUT).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
: "${BENCH:=$(cd "$ROOT/../shared/bench" && pwd)}"
: "${STATE:=/tmp/mcbench}"
: "${BASE_PORT:=23000}"
: "${BACKENDS:=1}"
: "${SKIP:=imap pop3 idle}"
export SKIP

mkdir -p "$STATE/bin"
(cd "$ROOT" && go build -o "$STATE/bin/mailcluster" ./cmd/mailcluster)

DEV_PID=
cleanup() {
  [ -n "$DEV_PID" ] && kill "$DEV_PID" 2>/dev/null || true
  [ -n "$DEV_PID" ] && wait "$DEV_PID" 2>/dev/null || true
}
trap cleanup EXIT

# mailload opens up to 32 SMTP connections and 50 IMAP sessions from
# 127.0.0.1, and logs in without TLS (like the peer).
MAILCLUSTER_MAX_CONNECTIONS_PER_IP=1000 MAILCLUSTER_IMAP_INSECURE_AUTH=true MAILCLUSTER_POP3_INSECURE_AUTH=true \
  "$STATE/bin/mailcluster" dev -dir "$STATE/dev" -repo "$ROOT" -backend-count "$BACKENDS" -frontend-count 1 \
  -users 2000 -base-port "$BASE_PORT" >"$STATE/dev.out" 2>&1 &
DEV_PID=$!
for _ in $(seq 600); do
  grep -q 'mailcluster dev: running' "$STATE/dev.out" && break
  kill -0 "$DEV_PID" 2>/dev/null || { cat "$STATE/dev.out" >&2; exit 1; }
  sleep 1
done
grep -q 'mailcluster dev: running' "$STATE/dev.out" || { echo "dev cluster did not start" >&2; exit 1; }

SUTS="peer project=127.0.0.1:$((BASE_PORT + 125)),127.0.0.1:$((BASE_PORT + 143)),127.0.0.1:$((BASE_PORT + 110)),$DEV_PID" \
  "$BENCH/baseline.sh"
