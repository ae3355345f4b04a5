#!/usr/bin/env bash
# Instructions per span of the hot paths, counted by callgrind (exact and repeatable: the figure to
# compare before/after a change on a noisy shared machine, where wall time is not).
#
# Builds Benchmarks' `hotpath` (release), makes `strip -g` copies of it and of the Swift runtime
# libraries it loads (valgrind 3.19 cannot read the DWARF 5 that Swift 6.3 emits), then per path
# runs it twice under callgrind — ITERATIONS iterations and 0 — so fixture building, the warm-up
# iteration, process start and exit cancel out:
#   instructions per span = (Ir(ITERATIONS) − Ir(0)) / (ITERATIONS × 1,000 spans)
# Paths: `hotpath` without arguments lists them (decode/encode per format, route, pipeline).
#
# The instruction budget: Thresholds/instructions.tsv holds each path's Ir/span. This machine has no
# hardware counters (a VM: package-benchmark's `instructions` metric stays empty), so callgrind's
# count is the budget for CPU work here; package-benchmark's thresholds hold the malloc counts.
#
# Usage: Benchmarks/instructions.sh            print the table
#        Benchmarks/instructions.sh check      … and compare with Thresholds/instructions.tsv within
#                                              TOLERANCE % (3): exit 2 on a regression, 4 on an
#                                              improvement (then update and commit the file)
#        Benchmarks/instructions.sh update     … and rewrite Thresholds/instructions.tsv
# Env:   PATHS (default "decode-zipkin-json simdjson-zipkin-json decode-zipkin-proto decode-dd-v04 decode-dd-v05 route
#        encode-zipkin-json encode-zipkin-proto encode-dd encode-dd-from-zipkin pipeline-zipkin-zipkin
#        pipeline-datadog-datadog tls-roundtrip"), ITERATIONS (20), HOTPATH_BIN (skip the build, use this binary),
#        KEEP_WORK=1 (keep the stripped copies and callgrind.out files, for callgrind_annotate).
set -euo pipefail
# Swift seeds its hashing per process; a fixed seed makes paths that hash (v0.5 string tables) repeat exactly.
export SWIFT_DETERMINISTIC_HASHING=1

HERE=$(cd "$(dirname "$0")" && pwd)
MODE=${1:-print}
BUDGET="$HERE/Thresholds/instructions.tsv"
TOLERANCE=${TOLERANCE:-3}
case "$MODE" in print|check|update) ;; *) sed -n '2,25p' "$0" >&2; exit 1 ;; esac
[[ "$MODE" != check || -f "$BUDGET" ]] || { echo "instructions.sh: no budget at $BUDGET (run: $0 update)" >&2; exit 1; }
ITERATIONS=${ITERATIONS:-20}
PATHS=${PATHS:-"decode-zipkin-json simdjson-zipkin-json decode-zipkin-proto decode-dd-v04 decode-dd-v05 route encode-zipkin-json encode-zipkin-proto encode-dd encode-dd-from-zipkin pipeline-zipkin-zipkin pipeline-datadog-datadog tls-roundtrip"}
for tool in valgrind strip ldd; do
    command -v "$tool" >/dev/null || { echo "instructions.sh: $tool is needed (apt-get install valgrind binutils)" >&2; exit 1; }
done

if [[ -z "${HOTPATH_BIN:-}" ]]; then
    swift build -c release --package-path "$HERE" --scratch-path "$HERE/.build" --product hotpath >&2
    HOTPATH_BIN="$(swift build -c release --package-path "$HERE" --scratch-path "$HERE/.build" --show-bin-path)/hotpath"
fi

WORK=$(mktemp -d /tmp/instructions.XXXXXX)
cleanup() { if [[ "${KEEP_WORK:-0}" == 1 ]]; then echo "work dir kept: $WORK" >&2; else rm -rf "$WORK"; fi; }
trap cleanup EXIT
mkdir -p "$WORK/lib"
cp "$HOTPATH_BIN" "$WORK/hotpath"
strip -g "$WORK/hotpath"
# The Swift runtime (libswiftCore, Foundation, Dispatch …) carries DWARF 5 too: stripped copies,
# found first through LD_LIBRARY_PATH.
ldd "$HOTPATH_BIN" | awk '$3 ~ /^\// && $3 ~ /swift|dispatch|Foundation|BlocksRuntime/ {print $3}' | while read -r lib; do
    cp "$lib" "$WORK/lib/"
    strip -g "$WORK/lib/$(basename "$lib")"
done

# Ir of one run: callgrind's "Collected" total for the whole process.
count() {
    local out
    out=$(LD_LIBRARY_PATH="$WORK/lib" valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.$1.$2.out" \
        "$WORK/hotpath" "$1" "$2" 2>&1) || { echo "$out" >&2; echo "instructions.sh: hotpath $1 $2 failed under valgrind" >&2; exit 1; }
    local ir
    ir=$(sed -n 's/^==[0-9]*== Collected : \([0-9]*\).*/\1/p' <<<"$out")
    [[ -n "$ir" ]] || { echo "$out" >&2; echo "instructions.sh: no 'Collected' line from callgrind" >&2; exit 1; }
    echo "$ir"
}

echo "instructions per span (callgrind, $ITERATIONS iterations × 1,000 spans minus 0; $(date -u +%F))"
printf '%-28s %12s %12s %8s\n' path "Ir/span" budget change
results=()
status=0
for p in $PATHS; do
    base=$(count "$p" 0)
    full=$(count "$p" "$ITERATIONS")
    per=$(awk -v b="$base" -v f="$full" -v n="$ITERATIONS" 'BEGIN { printf "%.1f", (f - b) / (n * 1000) }')
    results+=("$p	$per")
    budget=$(awk -F'\t' -v p="$p" '$1 == p { print $2 }' "$BUDGET" 2>/dev/null || true)
    if [[ -n "$budget" ]]; then
        verdict=$(awk -v x="$per" -v b="$budget" -v t="$TOLERANCE" 'BEGIN {
            d = (x - b) / b * 100; printf "%+.1f%%", d; if (d > t) print " WORSE"; else if (d < -t) print " BETTER"; else print "" }')
        printf '%-28s %12s %12s %s\n' "$p" "$per" "$budget" "$verdict"
        if [[ "$MODE" == check && "$verdict" == *WORSE ]]; then status=2; fi
        if [[ "$MODE" == check && "$verdict" == *BETTER && $status == 0 ]]; then status=4; fi
    else
        printf '%-28s %12s %12s\n' "$p" "$per" "-"
    fi
done
if [[ "$MODE" == update ]]; then
    mkdir -p "$(dirname "$BUDGET")"
    {
        echo "# path	Ir/span — written by Benchmarks/instructions.sh update ($(date -u +%F)); checked within ±${TOLERANCE} %"
        printf '%s\n' "${results[@]}"
    } > "$BUDGET"
    echo "wrote $BUDGET"
fi
if [[ "$MODE" == check ]]; then
    case $status in
    0) echo "within the instruction budget (±${TOLERANCE} %)" ;;
    2) echo "instructions.sh: over the instruction budget" >&2 ;;
    4) echo "instructions.sh: better than the budget beyond ±${TOLERANCE} %: run '$0 update' and commit Thresholds/instructions.tsv" >&2 ;;
    esac
fi
exit $status
