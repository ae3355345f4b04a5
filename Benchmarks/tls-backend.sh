#!/usr/bin/env bash
# The outbound client with and without TLS (issue 14): h2load → tracerelay → nginx, the same
# Zipkin JSON bodies (500 Envoy-shaped spans, Benchmarks/pipeline/bench.py) to the same nginx
# (reading every body), once per case:
#   http1   http://  HTTP/1.1 pool          h2c     http:// h2c (prior knowledge)
#   https1  https:// HTTP/1.1 (ALPN)        h2tls   https:// h2 chosen by ALPN
#   both    (not in the default list) h2tls with TLS on the ingest side too: h2load speaks h2 over
#           TLS to the relay's listener (--tls-cert/--tls-key) — the pipeline with TLS on both sides
# The figure is spans per second per core of relay CPU (utime+stime from /proc, from the start
# of the load until everything accepted was sent), as in pipeline.sh: ingest (h2c) is the same
# in every case, so the difference is what TLS costs the exporter. Loss check: sent == accepted.
# Certificates: a throwaway P-256 CA and a server certificate for localhost (openssl CLI).
#
# Usage: Benchmarks/tls-backend.sh   (builds tracerelay: swift build -c release --scratch-path .build-bench)
# Env:   DURATION (10 s per case), CASES ("http1 https1 h2c h2tls"), TRACERELAY_BIN (skip the build),
#        H2_CONNECTIONS (8), H2_STREAMS (4), EXPORT (the backend's export: map, flow YAML; the protocol
#        is set per case), KEEP_WORK=1 (keep the temp dir).
set -euo pipefail

DURATION=${DURATION:-10}
CASES=${CASES:-"http1 https1 h2c h2tls"}
H2_CONNECTIONS=${H2_CONNECTIONS:-8}
H2_STREAMS=${H2_STREAMS:-4}
EXPORT=${EXPORT:-"batchSpans: 1000, batchBytes: 1MiB, batchDelay: 200ms, concurrency: 4, compression: none"}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
source "$HERE/lib.sh"
BENCH="python3 $HERE/pipeline/bench.py"
WORK=$(mktemp -d /tmp/tls-backend-bench.XXXXXX)
RELAY_PID=""; NG_PID=""

# On exit: stop what we started; the work dir goes unless KEEP_WORK=1.
trap 'stop_pid "$RELAY_PID"; stop_pid "$NG_PID"; [[ "${KEEP_WORK:-0}" == 1 ]] && echo "kept $WORK" >&2 || rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM
MISSING=$(for t in h2load nginx curl python3 openssl; do command -v "$t" >/dev/null || echo -n "$t "; done)
[[ -f /usr/lib/nginx/modules/ngx_http_echo_module.so ]] || MISSING+="libnginx-mod-http-echo"
[[ -z "$MISSING" ]] || { echo "missing: $MISSING" >&2; exit 1; }
relay_binary .build-bench

# --- certificates, bodies ------------------------------------------------------------------
EC=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
openssl req -x509 "${EC[@]}" -keyout "$WORK/ca.key" -out "$WORK/ca.pem" -days 2 -subj "/CN=bench CA" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' > "$WORK/server.ext"
openssl req "${EC[@]}" -keyout "$WORK/server.key" -out "$WORK/server.csr" -subj "/CN=localhost" 2>/dev/null
openssl x509 -req -in "$WORK/server.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" -CAcreateserial \
    -out "$WORK/server.pem" -days 2 -extfile "$WORK/server.ext" 2>/dev/null
read -r ZBYTES _ _ < <($BENCH payloads "$WORK/bodies" "$REPO/Tests/CodecsTests/Fixtures" 1)

# --- nginx: pipeline.sh's collector on three ports (nginx 1.22: a plain http2 port is h2c only) ---
H1=$(free_port); H2C=$(free_port); TLS=$(free_port)
mkdir -p "$WORK/nginx-body"
LISTEN="listen 127.0.0.1:$H1; listen 127.0.0.1:$H2C http2; listen 127.0.0.1:$TLS ssl http2;"
LISTEN+=" ssl_certificate $WORK/server.pem; ssl_certificate_key $WORK/server.key;"
sed -e "s|@WORK@|$WORK|g" -e "s|listen 127.0.0.1:@PORT@;|$LISTEN|" "$HERE/pipeline/nginx.conf" > "$WORK/nginx.conf"
nginx -c "$WORK/nginx.conf" -p "$WORK" > "$WORK/nginx.out" 2>&1 &
NG_PID=$!
for _ in $(seq 100); do curl -s -o /dev/null --cacert "$WORK/ca.pem" "https://localhost:$TLS/" && break; sleep 0.05; done

TICKS=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# run_case NAME URL PROTOCOL [tls] → one table row; "tls": the relay's listener speaks TLS too
run_case() {
    local name=$1 url=$2 protocol=$3 ingest=${4:-plain} tls=() listen_tls=() scheme=http warm=(--http2-prior-knowledge)
    if [[ $ingest == tls ]]; then
        listen_tls=(--tls-cert "$WORK/server.pem" --tls-key "$WORK/server.key"); scheme=https
        warm=(--http2 --cacert "$WORK/ca.pem")
    fi
    [[ $url == https* ]] && tls=(-e "/^ *traceId128bit:/a\\        tls: {caFile: $WORK/ca.pem}")
    sed -e "s|url: http://127.0.0.1:@NGINX_PORT@/api/v2/spans|url: $url|" -e "s|@TRACEID128@|true|" \
        -e "s|@EXPORT@|{protocol: $protocol, $EXPORT}|" "${tls[@]}" "$HERE/pipeline/relay-zipkin.yaml" > "$WORK/$name.yaml"
    local rp ap; rp=$(free_port); ap=$(free_port)
    "$TR" serve --config "$WORK/$name.yaml" --listen "127.0.0.1:$rp" --admin "127.0.0.1:$ap" \
        --spill-dir "$WORK/spill-$name" "${listen_tls[@]}" > "$WORK/relay-$name.log" 2>&1 &
    RELAY_PID=$!
    local admin="127.0.0.1:$ap"
    for _ in $(seq 200); do
        [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://$admin/health/ready")" == 200 ]] && break
        kill -0 "$RELAY_PID" 2>/dev/null || { echo "relay ($name) exited:" >&2; tail -5 "$WORK/relay-$name.log" >&2; exit 1; }
        sleep 0.05
    done
    curl -s -o /dev/null "${warm[@]}" -H 'Content-Type: application/json' \
        --data-binary @"$WORK/bodies/zipkin-0.json" "$scheme://localhost:$rp/api/v2/spans"
    $BENCH wait-drained "$admin" sink 30 > /dev/null
    read -r i0 _ s0 _ _ _ _ < <($BENCH summary "$admin" sink)
    local c0 t0 c1 t1
    c0=$(cpu_ticks "$RELAY_PID"); t0=$(now)
    h2load -c "$H2_CONNECTIONS" -m "$H2_STREAMS" -t 1 -D "$DURATION" -d "$WORK/bodies/zipkin-0.json" \
        -H 'content-type: application/json' "$scheme://127.0.0.1:$rp/api/v2/spans" > "$WORK/load-$name.txt" 2>&1 || true
    $BENCH wait-drained "$admin" sink 120 > /dev/null
    c1=$(cpu_ticks "$RELAY_PID"); t1=$(now)
    read -r i1 _ s1 _ _ _ _ < <($BENCH summary "$admin" sink)
    local failures; failures=$(grep -c "TLS handshake with backend failed" "$WORK/relay-$name.log" || true)
    stop_pid "$RELAY_PID"; RELAY_PID=""
    local spans=$((i1 - i0)) sent=$((s1 - s0))
    awk -v n="$name" -v sp="$sent" -v acc="$spans" -v c="$(( c1 - c0 ))" -v t="$TICKS" -v w0="$t0" -v w1="$t1" \
        -v hf="$failures" 'BEGIN {
        cpu = c / t; wall = w1 - w0
        printf "%-7s %12.0f %10.0f %7.2f %7.1f  %s%s\n", n, (cpu > 0 ? sp / cpu : 0), sp / wall, cpu, wall,
            (sp == acc ? "sent = accepted" : "LOSS? accepted " acc " sent " sp), (hf > 0 ? ", TLS failures logged" : "") }'
}

echo "$(nproc) cores shared with h2load and nginx; load average $(cut -d' ' -f1-3 /proc/loadavg); body $ZBYTES B (500 spans); export {$EXPORT}" >&2
printf '%-7s %12s %10s %7s %7s  %s\n' case "spans/s/core" "spans/s" "cpu-s" "wall-s" "check"
for c in $CASES; do
    case $c in
        http1)  run_case http1 "http://127.0.0.1:$H1/api/v2/spans" http1 ;;
        https1) run_case https1 "https://localhost:$TLS/api/v2/spans" http1 ;;
        h2c)    run_case h2c "http://127.0.0.1:$H2C/api/v2/spans" h2c ;;
        h2tls)  run_case h2tls "https://localhost:$TLS/api/v2/spans" h2c ;;
        both)   run_case both "https://localhost:$TLS/api/v2/spans" h2c tls ;;
        *) echo "unknown case $c" >&2; exit 1 ;;
    esac
done
