#!/usr/bin/env bash
# Issue 10's hostile mix against a release relay on loopback (discard backend), with a well-behaved
# client measured throughout: keep-alive POST of one small Zipkin span every 20 ms, each answer's
# latency recorded. The relay's VmRSS is sampled from /proc every 100 ms.
#
# Probes (Benchmarks/hostile/hostile.py), one after another, then all together; each bounded in time:
#   bomb        the gzip bomb of tiny spans (gzip -1 of `[` + 4,194,294 × {"traceId":"1","id":"1"} + `]`,
#               645 KB), two senders at once, each repeating every BOMB_PAUSE (0.25 s)
#   stall-h2    40 h2c connections, each holding up to 64 streams: HEADERS (POST, content-length 25 MiB)
#               + 64 DATA × 16,000 B, no END_STREAM, a PING every 20 s; ended streams are replaced
#   stall-h1    40 HTTP/1.1 connections: a 25 MiB Content-Length head + 1,024,000 B of body, then
#               nothing; a closed connection is reopened after 1 s
#   headers-h2  250 h2 streams declaring 25 MiB with no data (one connection), replaced when ended
#   hpack       4 connections sending header blocks of a 4 KB dynamic-table entry referenced 16,000
#               times (≈ 20 KB on the wire, 64 MB decoded), back to back; reconnecting when closed
#   noread      200 connections pipelining small POSTs (≤ 8 MiB each) that never read an answer,
#               held, then closed
# Each phase = the probe (PROBE_SECS) + SETTLE_SECS; the table gives, per phase, the well-behaved
# client's requests, errors (any answer but 202, or a failure), p50/p99/max latency, and the relay's
# peak and final RSS over idle (idle = the peak during IDLE_SECS with only the well-behaved client).
# With FRESH=1 each phase gets a new relay (same ports), so a phase's RSS is not what an earlier one
# left behind. Goals (issue 10): peak RSS ≤ 300 MB over idle, well-behaved p99 ≤ 50 ms.
#
# Usage: Benchmarks/hostile-mix.sh   (builds: swift build -c release --scratch-path .build-hostile)
# Env:   TRACERELAY_BIN (skip the build), PROBES (default "bomb stall-h2 stall-h1 headers-h2 hpack
#        noread"), TOGETHER (1: the "all" phase at the end; 0: skip), FRESH (0; 1: a new relay per
#        phase), PROBE_SECS (30), ALL_SECS (45), SETTLE_SECS (5), IDLE_SECS (5), RELAY_ARGS (extra `serve` flags, e.g. --memory-budget-bytes),
#        KEEP_WORK=1 (keep the work dir: relay log, samples), and the probe knobs read by
#        hostile.py: STALL_CONNS STALL_STREAMS PING_EVERY HEADERS_CONNS HEADERS_STREAMS HPACK_CONNS
#        HPACK_REFS NOREAD_CONNS NOREAD_BYTES BOMB_CONCURRENCY BOMB_PAUSE.
set -euo pipefail

PROBES=${PROBES:-"bomb stall-h2 stall-h1 headers-h2 hpack noread"}
TOGETHER=${TOGETHER:-1}
FRESH=${FRESH:-0}
PROBE_SECS=${PROBE_SECS:-30}
ALL_SECS=${ALL_SECS:-45}
SETTLE_SECS=${SETTLE_SECS:-5}
IDLE_SECS=${IDLE_SECS:-5}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
source "$HERE/lib.sh"
PY="$REPO/.venv/bin/python"
[[ -x "$PY" ]] || PY=python3
H="$PY $HERE/hostile/hostile.py"
WORK=$(mktemp -d /tmp/hostile-mix.XXXXXX)
RELAY_PID=""; STEADY_PID=""; RSS_PID=""; PROBE_PIDS=()

cleanup() {
    for p in "${PROBE_PIDS[@]}"; do stop_pid "$p"; done
    stop_pid "$STEADY_PID"; stop_pid "$RSS_PID"; stop_pid "$RELAY_PID"
    if [[ "${KEEP_WORK:-0}" == 1 ]]; then echo "work dir kept: $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

command -v curl >/dev/null || { echo "missing curl" >&2; exit 1; }
"$PY" -c 'import h2, requests' || { echo "$PY lacks h2/requests (see Tests/e2e/requirements.txt)" >&2; exit 1; }

# --- build ----------------------------------------------------------------------------------------
relay_binary .build-hostile


# --- the relay: every span into a discard backend --------------------------------------------------
cat > "$WORK/relay.yaml" <<'EOF'
type: Mesh
name: default
tracing:
  defaultBackend: sink
  backends:
    - name: sink
      type: discard
---
type: TrafficTrace
name: trace-all
mesh: default
selectors:
  - match:
      kuma.io/service: '*'
conf:
  backend: sink
EOF
RP=$(free_port); AP=$(free_port)
start_relay() {  # on the same ports each time; the RSS sampler and the steady client append to their files
    # shellcheck disable=SC2086  # RELAY_ARGS is a list of flags
    "$TR" serve --config "$WORK/relay.yaml" --listen "127.0.0.1:$RP" --admin "127.0.0.1:$AP" \
        --spill-dir "$WORK/spill" ${RELAY_ARGS:-} >> "$WORK/relay.log" 2>&1 &
    RELAY_PID=$!
    for _ in $(seq 200); do
        [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$AP/health/ready")" == 200 ]] && return 0
        kill -0 "$RELAY_PID" 2>/dev/null || break
        sleep 0.05
    done
    echo "relay did not get ready:" >&2; tail -20 "$WORK/relay.log" >&2; exit 1
}
start_watchers() {
    $H rss "$RELAY_PID" "$WORK/rss.txt" & RSS_PID=$!
    $H steady "http://127.0.0.1:$RP" "$WORK/steady.txt" & STEADY_PID=$!
}
stop_all() {
    stop_pid "$STEADY_PID"; STEADY_PID=""
    stop_pid "$RSS_PID"; RSS_PID=""
    echo "relay $RELAY_PID: VmHWM $(awk '$1 == "VmHWM:" {print int($2/1024)}' "/proc/$RELAY_PID/status" 2>/dev/null) MB" >&2
    stop_pid "$RELAY_PID"; RELAY_PID=""
}
start_relay

export BOMB_FILE="$WORK/bomb.json.gz"
$H bomb-file "$BOMB_FILE"
echo "relay pid $RELAY_PID on 127.0.0.1:$RP; bomb $(stat -c %s "$BOMB_FILE") B; load: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

: > "$WORK/phases.txt"; : > "$WORK/rss.txt"; : > "$WORK/steady.txt"
start_watchers

# run_phase NAME SECS PROBE...: the probes in parallel, each bounded by SECS (+ a hard kill at SECS + 60)
run_phase() {
    local name=$1 secs=$2; shift 2
    if [[ "$FRESH" == 1 && "$name" != "${FIRST_PHASE:-}" ]]; then  # a new relay for this phase
        stop_all; start_relay; start_watchers; sleep 2
    fi
    local t0; t0=$(now)
    PROBE_PIDS=()
    for p in "$@"; do
        timeout -k 5 $((secs + 60)) $H probe "$p" 127.0.0.1 "$RP" "$secs" >> "$WORK/probe-$name.txt" 2>&1 &
        PROBE_PIDS+=($!)
    done
    for p in "${PROBE_PIDS[@]}"; do wait "$p" || echo "probe in $name exited $?" >> "$WORK/probe-$name.txt"; done
    PROBE_PIDS=()
    sleep "$SETTLE_SECS"
    kill -0 "$RELAY_PID" 2>/dev/null || { echo "relay died during $name:" >&2; tail -20 "$WORK/relay.log" >&2; }
    echo "$name $t0 $(now)" >> "$WORK/phases.txt"
    echo "  $name done ($(cut -d' ' -f1-3 /proc/loadavg))" >&2
}

t0=$(now); sleep "$IDLE_SECS"; echo "idle $t0 $(now)" >> "$WORK/phases.txt"
FIRST_PHASE=$(awk '{print $1; exit}' <<<"$PROBES")
# shellcheck disable=SC2086
for p in $PROBES; do run_phase "$p" "$PROBE_SECS" "$p"; done
# shellcheck disable=SC2086
[[ "$TOGETHER" == 1 ]] && run_phase all "$ALL_SECS" $PROBES

kill -0 "$RELAY_PID" 2>/dev/null || echo "RELAY EXITED: $(tail -5 "$WORK/relay.log")"
stop_all
$H report "$WORK"
