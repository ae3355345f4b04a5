#!/usr/bin/env bash
# Fuzzes every target briefly, for CI: builds once, replays each target's regression inputs,
# runs each target SECONDS_EACH seconds (default 20), prints a per-target summary (runs, exec/s,
# coverage, peak RSS) and exits non-zero if any target crashed, leaked, hung or ran out of memory.
#   Fuzz/ci.sh [SECONDS_EACH]         FUZZ_SCRATCH=<scratch path> (default Fuzz/.build)
# Full logs and crashing inputs: $FUZZ_LOGS (default a temporary directory, printed); copy a new
# crash input to Fuzz/Regressions/<target>/ to keep it as a regression case (replayed first).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
seconds=${1:-20}
fuzz_build
logs=${FUZZ_LOGS:-$(mktemp -d)}
mkdir -p "$logs"
failed=()
summary=()
for target in $(fuzz_targets); do
  corpus=$(mktemp -d)
  fuzz_seeds "$target" "$corpus"
  mapfile -t kept < <(fuzz_corpora "$target")
  log="$logs/$target.log"
  rc=0
  FUZZ_TARGET="$target" "$FUZZ_BIN" -max_total_time="$seconds" "${FUZZ_OPTS[@]}" -print_final_stats=1 \
    -artifact_prefix="$logs/$target-" "$corpus" "${kept[@]}" > "$log" 2>&1 || rc=$?
  rm -rf "$corpus"
  # "#1234 DONE cov: 812 ft: 2301 corp: ..." (or the last pulse line when it stopped early).
  last=$(grep -E '^#[0-9]+[[:space:]]+(DONE|pulse|NEW|REDUCE|INITED)' "$log" | tail -1 || true)
  cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$last")
  ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$last")
  runs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+)/\1/p' "$log")
  eps=$(sed -nE 's/^stat::average_exec_per_sec: *([0-9]+)/\1/p' "$log")
  rss=$(sed -nE 's/^stat::peak_rss_mb: *([0-9]+)/\1/p' "$log")
  status=ok
  if [ "$rc" -ne 0 ]; then
    status="FAILED (exit $rc)"
    failed+=("$target")
    echo "---- $target failed; the end of $log:" >&2
    grep -E 'ERROR|SUMMARY|Fatal error|Test unit written|leak|^ +#[0-9]+ ' "$log" | head -40 >&2 || true
    # The input itself, so a CI log alone is enough to reproduce (Fuzz/Regressions/README.md).
    for a in "$logs/$target"-*; do
      [ -f "$a" ] || continue
      echo "---- $(basename "$a") ($(wc -c <"$a") bytes; base64, first 4 KiB):" >&2
      head -c 4096 "$a" | base64 -w 100 >&2
    done
  fi
  summary+=("$(printf '%-18s %-16s runs=%-9s exec/s=%-7s cov=%-6s ft=%-6s rss=%sMB' \
    "$target" "$status" "${runs:-?}" "${eps:-?}" "${cov:-?}" "${ft:-?}" "${rss:-?}")")
done
echo "== fuzz summary ($seconds s each; logs in $logs)"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED: ${failed[*]}"
  exit 1
fi
