#!/usr/bin/env bash
# Builds the libFuzzer harness with ASan and fuzzes one parser for a bounded time.
#   Fuzz/run.sh zipkin-v2-json 60
# Parsers: zipkin-v2-json zipkin-proto3 zipkin-v1-json datadog-v03-json datadog-v04 datadog-v05 datadog-v07
#          content-decoding tracerelay-tags config
# Seeds come from the codec fixtures; crashes land in Fuzz/Regressions/<parser>/.
set -euo pipefail
cd "$(dirname "$0")"
target=${1:?parser name, e.g. zipkin-v2-json}
seconds=${2:-60}
swift build -c release --product FuzzParsers -Xswiftc -sanitize=fuzzer,address -Xswiftc -g
bin=$(swift build -c release --show-bin-path)/FuzzParsers
corpus=$(mktemp -d)
case "$target" in
  zipkin*) find ../Tests/CodecsTests/Fixtures/zipkin -maxdepth 1 -type f ! -name '*.expected.json' -exec cp {} "$corpus"/ \; ;;
  datadog*) find ../Tests/CodecsTests/Fixtures/datadog -maxdepth 1 -type f ! -name '*.expected.json' -exec cp {} "$corpus"/ \; ;;
  config) for f in ../examples/*.yaml ../loadtest/scenarios/*/relay.yaml; do cp "$f" "$corpus/$(echo "$f" | tr / _)"; done ;;
  tracerelay-tags) printf 'kuma.io/zone=eu-1,region=eu' > "$corpus/seed1"; printf 'a%%2Cb=c%%3Dd,k=' > "$corpus/seed2" ;;
esac
mkdir -p "Regressions/$target"
FUZZ_TARGET="$target" "$bin" -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 \
  -artifact_prefix="Regressions/$target/" "$corpus"
