#!/usr/bin/env bash
# HTTP ingest throughput of tracerelay's transport vs nginx, side by side, on one box.
#
# Both servers read a ~50 KB Zipkin-JSON-like POST body and answer 202. Load: wrk (HTTP/1.1
# keep-alive, 32 connections) and h2load (h2c prior knowledge, -c 32 -m 10), each for
# $DURATION seconds. Server CPU comes from /proc/<pid>/stat (utime+stime) before/after, so
# the figure that matters is "req per server CPU-second" — the load client shares the cores.
#
# Usage: Benchmarks/http-vs-nginx.sh            (builds Benchmarks' transport-echo, release)
#        SERVER="tracerelay serve --listen" Benchmarks/http-vs-nginx.sh   (the product instead)
#        TLS=1 Benchmarks/http-vs-nginx.sh      HTTPS: both servers terminate TLS with the same
#                 P-256 certificate and OpenSSL's defaults (TLS 1.3, TLS_AES_256_GCM_SHA384, X25519);
#                 wrk speaks HTTP/1.1 over TLS, h2load HTTP/2 by ALPN. Connections are kept alive,
#                 so the figure is record encryption plus HTTP, with 32 handshakes per run.
# Env:   DURATION (default 10), CONNECTIONS (32), STREAMS (10), BODY_BYTES (50000),
#        LOOPS (event loops of transport-echo; default = cores), NGINX_WORKERS (default 1; compare
#        like with like: LOOPS=1 against 1 worker, LOOPS=2 NGINX_WORKERS=2), ECHO_FLAGS (e.g. --shared-queues,
#        --event-mode dispatchSources to measure the per-connection Dispatch-source mode)
set -euo pipefail

DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-32}
STREAMS=${STREAMS:-10}
BODY_BYTES=${BODY_BYTES:-50000}
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d /tmp/http-vs-nginx.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

for tool in wrk h2load nginx curl; do
    command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install wrk nghttp2-client nginx-light libnginx-mod-http-echo)" >&2; exit 1; }
done

source "$(dirname "$0")/lib.sh"
TR_PORT=$(free_port); NG_PORT=$(free_port); NG_H2_PORT=$(free_port)
SCHEME=http; TR_TLS=(); NG_SSL=""; NG_TLS_CONF=""; PROTO_H2="h2c"
if [[ "${TLS:-0}" == 1 ]]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$WORK/key.pem" -out "$WORK/cert.pem" \
        -days 2 -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2>/dev/null
    SCHEME=https; TR_TLS=(--tls-cert "$WORK/cert.pem" --tls-key "$WORK/key.pem"); NG_SSL=" ssl"; PROTO_H2="h2 (TLS)"
    # nginx before 1.23.4 offers TLS 1.2 only unless told: both servers must speak TLS 1.3.
    NG_TLS_CONF="ssl_certificate $WORK/cert.pem; ssl_certificate_key $WORK/key.pem; ssl_session_cache shared:SSL:10m; ssl_protocols TLSv1.2 TLSv1.3;"
fi

# --- body: Zipkin v2 JSON spans until BODY_BYTES --------------------------------------------
python3 - "$BODY_BYTES" > "$WORK/body.json" <<'EOF'
import json, sys, random
random.seed(7)
target = int(sys.argv[1]); spans = []; size = 2
while size < target:
    s = {"traceId": "%032x" % random.getrandbits(128), "id": "%016x" % random.getrandbits(64),
         "parentId": "%016x" % random.getrandbits(64), "name": "get /api/v1/orders/{id}", "kind": "SERVER",
         "timestamp": 1700000000000000 + random.randint(0, 10**9), "duration": random.randint(100, 900000),
         "localEndpoint": {"serviceName": "orders", "ipv4": "10.0.%d.%d" % (random.randint(0, 255), random.randint(1, 254)), "port": 8080},
         "remoteEndpoint": {"serviceName": "frontend", "ipv4": "10.1.2.3", "port": 51234},
         "tags": {"http.method": "GET", "http.status_code": "200", "http.url": "http://orders:8080/api/v1/orders/%d" % random.randint(1, 99999),
                  "component": "proxy", "node_id": "sidecar~10.0.0.1~orders-5d8f-abcde.default~default.svc.cluster.local",
                  "mesh": "default", "kuma.io/service": "orders_default_svc_8080", "kuma.io/zone": "zone-1",
                  "upstream_cluster": "orders_default_svc_8080", "response_flags": "-", "guid:x-request-id": "%032x" % random.getrandbits(128)}}
    spans.append(s); size += len(json.dumps(s, separators=(",", ":"))) + 1
sys.stdout.write(json.dumps(spans, separators=(",", ":")))
EOF
BODY_SIZE=$(stat -c %s "$WORK/body.json")
cat > "$WORK/post.lua" <<EOF
local f = io.open("$WORK/body.json", "rb"); wrk.body = f:read("*a"); f:close()
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
EOF

# --- servers ------------------------------------------------------------------------------------
if [[ -n "${SERVER:-}" ]]; then
    $SERVER "127.0.0.1:$TR_PORT" "${TR_TLS[@]}" > "$WORK/tr.log" 2>&1 &
    TR_PID=$!
else
    swift build --package-path "$HERE" -c release --product transport-echo 2>&1 | tail -1 >&2
    "$HERE/.build/release/transport-echo" --listen "127.0.0.1:$TR_PORT" ${LOOPS:+--loops $LOOPS} ${ECHO_FLAGS:-} "${TR_TLS[@]}" > "$WORK/tr.log" 2>&1 &
    TR_PID=$!
fi
PIDS+=("$TR_PID")

cat > "$WORK/nginx.conf" <<EOF
load_module /usr/lib/nginx/modules/ngx_http_echo_module.so;
worker_processes ${NGINX_WORKERS:-1};
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_buffer_size 1m;
    client_max_body_size 30m;
    client_body_temp_path $WORK/nginx-body;
    keepalive_requests 1000000;
    http2_max_requests 1000000;
    $NG_TLS_CONF
    server {
        listen 127.0.0.1:$NG_PORT$NG_SSL;
        listen 127.0.0.1:$NG_H2_PORT$NG_SSL http2;
        location = /api/v2/spans { echo_read_request_body; echo_status 202; echo -n "{}"; }
    }
}
EOF
mkdir -p "$WORK/nginx-body"
nginx -c "$WORK/nginx.conf" -p "$WORK" > "$WORK/nginx.out" 2>&1 &
NG_MASTER=$!
PIDS+=("$NG_MASTER")

wait_up() { for _ in $(seq 100); do curl -sk -o /dev/null "$SCHEME://127.0.0.1:$1/" && return 0; sleep 0.1; done; echo "server on $1 did not start" >&2; exit 1; }
wait_up "$TR_PORT"; wait_up "$NG_PORT"
for p in "$TR_PORT" "$NG_PORT"; do
    code=$(curl -sk -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' --data-binary @"$WORK/body.json" "$SCHEME://127.0.0.1:$p/api/v2/spans")
    [[ "$code" == 202 ]] || { echo "sanity POST to port $p answered $code" >&2; exit 1; }
done

# CPU seconds (utime+stime) of a process and its children threads, summed over pids.
TICKS=$(getconf CLK_TCK)
cpu_ticks() { local t=0; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$t"; }
rss_kb() { local t=0; for p in "$@"; do t=$((t + $(awk '/VmRSS/ {print $2}' "/proc/$p/status"))); done; echo "$t"; }
NG_PIDS=("$NG_MASTER" $(pgrep -P "$NG_MASTER"))

# run NAME URL-PORT pids... ; prints "reqs/s cpu_s"
run_wrk() {
    local port=$1; shift
    local before; before=$(cpu_ticks "$@")
    local out; out=$(wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" -s "$WORK/post.lua" "$SCHEME://127.0.0.1:$port/api/v2/spans")
    local after; after=$(cpu_ticks "$@")
    local rps; rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    local non2xx; non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
    echo "$rps $(awk -v a="$after" -v b="$before" -v t="$TICKS" 'BEGIN{printf "%.2f", (a-b)/t}') ${non2xx:-0}"
}
run_h2load() {
    local port=$1; shift
    local before; before=$(cpu_ticks "$@")
    local out; out=$(h2load -c"$CONNECTIONS" -m"$STREAMS" -t2 -D "$DURATION" -d "$WORK/body.json" \
        -H 'content-type: application/json' "$SCHEME://127.0.0.1:$port/api/v2/spans" 2>&1 || true)
    local after; after=$(cpu_ticks "$@")
    local rps; rps=$(awk '/^finished in/ {gsub(",", "", $4); print $4}' <<<"$out")
    local ok; ok=$(awk '/^status codes:/ {print $3}' <<<"$out")
    local failed; failed=$(awk '/^requests:/ {print $(NF-5)}' <<<"$out")
    echo "${rps:-0} $(awk -v a="$after" -v b="$before" -v t="$TICKS" 'BEGIN{printf "%.2f", (a-b)/t}') ${failed:-?}"
}

echo "body: $BODY_SIZE bytes Zipkin JSON; $DURATION s per run; $SCHEME; $(nproc) cores shared with the load client"
if [[ "${TLS:-0}" == 1 ]]; then # what each server negotiates with OpenSSL's defaults (must be the same)
    for p in "$TR_PORT" "$NG_PORT"; do
        echo "port $p: $(openssl s_client -connect "127.0.0.1:$p" </dev/null 2>/dev/null | grep -m1 -E '^New, ')"
    done
fi
read -r TR_H1 TR_H1_CPU TR_H1_BAD < <(run_wrk "$TR_PORT" "$TR_PID")
read -r NG_H1 NG_H1_CPU NG_H1_BAD < <(run_wrk "$NG_PORT" "${NG_PIDS[@]}")
read -r TR_H2 TR_H2_CPU TR_H2_BAD < <(run_h2load "$TR_PORT" "$TR_PID")
read -r NG_H2 NG_H2_CPU NG_H2_BAD < <(run_h2load "$NG_H2_PORT" "${NG_PIDS[@]}")
TR_RSS=$(rss_kb "$TR_PID"); NG_RSS=$(rss_kb "${NG_PIDS[@]}")

per_core() { awk -v r="$1" -v c="$2" -v d="$DURATION" 'BEGIN{ if (c > 0) printf "%.0f", r * d / c; else print "n/a" }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b > 0 && a != "n/a" && b != "n/a") printf "%.2f", a / b; else print "n/a" }'; }
TR_H1_PC=$(per_core "$TR_H1" "$TR_H1_CPU"); NG_H1_PC=$(per_core "$NG_H1" "$NG_H1_CPU")
TR_H2_PC=$(per_core "$TR_H2" "$TR_H2_CPU"); NG_H2_PC=$(per_core "$NG_H2" "$NG_H2_CPU")

printf '\n%-22s %12s %12s %8s\n' "" "tracerelay" "nginx" "ratio"
printf '%-22s %12s %12s %8s\n' "h1 req/s" "$TR_H1" "$NG_H1" "$(ratio "$TR_H1" "$NG_H1")"
printf '%-22s %12s %12s\n' "h1 server CPU s" "$TR_H1_CPU" "$NG_H1_CPU"
printf '%-22s %12s %12s %8s\n' "h1 req/s per core" "$TR_H1_PC" "$NG_H1_PC" "$(ratio "$TR_H1_PC" "$NG_H1_PC")"
printf '%-22s %12s %12s\n' "h1 non-2xx" "$TR_H1_BAD" "$NG_H1_BAD"
printf '%-22s %12s %12s %8s\n' "$PROTO_H2 req/s" "$TR_H2" "$NG_H2" "$(ratio "$TR_H2" "$NG_H2")"
printf '%-22s %12s %12s\n' "$PROTO_H2 server CPU s" "$TR_H2_CPU" "$NG_H2_CPU"
printf '%-22s %12s %12s %8s\n' "$PROTO_H2 req/s per core" "$TR_H2_PC" "$NG_H2_PC" "$(ratio "$TR_H2_PC" "$NG_H2_PC")"
printf '%-22s %12s %12s\n' "$PROTO_H2 failed reqs" "$TR_H2_BAD" "$NG_H2_BAD"
printf '%-22s %12s %12s\n' "server RSS (KiB)" "$TR_RSS" "$NG_RSS"
