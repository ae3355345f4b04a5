#!/usr/bin/env bash
# Test certificates for examples/chain-*-mtls.yaml (never for production): a CA, a server
# certificate for localhost / 127.0.0.1, and a client certificate per zone whose URI SAN is Kuma's
# SPIFFE form (spiffe://default/<zone>/collector), all made with the openssl CLI.
#   examples/make-test-certs.sh [DIR]          (default /tmp/tracerelay-tls)
set -euo pipefail
dir=${1:-/tmp/tracerelay-tls}
mkdir -p "$dir"
cd "$dir"
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
key ca.key
openssl req -x509 -new -key ca.key -out ca.pem -days 30 -subj "/CN=tracerelay example CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
issue() { # name subject san usage
  key "$1.key"
  openssl req -new -key "$1.key" -out "$1.csr" -subj "$2"
  printf 'subjectAltName=%s\nextendedKeyUsage=%s\nbasicConstraints=CA:FALSE\n' "$3" "$4" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -out "$1.pem" -days 30 -extfile "$1.ext" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}
issue central "/CN=central relay" "DNS:localhost,IP:127.0.0.1" serverAuth
issue eu-west-zone-1 "/CN=eu-west-zone-1 collector" "URI:spiffe://default/eu-west-zone-1/collector" clientAuth
issue us-east-zone-1 "/CN=us-east-zone-1 collector" "URI:spiffe://default/us-east-zone-1/collector" clientAuth
echo "certificates in $dir: ca.pem, central.pem/.key, eu-west-zone-1.pem/.key, us-east-zone-1.pem/.key"
