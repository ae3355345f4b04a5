#!/usr/bin/env bash
# Builds one libFuzzer target with ASan and runs it for a bounded time.
#   Fuzz/run.sh FuzzZipkinJSONV2 60
# Seeds come from the codec fixtures; crashes land in Fuzz/Regressions/<target>/.
set -euo pipefail
cd "$(dirname "$0")"
target=${1:?target name, e.g. FuzzZipkinJSONV2}
seconds=${2:-60}
swift build -c release --product "$target" -Xswiftc -sanitize=fuzzer,address -Xswiftc -g 2>&1 | grep -E "error|Compiling|Build" || true
bin=$(swift build -c release --show-bin-path)/$target
corpus=$(mktemp -d)
case "$target" in
  *Zipkin*) cp ../Tests/CodecsTests/Fixtures/zipkin/* "$corpus"/ 2>/dev/null || true ;;
  *Datadog*) cp ../Tests/CodecsTests/Fixtures/datadog/* "$corpus"/ 2>/dev/null || true ;;
esac
mkdir -p "Regressions/$target"
"$bin" -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 -artifact_prefix="Regressions/$target/" "$corpus"
