#!/usr/bin/env bash
# Builds the libFuzzer harness with ASan and fuzzes one target for a bounded time.
#   Fuzz/run.sh zipkin-v2-json 60
#   FUZZ_SCRATCH=/path/to/scratch Fuzz/run.sh h2-server 180
# Targets: FUZZ_TARGET=list <binary>, or see main.swift (codecs, config, tags, the HTTP/1.1 and
# HTTP/2 engines, spill segments). Seeds: Fuzz/Corpus/<target>, Fuzz/Regressions/<target> and the
# codec fixtures; new inputs go to a temporary directory; crashes land in Fuzz/Regressions/<target>/.
# Extra arguments after SECONDS go to libFuzzer (e.g. -print_final_stats=1; -fork=1
# -ignore_crashes=1 to go on past a known crash, whose reproducer is replayed first).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
target=${1:?target name, e.g. zipkin-v2-json}
seconds=${2:-60}
shift $(( $# < 2 ? $# : 2 ))
fuzz_build
corpus=$(mktemp -d)
trap 'rm -rf "$corpus"' EXIT
fuzz_seeds "$target" "$corpus"
mkdir -p "$FUZZ_DIR/Regressions/$target"
mapfile -t kept < <(fuzz_corpora "$target")
FUZZ_TARGET="$target" "$FUZZ_BIN" -max_total_time="$seconds" "${FUZZ_OPTS[@]}" \
  -artifact_prefix="$FUZZ_DIR/Regressions/$target/" "$@" "$corpus" "${kept[@]}"
