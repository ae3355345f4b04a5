#!/bin/sh
# Demo certificates for the compose demo's mutual-TLS hop (collectors → central), made by the
# one-shot `certs` service of docker/compose.yaml before any relay starts. Never for production.
#
#   make-certs.sh CENTRAL_DIR COLLECTOR_EU_DIR COLLECTOR_US_DIR
#
# A fresh demo CA signs three certificates:
#   central        server certificate for DNS:central (the name the collectors verify),
#                  DNS:localhost and IP:127.0.0.1 (for curl from the host)
#   collector-eu   client certificate, URI SAN spiffe://default/eu-west-zone-1/collector
#   collector-us   client certificate, URI SAN spiffe://default/us-east-zone-1/collector
# central.yaml's `peers` rules map these identities to the zone each collector may speak for.
# Each directory (one volume per relay) gets ca.pem plus its own cert.pem and key.pem, so no relay
# can read another's key; the CA key lives only in a temporary directory and is thrown away.
# When every certificate is there and valid for another day, a run changes nothing (the service
# runs on every `docker compose up`); otherwise everything is made anew.
#
# Environment: CERTS_OWNER (uid:gid; when set, the files are given to it: the relays run as
# 10001, this script as root), CERTS_DAYS (validity, default 365).
set -eu
[ $# -eq 3 ] || { echo "usage: $0 CENTRAL_DIR COLLECTOR_EU_DIR COLLECTOR_US_DIR" >&2; exit 2; }
central=$1 eu=$2 us=$3
days=${CERTS_DAYS:-365}

current() {
  for dir in "$@"; do
    [ -s "$dir/ca.pem" ] && [ -s "$dir/key.pem" ] || return 1
    openssl verify -CAfile "$dir/ca.pem" "$dir/cert.pem" >/dev/null 2>&1 || return 1
    openssl x509 -checkend 86400 -noout -in "$dir/cert.pem" >/dev/null || return 1
  done
}
if current "$central" "$eu" "$us"; then
  echo "demo certificates in $central, $eu, $us are valid: kept"
  exit 0
fi

umask 077
ca=$(mktemp -d)
trap 'rm -rf "$ca"' EXIT
newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"; }
newkey "$ca/ca.key"
openssl req -x509 -new -key "$ca/ca.key" -out "$ca/ca.pem" -days "$days" -subj "/CN=tracerelay demo CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"

# issue DIR SUBJECT SAN EXTENDED_KEY_USAGE
issue() {
  mkdir -p "$1"
  chmod 0755 "$1"
  newkey "$1/key.pem"
  # OpenSSL 3's `req -CA` signs the new certificate with the CA directly (no CSR round trip).
  openssl req -x509 -new -key "$1/key.pem" -out "$1/cert.pem" -CA "$ca/ca.pem" -CAkey "$ca/ca.key" \
    -days "$days" -subj "$2" -addext "subjectAltName=$3" -addext "extendedKeyUsage=$4" \
    -addext "basicConstraints=critical,CA:FALSE"
  cp "$ca/ca.pem" "$1/ca.pem"
  chmod 0644 "$1/ca.pem" "$1/cert.pem"
  chmod 0600 "$1/key.pem"
  if [ -n "${CERTS_OWNER:-}" ]; then chown "$CERTS_OWNER" "$1/ca.pem" "$1/cert.pem" "$1/key.pem"; fi
  echo "$1: $(openssl x509 -noout -subject -in "$1/cert.pem"), $3"
}
issue "$central" "/CN=central" "DNS:central,DNS:localhost,IP:127.0.0.1" serverAuth
issue "$eu" "/CN=eu-west-zone-1 collector" "URI:spiffe://default/eu-west-zone-1/collector" clientAuth
issue "$us" "/CN=us-east-zone-1 collector" "URI:spiffe://default/us-east-zone-1/collector" clientAuth
echo "demo certificates made (valid $days days)"
