#!/usr/bin/env bash
# Fuzzes every target MINUTES minutes (default 10), one after another, by hand:
#   Fuzz/all.sh 10        (FUZZ_SCRATCH and FUZZ_LOGS as for ci.sh)
set -euo pipefail
minutes=${1:-10}
exec "$(dirname "$0")/ci.sh" $(( minutes * 60 ))
