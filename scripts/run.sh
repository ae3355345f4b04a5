#!/usr/bin/env bash
# Installs what the relay needs (Debian 12), builds it in release mode and starts it.
#   ./scripts/run.sh                       embedded default config on 127.0.0.1:9411
#   ./scripts/run.sh --config FILE ...     any `tracerelay serve` options
set -euo pipefail
cd "$(dirname "$0")/.."
SKIP_PYTHON=1 ./scripts/install-deps.sh
swift build -c release --product tracerelay
if [ $# -eq 0 ]; then set -- --listen "${LISTEN:-127.0.0.1:9411}"; fi
exec .build/release/tracerelay serve "$@"
