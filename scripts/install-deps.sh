#!/usr/bin/env bash
# Installs the system packages tracerelay builds and tests with (Debian 12), and the Python
# venv the real-client tests use. Safe to run again; skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  pkg-config libnghttp2-dev libzstd-dev zlib1g-dev   # C libraries the relay links
  libssl-dev openssl                                 # TLS (OpenSSL 3); the CLI makes test certificates and is a real TLS peer
  nghttp2-client curl zstd                           # real clients used by the tests (nghttp, h2load)
  python3-venv                                       # venv for the Python client tests
  chromium                                           # a real browser for the status page and load-rig report tests
)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
fi

if [ "${SKIP_PYTHON:-0}" != "1" ]; then
  if [ ! -x .venv/bin/python ] || ! cmp -s Tests/e2e/requirements.txt .venv/.requirements 2>/dev/null; then
    python3 -m venv .venv
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -r Tests/e2e/requirements.txt
    cp Tests/e2e/requirements.txt .venv/.requirements
  fi
fi
