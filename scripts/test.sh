#!/usr/bin/env bash
# Installs what the tests need (Debian packages, a Python venv with the real clients), then runs
# every test: the Swift suites (unit, sockets, curl/h2load/nghttp) and the end-to-end suite in
# Tests/e2e, where real tracers (ddtrace, OpenTelemetry's Zipkin exporters, py_zipkin) talk to the relay.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
swift build --build-tests
swift test --skip-build
TRACERELAY_BIN="$PWD/.build/debug/tracerelay" .venv/bin/python -m pytest -q Tests/e2e
