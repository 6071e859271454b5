#!/usr/bin/env bash
# Regenerates the Go code for proto/ from the .proto files, with pinned
# plugin versions so that the output is byte-identical on every machine.
# Usage: scripts/genproto.sh          (writes the generated files)
#        scripts/genproto.sh --check  (fails if the committed files are stale)
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS="${MAILCLUSTER_TOOLS:-$HOME/.cache/mailcluster-tools}"
scripts/tools.sh
export PATH="$TOOLS/protoc-gen-go-v1.36.12:$TOOLS/protoc-gen-go-grpc-v1.6.2:$PATH"

out=.
if [ "${1:-}" = --check ]; then
  out=$(mktemp -d); trap 'rm -rf "$out"' EXIT
fi
for f in $(find proto -name '*.proto' | sort); do
  protoc -I proto \
    --go_out="$out" --go_opt=module=mailcluster \
    --go-grpc_out="$out" --go-grpc_opt=module=mailcluster \
    "$f"
done
if [ "${1:-}" = --check ]; then
  for g in $(cd "$out" && find proto -name '*.go' | sort); do
    if ! cmp -s "$out/$g" "$g"; then
      echo "genproto: $g is stale; run scripts/genproto.sh and commit" >&2
      exit 1
    fi
  done
  n_have=$(find proto -name '*.pb.go' | wc -l); n_want=$(cd "$out" && find proto -name '*.pb.go' | wc -l)
  [ "$n_have" = "$n_want" ] || { echo "genproto: generated file set differs" >&2; exit 1; }
fi
