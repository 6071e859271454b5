#!/bin/sh
# mailcluster-ldap: the commands of the compose deployment's OpenLDAP image.
#
#   init      check slapd.conf and, if the database is empty, load the seed
#             (one-shot; does nothing when the data is already there)
#   serve     run slapd in the foreground (drops root to the openldap user)
#   tls-init  write a self-signed certificate for the mail ports unless the
#             directory already holds one (one-shot; development default)
#
# Paths (environment): SLAPD_CONF, LDAP_SEED, LDAP_DATA (must match the
# directory and pidfile of SLAPD_CONF), LDAP_URLS, TLS_DIR, TLS_HOSTNAME,
# TLS_UID/TLS_GID (owner of the key: the mailcluster image's user).
set -eu

SLAPD_CONF=${SLAPD_CONF:-/etc/mailcluster-ldap/slapd.conf}
LDAP_SEED=${LDAP_SEED:-/etc/mailcluster-ldap/seed.ldif}
LDAP_DATA=${LDAP_DATA:-/var/lib/mailcluster-ldap}
LDAP_URLS=${LDAP_URLS:-ldap:///}
LDAP_USER=${LDAP_USER:-openldap}
TLS_DIR=${TLS_DIR:-/tls}
TLS_HOSTNAME=${TLS_HOSTNAME:-mail.example.test}
TLS_UID=${TLS_UID:-10001}
TLS_GID=${TLS_GID:-10001}

log() { echo "mailcluster-ldap: $*" >&2; }

cmd=${1:-serve}
case "$cmd" in
init)
	mkdir -p "$LDAP_DATA/data"
	if [ -e "$LDAP_DATA/data/data.mdb" ]; then
		log "database in $LDAP_DATA/data exists; not seeding again"
		slaptest -Q -f "$SLAPD_CONF"
	else
		slaptest -Q -u -f "$SLAPD_CONF"
		log "loading $LDAP_SEED"
		slapadd -q -f "$SLAPD_CONF" -l "$LDAP_SEED"
	fi
	if [ "$(id -u)" = 0 ]; then
		chown -R "$LDAP_USER:$LDAP_USER" "$LDAP_DATA"
	fi
	log "directory ready"
	;;
serve)
	if [ ! -e "$LDAP_DATA/data/data.mdb" ]; then
		log "no database in $LDAP_DATA/data: run the init command first"
		exit 1
	fi
	if [ "$(id -u)" = 0 ]; then
		exec slapd -d 0 -f "$SLAPD_CONF" -h "$LDAP_URLS" -u "$LDAP_USER" -g "$LDAP_USER"
	fi
	exec slapd -d 0 -f "$SLAPD_CONF" -h "$LDAP_URLS"
	;;
tls-init)
	mkdir -p "$TLS_DIR"
	if [ -s "$TLS_DIR/cert.pem" ] && [ -s "$TLS_DIR/key.pem" ]; then
		log "$TLS_DIR/cert.pem and key.pem exist; keeping them"
		exit 0
	fi
	if [ -e "$TLS_DIR/cert.pem" ] || [ -e "$TLS_DIR/key.pem" ]; then
		log "only one of $TLS_DIR/cert.pem and key.pem exists: provide both"
		exit 1
	fi
	log "writing a self-signed development certificate for $TLS_HOSTNAME to $TLS_DIR"
	umask 077
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
		-days 825 -subj "/CN=$TLS_HOSTNAME" \
		-addext "subjectAltName=DNS:$TLS_HOSTNAME,DNS:localhost,IP:127.0.0.1" \
		-addext "extendedKeyUsage=serverAuth" \
		-keyout "$TLS_DIR/key.pem.tmp" -out "$TLS_DIR/cert.pem.tmp" 2>/dev/null
	chmod 0640 "$TLS_DIR/key.pem.tmp"
	chmod 0644 "$TLS_DIR/cert.pem.tmp"
	if [ "$(id -u)" = 0 ]; then
		chown "$TLS_UID:$TLS_GID" "$TLS_DIR/key.pem.tmp" "$TLS_DIR/cert.pem.tmp"
	fi
	mv "$TLS_DIR/key.pem.tmp" "$TLS_DIR/key.pem"
	mv "$TLS_DIR/cert.pem.tmp" "$TLS_DIR/cert.pem"
	;;
*)
	log "unknown command $cmd (init, serve or tls-init)"
	exit 2
	;;
esac
