#!/bin/sh
# mailcluster-ldap: the commands of the compose deployment's OpenLDAP image.
#
#   init      check slapd.conf and, if the database is empty, load the seed
#             (one-shot; does nothing when the data is already there)
#   serve     run slapd in the foreground (drops root to the openldap user)
#   tls-init  write a self-signed certificate for the mail ports unless the
#             directory already holds one (one-shot; development default)
#   pki-init  make a CA, a server certificate per name in PKI_SERVERS and a
#             client certificate per name in PKI_CLIENTS for frontend<->backend
#             mTLS, keeping whatever already exists (one-shot; see
#             deploy/compose/mtls.yml)
#
# Paths (environment): SLAPD_CONF, LDAP_SEED, LDAP_DATA (must match the
# directory and pidfile of SLAPD_CONF), LDAP_URLS, TLS_DIR, TLS_HOSTNAME,
# TLS_UID/TLS_GID (owner of keys: the mailcluster image's user), PKI_DIR,
# PKI_SERVERS, PKI_CLIENTS, PKI_DAYS.
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
pki-init)
	PKI_DIR=${PKI_DIR:-/pki}
	PKI_DAYS=${PKI_DAYS:-825}
	mkdir -p "$PKI_DIR"
	chmod 0755 "$PKI_DIR" # the mailcluster user must reach its files
	cd "$PKI_DIR"
	umask 077
	own() {
		chmod 0640 "$1.key"
		chmod 0644 "$1.crt"
		if [ "$(id -u)" = 0 ]; then
			chown "$TLS_UID:$TLS_GID" "$1.key" "$1.crt"
		fi
	}
	if [ ! -s ca.crt ] || [ ! -s ca.key ]; then
		log "making a CA in $PKI_DIR"
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
			-days 3650 -subj "/CN=mailcluster internal CA" \
			-addext "basicConstraints=critical,CA:TRUE" \
			-addext "keyUsage=critical,keyCertSign,cRLSign" \
			-keyout ca.key -out ca.crt 2>/dev/null
		chmod 0644 ca.crt
	fi
	issue() { # name usage subjectAltName
		[ -s "$1.crt" ] && [ -s "$1.key" ] && return 0
		log "issuing $1.crt ($2)"
		openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
			-subj "/CN=$1" -keyout "$1.key" -out "$1.csr" 2>/dev/null
		printf 'extendedKeyUsage=%s\nsubjectAltName=%s\nbasicConstraints=CA:FALSE\n' "$2" "$3" > "$1.ext"
		openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial \
			-days "$PKI_DAYS" -extfile "$1.ext" -out "$1.crt" 2>/dev/null
		rm -f "$1.csr" "$1.ext"
		own "$1"
	}
	for n in ${PKI_SERVERS:-}; do
		issue "$n" serverAuth "DNS:$n"
	done
	for n in ${PKI_CLIENTS:-}; do
		issue "$n" clientAuth "DNS:$n"
	done
	;;
*)
	log "unknown command $cmd (init, serve, tls-init or pki-init)"
	exit 2
	;;
esac
