#!/usr/bin/env bash
# The whole pipeline under load: an independent client → tracerelay → nginx (reading the body,
# as a Zipkin collector / Datadog agent would), all on loopback. The figure that matters is
# spans per second per core of *relay* CPU (utime+stime from /proc/<pid>/stat, from the start
# of the load until the relay has delivered everything it accepted), because the load client
# and nginx share the cores.
#
# Cases (a fresh relay each; 500-span bodies, see Benchmarks/pipeline/bench.py):
#   anchor-zipkin  Zipkin JSON over h2c (h2load)  → discard backend   (ingest only: decode + route)
#   anchor-dd      Datadog v0.4 over HTTP/1.1 (wrk, PUT) → discard backend
#   1 zipkin→zipkin  Zipkin JSON over h2c → zipkin backend (traceId128bit: true). Envoy writes
#                    "port":0 in localEndpoint; such spans are canonical and forwarded as their
#                    original bytes (the whole request body when every span goes to the backend)
#   1c               the same spans with port 8080
#   1r               (not in the default list) 1c with Kuma's default traceId128bit: false: the
#                    128-bit ids are cut to 64 bits, so every span is re-encoded
#   2 dd→dd          Datadog v0.4 over HTTP/1.1 → datadog backend (PUT /v0.4/traces msgpack)
#   3 zipkin→dd      Zipkin JSON over h2c → datadog backend
#   4 dd→zipkin      Datadog v0.4 over HTTP/1.1 → zipkin backend
#   spill          Zipkin JSON at ~SPILL_RATE spans/s (h2load --rps) → zipkin backend; nginx is
#                  stopped for the middle half of the run and restarted: relay RSS while the backend
#                  is down and the queue spills, then every span must still arrive.
#   perf           case 1 again with `perf record -g` on the relay; time grouped by stage.
# Loss check per case: the relay sent (sent_spans in /status) every span it accepted (ingest
# spans), dropped none, and nginx logged 2xx bodies whose Content-Length sum equals the relay's
# sent_bytes. Bodies: Zipkin = Envoy-shaped spans (15 tags); Datadog = the ddtrace 4.16 capture
# in Tests/CodecsTests/Fixtures/datadog replicated with fresh ids. wrk rotates BODIES distinct
# bodies; h2load sends one body over and over (same ids each time; the relay does not dedupe).
#
# Usage: Benchmarks/pipeline.sh        (builds tracerelay: swift build -c release --scratch-path .build-bench)
# Env:   DURATION (10 s per case), CASES (default "anchor-zipkin anchor-dd 1 1c 2 3 4 spill perf"),
#        RATE (total spans/s the client offers: h2load --rps, wrk delay; default: as fast as the
#        relay answers — then an exporter slower than ingest fills the queue, which spills and
#        answers 429, and the 429s and spill show in the table),
#        TRACERELAY_BIN (skip the build, use this binary), H2_CONNECTIONS (8), H2_STREAMS (4),
#        H1_CONNECTIONS (16), BODIES (16), EXPORT (the backends' `export:` map, flow YAML; default
#        "{batchSpans: 1000, batchBytes: 1MiB, batchDelay: 200ms, concurrency: 4, compression: none}"),
#        SPILL_DURATION (30 s), SPILL_RATE (100000 spans/s), DRAIN_TIMEOUT (120 s),
#        WAIT_IDLE (seconds to wait for load average < 0.5 before measuring; default 0 = only warn),
#        KEEP_WORK=1 (keep the temp dir: logs, configs, perf.data).
set -euo pipefail

DURATION=${DURATION:-10}
CASES=${CASES:-"anchor-zipkin anchor-dd 1 1c 2 3 4 spill perf"}
H2_CONNECTIONS=${H2_CONNECTIONS:-8}
H2_STREAMS=${H2_STREAMS:-4}
H1_CONNECTIONS=${H1_CONNECTIONS:-16}
BODIES=${BODIES:-16}
EXPORT=${EXPORT:-"{batchSpans: 1000, batchBytes: 1MiB, batchDelay: 200ms, concurrency: 4, compression: none}"}
SPILL_DURATION=${SPILL_DURATION:-30}
SPILL_RATE=${SPILL_RATE:-100000}
DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-120}
WAIT_IDLE=${WAIT_IDLE:-0}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
source "$HERE/lib.sh"
P="$HERE/pipeline"
BENCH="python3 $P/bench.py"
WORK=$(mktemp -d /tmp/pipeline-bench.XXXXXX)
RELAY_PID=""; NG_PID=""; EXTRA_PIDS=(); LOAD_NAME=load

cleanup() {
    for p in "${EXTRA_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    stop_pid "$RELAY_PID"; stop_pid "$NG_PID"
    wait 2>/dev/null || true
    if [[ "${KEEP_WORK:-0}" == 1 ]]; then echo "work dir kept: $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for tool in wrk h2load nginx curl python3; do
    command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install wrk nghttp2-client nginx-light libnginx-mod-http-echo)" >&2; exit 1; }
done
[[ -f /usr/lib/nginx/modules/ngx_http_echo_module.so ]] || { echo "missing libnginx-mod-http-echo" >&2; exit 1; }

# --- build ---------------------------------------------------------------------------------
relay_binary .build-bench

NG_PORT=$(free_port)
TICKS=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
proc_kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
fsub() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a - b}'; }

# --- payloads ------------------------------------------------------------------------------
read -r ZBYTES DBYTES DTRACES < <($BENCH payloads "$WORK/bodies" "$REPO/Tests/CodecsTests/Fixtures" "$BODIES")
SPANS=${SPANS_PER_BODY:-500}
cat > "$WORK/dd.lua" <<EOF
-- PUT /v0.4/traces like ddtrace, rotating $BODIES distinct bodies (each thread starts elsewhere).
local reqs, i = {}, 0
function init(args)
    for k = 0, $BODIES - 1 do
        local f = io.open("$WORK/bodies/dd-" .. k .. ".msgpack", "rb"); local b = f:read("*a"); f:close()
        reqs[#reqs + 1] = wrk.format("PUT", "/v0.4/traces", {
            ["Content-Type"] = "application/msgpack", ["X-Datadog-Trace-Count"] = "$DTRACES",
            ["Datadog-Meta-Lang"] = "python", ["Datadog-Meta-Tracer-Version"] = "4.16.0"}, b)
    end
    i = math.random(#reqs)
end
function request() i = i % #reqs + 1; return reqs[i] end
local pause = tonumber("${RATE:-0}") > 0 and $H1_CONNECTIONS * $SPANS * 1000 / ${RATE:-1} or nil
if pause then function delay() return pause end end
function done(s, lat, req)
    local e = s.errors
    io.write(string.format("WRKDONE %d %d %d\n", s.requests, e.status, e.connect + e.read + e.write + e.timeout))
end
EOF

# --- nginx (the backend) -------------------------------------------------------------------
mkdir -p "$WORK/nginx-body"
sed -e "s|@WORK@|$WORK|g" -e "s|@PORT@|$NG_PORT|g" "$P/nginx.conf" > "$WORK/nginx.conf"
: > "$WORK/access.log"
start_nginx() {
    nginx -c "$WORK/nginx.conf" -p "$WORK" > "$WORK/nginx.out" 2>&1 &
    NG_PID=$!
    for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$NG_PORT/" && return 0; sleep 0.05; done
    echo "nginx did not start: $(cat "$WORK/nginx.out" "$WORK/nginx-error.log" 2>/dev/null)" >&2; exit 1
}
start_nginx

# --- the relay -----------------------------------------------------------------------------
# start_relay NAME CONFIG(zipkin|datadog|discard) [extra export fields]   (env: TRACEID128)
start_relay() {
    local name=$1 kind=$2 export=$EXPORT
    [[ -n "${3:-}" ]] && export="${EXPORT%\}}, $3}"
    sed -e "s|@NGINX_PORT@|$NG_PORT|g" -e "s|@EXPORT@|$export|g" -e "s|@TRACEID128@|${TRACEID128:-true}|g" \
        "$P/relay-$kind.yaml" > "$WORK/$name.yaml"
    RP=$(free_port); AP=$(free_port)
    "$TR" serve --config "$WORK/$name.yaml" --listen "127.0.0.1:$RP" --admin "127.0.0.1:$AP" \
        --spill-dir "$WORK/spill-$name" > "$WORK/relay-$name.log" 2>&1 &
    RELAY_PID=$!
    ADMIN="127.0.0.1:$AP"
    for _ in $(seq 200); do
        [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://$ADMIN/health/ready")" == 200 ]] && return 0
        kill -0 "$RELAY_PID" 2>/dev/null || break; sleep 0.05
    done
    echo "relay ($name) did not get ready:" >&2; tail -20 "$WORK/relay-$name.log" >&2; exit 1
}

# A first request through the whole path (and the sanity check of the answer).
warm_up() {
    local input=$1 code
    if [[ $input == zipkin* ]]; then
        code=$(curl -s -o /dev/null -w '%{http_code}' --http2-prior-knowledge -H 'Content-Type: application/json' \
            --data-binary @"$WORK/bodies/$input-0.json" "http://127.0.0.1:$RP/api/v2/spans")
        [[ $code == 202 ]] || { echo "warm-up POST answered $code" >&2; exit 1; }
    else
        code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT -H 'Content-Type: application/msgpack' \
            -H "X-Datadog-Trace-Count: $DTRACES" --data-binary @"$WORK/bodies/dd-0.msgpack" "http://127.0.0.1:$RP/v0.4/traces")
        [[ $code == 200 ]] || { echo "warm-up PUT answered $code" >&2; exit 1; }
    fi
}

# load INPUT DURATION [h2load extra args] → "ok_requests failed_requests"
# With RATE (spans/s in total) h2load gets --rps per connection and wrk a per-request delay.
load() {
    local input=$1 dur=$2; shift 2
    if [[ $input == zipkin* ]]; then
        local out rate=()
        [[ -n "${RATE:-}" ]] && rate=(--rps "$(awk -v r="$RATE" -v s="$SPANS" -v c="$H2_CONNECTIONS" 'BEGIN{printf "%.3f", r / s / c}')")
        out=$(h2load -c "$H2_CONNECTIONS" -m "$H2_STREAMS" -t 1 -D "$dur" "${rate[@]}" "$@" -d "$WORK/bodies/$input-0.json" \
            -H 'content-type: application/json' "http://127.0.0.1:$RP/api/v2/spans" 2>&1 || true)
        echo "$out" > "$WORK/load-$LOAD_NAME.txt"
        awk '/^status codes:/ {ok=$3} /^requests:/ {bad=$10+$12+$14} END {print ok+0, bad+0}' <<<"$out"
    else
        local out
        out=$(wrk -t 1 -c "$H1_CONNECTIONS" -d "${dur}s" -s "$WORK/dd.lua" "http://127.0.0.1:$RP/v0.4/traces" 2>&1 || true)
        echo "$out" > "$WORK/load-$LOAD_NAME.txt"
        awk '/^WRKDONE/ {print $2 - $3, $3 + $4}' <<<"$out"
    fi
}

# Every 0.5 s until killed: relay VmRSS (KiB) and its queue's bytes on disk and in memory.
sample() {
    while kill -0 "$RELAY_PID" 2>/dev/null; do
        local st; st=$(curl -s --max-time 1 "http://$ADMIN/status" || true)
        local disk mem
        disk=$(grep -o '"disk_bytes":[0-9]*' <<<"$st" | head -1 | cut -d: -f2 || true)
        mem=$(grep -o '"memory_bytes":[0-9]*' <<<"$st" | head -1 | cut -d: -f2 || true)
        echo "$(proc_kb "$RELAY_PID" VmRSS) ${disk:-0} ${mem:-0}" >> "$1"
        sleep 0.5
    done
}

ROWS=()
ANCHOR_zipkin=""; ANCHOR_dd=""
# run_case ID LABEL INPUT BACKEND-CONFIG
run_case() {
    local id=$1 label=$2 input=$3 kind=$4 backend=sink
    [[ $kind == discard ]] && backend=-
    LOAD_NAME=$id
    start_relay "$id" "$kind"
    warm_up "$input"
    $BENCH wait-drained "$ADMIN" "$backend" 30 > /dev/null
    local log_off; log_off=$(stat -c %s "$WORK/access.log")
    read -r i0 r0 s0 b0 d0 _ _ < <($BENCH summary "$ADMIN" "$backend")
    local c0 t0 t1 c1 drained
: > "$WORK/samples-$id.txt"
    sample "$WORK/samples-$id.txt" & local sp=$!; EXTRA_PIDS+=("$sp")
    c0=$(cpu_ticks "$RELAY_PID"); t0=$(now)
    read -r ok bad < <(load "$input" "$DURATION")
    t1=$(now)
    drained=$($BENCH wait-drained "$ADMIN" "$backend" "$DRAIN_TIMEOUT")
    c1=$(cpu_ticks "$RELAY_PID")
    kill "$sp" 2>/dev/null || true; wait "$sp" 2>/dev/null || true
    read -r i1 r1 s1 b1 d1 retried disk < <($BENCH summary "$ADMIN" "$backend")
    $BENCH status "$ADMIN" > "$WORK/status-$id.json"
    local hwm; hwm=$(proc_kb "$RELAY_PID" VmHWM)
    read -r n_req n_ok n_bad n_bytes < <($BENCH access-log "$WORK/access.log" "$log_off")
    stop_pid "$RELAY_PID"; RELAY_PID=""

    local spans=$((i1 - i0)) sent=$((s1 - s0)) sbytes=$((b1 - b0)) dropped=$((d1 - d0)) rejected=$((r1 - r0))
    local spilled; spilled=$(awk '$2 > m {m = $2} END {printf "%.0f", m / 1048576}' "$WORK/samples-$id.txt")
    local cpu wall per_core rate loss
    cpu=$(awk -v a="$c1" -v b="$c0" -v t="$TICKS" 'BEGIN{printf "%.2f", (a-b)/t}')
    wall=$(fsub "$t1" "$t0")
    per_core=$(awk -v s="$spans" -v c="$cpu" 'BEGIN{ if (c > 0) printf "%.0f", s / c; else print "n/a" }')
    rate=$(awk -v s="$spans" -v w="$wall" 'BEGIN{printf "%.0f", s / w}')
    if [[ $kind == discard ]]; then
        loss="n/a (discard)"
        [[ $input == zipkin* ]] && ANCHOR_zipkin=$per_core || ANCHOR_dd=$per_core
    elif [[ $sent == "$spans" && $dropped == 0 && $n_bad == 0 && $n_bytes == "$sbytes" ]]; then
        loss="ok: $sent sent = accepted, nginx $n_ok req $n_bytes B = sent_bytes"
    else
        loss="LOSS? accepted $spans sent $sent dropped $dropped; nginx ${n_ok}x2xx ${n_bad}xother ${n_bytes} B vs sent_bytes $sbytes ($drained)"
    fi
    if [[ $rejected -gt 0 ]]; then  # refused by a full queue: Zipkin clients got 429 (they may retry);
        # Datadog clients without Datadog-Send-Real-Http-Status got 200, as from the agent: spans lost
        [[ $input == zipkin* ]] && loss+="; $rejected requests answered 429" \
            || loss+="; LOST: $rejected requests ($((rejected * SPANS)) spans) answered 200 but refused by the full queue"
    fi
    local anchor; [[ $input == zipkin* ]] && anchor=$ANCHOR_zipkin || anchor=$ANCHOR_dd
    local ratio; ratio=$(awk -v a="$per_core" -v b="$anchor" 'BEGIN{ if (b > 0 && a != "n/a") printf "%.2f", a / b; else print "-" }')
    printf -v row '%-16s %10s %8s %6s %11s %6s %8s %5s %5s  client %s ok/%s failed; %s; %s%s' \
        "$label" "$per_core" "$ratio" "$cpu" "$rate" "$wall" "$((hwm / 1024))MB" "$rejected" "${spilled}MB" "$ok" "$bad" "$drained" "$loss" \
        "$([[ ${retried:-0} -gt 0 ]] && echo "; retried $retried" || true)"
    ROWS+=("$row")
    echo "$row" >&2
}

# Outage: nginx down for the middle half of the run; RSS and spill sampled every 0.5 s.
run_spill() {
    LOAD_NAME=spill
    start_relay spill zipkin "maxBackoff: 1s"
    warm_up zipkin
    $BENCH wait-drained "$ADMIN" sink 30 > /dev/null
    read -r i0 r0 s0 _ _ _ _ < <($BENCH summary "$ADMIN" sink)
    local samples="$WORK/spill-samples.txt" state=up
    ( RATE=$SPILL_RATE H2_CONNECTIONS=2 H2_STREAMS=1 load zipkin "$SPILL_DURATION" > "$WORK/spill-load.txt" ) &
    local lp=$!; EXTRA_PIDS+=("$lp")
    local t0; t0=$(now)
    local down_at up_at; down_at=$(awk -v d="$SPILL_DURATION" 'BEGIN{print d/4}'); up_at=$(awk -v d="$SPILL_DURATION" 'BEGIN{print 3*d/4}')
    while kill -0 "$lp" 2>/dev/null; do
        local el; el=$(fsub "$(now)" "$t0")
        if [[ $state == up ]] && awk -v e="$el" -v d="$down_at" 'BEGIN{exit !(e >= d && d > 0)}' && [[ -z "${SPILLED_ONCE:-}" ]]; then
            stop_pid "$NG_PID"; NG_PID=""; state=down; SPILLED_ONCE=1
        elif [[ $state == down ]] && awk -v e="$el" -v u="$up_at" 'BEGIN{exit !(e >= u)}'; then
            start_nginx; state=up
        fi
        read -r _ _ _ _ _ _ disk < <($BENCH summary "$ADMIN" sink)
        echo "$el $state $(proc_kb "$RELAY_PID" VmRSS) $disk" >> "$samples"
        sleep 0.5
    done
    wait "$lp" 2>/dev/null || true
    [[ $state == down ]] && start_nginx
    local drained; drained=$($BENCH wait-drained "$ADMIN" sink "$DRAIN_TIMEOUT")
    read -r i1 r1 s1 _ d1 retried _ < <($BENCH summary "$ADMIN" sink)
    read -r ok bad < "$WORK/spill-load.txt"
    local hwm; hwm=$(proc_kb "$RELAY_PID" VmHWM)
    stop_pid "$RELAY_PID"; RELAY_PID=""
    local spans=$((i1 - i0)) sent=$((s1 - s0))
    local rate; rate=$(awk -v s="$spans" -v d="$SPILL_DURATION" 'BEGIN{printf "%.0f", s / d}')
    local downrss; downrss=$(awk '$2 == "down" && $3 > m {m = $3} END {printf "%d", m / 1024}' "$samples")
    local uprss; uprss=$(awk '$2 == "up" && $3 > m {m = $3} END {printf "%d", m / 1024}' "$samples")
    local disk; disk=$(awk '$4 > m {m = $4} END {printf "%.1f", m / 1048576}' "$samples")
    local loss; [[ $sent == "$spans" && $d1 == 0 ]] && loss="ok: $sent sent = accepted after recovery" || loss="LOSS? accepted $spans sent $sent dropped $d1"
    printf -v row 'spill: %s spans/s for %ss, nginx down %s..%ss: RSS max %s MB while down (%s MB while up), VmHWM %s MB, spill on disk max %s MB; client %s ok/%s failed, %s 429s; %s; %s, retried %s' \
        "$rate" "$SPILL_DURATION" "$down_at" "$up_at" "$downrss" "$uprss" "$((hwm / 1024))" "$disk" "$ok" "$bad" "$((r1 - r0))" "$drained" "$loss" "$retried"
    ROWS+=("$row")
    echo "$row" >&2
}

run_perf() {
    command -v perf >/dev/null || { ROWS+=("perf: not installed (apt-get install linux-perf)"); return; }
    LOAD_NAME=perf
    local input=${PERF_INPUT:-zipkin}
    start_relay perf zipkin
    warm_up "$input"
    perf record -e cpu-clock -F 999 -g -p "$RELAY_PID" -o "$WORK/perf.data" -- sleep "$DURATION" > "$WORK/perf.out" 2>&1 &
    local pp=$!; EXTRA_PIDS+=("$pp")
    load "$input" "$DURATION" > /dev/null
    wait "$pp" || { ROWS+=("perf: record failed: $(tail -2 "$WORK/perf.out")"); stop_pid "$RELAY_PID"; RELAY_PID=""; return; }
    $BENCH wait-drained "$ADMIN" sink "$DRAIN_TIMEOUT" > /dev/null
    stop_pid "$RELAY_PID"; RELAY_PID=""
    local dm=cat; command -v swift >/dev/null && dm="swift demangle --simplified"
    perf script -i "$WORK/perf.data" 2>/dev/null | $dm > "$WORK/perf-script.txt"
    local at=""; [[ -n "${RATE:-}" ]] && at=" at $RATE spans/s"
    ROWS+=("perf (${input}→zipkin$at, relay CPU, cpu-clock 999 Hz, call chains; each sample to the innermost stage on its chain):")
    while IFS= read -r l; do ROWS+=("$l"); done < <($BENCH perf-groups < "$WORK/perf-script.txt")
}

# --- run -------------------------------------------------------------------------------------
load1() { awk '{print $1}' /proc/loadavg; }
if awk -v l="$(load1)" 'BEGIN{exit !(l >= 0.5)}'; then
    echo "load average $(load1) ≥ 0.5; waiting up to ${WAIT_IDLE}s for the machine to settle" >&2
    for _ in $(seq "$WAIT_IDLE"); do awk -v l="$(load1)" 'BEGIN{exit !(l < 0.5)}' && break; sleep 1; done
fi
LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)
echo "tracerelay $TR; bodies: Zipkin $ZBYTES B, Datadog $DBYTES B ($DTRACES traces), $SPANS spans each; $DURATION s per case;" \
     "$(nproc) cores shared with h2load/wrk and nginx; load average at start $LOAD_AT_START; export $EXPORT" >&2

for c in $CASES; do
    case $c in
        anchor-zipkin) run_case anchor-zipkin anchor-zipkin zipkin discard ;;
        anchor-dd)     run_case anchor-dd anchor-dd dd discard ;;
        1) run_case case1 1:zipkin→zipkin zipkin zipkin ;;
        1c) run_case case1c 1c:zipkin→zipkin zipkinc zipkin ;;
        1r) TRACEID128=false run_case case1r 1r:zipkin→zipkin zipkinc zipkin ;;
        2) run_case case2 2:dd→dd dd datadog ;;
        3) run_case case3 3:zipkin→dd zipkin datadog ;;
        4) run_case case4 4:dd→zipkin dd zipkin ;;
        spill) run_spill ;;
        perf) run_perf ;;
        *) echo "unknown case $c" >&2; exit 2 ;;
    esac
done

echo
echo "load average at start: $LOAD_AT_START; at end: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-16s %10s %8s %6s %11s %6s %8s %5s %5s  %s\n' case "spans/s/core" "vs-ingest" "cpu-s" "spans/s" "wall-s" "VmHWM" "429s" "spill" "client requests, drain time, loss check"
for r in "${ROWS[@]}"; do echo "$r"; done
