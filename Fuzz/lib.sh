# Shared by run.sh and ci.sh (sourced): builds the libFuzzer harness once and fills seed
# directories. FUZZ_SCRATCH: the build's scratch path (default Fuzz/.build).
FUZZ_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
FUZZ_SCRATCH=${FUZZ_SCRATCH:-$FUZZ_DIR/.build}
# The Swift runtime backtracer would catch the trap before ASan and libFuzzer report it.
export SWIFT_BACKTRACE=enable=no
# libFuzzer options every run shares: bounded input size, memory (one allocation over 512 MiB
# fails: no input of ≤ 64 KiB should need that) and per-input time (a hang fails).
FUZZ_OPTS=(-max_len=65536 -rss_limit_mb=2048 -malloc_limit_mb=512 -timeout=10)

# Builds FuzzParsers (release, -sanitize=fuzzer,address) and sets FUZZ_BIN.
fuzz_build() {
  (cd "$FUZZ_DIR" && swift build -c release --scratch-path "$FUZZ_SCRATCH" --product FuzzParsers \
     -Xswiftc -sanitize=fuzzer,address -Xswiftc -g) >&2 || return 1
  FUZZ_BIN=$(cd "$FUZZ_DIR" && swift build -c release --scratch-path "$FUZZ_SCRATCH" --show-bin-path)/FuzzParsers
}

# Every target name the harness knows.
fuzz_targets() { FUZZ_TARGET=list "$FUZZ_BIN"; }

# fuzz_seeds TARGET DIR: copies the seeds kept outside Fuzz/Corpus (codec fixtures, configs)
# into DIR, which is also where libFuzzer writes new inputs (Fuzz/Corpus/TARGET is passed as a
# second, read-only corpus directory).
fuzz_seeds() {
  local target=$1 dir=$2 f
  case "$target" in
    zipkin*) find "$FUZZ_DIR/../Tests/CodecsTests/Fixtures/zipkin" -maxdepth 1 -type f ! -name '*.expected.json' -exec cp {} "$dir"/ \; ;;
    datadog*) find "$FUZZ_DIR/../Tests/CodecsTests/Fixtures/datadog" -maxdepth 1 -type f ! -name '*.expected.json' -exec cp {} "$dir"/ \; ;;
    config) for f in "$FUZZ_DIR"/../examples/*.yaml "$FUZZ_DIR"/../loadtest/scenarios/*/relay.yaml; do
              cp "$f" "$dir/$(basename "$(dirname "$f")")_$(basename "$f")"; done ;;
    tracerelay-tags) printf 'kuma.io/zone=eu-1,region=eu' > "$dir/seed1"; printf 'a%%2Cb=c%%3Dd,k=' > "$dir/seed2" ;;
  esac
}

# fuzz_corpora TARGET: the read-only corpus directories of TARGET that exist (kept seeds and
# the regression inputs).
fuzz_corpora() {
  local d
  for d in "$FUZZ_DIR/Corpus/$1" "$FUZZ_DIR/Regressions/$1"; do
    if [ -d "$d" ]; then echo "$d"; fi
  done
}
