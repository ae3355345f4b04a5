#!/usr/bin/env bash
# Installs what the relay needs (Debian 12), builds it in release mode and starts it.
#   ./scripts/run.sh                       embedded default config: Zipkin 127.0.0.1:9411, Datadog 127.0.0.1:8126,
#                                          admin 127.0.0.1:9901, a `log` backend
#   ./scripts/run.sh --config FILE ...     any `tracerelay serve` options
set -euo pipefail
cd "$(dirname "$0")/.."
SKIP_PYTHON=1 ./scripts/install-deps.sh
swift build -c release --product tracerelay
if [ -n "${LISTEN:-}" ] && [ $# -eq 0 ]; then set -- --listen "$LISTEN"; fi
exec .build/release/tracerelay serve "$@"
