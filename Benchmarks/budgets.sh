#!/usr/bin/env bash
# The checked-in performance budgets: Benchmarks/Thresholds/<suite>.<benchmark>.p90.json, one per
# benchmark of the budgeted suites, holding the p90 of every metric of the run that wrote them.
# `check` runs the suites and compares each metric's p90 with the stored one, within the
# tolerances in Sources/BenchBudgets/Budgets.swift: malloc count ±2 % (at least ±2), wall time and
# throughput only beyond 10× (this shared 2-core machine moves them 2×), instructions ±3 % where the
# CPU has counters (this VM has none: its instruction budget is `instructions.sh check`).
# An improvement beyond a tolerance fails too: run `update` and commit the new files.
#
# Usage: Benchmarks/budgets.sh check     exit 0 = within budget; otherwise non-zero, with
#                                        `benchmarkThresholdRegression` or `…Improvement` and a table
#        Benchmarks/budgets.sh update    re-measure and rewrite Thresholds/ (review the diff)
# Env:   SUITES (default "StagesBenchmarks RoutingBenchmarks"), FILTER (a benchmark-name regex)
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
SUITES=${SUITES:-"StagesBenchmarks RoutingBenchmarks"}
targets=()
for s in $SUITES; do targets+=(--target "$s"); done
[[ -n "${FILTER:-}" ]] && targets+=(--filter "$FILTER")

cd "$HERE"
case "${1:-}" in
check)
    swift package --scratch-path .build benchmark thresholds check "${targets[@]}" --path Thresholds --no-progress ;;
update)
    swift package --scratch-path .build --allow-writing-to-package-directory benchmark thresholds update \
        "${targets[@]}" --path Thresholds --no-progress ;;
*)
    sed -n '2,14p' "$0" >&2
    exit 1 ;;
esac
