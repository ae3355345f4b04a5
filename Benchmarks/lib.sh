# Shell helpers the benchmark scripts share (sourced, not run).

# TERM a process of ours, wait up to 10 s, then KILL it.
stop_pid() {
    local p=$1
    [[ -n "$p" ]] && kill -0 "$p" 2>/dev/null || return 0
    kill -TERM "$p" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
}

# A free loopback port.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Seconds since the epoch, with nanoseconds.
now() { date +%s.%N; }

# Sets TR to the relay binary: $TRACERELAY_BIN, else a release build in the scratch path $1.
relay_binary() {
    if [[ -n "${TRACERELAY_BIN:-}" ]]; then
        TR=$TRACERELAY_BIN
    else
        (cd "$REPO" && swift build -c release --scratch-path "$1" --product tracerelay 2>&1 | tail -3) >&2
        TR="$REPO/$1/release/tracerelay"
    fi
    [[ -x "$TR" ]] || { echo "no tracerelay binary at $TR" >&2; exit 1; }
}
