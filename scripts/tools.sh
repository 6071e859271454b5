#!/usr/bin/env bash
# Installs what mailcluster's build, tests and local cluster need and a fresh
# machine lacks. Idempotent: every step is skipped when already done.
#   - Debian packages: slapd, ldap-utils, protobuf-compiler (needs root; without
#     root it says what to install and goes on).
#   - Versity S3 Gateway and the protoc plugins, built with `go install` into a
#     versioned tools directory ($MAILCLUSTER_TOOLS, default
#     ~/.cache/mailcluster-tools).
# PostgreSQL 15 server binaries are expected under /usr/lib/postgresql/15/bin
# (Debian package postgresql-15); the script installs them when missing.
set -euo pipefail

TOOLS="${MAILCLUSTER_TOOLS:-$HOME/.cache/mailcluster-tools}"
VERSITYGW_VERSION=v1.8.0
PROTOC_GEN_GO_VERSION=v1.36.12
PROTOC_GEN_GO_GRPC_VERSION=v1.6.2

need_pkgs=()
command -v slapd >/dev/null 2>&1 || [ -x /usr/sbin/slapd ] || need_pkgs+=(slapd)
command -v ldapsearch >/dev/null 2>&1 || need_pkgs+=(ldap-utils)
command -v protoc >/dev/null 2>&1 || need_pkgs+=(protobuf-compiler)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need_pkgs+=(postgresql)

if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "tools: installing ${need_pkgs[*]}" >&2
    # Keep the package from configuring and starting a system slapd.
    echo 'slapd slapd/no_configuration boolean true' | debconf-set-selections
    apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q \
      --no-install-recommends "${need_pkgs[@]}" >/dev/null
  else
    echo "tools: please install as root: apt-get install --no-install-recommends ${need_pkgs[*]}" >&2
  fi
fi

install_go_tool() { # dir pkg@version
  local dir="$TOOLS/$1" pkg="$2" bin
  bin="$dir/$(basename "${pkg%@*}")"
  if [ ! -x "$bin" ]; then
    echo "tools: go install $pkg" >&2
    mkdir -p "$dir"
    GOBIN="$dir" go install "$pkg"
  fi
}

install_go_tool "versitygw-$VERSITYGW_VERSION" "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION"
install_go_tool "protoc-gen-go-$PROTOC_GEN_GO_VERSION" "google.golang.org/protobuf/cmd/protoc-gen-go@$PROTOC_GEN_GO_VERSION"
install_go_tool "protoc-gen-go-grpc-$PROTOC_GEN_GO_GRPC_VERSION" "google.golang.org/grpc/cmd/protoc-gen-go-grpc@$PROTOC_GEN_GO_GRPC_VERSION"
