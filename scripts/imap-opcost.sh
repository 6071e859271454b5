#!/usr/bin/env bash
# CPU per IMAP operation, split by process: runs mailload's IMAP mix with
# one operation at a time (fetchall, body, store, search, noop) against
# `mailcluster dev` and prints, per operation, ops/s, p50 latency and the
# CPU milliseconds per operation of the frontend, the backend and
# PostgreSQL (all its processes), read from /proc before and after.
#
#   STATE=/tmp/mcbench BASE_PORT=25000 scripts/imap-opcost.sh TAG
#
# The mailbox is user2 of the dev cluster's users (fill it first, e.g. by
# running scripts/bench-smtp.sh with SKIP="smtp pop3 idle" once, which
# fills user2 with 10,000 messages of 16 KiB). Env: OPS (default
# "fetchall body store search noop"), C (sessions, 8), D (duration per
# operation, 10s), USER_START (2), BENCH (the bench directory).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
: "${BENCH:=$(cd "$ROOT/../shared/bench" && pwd)}"
: "${STATE:=/tmp/mcbench}"
: "${BASE_PORT:=23000}"
TAG=${1:-run}
M="$BENCH/.bin/mailload"
[ -x "$M" ] || (cd "$BENCH/mailload" && go build -o "$M" .)
mkdir -p "$STATE/bin"
(cd "$ROOT" && go build -o "$STATE/bin/mailcluster" ./cmd/mailcluster)
MAILCLUSTER_MAX_CONNECTIONS_PER_IP=1000 MAILCLUSTER_IMAP_INSECURE_AUTH=true \
  "$STATE/bin/mailcluster" dev -dir "$STATE/dev" -repo "$ROOT" -backend-count 1 -frontend-count 1 \
  -users 2000 -base-port "$BASE_PORT" >"$STATE/dev.out" 2>&1 &
DEV=$!
trap 'kill $DEV; wait $DEV' EXIT
for _ in $(seq 300); do grep -q 'mailcluster dev: running' "$STATE/dev.out" && break; sleep 1; done
grep -q 'mailcluster dev: running' "$STATE/dev.out"
FE=$(pgrep -f "mailcluster frontend" -P $DEV | head -1)
BE=$(pgrep -f "mailcluster backend" -P $DEV | head -1)
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
pgticks() { local s=0 t; for p in $(pgrep -x postgres); do t=$(awk '{print $14+$15+$16+$17}' "/proc/$p/stat" 2>/dev/null || echo 0); s=$((s + t)); done; echo $s; }
hz=$(getconf CLK_TCK)
for op in ${OPS:-fetchall body store search noop}; do
  f0=$(ticks $FE) b0=$(ticks $BE) p0=$(pgticks)
  out=$("$M" -mode imap -imap 127.0.0.1:$((BASE_PORT + 143)) -users 1 -user-start "${USER_START:-2}" \
    -c "${C:-8}" -n 0 -d "${D:-10s}" -mix "$op=1" -pids $DEV 2>/dev/null)
  f1=$(ticks $FE) b1=$(ticks $BE) p1=$(pgticks)
  echo "$out" | python3 -c "
import json, sys
d = json.load(sys.stdin); o = d['ops']['$op']; n = o['count']
ms = lambda t: round(t * 1000 / $hz / n, 3)
print('$TAG', '$op', 'ops/s', round(o['per_s'], 1), 'p50 ms', o['latency_ms']['p50'], 'server CPU %', round(d['cpu']['server_cpu_pct']),
      'CPU ms/op: frontend', ms($f1 - $f0), 'backend', ms($b1 - $b0), 'postgres', ms($p1 - $p0))"
done
