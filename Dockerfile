# syntax=docker/dockerfile:1.7
#
# mailcluster container image: one static binary that serves every role
# (frontend, backend, admin). See README.md, "Deploying with docker-compose
# and Kubernetes".
#
#   docker build -t mailcluster:dev .
#   docker run --rm mailcluster:dev backend -h     # lists a role's settings
#
# The process runs as the unprivileged user mailcluster (uid/gid 10001). The
# binary carries the file capability cap_net_bind_service, so a frontend can
# listen on 25, 587, 465, 143, 993, 110 and 995 without root. Keep
# NET_BIND_SERVICE in the container's capability bounding set (Docker does by
# default; with `cap_drop: [ALL]` add it back with `cap_add:
# [NET_BIND_SERVICE]`), otherwise the kernel refuses to execute a binary
# whose file capabilities it cannot grant. Where no_new_privs is set
# (Kubernetes allowPrivilegeEscalation: false) file capabilities are not
# granted: there use the sysctl net.ipv4.ip_unprivileged_port_start=0, as
# the manifests under deploy/kubernetes do. (Docker 20.10 and later set that
# sysctl to 0 in every container's network namespace already.)

ARG GO_IMAGE=golang:1.26
ARG RUNTIME_IMAGE=alpine:3.22

FROM ${GO_IMAGE} AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS=-trimpath
COPY go.mod go.sum ./
# go.mod replaces go-imap and go-smtp with the patched copies under
# third_party (see third_party/go-imap/README.md and
# third_party/go-smtp/MAILCLUSTER.md); their go.mod files are needed to
# resolve modules.
COPY third_party/go-imap/go.mod third_party/go-imap/go.sum ./third_party/go-imap/
COPY third_party/go-smtp/go.mod third_party/go-smtp/go.sum ./third_party/go-smtp/
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    go build -ldflags='-s -w -buildid=' -o /out/mailcluster ./cmd/mailcluster \
 && /out/mailcluster help >/dev/null

FROM ${RUNTIME_IMAGE}
# ca-certificates: S3, LDAPS and gRPC over TLS with public CAs; tzdata: log
# times in TZ if set. The binary is installed and given its capability in
# one layer (a bind mount from the build stage, not COPY, which does not
# reliably keep the security.capability attribute between stages); setcap
# itself is removed again.
RUN --mount=type=bind,from=build,source=/out/mailcluster,target=/tmp/mailcluster \
    apk add --no-cache ca-certificates tzdata \
 && apk add --no-cache --virtual .setcap libcap-setcap \
 && install -m 0755 /tmp/mailcluster /usr/local/bin/mailcluster \
 && setcap cap_net_bind_service=+ep /usr/local/bin/mailcluster \
 && apk del --no-cache .setcap \
 && addgroup -S -g 10001 mailcluster \
 && adduser -S -D -H -u 10001 -G mailcluster -h /var/lib/mailcluster -s /sbin/nologin mailcluster \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/mailcluster /var/spool/mailcluster \
 && install -d -m 0755 /etc/mailcluster

USER 10001:10001
WORKDIR /var/lib/mailcluster
# Frontend: SMTP, submission, submissions, IMAP, IMAPS, POP3, POP3S.
# Backend: gRPC, and HTTP for /metrics, /healthz and /readyz.
EXPOSE 25 587 465 143 993 110 995 7070 7071
ENTRYPOINT ["mailcluster"]
CMD ["help"]
